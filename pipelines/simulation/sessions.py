"""Simulated sessions from a manifest: the population, its simulated users, a recommender, the session loop,
the metrics, the trace published to the store and a run record -- what ``mmfeat simulate`` and the
``simulate-sessions`` flow run (Prefect-free, so tests and the benchmark run the same code).

The pieces, each reusable on its own (the benchmark plays several recommenders on one world):

- :func:`build_world`: the manifest's population (:func:`.population.population`), the learned taste model
  fit on calibration users only, and the simulated users as a batched pool.
- :func:`base_scorer`: the base model: popularity, a trained run reloaded exactly (``base_run``), or a model
  trained here on the users' *visible* histories (no held-out leakage; :func:`.scorers.fit_scorer`).
- :func:`recommender_factory`: the agent (hand-set or given weights, optional LLM), a static top-k of the base
  model, or popularity.
- :func:`play`: sessions + metrics, progress logged every N finished sessions.
- :func:`record`: the trace as a store version (:mod:`.traces`) and the run record ``mmfeat compare`` reads.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfeat.agents.environment import Evaluation, SessionConfig, evaluate_recommender
from mmfeat.agents.environment.simulated import SimulatorPool
from mmfeat.agents.recommender import Agent, PolicyWeights, PopularityScorer, StaticRecommender
from mmfeat.agents.simulator.mindset import MindsetParams
from mmfeat.agents.simulator.taste import TasteModel
from mmfeat.pipelines.simulation.population import SEGMENTS, Population, population
from mmfeat.pipelines.simulation.traces import population_hash, publish_trace, write_run_record

log = logging.getLogger("mmfeat.simulate")

#: what ``--agent`` may name
RECOMMENDER_KINDS = ("agent", "static", "popularity")
#: models that score impressions, not a catalog: never a base scorer
NOT_CATALOG_MODELS = ("DIN", "QIN")


class SimulateRequestError(ValueError):
    """A simulate request that cannot run (the message says what to change)."""


@dataclass
class World:
    """What every recommender of a run shares: the population, the taste model, the simulated users.

    Attributes:
        pop: the population (catalog, histories, selected users, profiles).
        taste: the learned taste model (fit on ``pop.calibration`` users only).
        mindset: the simulated users' mindset parameters (:class:`~mmfeat.agents.simulator.MindsetParams`).
        seed: the run's seed (population draw, taste fit, sessions).
        lineage: population and simulator lineage for traces and records.
    """

    pop: Population
    taste: TasteModel
    mindset: MindsetParams = field(default_factory=MindsetParams)
    seed: int = 0
    lineage: dict[str, Any] = field(default_factory=dict)

    def pool(self) -> SimulatorPool:
        """A fresh batched pool of the simulator's users (:class:`~mmfeat.agents.simulator.SimulatedUser`)."""
        return SimulatorPool(self.taste, self.pop.histories, self.pop.catalog, profiles=self.pop.profiles,
                             params=self.mindset)



#: the base model trained in a simulation when no ``--base-set`` is given: a fixed, short budget (the model's
#: own defaults train to early stopping, minutes with no progress line on a 2-core machine); the deployment's too
DEFAULT_BASE_CONFIG: dict[str, Any] = {"epochs": 30}

def check_request(*, agent: str, segment: str, llm: str | None, turns: int, page_size: int, population_size: int,
                  base_model: str | None) -> None:
    """Refuse a request before anything loads.

    Raises:
        SimulateRequestError: an unknown recommender kind or segment, an LLM spec that is neither ``none``,
            ``smollm2``, an ``http(s)://`` URL nor an existing path, a CTR base model, or sizes under 1.
    """
    if agent not in RECOMMENDER_KINDS:
        raise SimulateRequestError(f"unknown recommender {agent!r}; use one of {', '.join(RECOMMENDER_KINDS)}")
    if segment not in SEGMENTS:
        raise SimulateRequestError(f"unknown segment {segment!r}; use one of {', '.join(SEGMENTS)}")
    if min(turns, page_size, population_size) < 1:
        raise SimulateRequestError("turns, page size and population must be >= 1")
    if base_model and base_model.upper() in NOT_CATALOG_MODELS:
        raise SimulateRequestError(f"{base_model} is a CTR model: it scores impressions, not a user's catalog; "
                                   f"use a graph or sequential model (LightGCN, FREEDOM, SASRec, ...)")
    check_llm_spec(llm)


