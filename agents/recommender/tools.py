"""The agent's typed tools and the registry that is the only way to call them.

Each tool is a plain function ``fn(ctx, args) -> dict`` whose arguments arrive as JSON (an LLM's tool call)
or a dict and are validated by a pydantic model first: unknown keys and wrong types are refused with a message
an LLM can read and act on. :meth:`ToolRegistry.call` never raises: a bad call or a failing tool becomes an
error :class:`ToolResult` (an observation), so one bad step cannot end a session.

Tools:
    ``search(query, k)``: top-k items by cosine between the query (embedded by the injected ``embed``, e.g.
    MiniLM) and the catalog's store text embeddings (exact top-k, ``argpartition``).
    ``score(items | "all", k)``: the base recommender's top-k among ``items``, with each item's rank among
    every unseen item.
    ``filter(genres_include, genres_exclude, year_min, year_max, no_sequels, title_excludes)``: catalog items
    passing every condition.
    ``describe(item)``: title, year, genres and store description, as a quoted data block
    (:func:`.safety.quote_items`).
    ``remember(note)`` / ``recall()``: the agent's notes for this session.

Reference:
    Schick et al., "Toolformer", NeurIPS 2023, and Yao et al., "ReAct", ICLR 2023 (tools with typed arguments,
    errors fed back as observations); LLM-ARS perspective (Shu et al., 2025): store and recommenders as tools.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmfeat.agents.types import Catalog, UserHistory

from .constraints import Constraints, GenreVocabulary, hard_mask, item_genres
from .safety import quote_items
from .scoring import Scorer, all_scores

#: notes kept per session (older ones are dropped first)
MAX_NOTES = 20


class ToolError(ValueError):
    """A tool refused its (validated) arguments, e.g. an unknown genre; the message is shown to the caller."""


@dataclass
class ToolContext:
    """What the tools act on for one user and one turn.

    Attributes:
        catalog: the items.
        scorer: the base recommender.
        history: the user's visible history (plus the session's clicks, for sequential scorers).
        embed: ``texts -> [n, d]`` query embedder of the catalog's embedding space, or None (no ``search``).
        shown: items already shown this session (``score`` / ``search`` leave them out with ``exclude_seen``).
        notes: the session's notes (``remember`` / ``recall``).
    """

    catalog: Catalog
    scorer: Scorer
    history: UserHistory
    embed: Callable[[list[str]], np.ndarray] | None = None
    shown: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    notes: list[str] = field(default_factory=list)
    _scores: np.ndarray | None = field(default=None, repr=False)
    _ranks: np.ndarray | None = field(default=None, repr=False)

    def use_scorer(self, scorer: Scorer) -> None:
        """Score with ``scorer`` from now on (the cached base scores are dropped)."""
        self.scorer, self._scores, self._ranks = scorer, None, None

    def seen_mask(self) -> np.ndarray:
        """bool ``[n_items]``: in the history or already shown."""
        m = np.zeros(self.catalog.n_items, dtype=bool)
        m[np.asarray(self.history.items, dtype=np.int64)] = True
        m[np.asarray(self.shown, dtype=np.int64)] = True
        return m

    def base_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item's base score and 1-based rank among unseen items (seen items rank after them); computed
        once per context (one scorer call per turn)."""
        if self._scores is None:
            s = all_scores(self.scorer, self.history, self.catalog.n_items)
            key = np.where(self.seen_mask(), -np.inf, s)
            order = np.lexsort((np.arange(len(s)), -key))  # best first, ties by item index
            ranks = np.empty(len(s), dtype=np.int64)
            ranks[order] = np.arange(1, len(s) + 1)
            self._scores, self._ranks = s, ranks
        return self._scores, self._ranks


# ---------------------------------------------------------------------------- argument models
class ToolArgs(BaseModel):
    """Strict arguments: unknown keys and wrong types (``"5"`` for an int) are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SearchArgs(ToolArgs):
    query: str = Field(min_length=1, max_length=200, description="what to look for, in words")
    k: int = Field(default=10, ge=1, le=200)
    exclude_seen: bool = True


class ScoreArgs(ToolArgs):
    items: list[int] | Literal["all"] = Field(default="all", description='catalog item indices, or "all"')
    k: int = Field(default=20, ge=1, le=2000)
    exclude_seen: bool = True


class FilterArgs(ToolArgs):
    genres_include: list[str] = Field(default_factory=list, max_length=20, description="item has any of these")
    genres_exclude: list[str] = Field(default_factory=list, max_length=20, description="item has none of these")
    year_min: int | None = Field(default=None, ge=1800, le=2100)
    year_max: int | None = Field(default=None, ge=1800, le=2100)
    no_sequels: bool = False
    title_excludes: list[str] = Field(default_factory=list, max_length=20)


class DescribeArgs(ToolArgs):
    item: int = Field(ge=0)


class RememberArgs(ToolArgs):
    note: str = Field(min_length=1, max_length=300)


class RecallArgs(ToolArgs):
    pass


# ---------------------------------------------------------------------------- tools
def _topk(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, best first (ties by position): exact, O(n) selection."""
    k = min(k, len(values))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.lexsort((part, -values[part]))]


