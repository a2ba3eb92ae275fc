"""The simulated user: reviews a page, clicks and rates what it likes, updates its mindset, leaves or stays, and
writes a reflective instruction when it is about to leave; every decision comes with its reason.

Why this split of work: the *taste* (:mod:`.taste`, learned from the real user's history) says how likely each
item is to be clicked and how it would be rated; the *mindset* (:mod:`.mindset`) scales that by the session so
far and decides the exit; the *instruction* (:mod:`.instruction`) is the user's voice. All randomness comes
from the ``np.random.Generator`` passed to :meth:`SimulatedUser.react`, so a session replays exactly from its
seed. The user holds its own taste state; an agent only sees the :class:`~mmfeat.agents.types.Reaction`.

Reference:
    RecoWorld (Meta, 2025): the simulated user reviews recommended items, updates its mindset and writes
    reflective instructions; Zhang et al., "On Generative Agents in Recommendation", SIGIR 2024 (Agent4Rec:
    page-by-page viewing, rating and exit decisions of profile-initialised agents).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from mmfeat.agents.simulator.instruction import Wish, llm_instruction, read_wish, template_instruction
from mmfeat.agents.simulator.mindset import Mindset, MindsetParams
from mmfeat.agents.simulator.profile import Profile, ProfileArrays, build_profile
from mmfeat.agents.simulator.taste import TasteModel, UserTaste
from mmfeat.agents.types import Catalog, Reaction, UserHistory


class SimulatedUser:
    """One real user's simulated counterpart for a session.

    Args:
        history: the user's history (only its training part is read; the held-out part is never used here).
        catalog: the items.
        taste: the fitted :class:`TasteModel` (or a :class:`UserTaste` already bound to ``history``).
        profile: the user's profile; built from ``history`` (relative to ``taste``'s crowd) when None.
        params: the mindset's parameters (None = :class:`MindsetParams` defaults).
        llm: a callable ``llm(prompt) -> str`` that writes reflective instructions; None = the template.
        memory: how many recent pages the instruction reflects on.

    Example:
        >>> user = SimulatedUser(pop.histories[7], pop.catalog, taste)          # doctest: +SKIP
        >>> r = user.react(np.array([1, 5, 9, 12]), np.random.default_rng(0))   # doctest: +SKIP
        >>> r.clicked, r.left, r.instruction, r.reasons[0]                      # doctest: +SKIP
    """

    def __init__(self, history: UserHistory, catalog: Catalog, taste: TasteModel | UserTaste, *,
                 profile: Profile | None = None, params: MindsetParams | None = None,
                 llm: Callable[[str], str] | None = None, memory: int = 3) -> None:
        self.history, self.catalog, self.llm, self.memory = history, catalog, llm, memory
        self.taste = taste if isinstance(taste, UserTaste) else taste.for_user(history)
        crowd: ProfileArrays = self.taste.model.cf.crowd
        self.profile = profile if profile is not None else build_profile(history, catalog, reference=crowd)
        self.mindset = Mindset(params or MindsetParams())
        self._pages: list[np.ndarray] = []
        self._clicked: list[np.ndarray] = []
        self.wish: Wish | None = None
        self._chances = self.mindset.params.last_chances

    def reset(self) -> None:
        """Start a new session (mindset, page memory, standing wish and last chances reset; taste and profile
        kept)."""
        self.mindset.reset()
        self._pages, self._clicked = [], []
        self.wish, self._chances = None, self.mindset.params.last_chances

    def react(self, page: np.ndarray, rng: np.random.Generator) -> Reaction:
        """Review one page.

        Clicks: each item independently with ``taste probability x mindset factor`` (one uniform draw per item,
        in page order). Ratings: the rating head's expectation, rounded to whole stars. Then the mindset is
        updated (judging the page also by the user's standing instruction, if it wrote one); the user decides to
        leave with the resulting leave probability (one more draw). A user about to leave with a last chance left
        (``params.last_chances`` per session) writes a reflective instruction and stays for one more page
        instead; a user who stays writes one when the leave probability reaches ``params.instruction_threshold``.

        Args:
            page: item indices, in display order.
            rng: the only source of randomness (same state, same reaction).

        Returns:
            The :class:`Reaction`, with one reason per decision.

        Raises:
            ValueError: an item index outside the catalog.
        """
        page = np.asarray(page, np.int64).ravel()
        if len(page) and (page.min() < 0 or page.max() >= self.catalog.n_items):
            raise ValueError(f"page has item indices outside the catalog (0..{self.catalog.n_items - 1})")
        taste_p = self.taste.click_proba(page)
        factor = self.mindset.click_factor(page, self.history.items)
        prob = np.clip(taste_p * factor, 0.0, 1.0)
        draws = rng.random(len(page))
        click = draws < prob
        stars = np.rint(self.taste.rating(page[click])) if click.any() else np.zeros(0)
        watched = np.isin(page, self.history.items)
        shown_before = np.fromiter((int(i) in self.mindset.shown for i in page), bool, count=len(page))
        reasons: list[str] = []
        for j, item in enumerate(page):
            verb = "click" if click[j] else "skip"
            note = " (already watched)" if watched[j] else " (shown before)" if shown_before[j] else ""
            reasons.append(f"{verb} {int(item)} {self.catalog.titles[item]!r}{note}: p {prob[j]:.2f} = taste "
                           f"{taste_p[j]:.2f} x mindset {factor[j]:.2f}, draw {draws[j]:.2f}")
        clicked = page[click]
        ratings = {int(i): float(s) for i, s in zip(clicked, stars)}
        reasons += [f"rate {i}: {s:.0f} stars" for i, s in ratings.items()]
        compliance = None
        if self.wish is not None and len(page):
            met = self.wish.met(self.catalog, page)
            compliance = float(met.mean())
            reasons.append(f"instruction check: {int(met.sum())}/{len(page)} items meet what I asked for")
        leave_p = self.mindset.update(page, self.catalog.genres[page], click, stars, compliance)
        self._pages = (self._pages + [page])[-self.memory:]
        self._clicked = (self._clicked + [clicked])[-self.memory:]
        draw = float(rng.random())
        left = draw < leave_p
        instruction = None
        threshold = self.mindset.params.instruction_threshold
        if left and self._chances > 0:
            self._chances -= 1
            left = False
            instruction, source = self._instruction()
            reasons.append(f"instruction ({source}): about to leave (leave p {leave_p:.2f}, draw {draw:.2f}), "
                           f"one more page for the recommender ({self._chances} last chance(s) left)")
        elif not left and leave_p >= threshold:
            instruction, source = self._instruction()
            reasons.append(f"instruction ({source}): leave p {leave_p:.2f} >= {threshold:.2f}")
        if instruction is not None:
            self.wish = read_wish(instruction, self.catalog.genre_names) or self.wish
        reasons.append(f"{'leave' if left else 'stay'}: leave p {leave_p:.2f}, draw {draw:.2f} "
                       f"({self.mindset.summary()})")
        return Reaction(clicked=tuple(int(i) for i in clicked), ratings=ratings, left=left, instruction=instruction,
                        reasons=tuple(reasons))

    def _instruction(self) -> tuple[str, str]:
        if self.llm is not None:
            return llm_instruction(self.llm, self.profile, self.catalog, self._pages, self._clicked,
                                   self.mindset.summary())
        return template_instruction(self.profile, self.catalog, self._pages, self._clicked), "template"


def simulated_users(histories: Sequence[UserHistory], users: np.ndarray, catalog: Catalog, taste: TasteModel, *,
                    profiles: ProfileArrays | None = None, params: MindsetParams | None = None,
                    llm: Callable[[str], str] | None = None) -> list[SimulatedUser]:
    """A :class:`SimulatedUser` for each of ``users`` (population indices), taste state computed in one batch.

    Args:
        histories: the population.
        users: which users.
        catalog: the items.
        taste: the fitted taste model.
        profiles: the population's profile arrays (row = user); built relative to the taste's crowd when None.
        params, llm: as :class:`SimulatedUser`.

    Returns:
        The users, in ``users`` order.
    """
    hs = [histories[int(u)] for u in users]
    uf = taste.user_features(hs)
    out = []
    for r, h in enumerate(hs):
        one = type(uf)(**{k: (v[r:r + 1] if isinstance(v, np.ndarray) else v) for k, v in vars(uf).items()
                          if k != "profiles"}, profiles=_row(uf.profiles, r))
        profile = profiles.profile(int(h.user)) if profiles is not None else uf.profiles.profile(r)
        out.append(SimulatedUser(h, catalog, UserTaste(taste, h, one), profile=profile, params=params, llm=llm))
    return out


def _row(pa: ProfileArrays, r: int) -> ProfileArrays:
    """Row ``r`` of profile arrays (per-user arrays sliced, crowd statistics kept)."""
    per_user = {"user", "n", "mean_rating", "genre_weights", "genre_mean_rating", "genre_lift", "mean_year",
                "conformity", "n_genres", "entropy"}
    return type(pa)(**{k: (v[r:r + 1] if k in per_user else v) for k, v in vars(pa).items()})
