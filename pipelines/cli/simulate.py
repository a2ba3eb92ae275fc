"""``mmfeat simulate``: simulated users of a manifest in multi-turn sessions with a recommender (the
``simulate-sessions`` flow, run locally on the command's own Prefect server).

Everything is checked before Prefect, torch or scikit-learn is imported: the recommender kind (argparse
choices), the segment and the base model (static copies of their registries, compared with the real ones by
``tests/test_agent_environment.py``), the LLM spec, the weights file and the manifest. A typo is one line and
exit code 2, in well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import json
import textwrap
from pathlib import Path
from typing import Any

from mmfeat.defaults import DEFAULT_SEED
from mmfeat.pipelines.cli.args import parse_settings
from mmfeat.pipelines.cli.errors import UsageError
from mmfeat.pipelines.cli.names import check_model_name

#: :data:`mmfeat.pipelines.simulation.sessions.RECOMMENDER_KINDS`
RECOMMENDERS = ("agent", "static", "popularity")
#: :data:`mmfeat.pipelines.simulation.population.SEGMENTS`
SEGMENTS = ("all", "high-activity", "low-activity", "high-conformity", "low-conformity", "high-diversity",
            "low-diversity")
#: :data:`mmfeat.agents.recommender.policy.FEATURES` (the keys of a weights file)
WEIGHT_NAMES = ("base", "match", "novelty", "diversity", "repetition", "affinity")
#: CTR models score impressions, not a user's catalog
CTR_MODELS = ("DIN", "QIN")


def check_segment(name: str) -> str:
    """The segment, or a :class:`UsageError` naming the closest one."""
    if name in SEGMENTS:
        return name
    close = difflib.get_close_matches(name, SEGMENTS, n=1)
    hint = f" did you mean {close[0]}?" if close else ""
    raise UsageError(f"--segment: unknown segment {name!r};{hint} segments: {', '.join(SEGMENTS)}")


def check_llm(spec: str) -> str:
    """``none`` / ``smollm2`` / ``http(s)://...`` / an existing model folder."""
    if spec.lower() in ("none", "smollm2") or spec.startswith(("http://", "https://")):
        return spec.lower() if spec.lower() in ("none", "smollm2") else spec
    if Path(spec).exists():
        return spec
    raise UsageError(f"--llm {spec!r}: use none, smollm2, an http(s):// OpenAI-compatible endpoint, or the path of a "
                     f"local transformers model folder (no such path)")


