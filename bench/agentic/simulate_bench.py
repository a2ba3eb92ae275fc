"""The agentic benchmark: retention and the other session metrics of popularity, static LightGCN, static SASRec,
the agent with hand-set weights and the agent with learned weights, on simulated MovieLens users.

Parts (each one run of at most ~10 minutes on two busy cores; together they fill RESULTS_agentic.md):

- ``prepare``: builds and caches the world (population + taste model) and the base models of ``--models``.
- ``learn``: REINFORCE over the agent's policy weights on TRAIN users (``--train-users``), the held-out curve on
  users never trained on; writes ``learned_weights_<dataset>.json``, the curve (``learning_curve.png`` for ML-1M,
  ``learning_curve_ml-100k.png``) and a section.
- ``table``: the five recommenders on the held-out TEST users (``--users``): every metric, wall time, seconds in
  the recommenders and in the simulated users, each agent against each baseline (paired by user); the
  agent-learned row reads ``learned_weights_<dataset>.json``. Then the same users when they write an instruction
  after every page (the simulator's ``instruction_threshold`` 0): instruction following on thousands of
  instructions, split into filters and genre wishes. Then an ablation: the same users when instructions change
  nothing for them (``last_chances`` 0, ``instruction_weight`` 0), static model against the agents.
- ``llm``: the agent with SmolLM2 parsing instructions (``--llm smollm2``) on a few users (``--llm-users``) beside
  the deterministic agent on the same users: LLM calls per session, their share of the time, parse paths.

Users: the population draws ``--users + --train-users`` users outside the taste model's calibration users
(fewer when the dataset has fewer: ML-100K has 754), then a seeded split gives ``--train-users`` TRAIN users
and the rest TEST users. The taste model and the base models (trained on every user's *visible* history only)
are cached in ``bench/_work/agentic/`` keyed by dataset, seed, settings and the simulator's source code
(``--fresh`` rebuilds them).

Run from the repository root::

    python bench/agentic/simulate_bench.py --dataset ml-100k --users 1000 --turns 20 --part prepare
    python bench/agentic/simulate_bench.py --dataset ml-100k --users 1000 --turns 20 --part learn
    python bench/agentic/simulate_bench.py --dataset ml-100k --users 1000 --turns 20 --part table
    python bench/agentic/simulate_bench.py --dataset ml-100k --part llm --llm smollm2 --llm-users 20
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bench") not in sys.path:
    sys.path.insert(0, str(ROOT / "bench"))

from _results import append_results  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = ROOT / "bench" / "_work" / "agentic"
RESULTS = HERE / "RESULTS_agentic.md"
DATASETS = {"ml-100k": "movielens-100k", "ml-1m": "movielens-1m"}
log = logging.getLogger("simulate_bench")


# ---------------------------------------------------------------------------- cached inputs
def _source_hash(*folders: str) -> str:
    h = hashlib.sha256()
    for folder in folders:
        for p in sorted((ROOT / folder).glob("*.py")):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:12]


def cached(name: str, key: dict[str, Any], build, fresh: bool, *, torch_obj: bool = False):
    """``build()`` once per key, then from ``bench/_work/agentic``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = WORK / f"{name}-{digest}.{'pt' if torch_obj else 'pkl'}"
    if path.exists() and not fresh:
        t0 = time.perf_counter()
        if torch_obj:
            import torch

            obj = torch.load(path, weights_only=False)
        else:
            obj = pickle.loads(path.read_bytes())
        log.info("%s from cache %s (%.1f s)", name, path.name, time.perf_counter() - t0)
        return obj, True
    obj = build()
    WORK.mkdir(parents=True, exist_ok=True)
    if torch_obj:
        import torch

        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return obj, False


def world_and_split(args) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """The world (population + taste model) and the TRAIN / TEST users."""
    from mmfeat.pipelines.simulation.sessions import build_world

    manifest = DATASETS[args.dataset]
    key = {"manifest": manifest, "n": args.users + args.train_users, "seed": args.seed,
           "code": _source_hash("agents/simulator", "pipelines/simulation")}
    t0 = time.perf_counter()
    world, hit = cached("world", key, lambda: build_world(manifest, n_users=args.users + args.train_users,
                                                          seed=args.seed), args.fresh)
    info = {"world_s": round(time.perf_counter() - t0, 1), "world_cached": hit}
    users = world.pop.users
    perm = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(7,))).permutation(users)
    n_train = min(args.train_users, len(users) // 2)
    train, test = np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + args.users])
    return world, train, test, info


