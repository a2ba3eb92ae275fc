"""A batched simulated user over the learned taste model: the environment's :class:`~.users.UserPool` until the
simulator package offers a batched one.

Each session's user is the real user's learned taste (:class:`~mmfeat.agents.simulator.taste.TasteModel`: a
click head and a rating head fit on held-out behaviour of calibration users) plus a small mindset:

- **clicks**: item ``i`` at page position ``r`` is clicked with probability
  ``click_scale * attention(r) * interest_i`` where ``interest`` is the taste model's calibrated click
  probability and ``attention(r) = 1 / log2(r + 2)`` (the position bias DCG assumes);
- **ratings**: the rating head's expected rating plus Gaussian noise, rounded to 1..5;
- **page quality**: the attention-weighted mean *log-odds* of the page's interests (log-odds, because the
  click head saturates near 1 for every popular item: in probability a personalised page and a page of
  blockbusters look alike, in log-odds they differ by about two units), plus, while the user's latest request
  stands, ``follow_weight * (2 * share of the page satisfying it - 1)`` (RecoWorld's user notices whether the
  recommender heard it);
- **satisfaction** (the mindset): an exponential average of page quality;
- **leaving**: after each page with probability
  ``sigmoid(leave_bias + leave_slope * (reference - satisfaction) + fatigue * turn + no_click_penalty * [no click])``;
- **reflective instruction** (RecoWorld): when satisfaction falls below ``instruct_below`` and the user stays,
  one short request grounded in the profile and the page just seen: ``no <disliked genre>`` when the page
  showed one, ``more <liked genre>`` when the page missed the user's favourite, the user's decade when the
  page was far from it, ``something new`` for a page of blockbusters shown to a non-conformist, else
  ``something different``; at most one instruction every other turn.

The user's taste never changes inside a session (the taste model reads the training history only), so what
a recommender gains comes from showing items this user likes and from following its requests (the
``follow_weight`` term; set it to 0 to measure a recommender without that channel). All randomness comes from
the session's generator, drawn per session in a fixed order, so a reaction does not depend on which other
sessions share the batch.

Reference:
    RecoWorld (Meta, 2025): a mindset that decays with unsatisfying pages and reflective instructions before
    disengaging; Agent4Rec (Zhang et al., SIGIR 2024): profile-grounded simulated users; Järvelin & Kekäläinen,
    "Cumulated gain-based evaluation of IR techniques", TOIS 2002 (the logarithmic position discount).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmfeat.agents.recommender.instructions import parse_instruction
from mmfeat.agents.simulator.profile import Profile, ProfileArrays
from mmfeat.agents.simulator.taste import TasteModel, UserFeatures
from mmfeat.agents.types import Catalog, Reaction, UserHistory

from .metrics import satisfying_items


@dataclass(frozen=True)
class MindsetConfig:
    """The mindset's parameters (see the module docstring; log-odds units unless said otherwise).

    Defaults put a session of popularity pages at about half the turn cap and a personalised one (the taste
    model's own top items) near the cap, on MovieLens-100K: room for a recommender to be better or worse.

    Attributes:
        click_scale: multiplies ``attention * interest`` (the click probability).
        rating_noise: standard deviation of the rating noise before rounding (stars).
        memory: weight of the old satisfaction in the exponential average.
        start: satisfaction before the first page.
        reference: the page quality a user expects (satisfaction above it lowers the leaving odds).
        leave_bias, leave_slope, fatigue, no_click_penalty: the leaving logit (module docstring).
        follow_weight: weight of "my request was followed" in page quality (0 = users ignore it).
        instruct_below: satisfaction under which a staying user writes an instruction.
    """

    click_scale: float = 0.6
    rating_noise: float = 0.5
    memory: float = 0.5
    start: float = 2.0
    reference: float = 2.0
    leave_bias: float = -2.6
    leave_slope: float = 0.8
    fatigue: float = 0.12
    no_click_penalty: float = 0.8
    follow_weight: float = 1.5
    instruct_below: float = 1.8


@dataclass
class _State:
    user: int
    group: int
    row: int
    profile: Profile
    satisfaction: float
    last_instruction: int = -10
    turn: int = 0
    request: np.ndarray | None = None


def one_thread() -> Any:
    """OpenMP limited to one thread while the boosted heads predict: a few thousand rows gain nothing from more,
    and on a busy machine OpenMP's spinning threads made one batch 15x slower (5 s instead of 0.3 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _decade_phrase(year: int) -> str:
    return f"movies from the {year // 10 * 10}s"


class TasteUserPool:
    """Simulated users of a population reacting in batches (a :class:`~.users.UserPool`).

    Args:
        taste: the fitted taste model.
        histories: the population (``histories[u].user == u``); only training parts are read.
        profiles: the population's profile arrays (row ``u`` = ``histories[u]``).
        config: the mindset.

    Example:
        >>> pool = TasteUserPool(taste, pop.histories, pop.profiles)               # doctest: +SKIP
        >>> run = run_sessions(make_agent, pool, pop.histories, pop.users)         # doctest: +SKIP
    """

    def __init__(self, taste: TasteModel, histories: Sequence[UserHistory], profiles: ProfileArrays,
                 config: MindsetConfig = MindsetConfig()) -> None:
        self.taste, self.histories, self.profiles, self.config = taste, histories, profiles, config
        self.catalog: Catalog = taste.catalog
        g = np.asarray(self.catalog.genres, dtype=np.float64)
        self._genres = g
        self._names = [str(n) for n in self.catalog.genre_names]
        pop = np.asarray(self.catalog.popularity, dtype=np.float64)
        self._popular = pop >= np.quantile(pop, 0.9) if len(pop) else np.zeros(0, dtype=bool)
        self._groups: list[UserFeatures] = []
        self._requests: dict[str, np.ndarray | None] = {}
        self._state: dict[int, _State] = {}

    # ------------------------------------------------------------------ the pool protocol
    def begin(self, sessions: np.ndarray, users: np.ndarray) -> None:
        """Fresh mindsets; the taste model's per-user state for these users computed in one batch."""
        users = np.asarray(users, dtype=np.int64)
        uniq, inv = np.unique(users, return_inverse=True)
        self._groups.append(self.taste.user_features([self.histories[u] for u in uniq]))
        group = len(self._groups) - 1
        for s, u, row in zip(np.asarray(sessions).tolist(), users.tolist(), inv.tolist(), strict=True):
            self._state[int(s)] = _State(int(u), group, int(row), self.profiles.profile(int(u)), self.config.start)

    def end(self, sessions: np.ndarray) -> None:
        for s in np.asarray(sessions).tolist():
            self._state.pop(int(s), None)
        live = {st.group for st in self._state.values()}
        for g in range(len(self._groups)):
            if g not in live:
                self._groups[g] = None  # type: ignore[call-overload]

    def react(self, sessions: np.ndarray, pages: Sequence[tuple[int, ...]],
              rngs: Sequence[np.random.Generator]) -> list[Reaction]:
        """Reactions to one page per session: interests and ratings for every page in one batch per group."""
        states = [self._state[int(s)] for s in np.asarray(sessions).tolist()]
        interest: list[np.ndarray] = [np.zeros(0)] * len(states)
        expected: list[np.ndarray] = [np.zeros(0)] * len(states)
        for g in sorted({st.group for st in states}):
            idx = [j for j, st in enumerate(states) if st.group == g]
            rows = np.concatenate([np.full(len(pages[j]), states[j].row) for j in idx]).astype(np.int64)
            items = np.concatenate([np.asarray(pages[j], dtype=np.int64) for j in idx])
            with one_thread():
                p = self.taste.click_proba(self.histories, rows, items, self._groups[g])
                r = self.taste.rating(self.histories, rows, items, self._groups[g])
            cuts = np.cumsum([len(pages[j]) for j in idx])[:-1]
            for j, pj, rj in zip(idx, np.split(p, cuts), np.split(r, cuts), strict=True):
                interest[j], expected[j] = pj, rj
        return [self._one(st, np.asarray(page, dtype=np.int64), interest[j], expected[j], rngs[j])
                for j, (st, page) in enumerate(zip(states, pages, strict=True))]

    # ------------------------------------------------------------------ one user
    def _one(self, st: _State, page: np.ndarray, interest: np.ndarray, expected: np.ndarray,
             rng: np.random.Generator) -> Reaction:
        c = self.config
        u_click = rng.random(len(page))
        noise = rng.normal(0.0, c.rating_noise, len(page))
        u_leave, u_instruct = rng.random(2)  # drawn every turn: candidates compared on one seed stay in step
        attention = 1.0 / np.log2(np.arange(len(page)) + 2.0)
        clicked_mask = u_click < np.clip(c.click_scale * attention * interest, 0.0, 1.0)
        ratings = np.clip(np.rint(expected + noise), 1, 5)
        clicked = tuple(int(i) for i in page[clicked_mask])
        p = np.clip(interest, 1e-4, 1 - 1e-4)
        quality = float((attention * np.clip(np.log(p / (1 - p)), -5.0, 5.0)).sum() / attention.sum())
        followed = None
        if st.request is not None:
            followed = float(st.request[page].mean())
            quality += c.follow_weight * (2.0 * followed - 1.0)
        st.satisfaction = c.memory * st.satisfaction + (1 - c.memory) * quality
        logit = (c.leave_bias + c.leave_slope * (c.reference - st.satisfaction) + c.fatigue * st.turn
                 + (c.no_click_penalty if not clicked else 0.0))
        p_leave = _sigmoid(logit)
        left = bool(u_leave < p_leave)
        reasons = [f"click {i}: interest {q:.2f}" for i, q in zip(page[clicked_mask].tolist(),
                                                                   interest[clicked_mask], strict=True)]
        reasons.append(f"page quality {quality:+.2f}" + (f" (request followed by {followed:.0%})"
                                                          if followed is not None else ""))
        reasons.append(f"{'leave' if left else 'stay'}: satisfaction {st.satisfaction:+.2f}, P(leave) {p_leave:.2f}")
        instruction = None
        if not left and st.satisfaction < c.instruct_below and st.turn - st.last_instruction >= 2:
            instruction = self._instruction(st.profile, page, float(u_instruct))
            st.last_instruction = st.turn
            st.request = self._request(instruction)
            reasons.append(f"instruct: satisfaction {st.satisfaction:+.2f} < {c.instruct_below}")
        st.turn += 1
        return Reaction(clicked, {int(i): float(r) for i, r in zip(page[clicked_mask], ratings[clicked_mask],
                                                                     strict=True)},
                        left, instruction, tuple(reasons))

    def _request(self, text: str) -> np.ndarray | None:
        """bool ``[n_items]``: items satisfying the request (None: nothing item-checkable, e.g. "something new")."""
        if text not in self._requests:
            c = parse_instruction(text, self._names).constraints
            self._requests[text] = satisfying_items(self.catalog, c)
        return self._requests[text]

    def _instruction(self, prof: Profile, page: np.ndarray, u: float) -> str:
        """One request grounded in the profile and the page (see the module docstring); ``u`` picks among the
        applicable ones in proportion to their weights."""
        names = self._names
        g = self._genres[page]
        share = g.mean(axis=0) if len(page) else np.zeros(len(names))
        options: list[tuple[float, str]] = []
        for name in prof.disliked_genres:
            j = names.index(name)
            if share[j] > 0:
                options.append((1.0 + share[j], f"no {name.lower()}"))
        if prof.liked_genres:
            top = prof.liked_genres[0]
            if share[names.index(top)] < 0.3:
                options.append((1.0, f"more {top.lower()}"))
        years = np.asarray(self.catalog.years)[page]
        known = years[years > 0]
        if prof.era is not None and len(known) and abs(float(known.mean()) - prof.mean_year) > 8:
            options.append((0.6, _decade_phrase(int(prof.era))))
        if prof.conformity_level == "low" and len(page) and self._popular[page].mean() > 0.5:
            options.append((0.5, "something new"))
        if not options:
            return "something different"
        weights = np.array([w for w, _ in options])
        k = int(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"))
        return options[min(k, len(options) - 1)][1]


__all__ = ["MindsetConfig", "TasteUserPool"]
