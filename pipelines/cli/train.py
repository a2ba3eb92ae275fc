"""``mmfeat train`` (the train-recommender flow, run locally) and ``mmfeat compare``.

Everything a training run needs is checked before Prefect is imported or any data is loaded:
the option values here (``ROLE=FEATURE_SET[@ref]``, ``KEY=VALUE``), the model name (against a static
list, :mod:`mmfeat.pipelines.cli.names`) and the manifest before torch is imported, then the request
as a whole by :func:`mmfeat.pipelines.flows.train_flow.validate_train_request` (feature roles, store
versions, ``--versus``, hyper-parameter names), so a typo is one line, not a failed flow run.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from mmfeat.pipelines.cli.args import parse_feature_refs, parse_grid, parse_settings
from mmfeat.pipelines.cli.errors import UsageError
from mmfeat.pipelines.cli.names import MODEL_NAMES, check_model_name
from mmfeat.pipelines.training.run import DEFAULT_SEED  # the one default of both seeds (no torch, no Prefect)

#: the model ``mmfeat train`` trains when neither --model nor --preset names one
DEFAULT_MODEL = "LightGCN"


def preset_help() -> list[str]:
    """``name (model)`` of every preset, for ``--help``."""
    from mmfeat.pipelines.training.presets import PRESETS

    return [f"{p.name} ({p.model})" for p in sorted(PRESETS.values(), key=lambda p: p.name)]


def models_epilog() -> str:
    """The ``train --help`` epilog: the registered models (the static copy: help imports no torch)."""
    return ("models: " + ", ".join(MODEL_NAMES) + "\n\nexamples:\n"
            "  mmfeat train movielens-100k --model FREEDOM --feature text=text_minilm --min-rating 4 --k-core 5\n"
            "  mmfeat train movielens-100k --model FREEDOM --feature text=text_minilm --versus text=text_mpnet\n"
            "  mmfeat train movielens-100k --model FREEDOM --feature text=text_minilm --grid learning_rate=0.001,0.0001\n"
            "  mmfeat train movielens-100k --model SASRec --set epochs=20\n"
            "  mmfeat train movielens-100k --model DIN --feature text=text_minilm --set epochs=3\n"
            "  mmfeat train movielens-1m --preset din-mmctr --feature text=text_minilm\n"
            "  mmfeat train microlens --model SASRec --feature text=title_minilm --versus text=description_minilm "
            "--versus ids")


def parse_versus(values: list[str] | None) -> list:
    """Each ``--versus`` is one more run: ``ROLE=FEATURE_SET[@ref][,ROLE=...]`` swapped into ``--feature``, or
    ``ids`` (no item features: ID embeddings). ``[]`` when none is given."""
    from mmfeat.pipelines.training.run import IDS_ARM

    arms: list = []
    for raw in values or []:
        if raw.strip() == IDS_ARM:
            arms.append(IDS_ARM)
        else:
            arms.append(parse_feature_refs([part for part in raw.split(",") if part.strip()] or [raw], "--versus"))
    return arms


def train_request(args: argparse.Namespace) -> dict[str, Any]:
    """The option values as the flow's parameters; malformed values are a :class:`UsageError`."""
    features = parse_feature_refs(args.feature, "--feature")
    versus = parse_versus(args.versus)
    overrides = parse_settings(args.set, "--set")
    grid = parse_grid(args.grid, "--grid")
    from mmfeat.pipelines.training.presets import PresetError, apply_preset

    try:  # the preset fills the model, --set and --grid values the user did not give
        model, overrides, grid = apply_preset(args.preset, args.model, overrides, grid)
    except PresetError as exc:
        raise UsageError(str(exc)) from None
    args.model = model or DEFAULT_MODEL
    return {"features": features, "versus": versus, "overrides": overrides, "grid": grid}


def _seeds(args: argparse.Namespace) -> dict[str, int]:
    """Only the seeds given as options: the flow owns the defaults (``--set seed=`` travels in the config)."""
    given = {"split_seed": args.split_seed, "seed": args.seed}
    return {k: v for k, v in given.items() if v is not None}


def precheck_names(args: argparse.Namespace) -> None:
    """The model name and the manifest, checked before torch or Prefect is imported (a typo is refused in
    well under a second, not after the 5 to 55 s that importing the model registry takes)."""
    from mmfeat.pipelines.manifest import load_manifest

    args.model = check_model_name(args.model)
    load_manifest(args.manifest, data_root=args.data_root)  # ManifestError: not found, invalid, missing data