def scorer_for(world, model: str, epochs: int, args) -> tuple[Any, dict[str, Any]]:
    """LightGCN / SASRec trained on every user's visible history (cached)."""
    from mmfeat.pipelines.simulation.sessions import base_scorer

    key = {"manifest": DATASETS[args.dataset], "model": model, "epochs": epochs, "seed": args.seed,
           "code": _source_hash("recommenders", "recommenders/models", "recommenders/sequential")}
    t0 = time.perf_counter()
    scorer, hit = cached(f"scorer-{model}", key, lambda: base_scorer(world, model, config={"epochs": epochs})[0],
                         args.fresh, torch_obj=True)
    return scorer, {"model": model, "epochs": epochs, "seconds": round(time.perf_counter() - t0, 1), "cached": hit}


# ---------------------------------------------------------------------------- parts
def _epochs(model: str, args) -> int:
    return {"LightGCN": args.lightgcn_epochs, "SASRec": args.sasrec_epochs}.get(model, args.lightgcn_epochs)


def part_prepare(args) -> None:
    """Build and cache the world and the base models of ``--models`` (the slow, one-off part)."""
    t0 = time.perf_counter()
    world, train, test, info = world_and_split(args)
    done = [f"world {info['world_s']} s ({'cached' if info['world_cached'] else 'built'}; {len(train)} TRAIN, "
            f"{len(test)} TEST users)"]
    for model in args.models:
        _, i = scorer_for(world, model, _epochs(model, args), args)
        done.append(f"{model} {i['epochs']} epochs {i['seconds']} s ({'cached' if i['cached'] else 'trained'})")
    print(f"prepared in {time.perf_counter() - t0:.0f} s: " + "; ".join(done))