def check_llm_spec(spec: str | None) -> str:
    """``none`` / ``smollm2`` / ``http(s)://...`` / an existing model folder; returns the spec (``none`` for None).

    Raises:
        SimulateRequestError: anything else.
    """
    spec = (spec or "none").strip()
    if spec.lower() in ("none", "smollm2") or spec.startswith(("http://", "https://")) or Path(spec).exists():
        return spec
    raise SimulateRequestError(f"--llm {spec!r}: use none, smollm2, an http(s):// endpoint (OpenAI-compatible) or "
                               f"the path of a local transformers model folder")


def build_llm(spec: str | None, model: str = "default") -> Any:
    """The agent's LLM for ``spec`` (see :func:`check_llm_spec`), or None for ``none``."""
    spec = check_llm_spec(spec)
    if spec.lower() == "none":
        return None
    from mmfeat.agents.recommender import OpenAIChatLLM, SmolLM2, TransformersLLM

    if spec.lower() == "smollm2":
        return SmolLM2()
    if spec.startswith(("http://", "https://")):
        return OpenAIChatLLM(spec, model=model)
    return TransformersLLM(spec)


def build_world(manifest: str, *, n_users: int = 1000, seed: int = 0, segment: str = "all",
                store: Any = None, embeddings: str | None = None, data_root: str | None = None,
                mindset: MindsetParams = MindsetParams(), logger: Any = None) -> World:
    """The population of ``manifest`` and its simulated users.

    Args:
        manifest: manifest name or path.
        n_users: users to select (all of the segment when fewer).
        seed: population draw and taste fit.
        segment: ``all`` or a trait segment (:data:`.population.SEGMENTS`).
        store: a :class:`FeatureStore` (needed with ``embeddings``).
        embeddings: a store text-embedding feature set joined into the catalog (the agent's ``search`` tool).
        data_root: overrides the manifest's data root.
        mindset: the simulated users' mindset.
        logger: receives progress lines (``info``).

    Returns:
        :class:`World`.
    """
    lg = logger or log
    t0 = time.perf_counter()
    if data_root:
        from mmfeat.pipelines.manifest import load_manifest

        manifest = load_manifest(manifest, data_root=data_root)
    pop = population(manifest, n_users=n_users, seed=seed, segment=segment, store=store, embeddings=embeddings)
    lg.info(f"population: {len(pop.users)} users of segment {segment} ({len(pop.histories)} in all, "
            f"{len(pop.calibration)} calibration users), {pop.catalog.n_items} items "
            f"({time.perf_counter() - t0:.1f} s)")
    t1 = time.perf_counter()
    taste = TasteModel.fit(pop.histories, pop.catalog, pop.calibration, np.random.default_rng(seed))
    lg.info(f"taste model fit on {taste.info.get('calibration_users')} calibration users: validation accuracy "
            f"{taste.info.get('val_accuracy', float('nan')):.3f}, rating MAE "
            f"{taste.info.get('val_rating_mae', float('nan')):.3f} "
            f"({time.perf_counter() - t1:.1f} s)")
    lineage = {"population": {**pop.lineage, "users": len(pop.users)},
               "simulator": {"kind": "SimulatedUser", "mindset": asdict(mindset),
                             "taste": {k: v for k, v in taste.info.items() if k != "config"},
                             "taste_config": taste.info.get("config")}}
    return World(pop, taste, mindset, seed, lineage)


