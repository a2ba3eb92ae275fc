"""A simulated user's mindset within a session: satisfaction, boredom, fatigue and trust, updated per page.

Why a mindset on top of the taste model: the taste model says what a user likes *in general*; whether they
keep going depends on the session so far. RecoWorld's simulated user "updates its mindset" after each page and,
when it senses it is about to disengage, writes a reflective instruction; Agent4Rec's agents leave when
satisfaction falls and fatigue grows. Here the state is four numbers in [0, 1] with documented update rules,
so a trace explains every exit ("boredom 0.71 after three pages of Drama").

Update after a page (``quality`` = how good the page was, ``repetition`` = how much it repeated earlier pages):

- ``quality = 0.5 * min(1, clicks / (page_size * target_click_rate)) + 0.5 * mean((rating - 1) / 4 of clicks)``
- after the user wrote an instruction, each page is also judged by it: ``quality <- (1 - instruction_weight) *
  quality + instruction_weight * compliance``, where compliance is the share of the page meeting the user's own
  reading of its words (:class:`~.instruction.Wish`): a user who asked and was ignored is less satisfied
- ``satisfaction <- (1 - satisfaction_rate) * satisfaction + satisfaction_rate * quality``
- ``repetition = max(share of page items shown before, cosine(page genre mix, earlier pages' genre mix))``
- ``boredom <- (1 - boredom_rate) * boredom + boredom_rate * repetition``
- ``fatigue <- min(1, fatigue + fatigue_per_page)``
- ``trust <- clip(trust + trust_rate * (quality - 0.5) - trust_rate * share repeated, 0, 1)``
- ``leave probability = sigmoid(leave_bias + w_satisfaction * (0.5 - satisfaction) + w_boredom * boredom
  + w_fatigue * fatigue + w_trust * (0.5 - trust))``

Clicks on the next page are scaled by ``(1 - click_boredom * boredom) * (0.75 + 0.5 * trust)`` (1.0 at the start),
and an item shown on an earlier page and skipped there by ``1 - repeat_damp``.

Reference:
    RecoWorld (Meta, 2025): "Building Simulated Environments for Agentic Recommender Systems" (mindset updates,
    reflective instructions before disengaging); Zhang et al., "On Generative Agents in Recommendation",
    SIGIR 2024 (Agent4Rec: satisfaction- and fatigue-driven exits).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class MindsetParams:
    """The mindset's parameters (defaults: a user who browses about 12-14 pages of a fair static recommender).

    Attributes:
        satisfaction0, boredom0, fatigue0, trust0: the state at the start of a session.
        satisfaction_rate: weight of the latest page in satisfaction (an exponential moving average).
        boredom_rate: weight of the latest page's repetition in boredom.
        fatigue_per_page: fatigue added by every page, whatever is on it.
        trust_rate: how fast trust follows page quality (and drops on repeated items).
        target_click_rate: the click share of a page that counts as fully engaging.
        leave_bias, w_satisfaction, w_boredom, w_fatigue, w_trust: the leave probability's logistic weights.
        click_boredom: how much boredom damps clicks.
        repeat_damp: click damping of an item shown before and skipped then.
        rewatch: click factor of an item already in the user's history.
        instruction_threshold: leave probability from which the user writes a reflective instruction.
        instruction_weight: weight of instruction compliance in a page's quality once the user has asked for
            something (0 = the user does not check whether it was listened to).
        last_chances: how many times per session a user that decides to leave writes an instruction and stays
            for one more page instead (RecoWorld: "when it senses it is about to disengage"); 0 = leave at once.
    """

    satisfaction0: float = 0.6
    boredom0: float = 0.0
    fatigue0: float = 0.0
    trust0: float = 0.5
    satisfaction_rate: float = 0.5
    boredom_rate: float = 0.5
    fatigue_per_page: float = 0.05
    trust_rate: float = 0.3
    target_click_rate: float = 0.3
    leave_bias: float = -3.0
    w_satisfaction: float = 4.0
    w_boredom: float = 2.5
    w_fatigue: float = 2.0
    w_trust: float = 2.0
    click_boredom: float = 0.5
    repeat_damp: float = 0.8
    rewatch: float = 0.05
    instruction_threshold: float = 0.3
    instruction_weight: float = 0.5
    last_chances: int = 1


@dataclass
class Mindset:
    """The session state of one simulated user (mutable; :meth:`snapshot` gives a frozen copy for traces).

    Attributes:
        params: the update rules' parameters.
        satisfaction, boredom, fatigue, trust: the state in [0, 1].
        pages: pages seen this session.
        shown: items shown so far (index -> page number).
        clicked: items clicked so far.
        genre_mix: summed genre vectors of the items shown so far.
        leave_probability: after the last page.
    """

    params: MindsetParams = field(default_factory=MindsetParams)
    satisfaction: float = 0.0
    boredom: float = 0.0
    fatigue: float = 0.0
    trust: float = 0.0
    pages: int = 0
    shown: dict[int, int] = field(default_factory=dict)
    clicked: set[int] = field(default_factory=set)
    genre_mix: np.ndarray | None = None
    leave_probability: float = 0.0

    def __post_init__(self) -> None:
        if self.pages == 0 and not self.shown:
            self.reset()

    def reset(self) -> None:
        """Back to the session start."""
        p = self.params
        self.satisfaction, self.boredom, self.fatigue, self.trust = p.satisfaction0, p.boredom0, p.fatigue0, p.trust0
        self.pages, self.shown, self.clicked, self.genre_mix, self.leave_probability = 0, {}, set(), None, 0.0

    def click_factor(self, page: np.ndarray, history_items: np.ndarray) -> np.ndarray:
        """Per-item multiplier of the taste click probability on this page (boredom, trust, repeats, rewatch)."""
        p = self.params
        base = (1.0 - p.click_boredom * self.boredom) * (0.75 + 0.5 * self.trust)
        factor = np.full(len(page), base)
        seen_skipped = np.fromiter((int(i) in self.shown and int(i) not in self.clicked for i in page), bool,
                                   count=len(page))
        factor[seen_skipped] *= 1.0 - p.repeat_damp
        factor[np.isin(page, history_items) | np.isin(page, np.fromiter(self.clicked, np.int64))] *= p.rewatch
        return factor

    def update(self, page: np.ndarray, page_genres: np.ndarray, clicked: np.ndarray, ratings: np.ndarray,
               compliance: float | None = None) -> float:
        """Fold one page into the state and return the leave probability.

        Args:
            page: the page's item indices.
            page_genres: ``[len(page), n_genres]`` genre multi-hot of the page's items.
            clicked: bool per page item.
            ratings: the ratings of the clicked items (1..5), in page order.
            compliance: share of the page meeting the user's standing instruction (None: no instruction yet).

        Returns:
            The probability of leaving after this page.
        """
        p = self.params
        k = max(1, len(page))
        engagement = min(1.0, clicked.sum() / (k * p.target_click_rate))
        liked = float(np.mean((np.asarray(ratings) - 1.0) / 4.0)) if len(ratings) else 0.0
        quality = 0.5 * engagement + 0.5 * liked
        if compliance is not None:
            quality = (1 - p.instruction_weight) * quality + p.instruction_weight * float(compliance)
        repeated = float(np.mean([int(i) in self.shown for i in page])) if len(page) else 0.0
        mix = page_genres.sum(axis=0).astype(np.float64)
        overlap = 0.0
        if self.genre_mix is not None:
            denom = np.linalg.norm(mix) * np.linalg.norm(self.genre_mix)
            overlap = float(mix @ self.genre_mix / denom) if denom > 0 else 0.0
        repetition = max(repeated, overlap)
        self.satisfaction = (1 - p.satisfaction_rate) * self.satisfaction + p.satisfaction_rate * quality
        self.boredom = (1 - p.boredom_rate) * self.boredom + p.boredom_rate * repetition
        self.fatigue = min(1.0, self.fatigue + p.fatigue_per_page)
        self.trust = float(np.clip(self.trust + p.trust_rate * (quality - 0.5) - p.trust_rate * repeated, 0.0, 1.0))
        self.pages += 1
        for i in page:
            self.shown.setdefault(int(i), self.pages)
        self.clicked.update(int(i) for i in np.asarray(page)[clicked])
        self.genre_mix = mix if self.genre_mix is None else self.genre_mix + mix
        z = (p.leave_bias + p.w_satisfaction * (0.5 - self.satisfaction) + p.w_boredom * self.boredom
             + p.w_fatigue * self.fatigue + p.w_trust * (0.5 - self.trust))
        self.leave_probability = float(1.0 / (1.0 + np.exp(-z)))
        return self.leave_probability

    def snapshot(self) -> Mindset:
        """A copy for a trace (later updates do not change it)."""
        return replace(self, shown=dict(self.shown), clicked=set(self.clicked),
                       genre_mix=None if self.genre_mix is None else self.genre_mix.copy())

    def summary(self) -> str:
        """The state as one short line (for reasons and prompts)."""
        return (f"satisfaction {self.satisfaction:.2f}, boredom {self.boredom:.2f}, fatigue {self.fatigue:.2f}, "
                f"trust {self.trust:.2f}")