def part_table(args) -> None:
    from mmfeat.agents.environment import SessionConfig, metrics_table
    from mmfeat.pipelines.simulation.sessions import load_weights, play, recommender_factory

    world, train, test, info = world_and_split(args)
    scorers = {m: scorer_for(world, m, _epochs(m, args), args) for m in args.models}
    lgcn = scorers[args.models[0]][0]
    learned_path = HERE / f"learned_weights_{args.dataset}.json"
    learned = load_weights(learned_path) if learned_path.exists() else None
    agent_base = args.models[0]
    arms = [("popularity", "popularity", None, None)]
    arms += [(f"static {m}", "static", sc, None) for m, (sc, _) in scorers.items()]
    arms.append((f"agent hand-set ({agent_base})", "agent", lgcn, None))
    if learned is not None:
        arms.append((f"agent learned ({agent_base})", "agent", lgcn, learned))
    cfg = SessionConfig(turns=args.turns, page_size=args.page_size, seed=args.seed)
    results, timing, lengths = {}, {}, {}
    store = _store(args)
    for label, kind, scorer, weights in arms:
        factory, name, rec_cfg = recommender_factory(kind, world, scorer, weights=weights, seed=args.seed)
        t0 = time.perf_counter()
        ev = play(world, factory, name, test, cfg, progress_every=max(100, len(test) // 4))
        wall = time.perf_counter() - t0
        results[label] = ev.metrics
        lengths[label] = _lengths_by_user(ev.run.rows)
        timing[label] = {"wall_s": round(wall, 1), **ev.run.seconds}
        log.info("%s: retention %.3f (%.1f s)", label, ev.metrics["retention"], wall)
        if store is not None:
            from mmfeat.pipelines.simulation.sessions import record

            out = record(world, ev, store=store, runs_dir=None, rec_config=rec_cfg,
                         base_lineage={"model": getattr(scorer, "name", "popularity")}, tag=None)
            timing[label]["trace"] = out["trace"]["version"]
    # instruction following needs instructions: the same users, when they write one after every page
    from dataclasses import replace as _replace


    talkative = _replace(world, mindset=_replace(world.mindset, instruction_threshold=0.0))
    stress = {}
    for label, kind, scorer, weights in arms:
        factory, name, _ = recommender_factory(kind, talkative, scorer, weights=weights, seed=args.seed)
        stress[label] = play(talkative, factory, name, test, cfg, progress_every=len(test)).metrics
    # where the gain comes from: the same users when instructions change nothing for them (no last chance,
    # pages not judged by the instruction): what the re-ranking alone is worth
    deaf = _replace(world, mindset=_replace(world.mindset, last_chances=0, instruction_weight=0.0))
    ablation, ablation_len = {}, {}
    for label, kind, scorer, weights in arms:
        if label.startswith(("agent", f"static {args.models[0]}")):
            factory, name, _ = recommender_factory(kind, deaf, scorer, weights=weights, seed=args.seed)
            ev = play(deaf, factory, name, test, cfg, progress_every=len(test))
            ablation[label], ablation_len[label] = ev.metrics, _lengths_by_user(ev.run.rows)
    bases = ", ".join(f"{m} {i['epochs']} epochs" for m, (_, i) in scorers.items())
    lines = [f"{len(test)} TEST users of {DATASETS[args.dataset]} (never trained on; {len(train)} TRAIN users held "
             f"for learning), at most {args.turns} pages of {args.page_size}, seed {args.seed}; simulated users: "
             f"learned taste model (validation accuracy {world.taste.info.get('val_accuracy', float('nan')):.3f} on "
             f"calibration users, threshold {world.taste.threshold:.3f}) + the simulator's mindset and template "
             f"instructions (`agents/simulator/`, default parameters). Base models trained on every user's "
             f"visible history: {bases}.", "",
             metrics_table(results), "",
             "| recommender | wall s | in recommenders s | in simulated users s | retention dist (0..turns pages) | "
             "instructions checked / unchecked / impossible |", "|---|---|---|---|---|---|"]
    for label, m in results.items():
        t = timing[label]
        lines.append(f"| {label} | {t['wall_s']} | {t['recommend']} | {t['react']} | {m['retention_dist']} | "
                     f"{m['instructions_checked']} / {m['instructions_unchecked']} / {m['instructions_impossible']} |")
    lines += ["", _verdict(results, lengths, stress), "",
              f"The same TEST users when they write a reflective instruction after every page (the simulator's "
              f"`instruction_threshold` 0 instead of {world.mindset.instruction_threshold}): instruction following "
              f"measured on many instructions.", "",
              metrics_table(stress, extra=("instruction_following_hard", "instruction_following_soft",
                                           "instructions_checked")), "",
              "Ablation: the same TEST users when instructions change nothing for them (the simulator's "
              "`last_chances` 0 and `instruction_weight` 0: no extra page after an instruction, pages not judged by "
              "it), so the retention left is what the re-ranking alone earns.", "",
              metrics_table(ablation), "",
              _ablation_verdict(ablation, ablation_len, f"static {args.models[0]}"), "",
              f"Set-up: world {info['world_s']} s ({'cached' if info['world_cached'] else 'built'}); "
              + "; ".join(f"{m} {i['seconds']} s ({'cached' if i['cached'] else 'trained'})"
                          for m, (_, i) in scorers.items()) + "."
              + ("" if learned is not None else " No learned weights yet: run `--part learn` first.")]
    _write("table", args, "\n".join(lines), {"results": results, "timing": timing, "talkative": stress,
                                             "ablation": ablation})


def _ablation_verdict(results: dict[str, dict], lengths: dict[str, dict[int, int]], base: str) -> str:
    """Each agent against the static base model when instructions change nothing (paired by user)."""
    out = []
    for label in [k for k in results if k.startswith("agent")]:
        diff, se = paired(lengths[label], lengths[base])
        a, b = results[label], results[base]
        out.append(f"- {label}: {a['retention'] / b['retention'] - 1:+.1%} retention over {base} "
                   f"({a['retention']:.2f} vs {b['retention']:.2f}, paired {diff:+.2f} +/- {se:.2f} pages), hit rate "
                   f"{a['hit_rate']:.3f} vs {b['hit_rate']:.3f}.")
    return "\n".join(out)


def _lengths_by_user(rows: list[dict[str, Any]]) -> dict[int, int]:
    """Pages seen per user (one session per user in the table)."""
    out: dict[int, int] = {}
    for r in rows:
        out[int(r["user"])] = out.get(int(r["user"]), 0) + (1 if r["items"] else 0)
    return out


def paired(a: dict[int, int], b: dict[int, int]) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` over the users both played (same users, same session seeds)."""
    users = sorted(set(a) & set(b))
    d = np.array([a[u] - b[u] for u in users], dtype=np.float64)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def _verdict(results: dict[str, dict], lengths: dict[str, dict[int, int]], talkative: dict[str, dict]) -> str:
    """Each agent against each baseline (paired by user), then the issue's goal against the best baseline."""
    baselines = [k for k in results if not k.startswith("agent")]
    best = max(baselines, key=lambda k: results[k]["retention"])
    rows = ["| agent | versus | retention | paired difference (pages) | hit rate | instruction following "
            "(users instructing every page) |", "|---|---|---|---|---|---|"]
    goal = []
    for label in [k for k in results if k.startswith("agent")]:
        a = results[label]
        for base in baselines:
            b = results[base]
            diff, se = paired(lengths[label], lengths[base])
            f_a, f_b = (talkative.get(label) or {}), (talkative.get(base) or {})
            follow = (f"{f_a.get('instruction_following', float('nan')):.3f} vs "
                      f"{f_b.get('instruction_following', float('nan')):.3f}" if f_b else
                      f"{f_a.get('instruction_following', float('nan')):.3f}")
            rows.append(f"| {label} | {base} | {a['retention'] / b['retention'] - 1:+.1%} ({a['retention']:.2f} vs "
                        f"{b['retention']:.2f}) | {diff:+.2f} +/- {se:.2f} | {a['hit_rate']:.3f} vs "
                        f"{b['hit_rate']:.3f} "
                        f"({a['hit_rate'] - b['hit_rate']:+.3f}) | {follow} |")
        b = results[best]
        gain = a["retention"] / b["retention"] - 1
        follow = (talkative.get(label) or {}).get("instruction_following", float("nan"))
        ok = gain >= 0.2 and a["hit_rate"] - b["hit_rate"] >= -0.01 and follow >= 0.8
        goal.append(f"- {label}: {gain:+.1%} retention over the best baseline ({best}), hit rate "
                    f"{a['hit_rate'] - b['hit_rate']:+.3f}, instruction following {follow:.3f}: goal (>= +20% at "
                    f"equal hit rate, instruction following >= 0.8) {'met' if ok else 'NOT met'}.")
    if any(k.startswith("agent learned") for k in results) and any(k.startswith("agent hand-set") for k in results):
        hand = next(k for k in results if k.startswith("agent hand-set"))
        learned = next(k for k in results if k.startswith("agent learned"))
        diff, se = paired(lengths[learned], lengths[hand])
        goal.append(f"- learned vs hand-set weights on these TEST users: {diff:+.3f} +/- {se:.3f} pages (paired s.e.): "
                    + ("the learned policy is better" if diff > 2 * se else
                       "no difference beyond noise" if abs(diff) <= 2 * se else "the learned policy is worse") + ".")
    cap = max(r["retention"] for r in results.values())
    turns = len(results[best]["retention_dist"]) - 1
    goal.append(f"- ceiling: with a cap of {turns} pages, the most any recommender "
                f"can gain over {best} is {turns / results[best]['retention'] - 1:+.1%} "
                f"(best measured {cap:.2f} pages).")
    return "\n".join(rows + [""] + goal)


def part_learn(args) -> None:
    from mmfeat.agents.environment import (LearningConfig, SessionConfig, evaluate_recommender, learn_policy,
                                           plot_learning_curve, policy_evaluator)
    from mmfeat.agents.recommender import Agent, PolicyWeights
    from mmfeat.pipelines.simulation.sessions import recommender_factory

    world, train, test, info = world_and_split(args)
    lgcn, lgcn_info = scorer_for(world, args.models[0], _epochs(args.models[0], args), args)
    cat = world.pop.catalog
    cfg = SessionConfig(turns=args.turns, page_size=args.page_size, seed=args.seed)
    rng = np.random.default_rng(np.random.SeedSequence(args.seed, spawn_key=(11,)))
    curve_held = np.sort(rng.choice(test, size=min(args.curve_users, len(test)), replace=False))
    train_eval = np.sort(rng.choice(train, size=min(args.curve_users, len(train)), replace=False))
    evaluate = policy_evaluator(lambda w: Agent(cat, lgcn, weights=w, seed=args.seed), world.pool(), cat,
                                world.pop.histories, cfg)
    lc = LearningConfig(iterations=args.iterations, pairs=args.pairs, sigma=args.sigma, lr=args.lr,
                        batch_users=args.batch_users, seed=args.seed)
    t0 = time.perf_counter()
    result = learn_policy(evaluate, train, curve_held, PolicyWeights(), lc, train_eval_users=train_eval,
                          log=log.info)
    wall = time.perf_counter() - t0
    factory, _, _ = recommender_factory("static", world, lgcn)
    static = evaluate_recommender(factory, world.pool(), cat, world.pop.histories, curve_held, cfg).metrics
    # the final check on every TEST user, paired (same users, same session seeds)
    final = {}
    for label, w in (("hand-set", result.initial), ("learned", result.learned)):
        f, _, _ = recommender_factory("agent", world, lgcn, weights=w, seed=args.seed)
        ev = evaluate_recommender(f, world.pool(), cat, world.pop.histories, test, cfg)
        final[label] = (ev.metrics, _lengths_by_user(ev.run.rows))
    diff, se = paired(final["learned"][1], final["hand-set"][1])
    weights_file = HERE / f"learned_weights_{args.dataset}.json"
    weights_file.write_text(json.dumps(
        {"learned": asdict(result.learned), "initial": asdict(result.initial), "best_iteration": result.best_iteration,
         "dataset": DATASETS[args.dataset], "seed": args.seed, "learning": asdict(lc)}, indent=2))
    png = plot_learning_curve(result, HERE / ("learning_curve.png" if args.dataset == "ml-1m" else
                                              f"learning_curve_{args.dataset}.png"),
                              baselines={f"static {args.models[0]} (held-out users)": static["retention"]},
                              title=f"Agent policy learning on {DATASETS[args.dataset]}: retention per iteration")
    first, best = result.curve[0], result.curve[result.best_iteration]
    lines = [f"REINFORCE over the policy weights (Gaussian, sigma {lc.sigma}, {lc.pairs} antithetic pairs x "
             f"{lc.batch_users} TRAIN users per iteration, lr {lc.lr}, {lc.iterations} iterations; common random "
             f"numbers), base model {args.models[0]}. Train curve on {len(train_eval)} TRAIN users, held-out curve on "
             f"{len(curve_held)} TEST users (never trained on); selection on TRAIN only. {wall:.0f} s.", "",
             "| iteration | train retention | held-out retention | held-out hit rate | held-out instr. following | "
             "weights (base, match, novelty, diversity, repetition, affinity) |", "|---|---|---|---|---|---|"]
    for r in result.curve:
        w = ", ".join(f"{v:.2f}" for v in r["weights"].values())
        lines.append(f"| {r['iteration']} | {r['train']['retention']} | {r['heldout'].get('retention')} | "
                     f"{r['heldout'].get('hit_rate')} | {r['heldout'].get('instruction_following')} | {w} |")
    gain = best["heldout"]["retention"] - first["heldout"]["retention"]
    hm, lm = final["hand-set"][0], final["learned"][0]
    verdict = ("the learned policy beats the hand-set one" if diff > 2 * se else
               "the learned policy does NOT beat the hand-set one (no difference beyond noise)" if abs(diff) <= 2 * se
               else "the learned policy is WORSE than the hand-set one")
    lines += ["", f"Selected iteration {result.best_iteration} (best TRAIN retention). Held-out curve users: "
                  f"{first['heldout']['retention']} (hand-set) -> {best['heldout']['retention']} (learned), "
                  f"{gain:+.3f} pages; static {args.models[0]} {static['retention']:.3f} on the same users.",
              f"All {len(test)} TEST users: hand-set {hm['retention']:.3f} pages (hit rate {hm['hit_rate']:.3f}, "
              f"instruction following {hm['instruction_following']:.3f}), learned {lm['retention']:.3f} (hit rate "
              f"{lm['hit_rate']:.3f}, instruction following {lm['instruction_following']:.3f}); paired difference "
              f"{diff:+.3f} +/- {se:.3f} s.e.: {verdict}.",
              f"Curve: `{png.relative_to(ROOT)}`; weights: `{weights_file.relative_to(ROOT)}` "
              f"(`mmfeat simulate ... --weights` reads it)."]
    _write("learning", args, "\n".join(lines), result.as_dict())


def part_llm(args) -> None:
    from collections import Counter
    from dataclasses import replace

    from mmfeat.agents.environment import SessionConfig, metrics_table
    from mmfeat.pipelines.simulation.sessions import build_llm, play, recommender_factory

    world, train, test, info = world_and_split(args)
    base, _ = scorer_for(world, args.models[0], _epochs(args.models[0], args), args)
    cfg = SessionConfig(turns=args.turns, page_size=args.page_size, seed=args.seed)
    t_load = time.perf_counter()
    llm = build_llm(args.llm)
    t_load = time.perf_counter() - t_load
    talkative = replace(world, mindset=replace(world.mindset, instruction_threshold=0.0))
    settings = [("default users", world, test[: args.llm_users]),
                ("users instructing after every page", talkative, test[: args.llm_talkative_users])]
    lines = [f"The agent over {args.models[0]} with the deterministic parser and with {args.llm} parsing every "
             f"instruction (greedy decoding, one retry with the validation error, then the deterministic fallback), "
             f"on the first TEST users; at most {args.turns} pages of {args.page_size}. LLM load {t_load:.1f} s."]
    data = {}
    for setting, w, users in settings:
        results, rows = {}, []
        for label, model in (("deterministic parser", None), (args.llm, llm)):
            factory, name, _ = recommender_factory("agent", w, base, llm=model, seed=args.seed)
            before = (llm.stats.calls, llm.stats.total_s)
            ev = play(w, factory, name, users, cfg, progress_every=max(5, len(users)))
            results[label] = ev.metrics
            calls, secs = llm.stats.calls - before[0], llm.stats.total_s - before[1]
            wall = ev.run.seconds["total"]
            paths = Counter(r["parse_path"] for r in ev.run.rows if r["parse_path"])
            rows.append((label, wall, calls / max(len(users), 1), secs, secs / wall if wall else 0.0,
                         secs / calls if calls else 0.0, dict(paths)))
        lines += ["", f"**{setting}** ({len(users)} users):", "",
                  metrics_table(results, extra=("instructions_checked",)), "",
                  "| parser | wall s | LLM calls per session | LLM s | LLM share of wall | s per call | parse paths |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.2f} | {r[3]:.1f} | {100 * r[4]:.0f}% | {r[5]:.2f} | {r[6]} |"
                  for r in rows]
        data[setting] = {"results": results, "rows": rows}
    _write("llm", args, "\n".join(lines), data)


# ---------------------------------------------------------------------------- output
def _store(args):
    if not args.store:
        return None
    from mmfeat.pipelines.store.feature_store import FeatureStore

    return FeatureStore(args.store)


def _write(part: str, args, body: str, data: dict[str, Any]) -> None:
    cmd = "python bench/agentic/simulate_bench.py " + " ".join(sys.argv[1:])
    titles = {"table": "Retention table", "learning": "Learning the policy weights", "llm": "The agent with an LLM"}
    append_results(RESULTS, "Agentic recommendation: simulated sessions (bench/agentic/simulate_bench.py)",
                   f"{titles[part]}: {DATASETS[args.dataset]}", cmd, body)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"{part}-{args.dataset}.json").write_text(json.dumps(data, indent=2, default=str))
    print(body)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=sorted(DATASETS), default="ml-100k")
    p.add_argument("--part", choices=["prepare", "table", "learn", "llm"], default="table")
    p.add_argument("--models", default="LightGCN,SASRec",
                   help="base models (comma-separated; the first is the agent's base) trained on visible histories")
    p.add_argument("--users", type=int, default=1000, help="TEST users (the table's population)")
    p.add_argument("--train-users", type=int, default=200, help="TRAIN users (learning only)")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--page-size", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lightgcn-epochs", type=int, default=30)
    p.add_argument("--sasrec-epochs", type=int, default=12,
                   help="SASRec epochs (about 50 s each on one busy core for ML-100K)")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--sigma", type=float, default=0.4)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--batch-users", type=int, default=96)
    p.add_argument("--curve-users", type=int, default=150, help="users of each learning-curve point")
    p.add_argument("--llm", default="smollm2", help="the llm part's LLM spec")
    p.add_argument("--llm-users", type=int, default=20, help="users of the llm part with the default mindset")
    p.add_argument("--llm-talkative-users", type=int, default=8,
                   help="users of the llm part who instruct after every page")
    p.add_argument("--store", help="also publish each recommender's trace to this store (table part)")
    p.add_argument("--fresh", action="store_true", help="rebuild the cached world and base models")
    p.add_argument("--threads", type=int, default=1,
                   help="torch / BLAS / OpenMP threads (1: on a shared 2-core machine more threads only spin)")
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    {"prepare": part_prepare, "table": part_table, "learn": part_learn, "llm": part_llm}[args.part](args)


if __name__ == "__main__":
    main()
