"""The multi-turn environment: seeded replay, edge users, unsatisfiable instructions, failures mid-session,
traces in the store (atomic, verified), metrics on a hand-built trace, the policy learner, the run record and
``mmfeat compare``, and the ``simulate`` command's checks. Tiny synthetic catalogs and rule-based users; the
real data and taste model only in the slow test."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmfeat.agents.environment import (LearningConfig, PerUserPool, SessionConfig, learn_policy, metrics_table,
                                       plot_learning_curve, policy_evaluator, population_metrics, run_sessions,
                                       session_lengths, session_rngs)
from mmfeat.agents.environment.metrics import intra_page_diversity, js_divergence
from mmfeat.agents.recommender import Agent, PolicyWeights, PopularityScorer, StaticRecommender
from mmfeat.agents.types import Catalog, Reaction, UserHistory

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance"]
N = 60


def make_catalog() -> Catalog:
    """60 items, 1-2 genres each, years 1950-1999, popularity decreasing with the index."""
    rng = np.random.default_rng(0)
    genres = np.zeros((N, len(GENRES)), dtype=bool)
    genres[np.arange(N), np.arange(N) % len(GENRES)] = True
    genres |= rng.random((N, len(GENRES))) < 0.15
    titles = [f"Film {i}" for i in range(N)]
    titles[7] = "Film 7 II"
    return Catalog(item_ids=np.array([f"i{i}" for i in range(N)]), titles=titles, genre_names=list(GENRES),
                   genres=genres, years=1950 + (np.arange(N) * 7) % 50, popularity=np.arange(N, 0, -1).astype(float))


def make_histories(n_users: int = 12) -> list[UserHistory]:
    rng = np.random.default_rng(1)
    out = []
    for u in range(n_users):
        items = rng.choice(N, size=6, replace=False)
        out.append(UserHistory(u, f"u{u}", items[:4], np.full(4, 4.0), items[4:], np.array([5.0, 3.0])))
    out[3] = UserHistory(3, "u3", np.zeros(0, np.int64), np.zeros(0, np.float32), np.array([1]), np.array([4.0]))
    return out


class RuleUser:
    """Clicks items of its favourite genre with probability 0.7, others with 0.1; leaves after a page without a
    click with probability 0.6; asks for its favourite genre (or ``instruction``) after the first page."""

    def __init__(self, catalog: Catalog, user: int, instruction: str | None = None) -> None:
        self.catalog, self.fav = catalog, GENRES.index("Comedy") if user % 2 else GENRES.index("Drama")
        self.instruction = instruction or f"more {GENRES[self.fav].lower()}"
        self.turn = 0

    def react(self, page: tuple[int, ...], rng: np.random.Generator) -> Reaction:
        page_a = np.asarray(page)
        likes = self.catalog.genres[page_a, self.fav]
        u = rng.random(len(page))
        clicked = tuple(int(i) for i in page_a[u < np.where(likes, 0.7, 0.1)])
        left = not clicked and rng.random() < 0.6
        instruction = self.instruction if self.turn == 0 and not left else None
        self.turn += 1
        return Reaction(clicked, {i: 4.0 for i in clicked}, left, instruction, (f"fav {GENRES[self.fav]}",))


@pytest.fixture()
def catalog() -> Catalog:
    return make_catalog()


@pytest.fixture()
def histories() -> list[UserHistory]:
    return make_histories()


def pool_for(catalog, **kw) -> PerUserPool:
    return PerUserPool(lambda u: RuleUser(catalog, u, **kw))


def agent_factory(catalog, scorer=None, **kw):
    return lambda j: Agent(catalog, scorer or PopularityScorer(catalog), **kw)


def _strip(rows):
    return [{k: v for k, v in r.items()} for r in rows]


# ---------------------------------------------------------------------------- the loop
def test_seeded_replay_gives_identical_traces(catalog, histories):
    users = np.arange(len(histories))
    cfg = SessionConfig(turns=6, page_size=5, seed=3)
    a = run_sessions(agent_factory(catalog), pool_for(catalog), histories, users, cfg)
    b = run_sessions(agent_factory(catalog), pool_for(catalog), histories, users, cfg)
    assert _strip(a.rows) == _strip(b.rows)
    assert any(r["clicked"] for r in a.rows) and any(r["instruction"] for r in a.rows)
    # order- and batch-independent: each user's session is the same whatever runs beside it
    rev = run_sessions(agent_factory(catalog), pool_for(catalog), histories, users[::-1],
                       SessionConfig(turns=6, page_size=5, seed=3, batch_sessions=4))
    by_user = lambda rows: {(r["user"], r["turn"]): {k: v for k, v in r.items() if k != "session"} for r in rows}
    assert by_user(a.rows) == by_user(rev.rows)
    # another seed, another trace
    c = run_sessions(agent_factory(catalog), pool_for(catalog), histories, users, SessionConfig(6, 5, seed=4))
    assert _strip(c.rows) != _strip(a.rows)


def test_session_streams_depend_on_seed_and_user_only():
    a1, u1 = session_rngs(5, 9)
    a2, u2 = session_rngs(5, 9)
    assert a1.random() == a2.random() and u1.random() == u2.random()
    assert session_rngs(5, 9)[1].random() != session_rngs(5, 10)[1].random()
    assert session_rngs(5, 9)[0].random() != session_rngs(5, 9)[1].random()


def test_agent_sees_only_visible_history_and_pages_respect_the_cap(catalog, histories):
    seen = []

    class Spy(Agent):
        def recommend(self, history_visible, turn, last_reaction, k, rng):
            seen.append(history_visible)
            return super().recommend(history_visible, turn, last_reaction, k, rng)

    run = run_sessions(lambda j: Spy(catalog, PopularityScorer(catalog)), pool_for(catalog), histories,
                       np.arange(len(histories)), SessionConfig(turns=4, page_size=5))
    assert all(len(h.heldout_items) == 0 for h in seen)
    assert max(r["turn"] for r in run.rows) <= 3
    assert all(len(r["items"]) <= 5 for r in run.rows)
    last = {}
    for r in run.rows:
        last[r["session"]] = r
    assert all(r["end_reason"] in ("left", "turn_cap") for r in last.values())
    # no page re-shows an item of the same session
    for s in {r["session"] for r in run.rows}:
        shown = [i for r in run.rows if r["session"] == s for i in r["items"]]
        assert len(shown) == len(set(shown))


def test_user_with_empty_history(catalog, histories):
    assert len(histories[3].items) == 0
    for make in (agent_factory(catalog), lambda j: StaticRecommender(catalog, PopularityScorer(catalog))):
        run = run_sessions(make, pool_for(catalog), histories, np.array([3]), SessionConfig(turns=3, page_size=4))
        assert run.rows and run.rows[0]["status"] == "ok" and len(run.rows[0]["items"]) == 4


def test_unsatisfiable_instruction_is_said_and_does_not_loop(catalog, histories):
    pool = pool_for(catalog, instruction="only westerns from the 1920s")
    run = run_sessions(agent_factory(catalog), pool, histories, np.arange(4), SessionConfig(turns=5, page_size=5))
    after = [r for r in run.rows if r["instruction_in"]]
    assert after, "the instruction reached the agent"
    for r in after:
        text = " ".join(r["messages"])
        assert "western" in text.lower() or "satisf" in text.lower()
        assert r["items"], "the agent still shows a page (relaxed), it does not stall"
    assert all(r["turn"] < 5 for r in run.rows)
    m = population_metrics(run.rows, catalog, histories, turns=5)
    assert m["instructions_impossible"] >= 1  # counted apart, not scored


class FlakyScorer:
    """Popularity, but raises for user 2 on its third call (a tool error mid-session)."""

    name = "flaky"

    def __init__(self, catalog) -> None:
        self.pop = PopularityScorer(catalog)
        self.calls: dict[int, int] = {}

    def score(self, history, items):
        n = self.calls[history.user] = self.calls.get(history.user, 0) + 1
        if history.user == 2 and n == 3:
            raise RuntimeError("index server unavailable")
        return self.pop.score(history, items)


def test_tool_error_mid_session_does_not_crash_the_run(catalog, histories):
    scorer = FlakyScorer(catalog)
    run = run_sessions(lambda j: StaticRecommender(catalog, scorer), pool_for(catalog), histories, np.arange(6),
                       SessionConfig(turns=5, page_size=4, seed=1))
    rows2 = [r for r in run.rows if r["user"] == 2]
    assert any("index server unavailable" in " ".join(r["messages"]) for r in rows2)
    assert rows2[-1]["end_reason"] in ("empty_page", "left", "turn_cap")
    assert {r["user"] for r in run.rows} == set(range(6))

    class Broken(Agent):
        def recommend(self, history_visible, turn, last_reaction, k, rng):
            if history_visible.user == 1 and turn == 1:
                raise ValueError("bug in a plug-in")
            return super().recommend(history_visible, turn, last_reaction, k, rng)

    run = run_sessions(lambda j: Broken(catalog, PopularityScorer(catalog)), pool_for(catalog), histories,
                       np.arange(4), SessionConfig(turns=4, page_size=4))
    bad = [r for r in run.rows if r["status"] == "error"]
    assert len(bad) <= 1 and all(r["stage"] == "recommend" and "bug in a plug-in" in r["error"] for r in bad)
    m = population_metrics(run.rows, catalog, histories, turns=4)
    assert m["errors"] == len(bad) and m["sessions"] == 4


def test_a_failing_simulated_user_ends_only_its_session(catalog, histories):
    class Fails(RuleUser):
        def react(self, page, rng):
            if self.turn == 1 and self.fav == GENRES.index("Comedy"):
                raise RuntimeError("simulator bug")
            return super().react(page, rng)

    pool = PerUserPool(lambda u: Fails(catalog, u))
    run = run_sessions(agent_factory(catalog), pool, histories, np.arange(6), SessionConfig(turns=4, page_size=5))
    errors = [r for r in run.rows if r["status"] == "error"]
    assert errors and all(r["stage"] == "react" and r["user"] % 2 == 1 and "simulator bug" in r["error"]
                          for r in errors)
    # the others play exactly as without the failing users (no double update, no shifted random stream)
    clean = run_sessions(agent_factory(catalog), pool_for(catalog), histories, np.arange(6),
                         SessionConfig(turns=4, page_size=5))
    assert [r for r in run.rows if r["user"] % 2 == 0] == [r for r in clean.rows if r["user"] % 2 == 0]


# ---------------------------------------------------------------------------- metrics
def _row(session, user, turn, items, clicked=(), ratings=(), left=False, end=None, instruction=None):
    return {"session": session, "user": user, "turn": turn, "items": list(items), "clicked": list(clicked),
            "ratings": list(ratings), "left": left, "end_reason": end, "instruction": instruction, "status": "ok"}


def test_metrics_on_a_hand_built_trace():
    genres = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=bool)
    cat = Catalog(np.array(list("abcdef")), list("ABCDEF"), ["Comedy", "Drama", "Horror"], genres,
                  np.array([1990, 1991, 1975, 1980, 1960, 1999]), np.ones(6))
    hist = [UserHistory(0, "u0", np.array([0]), np.array([4.0]), np.array([2]), np.array([5.0])),
            UserHistory(1, "u1", np.array([4]), np.array([3.0]), np.array([5]), np.array([4.0]))]
    rows = [_row(0, 0, 0, [1, 3], clicked=[1], ratings=[4.0], instruction="more comedy"),
            _row(0, 0, 1, [5, 4], clicked=[5, 4], ratings=[5.0, 3.0], end="turn_cap"),
            _row(1, 1, 0, [0, 1], left=True, end="left")]
    m = population_metrics(rows, cat, hist, turns=2)
    assert m["sessions"] == 2 and m["retention"] == 1.5 and m["retention_dist"] == [0, 1, 1]
    assert m["completed"] == 0.5
    assert m["clicks_per_session"] == 1.5 and m["ctr"] == pytest.approx(3 / 6)
    assert m["mean_rating"] == pytest.approx(4.0)
    # "more comedy" -> next page [5, 4]: item 5 has Comedy, item 4 not
    assert m["instruction_following"] == pytest.approx(0.5) and m["instructions_checked"] == 1
    assert m["instruction_following_soft"] == pytest.approx(0.5) and np.isnan(m["instruction_following_hard"])
    # held-out: user 0's item 2 never shown; user 1's item 5 not shown either (user 1 saw 0, 1)
    assert m["hit_rate"] == 0.0 and m["hits_per_page"] == 0.0
    assert m["coverage"] == pytest.approx(5 / 6)
    # diversity: page [1,3] orthogonal genres -> 1; [5,4] -> 1; [0,1] same genre -> 0
    assert m["diversity"] == pytest.approx(2 / 3)
    # bubble: user 0's profile = Comedy; page 0 = Comedy+Drama (JS 0.311), page 1 = Comedy, Drama, Horror
    js0 = js_divergence(np.array([[1.0, 1, 0]]), np.array([[1.0, 0, 0]]))[0]
    js1 = js_divergence(np.array([[1.0, 1, 1]]), np.array([[1.0, 0, 0]]))[0]
    assert m["bubble_drift"] == pytest.approx(js1 - js0)
    rows[2]["clicked"], rows[2]["items"] = [], [2, 5]  # user 1 now sees its held-out item 5 (2 is user 0s)
    m = population_metrics(rows, cat, hist, turns=2)
    assert m["hit_rate"] == 0.5 and m["hits_per_page"] == pytest.approx(1 / 3)
    assert session_lengths(rows).tolist() == [2, 1]
    assert "| recommender |" in metrics_table({"x": m})


def test_diversity_and_js_edge_cases():
    cat = make_catalog()
    assert np.isnan(intra_page_diversity(cat, [[0]])[0])
    assert js_divergence(np.array([[1.0, 0]]), np.array([[1.0, 0]]))[0] == pytest.approx(0.0)
    assert js_divergence(np.array([[1.0, 0]]), np.array([[0.0, 1]]))[0] == pytest.approx(1.0)
    assert np.isnan(js_divergence(np.array([[0.0, 0]]), np.array([[1.0, 0]]))[0])


# ---------------------------------------------------------------------------- learning
class GenreScorer:
    """Base scores that favour Horror (which no rule user likes): an agent that trusts it less keeps users."""

    name = "horror-first"

    def __init__(self, catalog) -> None:
        self.s = catalog.genres[:, GENRES.index("Horror")] * 5.0 + np.linspace(1, 0, catalog.n_items)

    def score(self, history, items):
        return self.s[np.asarray(items)]


def test_policy_learning_improves_train_retention_and_reports_heldout(catalog, tmp_path):
    hist = make_histories(40)
    make = lambda w: Agent(catalog, GenreScorer(catalog), weights=w)
    evaluate = policy_evaluator(make, pool_for(catalog), catalog, hist, SessionConfig(turns=5, page_size=5))
    train, held = np.arange(0, 24), np.arange(24, 40)
    start = PolicyWeights(base=2.0, match=0.0, novelty=0.0, diversity=0.0, repetition=0.0, affinity=0.0)
    result = learn_policy(evaluate, train, held, start, LearningConfig(iterations=4, pairs=3, sigma=0.5, lr=0.8,
                                                                        batch_users=12, seed=0))
    assert len(result.curve) == 5 and result.curve[0]["weights"]["base"] == 2.0
    assert all(r["heldout"]["retention"] is not None for r in result.curve)
    best = result.curve[result.best_iteration]["train"]["retention"]
    assert best >= result.curve[0]["train"]["retention"]
    assert best == max(r["train"]["retention"] for r in result.curve)  # selected on train only
    again = learn_policy(evaluate, train, held, start, LearningConfig(iterations=4, pairs=3, sigma=0.5, lr=0.8,
                                                                       batch_users=12, seed=0))
    assert again.as_dict()["curve"] == [dict(r, seconds=again.curve[k]["seconds"]) for k, r in
                                        enumerate(result.as_dict()["curve"])]
    png = plot_learning_curve(result, tmp_path / "curve.png", baselines={"static": 2.0})
    assert png.is_file() and png.stat().st_size > 1000
    with pytest.raises(ValueError, match="overlap"):
        learn_policy(evaluate, train, train[:3], start, LearningConfig(iterations=1))


# ---------------------------------------------------------------------------- traces in the store
def _run(catalog, histories, seed=0):
    return run_sessions(agent_factory(catalog), pool_for(catalog), histories, np.arange(len(histories)),
                        SessionConfig(turns=4, page_size=5, seed=seed))


def test_trace_publish_is_content_addressed_verified_and_atomic(tmp_path, catalog, histories, monkeypatch):
    from mmfeat.pipelines.simulation.traces import TRACE_FEATURE_SET, publish_trace, read_trace, trace_manifest
    from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError
    from mmfeat.pipelines.store.writer import VersionWriter

    store = FeatureStore(tmp_path / "store")
    run = _run(catalog, histories)
    lineage = {"population": {"users": len(histories)}, "seeds": {"sessions": 0}, "llm": None,
               "base_model": {"model": "popularity"}, "parents": {}}
    config = {"recommender": "agent[popularity]", "turns": 4, "page_size": 5, "seed": 0}
    v1 = publish_trace(store, "toy", run.rows, lineage=lineage, config=config, metrics={"retention": 1.5},
                       item_ids=list(catalog.item_ids), tag="first")
    df = read_trace(store, "toy", v1)
    assert len(df) == len(run.rows) and df["items"].tolist() == [r["items"] for r in run.rows]
    assert df["item_ids"].iloc[0] == [f"i{i}" for i in run.rows[0]["items"]]
    assert df["clicked"].tolist() == [r["clicked"] for r in run.rows]
    m = trace_manifest(store, "toy", "first")
    assert m["output"]["kind"] == "trace" and m["lineage"]["seeds"] == {"sessions": 0}
    assert m["featurizer"]["fingerprint"]["config"]["recommender"] == "agent[popularity]"
    # the same rows and config again: the same content-named version, nothing rewritten
    ids = list(catalog.item_ids)
    assert publish_trace(store, "toy", run.rows, lineage=lineage, config=config, item_ids=ids) == v1
    assert len(store.versions("toy", TRACE_FEATURE_SET)) == 1
    # a replay of the same seed gives the same version id; another seed, or another config, another one
    replay = _run(catalog, histories).rows
    assert publish_trace(store, "toy", replay, lineage=lineage, config=config, item_ids=ids) == v1
    assert publish_trace(store, "toy", run.rows, lineage=lineage, config={**config, "seed": 1}, item_ids=ids) != v1
    timed = {**lineage, "simulator": {"fit_seconds": 12.3, "wall_s": 4.0}}
    assert publish_trace(store, "toy", run.rows, lineage=timed, config=config, item_ids=ids) == publish_trace(
        store, "toy", run.rows, lineage={**lineage, "simulator": {"fit_seconds": 99.0}}, config=config, item_ids=ids)
    v2 = publish_trace(store, "toy", _run(catalog, histories, seed=9).rows, lineage=lineage, config=config)
    assert v2 != v1 and store.aliases("toy", TRACE_FEATURE_SET)["latest"] == v2
    # a corrupted part is refused on read
    part = next((tmp_path / "store" / "toy" / TRACE_FEATURE_SET / v1).glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupted|checksum|sha256|changed"):
        read_trace(store, "toy", v1)
    # a publish that dies before its commit leaves no version a reader could see
    store2 = FeatureStore(tmp_path / "store2")

    def crash(self, *a, **k):
        raise RuntimeError("killed before publish")

    monkeypatch.setattr(VersionWriter, "publish", crash)
    with pytest.raises(RuntimeError, match="killed"):
        publish_trace(store2, "toy", run.rows, lineage=lineage, config=config)
    assert store2.versions("toy", TRACE_FEATURE_SET) == []
    with pytest.raises(StoreError):
        read_trace(store2, "toy")


def test_run_records_compare_side_by_side(tmp_path, catalog, histories, capsys):
    from mmfeat.pipelines.cli import main
    from mmfeat.pipelines.simulation.traces import population_hash, write_run_record

    paths = []
    for name, seed in (("agent[popularity]", 0), ("popularity", 0)):
        run = _run(catalog, histories, seed)
        metrics = population_metrics(run.rows, catalog, histories, turns=4)
        ph = population_hash("toy", range(len(histories)), seed, "all", 4, 5)
        paths.append(write_run_record(tmp_path / "runs", name=name, dataset="toy", population=ph,
                                      config={"turns": 4, "page_size": 5, "seed": seed}, metrics=metrics,
                                      trace={"version": "v-x"}, lineage={}, wall_s=0.1))
    rec = json.loads(paths[0].read_text())
    assert rec["kind"] == "simulation" and rec["test"]["retention"] == pytest.approx(
        population_metrics(_run(catalog, histories).rows, catalog, histories, turns=4)["retention"])
    assert main(["compare", str(paths[0].parent), str(paths[1].parent)]) == 0
    out = capsys.readouterr().out
    assert "test retention" in out and "agent[popularity]" in out and "popularity" in out
    assert "not comparable" not in out


# ---------------------------------------------------------------------------- the simulate command
def test_simulate_static_copies_match_the_registries():
    from mmfeat.agents.recommender.policy import FEATURES
    from mmfeat.pipelines.cli.simulate import RECOMMENDERS, SEGMENTS, WEIGHT_NAMES
    from mmfeat.pipelines.simulation.population import SEGMENTS as REAL_SEGMENTS
    from mmfeat.pipelines.simulation.sessions import RECOMMENDER_KINDS

    assert SEGMENTS == REAL_SEGMENTS and RECOMMENDERS == RECOMMENDER_KINDS and WEIGHT_NAMES == FEATURES


@pytest.mark.parametrize("argv, message", [
    (["--segment", "high-activty"], "did you mean high-activity"),
    (["--base-model", "LightGNC"], "did you mean LightGCN"),
    (["--base-model", "DIN"], "CTR model"),
    (["--llm", "smol"], "--llm 'smol'"),
    (["--agent", "static", "--llm", "smollm2"], "only the agent uses an LLM"),
    (["--turns", "0"], ">= 1"),
    (["--weights", "/nonexistent.json"], "cannot read"),
])
def test_simulate_refuses_bad_requests_before_loading(argv, message, capsys):
    import sys

    from mmfeat.pipelines.cli import main

    before = {m for m in ("torch", "prefect", "sklearn") if m in sys.modules}
    assert main(["simulate", "movielens-100k", *argv]) == 2
    assert message in capsys.readouterr().err
    assert {m for m in ("torch", "prefect", "sklearn") if m in sys.modules} == before


def test_simulate_refuses_abbreviations_and_bad_weights(tmp_path, capsys):
    from mmfeat.pipelines.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "movielens-100k", "--popul", "5"])
    assert exc.value.code == 2
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps({"base": 1.0, "bias": 2.0}))
    assert main(["simulate", "movielens-100k", "--weights", str(bad)]) == 2
    assert "unknown weight" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the simulated users and the pipeline
@pytest.fixture(scope="module")
def tiny_world():
    """A synthetic population of 90 users x 50 items with a small taste model (fit in seconds)."""
    import pandas as pd
    import pyarrow as pa

    from mmfeat.agents.simulator.taste import TasteConfig, TasteModel
    from mmfeat.pipelines.simulation.population import population_from_tables
    from mmfeat.pipelines.simulation.sessions import World

    rng = np.random.default_rng(0)
    n_items, n_users = 50, 90
    names = ["Action", "Comedy", "Drama", "Horror"]
    items = pa.table({"item_id": [f"m{i}" for i in range(n_items)], "title": [f"Movie {i}" for i in range(n_items)],
                      "genres": [",".join(sorted({names[i % 4], names[(i * 7) % 4]})) for i in range(n_items)],
                      "year": [1960 + (i * 3) % 40 for i in range(n_items)]})
    rows = []
    for u in range(n_users):
        fav = u % 4
        weights = np.array([3.0 if (i % 4) == fav else 1.0 for i in range(n_items)]) / np.arange(1, n_items + 1) ** 0.3
        picks = rng.choice(n_items, size=12, replace=False, p=weights / weights.sum())
        rows += [{"user_id": f"u{u}", "item_id": f"m{i}", "timestamp": t, "label": float(rng.integers(2, 6))}
                 for t, i in enumerate(picks)]
    pop = population_from_tables(items, pd.DataFrame(rows), dataset="tiny", n_users=40, seed=0)
    taste = TasteModel.fit(pop.histories, pop.catalog, pop.calibration, np.random.default_rng(0),
                           TasteConfig(head_iters=20, als_iters=3))
    return World(pop, taste, seed=0, lineage={"population": dict(pop.lineage)})


def test_taste_pool_reactions_do_not_depend_on_the_batch(tiny_world):
    from mmfeat.agents.environment.session import session_rngs

    pop = tiny_world.pop
    users = pop.users[:6]
    pages = [tuple(int(i) for i in np.random.default_rng(int(u)).choice(pop.catalog.n_items, 5, replace=False))
             for u in users]

    def react(batches):
        pool, out = tiny_world.pool(), {}
        pool.begin(np.arange(len(users)), users)
        for batch in batches:
            got = pool.react(np.array(batch), [pages[j] for j in batch], [session_rngs(0, users[j])[1] for j in batch])
            out.update(zip(batch, got, strict=True))
        return [out[j] for j in range(len(users))]

    together, apart = react([list(range(6))]), react([[5, 1], [0], [2, 3, 4]])
    assert together == apart
    for r, page in zip(together, pages, strict=True):
        assert set(r.clicked) <= set(page) and all(1 <= v <= 5 for v in r.ratings.values())
        assert r.reasons and any(s.startswith(("stay", "leave")) for s in r.reasons)


def test_batched_simulator_pool_equals_the_simulated_users_one_by_one(tiny_world):
    from mmfeat.agents.simulator import simulated_users

    pop, taste = tiny_world.pop, tiny_world.taste
    make = lambda j: Agent(pop.catalog, PopularityScorer(pop.catalog))
    alone = PerUserPool(lambda u: simulated_users(pop.histories, np.array([u]), pop.catalog, taste,
                                                   profiles=pop.profiles)[0])
    cfg = SessionConfig(turns=5, page_size=5, seed=2)
    a = run_sessions(make, alone, pop.histories, pop.users, cfg)
    b = run_sessions(make, tiny_world.pool(), pop.histories, pop.users, cfg)
    assert a.rows == b.rows and len(a.rows) >= len(pop.users)


def test_pipeline_plays_records_and_publishes(tiny_world, tmp_path):
    from mmfeat.pipelines.simulation.sessions import base_scorer, load_weights, play, record, recommender_factory
    from mmfeat.pipelines.simulation.traces import read_trace
    from mmfeat.pipelines.store.feature_store import FeatureStore

    lines = []

    class Lines:
        def info(self, msg):
            lines.append(msg)

    scorer, lineage = base_scorer(tiny_world, "popularity")
    w = tmp_path / "w.json"
    w.write_text(json.dumps({"learned": {"base": 2.0, "match": 1.0}}))
    weights = load_weights(w)
    assert weights.base == 2.0 and weights.novelty == PolicyWeights().novelty
    factory, name, cfg = recommender_factory("agent", tiny_world, scorer, weights=weights)
    ev = play(tiny_world, factory, name, tiny_world.pop.users, SessionConfig(turns=3, page_size=4, seed=1),
              progress_every=10, logger=Lines())
    assert ev.metrics["sessions"] == len(tiny_world.pop.users) and lines and "sessions finished" in lines[-1]
    store = FeatureStore(tmp_path / "store")
    out = record(tiny_world, ev, store=store, runs_dir=tmp_path / "runs", rec_config=cfg, base_lineage=lineage)
    df = read_trace(store, "tiny", out["trace"]["version"])
    assert len(df) == len(ev.run.rows)
    rec = json.loads(Path(out["record"]).read_text())
    assert rec["model"] == name == "agent[popularity]+weights" and rec["config"]["weights"]["base"] == 2.0
    assert rec["config"]["wish_share"] == 1.0 and rec["lineage"]["simulator"]["mindset"]["last_chances"] == 1
    assert rec["lineage"]["seeds"]["sessions"] == 1 and rec["trace"]["version"] == out["trace"]["version"]
    m = store.manifest("tiny", "_sessions", out["trace"]["version"])
    assert m["lineage"]["base_model"]["model"] == "popularity" and m["metrics"]["sessions"] == ev.metrics["sessions"]


def test_simulate_deployment_is_registered():
    from mmfeat.pipelines.flows.simulate_flow import SIMULATE_DEPLOYMENTS, simulate_deployments

    deps = simulate_deployments()
    assert [d.name for d in deps] == list(SIMULATE_DEPLOYMENTS) == ["movielens-100k"]
    assert deps[0].flow_name == "simulate-sessions" and deps[0].parameters["manifest"] == "movielens-100k"


@pytest.mark.slow
def test_simulate_command_end_to_end_on_movielens(tmp_path, capsys):
    """``mmfeat simulate`` on real MovieLens-100K users (own Prefect server, real taste model): a trace in the
    store and a run record ``mmfeat compare`` prints."""
    from mmfeat.pipelines.cli import main
    from mmfeat.pipelines.simulation.traces import read_trace
    from mmfeat.pipelines.store.feature_store import FeatureStore

    store, runs = tmp_path / "store", tmp_path / "runs"
    assert main(["simulate", "movielens-100k", "--agent", "agent", "--base-model", "popularity", "--population", "30",
                 "--turns", "3", "--store", str(store), "--runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| agent[popularity] | 30 |" in out
    df = read_trace(FeatureStore(store), "movielens-100k")
    assert df["session"].nunique() == 30 and df["turn"].max() <= 2
    rec = next(runs.glob("sim-*/record.json"))
    assert main(["compare", str(rec.parent)]) == 0 and "test retention" in capsys.readouterr().out


def test_store_embeddings_join_the_catalog_and_drive_the_search_tool(tiny_world, tmp_path):
    """``--embeddings``: a store embedding version is joined in catalog order (L2-normalised, missing items
    zero and counted), and "something like <title>" then reaches the agent's ``search`` tool."""
    from mmfeat.agents.types import Reaction
    from mmfeat.pipelines.simulation.population import _store_features
    from mmfeat.pipelines.store.feature_store import FeatureStore
    from mmfeat.pipelines.store.imports import import_features

    pop = tiny_world.pop
    ids = [str(i) for i in pop.catalog.item_ids]
    kept = [i for j, i in enumerate(ids) if j % 10 != 3]  # every 10th item has no row in the store
    vectors = np.random.default_rng(1).normal(size=(len(kept), 6)).astype(np.float32)
    np.save(tmp_path / "emb.npy", vectors)
    (tmp_path / "ids.txt").write_text("\n".join(kept) + "\n")
    store = FeatureStore(tmp_path / "store")
    version = import_features(store, "tiny", "text_test", tmp_path / "emb.npy", ids=tmp_path / "ids.txt")
    joined = _store_features(pop, store, "text_test", None)
    emb = joined.catalog.embeddings
    assert emb.shape == (pop.catalog.n_items, 6) and joined.catalog.embedding_version == version
    row = ids.index(kept[5])
    assert np.allclose(emb[row], vectors[5] / np.linalg.norm(vectors[5]), atol=1e-6)
    assert not emb[3].any() and joined.lineage["embeddings"] == {"feature_set": "text_test", "version": version,
                                                                 "missing": len(ids) - len(kept)}
    target = row
    agent = Agent(joined.catalog, PopularityScorer(joined.catalog), embed=lambda texts: emb[[target] * len(texts)])
    history = pop.histories[int(pop.users[0])].visible()
    rng = np.random.default_rng(0)
    agent.recommend(history, 0, None, 5, rng)
    title = joined.catalog.titles[target]
    page = agent.recommend(history, 1, Reaction((), {}, False, f"something like {title}"), 5, rng)
    searched = [c for c in page.tool_calls if c.name == "search"]
    assert searched and searched[0].ok
    nearest = np.argsort(-(emb @ emb[target]))
    unseen = [int(i) for i in nearest if i not in set(history.items) and i not in agent.memory.shown[:5]][:5]
    assert len(set(page.items) & set(unseen)) >= 3