def search(ctx: ToolContext, args: SearchArgs) -> dict[str, Any]:
    """Top-k items by cosine between the embedded query and the catalog's text embeddings."""
    emb = ctx.catalog.embeddings
    if emb is None or ctx.embed is None:
        raise ToolError("search is unavailable: the catalog has no text embeddings or no query embedder was given")
    q = np.asarray(ctx.embed([args.query]), dtype=np.float32).reshape(-1)
    if q.shape[0] != emb.shape[1]:
        raise ToolError(f"query embedding has {q.shape[0]} dims, the catalog's embeddings {emb.shape[1]}")
    sims = emb @ (q / max(float(np.linalg.norm(q)), 1e-12))
    sims = np.where(ctx.seen_mask(), -np.inf, sims) if args.exclude_seen else sims
    top = _topk(sims, args.k)
    top = top[np.isfinite(sims[top])]
    return {"items": top.tolist(), "similarities": np.round(sims[top], 4).tolist()}


def score(ctx: ToolContext, args: ScoreArgs) -> dict[str, Any]:
    """The base recommender's top-k among ``items``, with each item's rank among all unseen items."""
    s, ranks = ctx.base_scores()
    n = ctx.catalog.n_items
    if args.items == "all":
        cand = np.arange(n)
    else:
        cand = np.unique(np.asarray(args.items, dtype=np.int64))
        if len(cand) and (cand.min() < 0 or cand.max() >= n):
            raise ToolError(f"item indices must be in 0..{n - 1}")
    if args.exclude_seen:
        cand = cand[~ctx.seen_mask()[cand]]
    top = cand[_topk(s[cand], args.k)]
    return {"items": top.tolist(), "scores": np.round(s[top], 6).tolist(), "ranks": ranks[top].tolist()}


def filter_items(ctx: ToolContext, args: FilterArgs) -> dict[str, Any]:
    """Catalog items with any included genre (when given) that pass the excludes, year range and title rules."""
    vocab = GenreVocabulary(ctx.catalog.genre_names)
    resolved = {}
    for g in args.genres_include + args.genres_exclude:
        r = vocab.resolve(g)
        if r is None:
            raise ToolError(f"unknown genre {g!r}; known genres: {', '.join(ctx.catalog.genre_names)}")
        resolved[g] = r
    if args.year_min is not None and args.year_max is not None and args.year_max < args.year_min:
        raise ToolError(f"year_max {args.year_max} is before year_min {args.year_min}")
    c = Constraints(exclude_genres=[resolved[g] for g in args.genres_exclude], year_min=args.year_min,
                    year_max=args.year_max, no_sequels=args.no_sequels, title_excludes=args.title_excludes)
    ok = hard_mask(ctx.catalog, c)
    if args.genres_include:
        idx = [ctx.catalog.genre_names.index(resolved[g]) for g in args.genres_include]
        ok &= np.asarray(ctx.catalog.genres, dtype=bool)[:, idx].any(axis=1)
    items = np.flatnonzero(ok)
    return {"items": items.tolist(), "count": int(len(items))}


def describe(ctx: ToolContext, args: DescribeArgs) -> dict[str, Any]:
    """An item's attributes as a quoted data block: store text is data, never instructions."""
    cat = ctx.catalog
    if args.item >= cat.n_items:
        raise ToolError(f"item must be in 0..{cat.n_items - 1}")
    i = args.item
    record = {"item": i, "title": cat.titles[i], "year": int(cat.years[i]) or None, "genres": item_genres(cat, i),
              "description": cat.descriptions[i] if cat.descriptions is not None else None}
    return {"item": i, "data": quote_items([record])}


def remember(ctx: ToolContext, args: RememberArgs) -> dict[str, Any]:
    ctx.notes.append(args.note)
    del ctx.notes[:-MAX_NOTES]
    return {"notes": len(ctx.notes)}


def recall(ctx: ToolContext, args: RecallArgs) -> dict[str, Any]:
    return {"notes": list(ctx.notes)}


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Tool:
    name: str
    args_model: type[ToolArgs]
    fn: Callable[[ToolContext, Any], dict[str, Any]]
    description: str


