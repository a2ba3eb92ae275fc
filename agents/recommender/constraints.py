"""What a user asked for, typed: :class:`Constraints`, grounded in a catalog's genre vocabulary.

A user's words ("more comedies, nothing before 1980, no sequels") become one validated object whatever
produced it (the deterministic parser or an LLM's JSON, :mod:`.instructions`), so the rest of the agent
never handles free text. Hard parts (``exclude_genres``, the year range, title rules) filter candidates; soft
parts (``include_genres``, ``avoid_genres``, ``query``) and the novelty/diversity boosts move the re-ranking
(:mod:`.policy`). :class:`GenreVocabulary` maps any genre word to the catalog's own names (synonyms, then a
fuzzy match); words it cannot map are reported as unsatisfied, never silently dropped.

Reference:
    RecoWorld (Meta, 2025): the simulated user writes *reflective instructions* the agentic recommender must
    follow; LLM-ARS perspective (Shu et al., 2025): typed tool arguments keep an agent steerable.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmfeat.agents.types import Catalog

#: a title that names a sequel: a number or roman numeral after a word, "Part N", "Returns", "Strikes Back"
SEQUEL_PATTERN = re.compile(
    r"\b(?:II|III|IV|VI|VII|VIII)\b"
    r"|(?<=[A-Za-z]) [2-9](?=$|[:\s,(-])"
    r"|\bpart (?:[2-9]|two|three|four|ii|iii|iv)\b"
    r"|\b(?:returns|strikes back|the sequel|revenge of the|bride of|son of)\b",
    re.IGNORECASE,
)


class Constraints(BaseModel):
    """A user's request as typed fields (the JSON schema an LLM is asked to fill).

    Attributes:
        include_genres: "more X": items with any of these get an instruction-match bonus.
        exclude_genres: "no X": items with any of these are filtered out.
        avoid_genres: "fewer X": items with any of these get a penalty (not a filter).
        year_min, year_max: release year range, inclusive (a filter; unknown years fail it).
        no_sequels: drop titles that look like sequels (:data:`SEQUEL_PATTERN`).
        title_excludes: drop titles containing any of these words (case-insensitive).
        novelty_boost: "something new": scales the novelty feature by ``1 + boost``.
        diversity_boost: "something different": scales the diversity feature by ``1 + boost``.
        query: free text to search item embeddings with ("like Alien").
    """

    model_config = ConfigDict(extra="forbid")

    include_genres: list[str] = Field(default_factory=list, max_length=20)
    exclude_genres: list[str] = Field(default_factory=list, max_length=20)
    avoid_genres: list[str] = Field(default_factory=list, max_length=20)
    year_min: int | None = Field(default=None, ge=1800, le=2100)
    year_max: int | None = Field(default=None, ge=1800, le=2100)
    no_sequels: bool = False
    title_excludes: list[str] = Field(default_factory=list, max_length=20)
    novelty_boost: float = Field(default=0.0, ge=0.0, le=3.0)
    diversity_boost: float = Field(default=0.0, ge=0.0, le=3.0)
    query: str | None = Field(default=None, max_length=200)

    @field_validator("include_genres", "exclude_genres", "avoid_genres", "title_excludes")
    @classmethod
    def _strip(cls, v: list[str]) -> list[str]:
        out = [s.strip() for s in v if s.strip()]
        if any(len(s) > 60 for s in out):
            raise ValueError("each entry is a short word or genre name (at most 60 characters)")
        return list(dict.fromkeys(out))

    @field_validator("year_max")
    @classmethod
    def _range(cls, v: int | None, info) -> int | None:
        lo = info.data.get("year_min")
        if v is not None and lo is not None and v < lo:
            raise ValueError(f"year_max {v} is before year_min {lo}")
        return v

    # ------------------------------------------------------------------ reading
    def is_empty(self) -> bool:
        return self == Constraints()

    def has_hard(self) -> bool:
        """Whether any part filters items (as opposed to re-weighting them)."""
        return bool(self.exclude_genres or self.year_min is not None or self.year_max is not None
                    or self.no_sequels or self.title_excludes)

    def describe(self) -> str:
        """One short line for explanations and traces, e.g. ``more Comedy; no Horror; 1970-1979``."""
        parts = []
        if self.include_genres:
            parts.append("more " + ", ".join(self.include_genres))
        if self.avoid_genres:
            parts.append("fewer " + ", ".join(self.avoid_genres))
        if self.exclude_genres:
            parts.append("no " + ", ".join(self.exclude_genres))
        if self.year_min is not None or self.year_max is not None:
            parts.append(f"{self.year_min or '...'}-{self.year_max or '...'}")
        if self.no_sequels:
            parts.append("no sequels")
        if self.title_excludes:
            parts.append("titles without " + ", ".join(self.title_excludes))
        if self.novelty_boost:
            parts.append("something new")
        if self.diversity_boost:
            parts.append("something different")
        if self.query:
            parts.append(f"like {self.query!r}")
        return "; ".join(parts) or "no constraints"

    def merge(self, newer: Constraints) -> Constraints:
        """These constraints updated by a later turn's: the later word on a genre wins, ranges and the query
        are replaced when given, boosts and title rules accumulate.

        Example:
            >>> Constraints(exclude_genres=["Comedy"]).merge(Constraints(include_genres=["Comedy"])).exclude_genres
            []
        """
        touched = set(newer.include_genres) | set(newer.exclude_genres) | set(newer.avoid_genres)

        def keep(old: list[str], new: list[str]) -> list[str]:
            return list(dict.fromkeys([g for g in old if g not in touched] + new))

        return Constraints(
            include_genres=keep(self.include_genres, newer.include_genres),
            exclude_genres=keep(self.exclude_genres, newer.exclude_genres),
            avoid_genres=keep(self.avoid_genres, newer.avoid_genres),
            year_min=newer.year_min if newer.year_min is not None or newer.year_max is not None else self.year_min,
            year_max=newer.year_max if newer.year_min is not None or newer.year_max is not None else self.year_max,
            no_sequels=self.no_sequels or newer.no_sequels,
            title_excludes=list(dict.fromkeys(self.title_excludes + newer.title_excludes)),
            novelty_boost=max(self.novelty_boost, newer.novelty_boost),
            diversity_boost=max(self.diversity_boost, newer.diversity_boost),
            query=newer.query if newer.query else self.query,
        )

    def without_hard(self) -> Constraints:
        """The relaxed form: filters dropped (the agent then scores their violations as a penalty)."""
        return self.model_copy(update={"exclude_genres": [], "year_min": None, "year_max": None,
                                       "no_sequels": False, "title_excludes": []})


# ---------------------------------------------------------------------------- genre vocabulary
def _norm(word: str) -> str:
    """Lower case, letters and digits only, a plural ``s`` dropped: ``Children's`` -> ``children``."""
    w = re.sub(r"[^a-z0-9]", "", word.lower())
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


