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
    assert errors and all(r["stage"] == "react" and r["user"] % 2 == 1 for r in errors)
    assert any(r["end_reason"] == "turn_cap" or r["end_reason"] == "left" for r in run.rows if r["user"] % 2 == 0)


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