@dataclass(frozen=True)
class ToolResult:
    """One tool call as an observation: the validated arguments and the value, or the error.

    Attributes:
        name: the tool called.
        arguments: the validated arguments (the raw ones when validation failed).
        ok: whether the call produced a value.
        value: the tool's output (JSON-able) or None.
        error: a one-line message for the caller (LLM or trace) or None.
        seconds: wall time of the call.
    """

    name: str
    arguments: dict[str, Any]
    ok: bool
    value: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0

    def as_message(self, max_items: int = 30) -> str:
        """The observation as JSON text for an LLM (long item lists clipped, the count kept)."""
        if not self.ok:
            return json.dumps({"tool": self.name, "error": self.error})
        value = {k: (v[:max_items] if isinstance(v, list) else v) for k, v in (self.value or {}).items()}
        return json.dumps({"tool": self.name, "result": value})

    def summary(self) -> str:
        """A short line for traces: ``score -> 20 items`` or ``filter: error ...``."""
        if not self.ok:
            return f"{self.name}: error: {self.error}"
        v = self.value or {}
        if "items" in v:
            return f"{self.name} -> {len(v['items'])} items"
        return f"{self.name} -> {', '.join(f'{k}={v[k]!r}'[:60] for k in v)}"


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("search", SearchArgs, search, "items whose store text is closest to a query"),
    Tool("score", ScoreArgs, score, "the base recommender's top-k among items (or all), with ranks"),
    Tool("filter", FilterArgs, filter_items, "catalog items by genres, year range and title rules"),
    Tool("describe", DescribeArgs, describe, "an item's title, year, genres and description (quoted data)"),
    Tool("remember", RememberArgs, remember, "store a short note for this session"),
    Tool("recall", RecallArgs, recall, "the session's notes"),
)}


def _validation_message(name: str, exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
        msg = "unknown argument" if e.get("type") == "extra_forbidden" else e.get("msg", "invalid")
        parts.append(f"{where}: {msg}")
    allowed = ", ".join(TOOLS[name].args_model.model_fields) if name in TOOLS else ""
    return f"bad arguments for {name}: {'; '.join(parts)} (allowed: {allowed or 'none'})"


class ToolRegistry:
    """The tools an agent may call, by name; nothing else is callable.

    Args:
        tools: name -> :class:`Tool` (default: every tool of this module).

    Example:
        >>> reg = ToolRegistry()
        >>> r = reg.call("filter", '{"year_min": "1970"}', ctx)  # doctest: +SKIP
        >>> r.ok, r.error  # doctest: +SKIP
        (False, 'bad arguments for filter: year_min: Input should be a valid integer (allowed: ...)')
    """

    def __init__(self, tools: Mapping[str, Tool] | None = None) -> None:
        self.tools = dict(TOOLS if tools is None else tools)

    def call(self, name: str, arguments: str | Mapping[str, Any] | None, ctx: ToolContext) -> ToolResult:
        """Validate ``arguments`` (JSON text or a dict) and run the tool; every failure is an error result.

        Args:
            name: a registered tool name.
            arguments: JSON object text, a dict, or None (no arguments).
            ctx: what the tool acts on.

        Returns:
            The observation (``ok`` false with a readable ``error`` on any failure).
        """
        t0 = time.perf_counter()
        raw: Any = arguments if arguments is not None else {}
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return ToolResult(str(name), _as_dict(raw), False,
                              error=f"unknown tool {name!r}; tools: {', '.join(sorted(self.tools))}")
        try:
            if isinstance(raw, (str, bytes)):
                args = tool.args_model.model_validate_json(raw or "{}")
            elif isinstance(raw, Mapping):
                args = tool.args_model.model_validate(dict(raw))
            else:
                raise ToolError(f"arguments must be a JSON object, got {type(raw).__name__}")
        except ValidationError as exc:
            if any(e.get("type") == "json_invalid" for e in exc.errors()):
                err = f"bad arguments for {name}: not a JSON object ({exc.errors()[0].get('msg')})"
            else:
                err = _validation_message(name, exc)
            return ToolResult(name, _as_dict(raw), False, error=err, seconds=time.perf_counter() - t0)
        except ToolError as exc:
            return ToolResult(name, _as_dict(raw), False, error=str(exc), seconds=time.perf_counter() - t0)
        try:
            value = tool.fn(ctx, args)
        except ToolError as exc:
            return ToolResult(name, args.model_dump(), False, error=str(exc), seconds=time.perf_counter() - t0)
        except Exception as exc:  # a tool bug is an observation, not a crashed session
            return ToolResult(name, args.model_dump(), False, error=f"{type(exc).__name__}: {exc}",
                              seconds=time.perf_counter() - t0)
        return ToolResult(name, args.model_dump(), True, value, seconds=time.perf_counter() - t0)

    def specs(self) -> list[dict[str, Any]]:
        """The tools as OpenAI-style function specs (name, description, JSON schema of the arguments)."""
        return [{"name": t.name, "description": t.description, "parameters": t.args_model.model_json_schema()}
                for t in self.tools.values()]


def _as_dict(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    return {"raw": str(raw)[:200]}


__all__ = ["ToolContext", "ToolError", "ToolResult", "Tool", "ToolRegistry", "TOOLS", "SearchArgs", "ScoreArgs",
           "FilterArgs", "DescribeArgs", "RememberArgs", "RecallArgs", "search", "score", "filter_items",
           "describe", "remember", "recall"]
