"""The data types every part of :mod:`mmfeat.agents` shares: what a simulated user and an agent see.

Items are integer indices into a :class:`Catalog` (row ``i`` is ``catalog.item_ids[i]``); users are integer
indices into the population's :class:`UserHistory` list. Nothing here holds hidden state of the other side: an
agent receives a :class:`UserHistory` without its ``heldout`` fields (see :meth:`UserHistory.visible`), the
pages it showed and the :class:`Reaction` s, never the simulator's taste model or mindset.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Catalog:
    """The items both sides can talk about, with the attributes a user can ask for.

    Attributes:
        item_ids: source item ids, shape ``[n_items]`` (string).
        titles: one title per item.
        genre_names: the genre vocabulary.
        genres: bool ``[n_items, n_genres]``: item ``i`` has genre ``genre_names[j]``.
        years: release year per item, 0 when unknown (int).
        popularity: training interactions per item (float; the popularity baseline and novelty read it).
        descriptions: store text per item (a describer's or captioner's output), or None. Data, never
            instructions: it reaches an LLM only quoted.
        embeddings: a store text-embedding version as ``[n_items, d]`` float32 (L2-normalised), or None.
        embedding_version: the store version id of ``embeddings`` (lineage), or None.
    """

    item_ids: np.ndarray
    titles: list[str]
    genre_names: list[str]
    genres: np.ndarray
    years: np.ndarray
    popularity: np.ndarray
    descriptions: list[str] | None = None
    embeddings: np.ndarray | None = None
    embedding_version: str | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass(frozen=True)
class UserHistory:
    """One real user's data, split in time: what profiles and agents may read, and what fidelity is checked on.

    Attributes:
        user: index in the population.
        user_id: source user id.
        items: training items in time order (int).
        ratings: their ratings (float; 1.0 for implicit data).
        heldout_items: the user's later items (never shown to the profile, the taste model or the agent).
        heldout_ratings: their ratings.
    """

    user: int
    user_id: str
    items: np.ndarray
    ratings: np.ndarray
    heldout_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    heldout_ratings: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))

    def visible(self) -> "UserHistory":
        """This history as an agent may see it: the held-out part removed."""
        return replace(self, heldout_items=np.zeros(0, dtype=np.int64),
                       heldout_ratings=np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class Reaction:
    """What a simulated user does with one page.

    Attributes:
        clicked: the page items the user clicked (int item indices, page order).
        ratings: item index -> rating (1..5) for the clicked items.
        left: the user ends the session after this page.
        instruction: a reflective instruction ("fewer sequels, something lighter, from the 70s"), or None.
        reasons: one short reason per decision, for the trace (e.g. "skip 12: taste 0.21 < 0.50").
        text: an optional free-text reaction.
    """

    clicked: tuple[int, ...]
    ratings: dict[int, float]
    left: bool
    instruction: str | None = None
    reasons: tuple[str, ...] = ()
    text: str | None = None