#: common words for MovieLens-style genres -> a canonical genre name (then matched to the catalog's names)
GENRE_SYNONYMS: dict[str, str] = {
    "comedy": "Comedy", "comedies": "Comedy", "funny": "Comedy", "humor": "Comedy", "humour": "Comedy",
    "horror": "Horror", "scary": "Horror", "slasher": "Horror",
    "scifi": "Sci-Fi", "sci fi": "Sci-Fi", "science fiction": "Sci-Fi", "sf": "Sci-Fi", "space": "Sci-Fi",
    "kids": "Children's", "kid": "Children's", "children": "Children's", "childrens": "Children's",
    "family": "Children's", "cartoon": "Animation", "cartoons": "Animation", "animated": "Animation",
    "anime": "Animation", "romance": "Romance", "romantic": "Romance", "love stories": "Romance",
    "love story": "Romance", "romcom": "Romance", "thriller": "Thriller", "thrillers": "Thriller",
    "suspense": "Thriller", "documentary": "Documentary", "documentaries": "Documentary", "docs": "Documentary",
    "western": "Western", "westerns": "Western", "cowboy": "Western", "musical": "Musical", "musicals": "Musical",
    "war": "War", "war movies": "War", "mystery": "Mystery", "mysteries": "Mystery", "whodunit": "Mystery",
    "drama": "Drama", "dramas": "Drama", "noir": "Film-Noir", "film noir": "Film-Noir", "crime": "Crime",
    "gangster": "Crime", "heist": "Crime", "action": "Action", "adventure": "Adventure",
    "adventures": "Adventure", "fantasy": "Fantasy", "superhero": "Action",
}