def base_scorer(world: World, base_model: str | None, *, base_run: str | None = None,
                config: dict[str, Any] | None = None, store_root: str | None = None,
                logger: Any = None) -> tuple[Any, dict[str, Any]]:
    """The base model as a scorer, with its lineage.

    Args:
        world: the population.
        base_model: ``None`` / ``popularity``, or a registered graph or sequential model trained here on the
            users' visible histories.
        base_run: a trained run folder to reload exactly instead (its record's model and feature versions).
        config: hyper-parameters of the model trained here (e.g. ``{"epochs": 30}``).
        store_root: the store holding ``base_run``'s feature versions.
        logger: receives progress lines.

    Returns:
        ``(scorer, lineage)``; the lineage names the model, how it was made and its run id / feature versions.
    """
    lg = logger or log
    pop = world.pop
    if base_run:
        import json

        from mmfeat.pipelines.simulation.scorers import load_run_scorer
        from mmfeat.pipelines.training.report import record_path

        scorer = load_run_scorer(base_run, pop.catalog, store_root=store_root)
        rec = json.loads(record_path(base_run).read_text())
        lg.info(f"base model {scorer.name} reloaded from {base_run}")
        return scorer, {"model": rec["model"], "run_id": rec["run_id"], "how": "reloaded run",
                        "feature_versions": rec.get("feature_versions") or {}, "split_hash": rec.get("split_hash")}
    if not base_model or base_model.lower() == "popularity":
        return PopularityScorer(pop.catalog), {"model": "popularity", "how": "training interactions per item"}
    from mmfeat.pipelines.simulation.scorers import fit_scorer

    t0 = time.perf_counter()
    config = dict(DEFAULT_BASE_CONFIG) if config is None else config
    lg.info(f"training {base_model} on the users' visible histories ({config})")
    scorer = fit_scorer([h.visible() for h in pop.histories], pop.catalog, base_model, config)
    lg.info(f"{scorer.name} trained on the users' visible histories ({time.perf_counter() - t0:.1f} s)")
    return scorer, {"model": base_model, "how": "trained in the simulation on visible histories",
                    "config": config or {}, "run_id": None}


def recommender_factory(kind: str, world: World, scorer: Any, *, weights: PolicyWeights | None = None,
                        llm: Any = None, embed: Any = None, seed: int = 0,
                        n_candidates: int = 100) -> tuple[Callable[[int], Any], str, dict[str, Any]]:
    """A factory of fresh per-session recommenders, their name and their config (for lineage).

    Raises:
        SimulateRequestError: an unknown kind.
    """
    cat = world.pop.catalog
    if kind == "popularity":
        pop_scorer = PopularityScorer(cat)
        return (lambda j: StaticRecommender(cat, pop_scorer)), "popularity", {"kind": kind}
    if kind == "static":
        name = getattr(scorer, "name", "static")
        return (lambda j: StaticRecommender(cat, scorer)), f"static[{name}]", {"kind": kind}
    if kind == "agent":
        w = weights or PolicyWeights()
        probe = Agent(cat, scorer, weights=w, llm=llm, embed=embed, seed=seed, n_candidates=n_candidates)
        cfg = {"kind": kind, "weights": asdict(w), "n_candidates": n_candidates, "wish_share": probe.wish_share,
               "temperature": 0.0,
               "llm": getattr(llm, "name", None) if llm is not None else None, "search": embed is not None}
        name = probe.name if w == PolicyWeights() else f"{probe.name}+weights"  # tells runs apart in compare
        return (lambda j: Agent(cat, scorer, weights=w, llm=llm, embed=embed, seed=seed,
                                n_candidates=n_candidates, name=name)), name, cfg
    raise SimulateRequestError(f"unknown recommender {kind!r}; use one of {', '.join(RECOMMENDER_KINDS)}")