def cmd_train(args: argparse.Namespace) -> int:
    req = train_request(args)
    precheck_names(args)
    from mmfeat.pipelines.flows.train_flow import validate_train_request  # the flow module: imports Prefect, starts nothing

    validate_train_request(args.manifest, model=args.model, features=req["features"], versus=req["versus"],
                           overrides=req["overrides"], grid=req["grid"], store_root=args.store,
                           data_root=args.data_root, seed=args.seed, split=args.split, history=args.history,
                           min_rating=args.min_rating, k_core=args.k_core)
    from mmfeat.pipelines.cli.prefect_run import prefect_session, run_flow
    from mmfeat.pipelines.flows.train_flow import compare_runs, train_recommender
    from mmfeat.pipelines.training.run import versus_arms

    arms = versus_arms(req["features"], req["versus"])
    records = []
    with prefect_session():  # one temporary server for every arm, stopped however the command ends
        for feats in arms:  # same manifest, split and hyper-parameters: only the features differ
            result = run_flow(train_recommender, args, manifest=args.manifest, model=args.model, features=feats,
                              config=req["overrides"], grid=req["grid"] or None, split=args.split,
                              min_rating=args.min_rating, k_core=args.k_core, store_root=args.store,
                              runs_dir=args.runs, data_root=args.data_root, **_seeds(args),
                              **({"history": args.history} if args.history else {}),
                              **({"preset": args.preset} if args.preset else {}))
            records.append(_print_best(result))
    if len(records) > 1:
        print()
        print(compare_runs(records))
    return 0


def _print_best(result: dict[str, Any]) -> str:
    """A short table of the (best) run: valid and test metrics at its best epoch, best epoch, s/epoch."""
    from mmfeat.pipelines.training.report import run_summary

    best = result["best"]
    n_runs = len(result.get("runs") or [])
    if n_runs > 1:
        vm = str(best["config"].get("valid_metric", "recall@20")).lower()
        print(f"grid: {n_runs} runs, best selected on valid {vm}:")
    print(run_summary(best))
    return best["record_path"]


def cmd_compare(args: argparse.Namespace) -> int:
    from mmfeat.pipelines.training.report import record_path

    missing = [p for p in args.runs if not record_path(p).is_file()]
    if missing:
        raise UsageError(f"no run record at {', '.join(str(record_path(p)) for p in missing)}; give run folders "
                         "(runs/<run>, see --runs / $MMFEAT_RUNS) or their record.json")
    from mmfeat.pipelines.training.report import compare_text, load_records  # no Prefect, no torch

    print(compare_text(load_records(args.runs)))
    return 0


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The interaction filters and folders every training command takes (``train``, ``unlearn``)."""
    parser.add_argument("--min-rating", type=float, help="keep interactions rated at least this (needs ratings)")
    parser.add_argument("--k-core", type=int, default=0,
                        help="iteratively keep users and items with >= K interactions")
    parser.add_argument("--runs", help="run records folder (default: $MMFEAT_RUNS, else ./runs)")
    parser.add_argument("--data-root", help="override the manifest's data_root")


def add_train_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tr = sub.add_parser("train", parents=[common], help="train and evaluate a recommender on store features",
                        description=textwrap.fill(
                            "Run the train-recommender flow locally: split the manifest's interactions, read the "
                            "feature versions, train (or grid-search, selected on validation) and write a run "
                            "record. The request is checked before anything loads.", 78),
                        lazy_epilog=models_epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path: whose interactions to train on")
    tr.add_argument("--model", help=f"model name, case-insensitive (default: the preset's, else {DEFAULT_MODEL}; "
                                    "list below)")
    tr.add_argument("--preset", help="a published baseline's settings and search space, under --set/--grid: "
                                     + ", ".join(preset_help()))
    tr.add_argument("--feature", action="append", metavar="ROLE=FEATURE_SET[@ref]",
                    help="an item feature for a modality role of the model, e.g. text=text_minilm or "
                         "image=cover_clip@paper-v1 (repeatable)")
    tr.add_argument("--versus", action="append", metavar="ROLE=FEATURE_SET[@ref][,...]|ids",
                    help="one more, otherwise identical run with these features swapped in (comma-separate roles), "
                         "or 'ids' for a run without item features; all runs printed side by side (repeatable: "
                         "one run each)")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a hyper-parameter, e.g. epochs=50 or learning_rate=1e-3 (repeatable)")
    tr.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="search these values, selected on validation (repeatable)")
    tr.add_argument("--seed", type=int, help=f"training seed (init, sampling; default: {DEFAULT_SEED})")
    tr.add_argument("--split-seed", type=int, help=f"seed of the random or cold split (default: {DEFAULT_SEED})")
    tr.add_argument("--split", choices=["given", "random", "time", "loo", "cold"],
                    help="given: the source's split column; random: per-user 8:1:1; time: global time split; "
                         "loo: leave-one-out per user in time order; cold: 20%% of the items never in train (half "
                         "valid, half test items), evaluated on those cold items only (default: loo for "
                         "sequential models, else given when the source has one, else random)")
    add_data_options(tr)
    tr.add_argument("--history", choices=["last", "gsu"],
                    help="CTR models (DIN, QIN): the max_len history items each row reads: last (default) or gsu "
                         "(MUSE: the most similar to the target by embedding cosine over the whole history)")
    tr.set_defaults(func=cmd_train)

    cp = sub.add_parser("compare", parents=[common], help="print run records side by side",
                        description="Print run records (dataset, split hash, features, valid and test metrics, "
                                    "best epoch, timings) as one table; warns when the runs are not comparable "
                                    "(different dataset, split hash or metrics protocol).")
    cp.add_argument("runs", nargs="+", help="run folders or record.json files")
    cp.set_defaults(func=cmd_compare)