class GenreVocabulary:
    """Maps genre words to a catalog's genre names: exact (normalised), synonym, then fuzzy match.

    Args:
        genre_names: the catalog's vocabulary (``Catalog.genre_names``).
        cutoff: difflib similarity a fuzzy match needs (0.8 accepts ``comdy`` -> ``Comedy``, refuses
            ``anime`` -> ``Crime``).

    Example:
        >>> v = GenreVocabulary(["Comedy", "Sci-Fi", "Children's"])
        >>> v.resolve("comedies"), v.resolve("science fiction"), v.resolve("kids"), v.resolve("opera")
        ('Comedy', 'Sci-Fi', "Children's", None)
    """

    def __init__(self, genre_names: Sequence[str], cutoff: float = 0.8) -> None:
        self.names = [str(g) for g in genre_names]
        self._by_norm = {_norm(g): g for g in self.names}
        self.cutoff = cutoff

    def resolve(self, word: str) -> str | None:
        """The catalog genre ``word`` means, or None."""
        n = _norm(word)
        if not n:
            return None
        if n in self._by_norm:
            return self._by_norm[n]
        canonical = GENRE_SYNONYMS.get(word.lower().strip()) or GENRE_SYNONYMS.get(n)
        if canonical is not None and _norm(canonical) in self._by_norm:
            return self._by_norm[_norm(canonical)]
        close = difflib.get_close_matches(n, list(self._by_norm), n=1, cutoff=self.cutoff)
        return self._by_norm[close[0]] if close else None

    def phrases(self) -> list[str]:
        """Every word or phrase :meth:`resolve` maps to a genre of this vocabulary, longest first."""
        words = {g.lower() for g in self.names} | {k for k in GENRE_SYNONYMS if self.resolve(k)}
        return sorted(words, key=lambda w: (-len(w), w))

    def ground(self, c: Constraints) -> tuple[Constraints, list[str]]:
        """``c`` with every genre mapped to the vocabulary; the words that map to none are returned."""
        unsatisfied: list[str] = []

        def fix(words: list[str]) -> list[str]:
            out = []
            for w in words:
                g = self.resolve(w)
                if g is None:
                    unsatisfied.append(w)
                else:
                    out.append(g)
            return list(dict.fromkeys(out))

        grounded = c.model_copy(update={"include_genres": fix(c.include_genres),
                                        "exclude_genres": fix(c.exclude_genres),
                                        "avoid_genres": fix(c.avoid_genres)})
        return grounded, unsatisfied


# ---------------------------------------------------------------------------- catalog masks
def item_genres(catalog: Catalog, item: int) -> list[str]:
    """The genre names of one catalog item, in vocabulary order."""
    names = np.asarray(catalog.genre_names, dtype=object)
    return names[np.asarray(catalog.genres[item], dtype=bool)].tolist()


def genre_columns(catalog: Catalog, genres: Sequence[str]) -> np.ndarray:
    """bool ``[n_items]``: the item has any of ``genres`` (names of ``catalog.genre_names``)."""
    idx = [catalog.genre_names.index(g) for g in genres if g in catalog.genre_names]
    if not idx:
        return np.zeros(catalog.n_items, dtype=bool)
    return np.asarray(catalog.genres, dtype=bool)[:, idx].any(axis=1)


def hard_mask(catalog: Catalog, c: Constraints) -> np.ndarray:
    """bool ``[n_items]``: the item passes every filter of ``c`` (genre excludes, year range, title rules)."""
    ok = ~genre_columns(catalog, c.exclude_genres)
    years = np.asarray(catalog.years)
    if c.year_min is not None:
        ok &= years >= c.year_min
    if c.year_max is not None:
        ok &= (years <= c.year_max) & (years > 0)
    if c.no_sequels or c.title_excludes:
        ok &= ~title_mask(catalog.titles, c.no_sequels, c.title_excludes)
    return ok


def title_mask(titles: Sequence[str], sequels: bool, words: Sequence[str]) -> np.ndarray:
    """bool ``[n]``: the title looks like a sequel (when ``sequels``) or contains one of ``words``."""
    parts = ([SEQUEL_PATTERN.pattern] if sequels else []) + [rf"\b{re.escape(w)}\b" for w in words]
    if not parts:
        return np.zeros(len(titles), dtype=bool)
    import pandas as pd

    return pd.Series(list(titles), dtype=object).str.contains("|".join(f"(?:{p})" for p in parts),
                                                            case=False, regex=True).to_numpy(dtype=bool)


def wish_mask(catalog: Catalog, c: Constraints) -> np.ndarray | None:
    """bool ``[n_items]``: the item meets the genre wishes of ``c`` (has an asked-for genre when some were
    asked for, and no genre asked to be fewer); None when ``c`` has no genre wish."""
    if not (c.include_genres or c.avoid_genres):
        return None
    ok = np.ones(catalog.n_items, dtype=bool)
    if c.include_genres:
        ok &= genre_columns(catalog, c.include_genres)
    if c.avoid_genres:
        ok &= ~genre_columns(catalog, c.avoid_genres)
    return ok


def match_features(catalog: Catalog, c: Constraints, relaxed: Constraints | None = None) -> np.ndarray:
    """float ``[n_items]``: +1 with an included genre, -1 with an avoided genre, and, when the filters of
    ``relaxed`` had to be dropped, -1 for items that violate them (a preference instead of a filter)."""
    m = genre_columns(catalog, c.include_genres).astype(np.float64)
    m -= genre_columns(catalog, c.avoid_genres)
    if relaxed is not None and relaxed.has_hard():
        m -= ~hard_mask(catalog, relaxed)
    return m


__all__ = ["Constraints", "GenreVocabulary", "GENRE_SYNONYMS", "SEQUEL_PATTERN", "genre_columns", "hard_mask",
           "title_mask", "match_features", "item_genres", "wish_mask"]