class ProgressLog:
    """Logs ``<name>: N/M sessions finished`` each time another ``every`` sessions have finished."""

    def __init__(self, name: str, every: int, logger: Any = None) -> None:
        self.name, self.every, self.logger, self.next = name, max(1, int(every)), logger or log, max(1, int(every))
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if done >= self.next or (done == total and self.next <= total + self.every and done):
            self.logger.info(f"{self.name}: {done}/{total} sessions finished ({time.perf_counter() - self.t0:.1f} s)")
            self.next = (done // self.every + 1) * self.every
            if done == total:
                self.next = total + 2 * self.every  # said once


def play(world: World, factory: Callable[[int], Any], name: str, users: np.ndarray, config: SessionConfig, *,
         progress_every: int = 100, logger: Any = None) -> Evaluation:
    """Play one session per user with ``factory``'s recommenders and compute the population's metrics."""
    return evaluate_recommender(factory, world.pool(), world.pop.catalog, world.pop.histories, users, config,
                                name=name, progress=ProgressLog(name, progress_every, logger))


def record(world: World, ev: Evaluation, *, store: Any, runs_dir: str | Path | None, rec_config: dict[str, Any],
           base_lineage: dict[str, Any], llm: Any = None, tag: str | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Publish ``ev``'s trace to the store and write its run record.

    Returns:
        ``{"trace": {"dataset", "feature_set", "version"}, "record": path or None, "population_hash"}``.
    """
    pop, cfg = world.pop, ev.run.config
    users = sorted({int(r["user"]) for r in ev.run.rows})
    phash = population_hash(pop.dataset, users, cfg.seed, pop.segment, cfg.turns, cfg.page_size,
                            pop.lineage.get("source_fingerprint"))
    parents = {}
    if pop.lineage.get("embeddings"):
        e = pop.lineage["embeddings"]
        parents["embeddings"] = f"{pop.dataset}/{e['feature_set']}/{e['version']}"
    parents.update({k: v for k, v in (base_lineage.get("feature_versions") or {}).items()})
    # the mindset the sessions were played with (a world's mindset can be replaced after it was built)
    simulator = {"kind": "SimulatedUser", **world.lineage.get("simulator", {}), "mindset": asdict(world.mindset)}
    lineage = {**world.lineage, "simulator": simulator, "base_model": base_lineage,
               "llm": getattr(llm, "name", None) if llm else None,
               "seeds": {"population": world.seed, "taste": world.seed, "sessions": cfg.seed},
               "population_hash": phash, "parents": parents}
    config = {**rec_config, "recommender": ev.name, "turns": cfg.turns, "page_size": cfg.page_size, "seed": cfg.seed}
    metrics = {k: v for k, v in ev.metrics.items()}
    version = publish_trace(store, pop.dataset, ev.run.rows, lineage=lineage, config=config, metrics=metrics,
                            item_ids=[str(i) for i in pop.catalog.item_ids], tag=tag)
    trace = {"dataset": pop.dataset, "feature_set": "_sessions", "version": version}
    path = None
    if runs_dir is not None:
        path = write_run_record(runs_dir, name=ev.name, dataset=pop.dataset, population=phash, config=config,
                                metrics=metrics, trace=trace, lineage=lineage, wall_s=ev.run.seconds.get("total", 0.0),
                                extra={"seconds": ev.run.seconds, **(extra or {})})
    return {"trace": trace, "record": str(path) if path else None, "population_hash": phash}


def llm_usage(llm: Any, sessions: int, wall_s: float) -> dict[str, Any]:
    """LLM calls per session and their share of the run's wall time (empty without a counted LLM)."""
    stats = getattr(llm, "stats", None)
    if stats is None:
        return {}
    return {"llm_calls": stats.calls, "llm_failures": stats.failures,
            "llm_calls_per_session": stats.calls / max(sessions, 1),
            "llm_seconds": round(stats.total_s, 3), "llm_time_share": stats.total_s / wall_s if wall_s > 0 else None}


def load_weights(weights: str | Path | dict[str, float] | PolicyWeights | None) -> PolicyWeights | None:
    """Policy weights from a JSON file (``{"base": 1.0, ...}``, or a learning result with ``learned``), a dict,
    or weights; None stays None (the hand-set defaults).

    Raises:
        SimulateRequestError: unreadable file or unknown / missing feature names.
    """
    import json

    if weights is None or isinstance(weights, PolicyWeights):
        return weights
    data = weights
    if not isinstance(weights, dict):
        try:
            data = json.loads(Path(weights).read_text())
        except (OSError, ValueError) as exc:
            raise SimulateRequestError(f"--weights {weights}: cannot read policy weights ({exc})") from None
    data = data.get("learned", data) if isinstance(data, dict) else data
    try:
        return PolicyWeights(**{k: float(v) for k, v in dict(data).items()})
    except (TypeError, ValueError) as exc:
        raise SimulateRequestError(f"--weights: {exc}; expected keys {', '.join(PolicyWeights().__dict__)}") from None


def run_simulation(manifest: str, *, agent: str = "agent", base_model: str | None = "LightGCN",
                   base_run: str | None = None, base_config: dict[str, Any] | None = None,
                   n_users: int = 1000, segment: str = "all", turns: int = 10, page_size: int = 10,
                   llm: str | None = "none", llm_model: str = "default", seed: int = 0,
                   weights: Any = None, embeddings: str | None = None, store_root: str | None = None,
                   runs_dir: str | None = None, data_root: str | None = None, tag: str | None = None,
                   progress_every: int = 100, logger: Any = None) -> dict[str, Any]:
    """One simulation run end to end (what ``mmfeat simulate`` and the ``simulate-sessions`` flow call).

    Args:
        manifest: manifest name or path.
        agent: ``agent`` | ``static`` | ``popularity``.
        base_model: the base model trained on the visible histories (``agent`` and ``static``).
        base_run: a trained run folder to reload instead of training ``base_model``.
        base_config: hyper-parameters of the base model trained here.
        n_users, segment: the population.
        turns, page_size: the session shape.
        llm, llm_model: the agent's LLM (``none`` = the deterministic parser) and, for an endpoint, its model name.
        seed: population, taste model and sessions.
        weights: policy weights (a JSON path, a dict, or None for the hand-set ones).
        embeddings: a store text-embedding feature set for the agent's ``search`` tool.
        store_root, runs_dir, data_root: where the store and run records are, and the data root override.
        tag: an alias for the trace version besides ``latest``.
        progress_every: log a line each time this many more sessions have finished.
        logger: receives progress lines (a Prefect run logger in the flow).

    Returns:
        ``{"metrics", "trace", "record", "markdown", "recommender", "llm", "seconds"}``.

    Raises:
        SimulateRequestError: see :func:`check_request`; unreadable weights.

    Example:
        >>> out = run_simulation("movielens-100k", agent="agent", base_model="LightGCN", n_users=200)  # doctest: +SKIP
        >>> out["metrics"]["retention"], out["trace"]["version"]                                        # doctest: +SKIP
    """
    from mmfeat.agents.environment import metrics_table
    from mmfeat.pipelines.store.feature_store import FeatureStore, default_store_root
    from mmfeat.pipelines.training.run import default_runs_dir

    check_request(agent=agent, segment=segment, llm=llm, turns=turns, page_size=page_size, population_size=n_users,
                  base_model=None if agent == "popularity" else base_model)
    w = load_weights(weights)
    lg = logger or log
    store = FeatureStore(store_root or default_store_root())
    world = build_world(manifest, n_users=n_users, seed=seed, segment=segment, store=store, embeddings=embeddings,
                        data_root=data_root, logger=lg)
    scorer, base_lineage = (PopularityScorer(world.pop.catalog), {"model": "popularity"}) if agent == "popularity" \
        else base_scorer(world, base_model, base_run=base_run, config=base_config, store_root=store_root, logger=lg)
    model = build_llm(llm, llm_model) if agent == "agent" else None
    embed = _query_embedder() if agent == "agent" and embeddings else None
    factory, name, rec_config = recommender_factory(agent, world, scorer, weights=w, llm=model, embed=embed, seed=seed)
    config = SessionConfig(turns=turns, page_size=page_size, seed=seed)
    ev = play(world, factory, name, world.pop.users, config, progress_every=progress_every, logger=lg)
    usage = llm_usage(model, ev.metrics.get("sessions", 0), ev.run.seconds.get("total", 0.0))
    out = record(world, ev, store=store, runs_dir=runs_dir or default_runs_dir(), rec_config=rec_config,
                 base_lineage=base_lineage, llm=model, tag=tag, extra={"llm_usage": usage})
    md = [f"## simulate-sessions: {name} on {world.pop.dataset}",
          f"{ev.metrics.get('sessions')} sessions of segment {segment}, at most {turns} pages of {page_size}; seed "
          f"{seed}; trace `{out['trace']['dataset']}/_sessions/{out['trace']['version']}`", "",
          metrics_table({name: ev.metrics})]
    if usage:
        md += ["", f"LLM: {usage['llm_calls_per_session']:.2f} calls per session, "
                   f"{100 * (usage['llm_time_share'] or 0):.1f}% of the run's time"]
    lg.info(f"{name}: retention {ev.metrics.get('retention', float('nan')):.2f} pages, hit rate "
            f"{ev.metrics.get('hit_rate', float('nan')):.3f}; trace {out['trace']['version']}")
    return {"metrics": ev.metrics, "trace": out["trace"], "record": out["record"], "markdown": "\n".join(md),
            "recommender": name, "llm": usage, "seconds": ev.run.seconds}


def _query_embedder() -> Callable[[list[str]], np.ndarray]:
    """MiniLM as the ``search`` tool's query embedder (the space of the manifests' ``text_minilm`` sets)."""
    from mmfeat.featurizers.registry import resolve_backbone
    from mmfeat.featurizers.text_embedding import load_sentence_transformer

    path, _ = resolve_backbone("all-MiniLM-L6-v2")
    model = load_sentence_transformer(path)
    return lambda texts: np.asarray(model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)


__all__ = ["RECOMMENDER_KINDS", "SimulateRequestError", "World", "check_request", "check_llm_spec", "build_llm",
           "build_world", "base_scorer", "recommender_factory", "ProgressLog", "play", "record", "llm_usage",
           "load_weights", "run_simulation"]