def check_weights(path: str | None) -> dict[str, float] | None:
    """A weights file's values (``{"base": 1.0, ...}`` or a learning result's ``learned``), checked."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--weights {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UsageError(f"--weights {path}: not JSON ({exc})") from None
    data = data.get("learned", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise UsageError(f"--weights {path}: expected an object with keys {', '.join(WEIGHT_NAMES)}")
    unknown = sorted(set(data) - set(WEIGHT_NAMES))
    if unknown:
        raise UsageError(f"--weights {path}: unknown weight(s) {unknown}; known: {', '.join(WEIGHT_NAMES)}")
    try:
        return {k: float(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise UsageError(f"--weights {path}: every weight must be a number") from None


def precheck(args: argparse.Namespace) -> dict[str, Any]:
    """Every name and value of the request, checked before anything heavy loads; returns the flow parameters."""
    from mmfeat.pipelines.manifest import load_manifest

    if min(args.population, args.turns, args.page_size, args.progress_every) < 1:
        raise UsageError("--population, --turns, --page-size and --progress-every must be >= 1")
    segment = check_segment(args.segment)
    base_model = None
    if args.agent != "popularity" and not args.base_run and args.base_model.lower() == "popularity":
        base_model = "popularity"
    elif args.agent != "popularity" and not args.base_run:
        base_model = check_model_name(args.base_model, "--base-model")
        if base_model in CTR_MODELS:
            raise UsageError(f"--base-model {base_model}: a CTR model scores impressions, not a user's catalog; use a "
                             f"graph or sequential model (LightGCN, FREEDOM, SASRec, ...)")
    if args.base_run and not (Path(args.base_run) / "record.json").is_file() and not (
            args.base_run.endswith("record.json") and Path(args.base_run).is_file()):
        raise UsageError(f"--base-run {args.base_run}: no run record there; give a run folder written by "
                         f"`mmfeat train`")
    llm = check_llm(args.llm)
    if llm != "none" and args.agent != "agent":
        raise UsageError(f"--llm {args.llm}: only the agent uses an LLM (--agent agent)")
    weights = check_weights(args.weights)
    if weights is not None and args.agent != "agent":
        raise UsageError("--weights: only the agent has policy weights (--agent agent)")
    load_manifest(args.manifest, data_root=args.data_root)  # ManifestError: not found, invalid, missing data
    return {"manifest": args.manifest, "agent": args.agent, "base_model": base_model, "base_run": args.base_run,
            "base_config": parse_settings(args.base_set, "--base-set") or None, "population": args.population,
            "segment": segment, "turns": args.turns, "page_size": args.page_size, "llm": llm,
            "llm_model": args.llm_model, "seed": DEFAULT_SEED if args.seed is None else args.seed,
            "weights": weights, "embeddings": args.embeddings, "store_root": args.store, "runs_dir": args.runs,
            "data_root": args.data_root, "tag": args.tag, "progress_every": args.progress_every}


def cmd_simulate(args: argparse.Namespace) -> int:
    params = precheck(args)
    from mmfeat.pipelines.cli.prefect_run import run_flow
    from mmfeat.pipelines.flows.simulate_flow import simulate_sessions

    out = run_flow(simulate_sessions, args, **params)
    print(out["markdown"])
    print(f"\ntrace: {out['trace']['dataset']}/_sessions/{out['trace']['version']} (mmfeat store show "
          f"{out['trace']['dataset']} _sessions {out['trace']['version']})")
    if out.get("record"):
        print(f"run record: {out['record']} (mmfeat compare RUN RUN shows runs side by side)")
    return 0


def add_simulate_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sp = sub.add_parser(
        "simulate", parents=[common], help="simulated users in multi-turn sessions with a recommender",
        description=textwrap.fill(
            "Run the simulate-sessions flow locally: simulated users built from the manifest's real users (profile, "
            "learned taste model, mindset) meet a recommender page after page; they click, rate, write reflective "
            "instructions and leave. Prints retention, engagement, instruction following, hit rate on the users' "
            "held-out items, diversity, coverage and filter-bubble drift; the trace becomes a store version "
            "(<dataset>/_sessions) and a run record for `mmfeat compare`.", 78),
        epilog="examples:\n"
               "  mmfeat simulate movielens-100k --agent agent --base-model LightGCN --population 200\n"
               "  mmfeat simulate movielens-100k --agent static --base-model SASRec --turns 20 --page-size 10\n"
               "  mmfeat simulate movielens-1m --agent popularity --segment high-activity\n"
               "  mmfeat simulate movielens-100k --agent agent --llm smollm2 --population 20\n"
               "  mmfeat simulate movielens-100k --agent agent --weights bench/agentic/learned_weights.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path: whose users to simulate")
    sp.add_argument("--agent", choices=RECOMMENDERS, default="agent",
                    help="the recommender: the agent (LLM-ARS over the base model), a static top-k of the base "
                         "model, or popularity (default: agent)")
    sp.add_argument("--base-model", default="LightGCN",
                    help="base model, trained in the simulation on the users' visible histories, or popularity "
                         "(default: LightGCN)")
    sp.add_argument("--base-run", help="a trained run folder (mmfeat train) to reload as the base model instead")
    sp.add_argument("--base-set", action="append", metavar="KEY=VALUE",
                    help="a hyper-parameter of the base model trained here, e.g. epochs=30 (repeatable)")
    sp.add_argument("--population", type=int, default=1000, help="simulated users (default: 1000)")
    sp.add_argument("--segment", default="all",
                    help=f"users to draw: {', '.join(SEGMENTS)} (traits by population tertiles; default: all)")
    sp.add_argument("--turns", type=int, default=20, help="pages per session at most (default: 20)")
    sp.add_argument("--page-size", type=int, default=10, help="items per page (default: 10)")
    sp.add_argument("--llm", default="none",
                    help="the agent's instruction parser: none (deterministic), smollm2, a model folder, or an "
                         "http(s):// OpenAI-compatible endpoint (default: none)")
    sp.add_argument("--llm-model", default="default", help="the model name sent to an endpoint (default: default)")
    sp.add_argument("--seed", type=int, help=f"population, simulator and session seed (default: {DEFAULT_SEED})")
    sp.add_argument("--weights", help="policy weights JSON (e.g. the benchmark's learned weights)")
    sp.add_argument("--embeddings", metavar="FEATURE_SET[@ref]",
                    help="a store text-embedding feature set for the agent's search tool (e.g. text_minilm)")
    sp.add_argument("--runs", help="run records folder (default: $MMFEAT_RUNS, else ./runs)")
    sp.add_argument("--data-root", help="override the manifest's data_root")
    sp.add_argument("--tag", help="an alias for the trace version besides latest")
    sp.add_argument("--progress-every", type=int, default=100, help="log a line per this many finished sessions")
    sp.set_defaults(func=cmd_simulate)


__all__ = ["add_simulate_command", "cmd_simulate", "precheck", "RECOMMENDERS", "SEGMENTS", "WEIGHT_NAMES"]
