"""The agentic recommender (LLM-ARS): plans tool calls, keeps session memory, re-ranks the base model's
candidates to follow the user's instructions, explains every pick.

Each turn (:meth:`Agent.recommend`):

1. **Observe**: the last page's clicks go to memory (clicked items and their genres); items already shown are
   never shown again.
2. **Plan**: a new instruction is parsed into :class:`~.constraints.Constraints` (the LLM path when an LLM is
   given, with its fallback, else the deterministic parser) and merged into the constraints accumulated over
   the session; then, through the tool registry only: ``score("all")`` for the base model's top-N;
   ``filter`` + ``score`` for the best items that pass the filters and for the asked-for genres; ``search`` +
   ``score`` for a free-text query; ``remember`` notes the instruction.
3. **Re-rank** the candidate pool with :mod:`.policy` (base score, instruction match, novelty, diversity,
   repetition, session affinity; weights :class:`~.policy.PolicyWeights`). The genre wish of the latest
   instruction ("more X", "fewer Y", "something lighter") gets a quota: at least ``wish_share`` of the page
   meets it when enough candidates do (a user who asks for more comedies expects a page of mostly comedies, not
   a bonus that the base score can outweigh); older wishes keep their match bonus.
4. **Relax once**: when fewer than ``k`` unseen items pass the filters, the agent says so in its trace and
   turns the filters into a penalty for that page (no retry loop).
5. **Degrade, never go blank**: when the base model's ``score`` fails, the trace says so and the page is
   ranked by popularity (the only scorer that cannot fail); the page's messages name the error.

Item text never steers it: the deterministic path never reads descriptions, and on the LLM path descriptions
reach the model only as a quoted data block (:mod:`.safety`).

Reference:
    Shu et al., "LLM-based agentic recommender systems (LLM-ARS)", 2025 (perceive / plan / memory / tools);
    RecoWorld (Meta, 2025): the recommender adapts to the simulated user's reflective instructions.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mmfeat.agents.types import Catalog, Reaction, UserHistory

from .constraints import Constraints, hard_mask, item_genres, match_features, wish_mask
from .instructions import ParseResult, parse_instruction, parse_with_llm
from .llm import LLM
from .page import Page
from .policy import PolicyWeights, build_candidates, novelty, rank_page
from .scoring import PopularityScorer, Scorer
from .tools import ToolContext, ToolRegistry, ToolResult


#: how many items ``search`` ranks for a query's similarities, and how many of them join the candidates
SEARCH_DEPTH, SEARCH_HITS = 200, 20


@dataclass
class AgentMemory:
    """What the agent carries across the turns of one session."""

    constraints: Constraints = field(default_factory=Constraints)
    shown: list[int] = field(default_factory=list)
    clicked: list[int] = field(default_factory=list)
    clicked_ratings: list[float] = field(default_factory=list)
    clicked_genres: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    last_page: tuple[int, ...] = ()
    user: int | None = None
    wish: Constraints | None = None


def session_history(history: UserHistory, clicked: list[int], ratings: list[float]) -> UserHistory:
    """``history`` with the session's clicks appended (those not already in it), so a sequential base model
    sees what the user just chose; a user-item model ignores the sequence."""
    if not clicked:
        return history
    clicked_a = np.asarray(clicked, dtype=np.int64)
    new = ~np.isin(clicked_a, np.asarray(history.items, dtype=np.int64))
    if not new.any():
        return history
    return replace(history, items=np.concatenate([np.asarray(history.items, dtype=np.int64), clicked_a[new]]),
                   ratings=np.concatenate([np.asarray(history.ratings, dtype=np.float32),
                                           np.asarray(ratings, dtype=np.float32)[new]]))


class Agent:
    """The agentic recommender.

    Args:
        catalog: the items.
        scorer: the base recommender (:class:`~.scoring.Scorer`).
        weights: re-ranking weights (default :class:`~.policy.PolicyWeights`).
        llm: parses instructions when given (falls back to the deterministic parser); None = deterministic.
        embed: query embedder for ``search`` (the catalog's embedding space), or None.
        n_candidates: size of the base model's top-N the page is re-ranked from.
        wish_share: the least share of a page that meets the latest instruction's genre wish (when enough
            candidates do); 0 = wishes only move the re-ranking through the ``match`` weight.
        temperature: 0 = greedy pages (replay exactly); > 0 = sampled pages with log-probabilities (learning).
        seed: base of the LLM seed (turn ``t`` uses ``seed + t``), so the session rng is never consumed by it.
        context_items: how many of the last page's items the LLM sees (as quoted data).
        registry: the tools (default: all of :mod:`.tools`).
        name: the name in traces (default ``agent[<scorer name>]``).

    Example:
        >>> agent = Agent(catalog, PopularityScorer(catalog))  # doctest: +SKIP
        >>> page = agent.recommend(user.visible(), 0, None, 10, np.random.default_rng(0))  # doctest: +SKIP
        >>> page = agent.recommend(user.visible(), 1, Reaction((), {}, False, "more comedies"), 10, rng)  # doctest: +SKIP
        >>> page.explanations[0]  # doctest: +SKIP
        "Comedy from 1994, matches 'more Comedy'; base score rank 3"
    """

    def __init__(self, catalog: Catalog, scorer: Scorer, *, weights: PolicyWeights | None = None,
                 llm: LLM | None = None, embed: Callable[[list[str]], np.ndarray] | None = None,
                 n_candidates: int = 100, wish_share: float = 1.0, temperature: float = 0.0, seed: int = 0,
                 context_items: int = 5, registry: ToolRegistry | None = None, name: str | None = None) -> None:
        if n_candidates < 1 or temperature < 0 or not 0.0 <= wish_share <= 1.0:
            raise ValueError("n_candidates must be >= 1, temperature >= 0 and wish_share in [0, 1]")
        self.wish_share = float(wish_share)
        self._fallback = PopularityScorer(catalog)
        self.catalog, self.scorer, self.llm, self.embed = catalog, scorer, llm, embed
        self.weights = weights or PolicyWeights()
        self.n_candidates, self.temperature, self.seed = int(n_candidates), float(temperature), int(seed)
        self.context_items = int(context_items)
        self.registry = registry or ToolRegistry()
        self.name = name or f"agent[{getattr(scorer, 'name', 'base')}]"
        self._novelty = novelty(catalog)
        self.memory = AgentMemory()

    def reset(self) -> None:
        """Forget the session (constraints, shown and clicked items, notes)."""
        self.memory = AgentMemory()

    # ------------------------------------------------------------------ the turn
    def recommend(self, history_visible: UserHistory, turn: int, last_reaction: Reaction | None, k: int,
                  rng: np.random.Generator) -> Page:
        """The page for this turn.

        Args:
            history_visible: the user's history without held-out items (:meth:`UserHistory.visible`).
            turn: 0 for a session's first page (memory is cleared), then 1, 2, ...
            last_reaction: the user's reaction to the previous page (None on turn 0).
            k: page size.
            rng: the session's generator (used only when sampling, ``temperature > 0``).

        Returns:
            :class:`~.page.Page` with items, one explanation per item, the tool calls and the trace messages.
        """
        mem = self.memory
        if turn == 0 or mem.user != history_visible.user:
            self.reset()
            mem = self.memory
            mem.user = history_visible.user
        messages: list[str] = []
        calls: list[ToolResult] = []
        self._observe(last_reaction)
        ctx = ToolContext(self.catalog, self.scorer,
                          session_history(history_visible, mem.clicked, mem.clicked_ratings), self.embed,
                          shown=np.asarray(mem.shown, dtype=np.int64), notes=mem.notes)

        def call(name: str, args: dict[str, Any]) -> ToolResult:
            result = self.registry.call(name, args, ctx)
            calls.append(result)
            if not result.ok:
                messages.append(f"tool {result.summary()}")
                if name == "score" and ctx.scorer is not self._fallback:
                    messages.append(f"the base model {getattr(ctx.scorer, 'name', 'scorer')!r} failed: this page "
                                    f"is ranked by popularity instead")
                    ctx.use_scorer(self._fallback)
                    result = self.registry.call(name, args, ctx)
                    calls.append(result)
            return result

        parse = None
        if last_reaction is not None and last_reaction.instruction:
            parse = self._parse(last_reaction.instruction, turn, messages)
            mem.constraints = mem.constraints.merge(parse.constraints)
            if parse.constraints.include_genres or parse.constraints.avoid_genres:
                mem.wish = parse.constraints
            call("remember", {"note": f"turn {turn}: {last_reaction.instruction[:150]!r} -> "
                                      f"{parse.constraints.describe()[:120]}"})
        c = mem.constraints
        pool, scores, ranks, hits, query_match = self._candidates(call, c, messages)
        if len(pool) == 0:
            messages.append("no unseen item left to recommend")
            return Page((), (), tuple(calls), tuple(messages), c, parse, None)
        allowed, relaxed = self._apply_filters(pool, c, k, messages)
        soft = c.without_hard() if relaxed is not None else c
        match = match_features(self.catalog, soft, relaxed)[pool] + query_match
        skipped = np.setdiff1d(np.asarray(mem.shown, dtype=np.int64), np.asarray(mem.clicked, dtype=np.int64))
        cands = build_candidates(self.catalog, pool, scores, match, skipped=skipped,
                                 clicked_genres=self._clicked_genres(), novelty_boost=c.novelty_boost,
                                 diversity_boost=c.diversity_boost)
        required, n_required = self._wish_quota(pool, k, messages)
        decision = rank_page(cands, self.weights, k, temperature=self.temperature, rng=rng, allowed=allowed,
                             required=required, n_required=n_required)
        items = pool[decision.positions]
        explanations = tuple(self._explain(int(i), int(ranks[p]), c, relaxed, bool(np.isin(i, hits)))
                             for i, p in zip(items, decision.positions, strict=True))
        mem.shown.extend(int(i) for i in items)
        mem.last_page = tuple(int(i) for i in items)
        return Page(tuple(int(i) for i in items), explanations, tuple(calls), tuple(messages), c, parse, decision)

    # ------------------------------------------------------------------ steps
    def _observe(self, reaction: Reaction | None) -> None:
        if reaction is None or not reaction.clicked:
            return
        mem = self.memory
        shown = set(mem.last_page)
        clicked = [int(i) for i in reaction.clicked if int(i) in shown and int(i) not in mem.clicked]
        mem.clicked.extend(clicked)
        mem.clicked_ratings.extend(float(reaction.ratings.get(i, 1.0)) for i in clicked)
        g = np.asarray(self.catalog.genres, dtype=np.float64)
        if mem.clicked_genres is None:
            mem.clicked_genres = np.zeros(g.shape[1])
        if clicked:
            mem.clicked_genres = mem.clicked_genres + g[clicked].sum(axis=0)

    def _clicked_genres(self) -> np.ndarray:
        g = self.memory.clicked_genres
        return g if g is not None else np.zeros(len(self.catalog.genre_names))

    def _parse(self, text: str, turn: int, messages: list[str]) -> ParseResult:
        names = self.catalog.genre_names
        if self.llm is None:
            result = parse_instruction(text, names)
        else:
            result = parse_with_llm(text, names, self.llm, seed=self.seed + turn, context=self._context())
            for err in result.errors:
                messages.append(f"LLM reply refused: {err}"[:300])
        messages.append(f"instruction {text[:200]!r} parsed by {result.path}: {result.constraints.describe()}")
        if result.unsatisfied:
            messages.append(f"cannot satisfy {', '.join(map(repr, result.unsatisfied))}: no such genre or form "
                            f"in this catalog")
        return result

    def _context(self) -> list[dict[str, Any]]:
        """The last page's items as records for the LLM (quoted by the prompt builder, never as instructions)."""
        cat = self.catalog
        out = []
        for i in self.memory.last_page[: self.context_items]:
            out.append({"item": i, "title": cat.titles[i], "year": int(cat.years[i]) or None,
                        "genres": item_genres(cat, i),
                        "description": cat.descriptions[i] if cat.descriptions is not None else None,
                        "clicked": i in self.memory.clicked})
        return out

    def _candidates(self, call: Callable[[str, dict[str, Any]], ToolResult], c: Constraints,
                    messages: list[str]) -> tuple[np.ndarray, ...]:
        """The pool: base top-N, best items passing the filters, best asked-for genres, search hits.

        Returns:
            ``(items, base scores, base ranks, search hits, query match)``; items best base score first.
        """
        n = self.n_candidates
        results = [call("score", {"items": "all", "k": n})]
        hard = {"genres_exclude": c.exclude_genres, "year_min": c.year_min, "year_max": c.year_max,
                "no_sequels": c.no_sequels, "title_excludes": c.title_excludes}
        if c.has_hard():
            f = call("filter", hard)
            if f.ok and f.value["count"]:
                results.append(call("score", {"items": f.value["items"], "k": n}))
            elif f.ok:
                messages.append(f"no item in the catalog satisfies {_hard_text(c)!r}")
        if c.include_genres:
            f = call("filter", {**hard, "genres_include": c.include_genres})
            if f.ok and f.value["count"]:
                results.append(call("score", {"items": f.value["items"], "k": n}))
        hits, sims = np.zeros(0, dtype=np.int64), {}
        if c.query:
            s = call("search", {"query": c.query, "k": SEARCH_DEPTH})
            if s.ok and s.value["items"]:
                sims = dict(zip(s.value["items"], s.value["similarities"], strict=True))
                hits = np.asarray(s.value["items"][:SEARCH_HITS], dtype=np.int64)
                results.append(call("score", {"items": hits.tolist(), "k": SEARCH_HITS}))
        got = [r.value for r in results if r.ok]
        if not got:
            return (np.zeros(0, np.int64),) * 3 + (hits, np.zeros(0))
        items = np.concatenate([np.asarray(v["items"], dtype=np.int64) for v in got])
        scores = np.concatenate([np.asarray(v["scores"], dtype=np.float64) for v in got])
        ranks = np.concatenate([np.asarray(v["ranks"], dtype=np.int64) for v in got])
        items, first = np.unique(items, return_index=True)
        scores, ranks = scores[first], ranks[first]
        order = np.argsort(ranks, kind="stable")  # best base score first
        items, scores, ranks = items[order], scores[order], ranks[order]
        return items, scores, ranks, hits, _query_match(items, sims)

    def _apply_filters(self, pool: np.ndarray, c: Constraints, k: int,
                       messages: list[str]) -> tuple[np.ndarray, Constraints | None]:
        """Candidates allowed on the page, and the constraints relaxed this turn (None: the filters held)."""
        if not c.has_hard():
            return np.ones(len(pool), dtype=bool), None
        ok = hard_mask(self.catalog, c)[pool]
        if ok.sum() >= min(k, len(pool)):
            return ok, None
        messages.append(f"only {int(ok.sum())} unseen item(s) satisfy {_hard_text(c)!r}, fewer than the page's "
                        f"{k}: relaxed once for this page (violations are penalised instead of filtered)")
        return np.ones(len(pool), dtype=bool), c

    def _wish_quota(self, pool: np.ndarray, k: int, messages: list[str]) -> tuple[np.ndarray | None, int]:
        """Candidates meeting the latest genre wish, and how many of the page must (``ceil(wish_share * k)``)."""
        wish = self.memory.wish
        meets = None if wish is None or self.wish_share <= 0 else wish_mask(self.catalog, wish)
        if meets is None:
            return None, 0
        required = meets[pool]
        n_required = int(np.ceil(self.wish_share * min(k, len(pool)) - 1e-9))
        if required.sum() < n_required:
            messages.append(f"only {int(required.sum())} candidate(s) meet the wish "
                            f"{_soft_text(wish)!r}, fewer than {n_required}: all of them go on the page")
        return required, n_required

    def _explain(self, item: int, rank: int, c: Constraints, relaxed: Constraints | None, hit: bool) -> str:
        """One line: genres and year, why it matches, its base-score rank."""
        cat = self.catalog
        has = item_genres(cat, item)
        year = int(cat.years[item])
        head = ("/".join(has) or "No genre") + (f" from {year}" if year > 0 else "")
        why = [f"matches 'more {g}'" for g in c.include_genres if g in has][:1]
        why += [f"has {g} (asked for fewer)" for g in c.avoid_genres if g in has][:1]
        if hit and c.query:
            why.append(f"close to {c.query!r}")
        if relaxed is not None and not hard_mask(cat, relaxed)[item]:
            why.append(f"outside {_hard_text(relaxed)!r} (relaxed)")
        if c.novelty_boost and self._novelty[item] >= 0.5:
            why.append("less known")
        return f"{head}{', ' + ', '.join(why) if why else ''}; base score rank {rank}"


def _query_match(items: np.ndarray, sims: dict[int, float]) -> np.ndarray:
    """The query part of instruction match: each item's similarity to the query, z-scored over the pool and
    clipped to [-2, 3] (items beyond the search depth get the lowest similarity seen); zeros without a query.
    A user who asks for "something like X" asks for similarity, so it is graded, not a 0/1 hit."""
    if not sims:
        return np.zeros(len(items))
    floor = min(sims.values())
    s = np.array([sims.get(int(i), floor) for i in items], dtype=np.float64)
    sd = s.std()
    return np.clip((s - s.mean()) / sd, -2.0, 3.0) if sd > 0 else np.zeros(len(items))


def _soft_text(c: Constraints) -> str:
    return Constraints(include_genres=c.include_genres, avoid_genres=c.avoid_genres).describe()


def _hard_text(c: Constraints) -> str:
    return Constraints(exclude_genres=c.exclude_genres, year_min=c.year_min, year_max=c.year_max,
                       no_sequels=c.no_sequels, title_excludes=c.title_excludes).describe()


__all__ = ["Agent", "AgentMemory", "session_history"]
