"""What a recommender hands the environment each turn: a :class:`Page` and its trace.

Shared by the agent (:mod:`.agent`) and the static baselines (:mod:`.static`), so the environment treats
both alike: ``recommend(history_visible, turn, last_reaction, k, rng) -> Page``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmfeat.agents.types import Reaction, UserHistory

from .constraints import Constraints
from .instructions import ParseResult
from .policy import PageDecision
from .tools import ToolResult


@dataclass(frozen=True)
class Page:
    """One page of recommendations with everything needed to audit it.

    Attributes:
        items: catalog item indices, page order.
        explanations: one line per item ("Comedy from 1994, matches 'more Comedy'; base score rank 3").
        tool_calls: every tool call of the turn (observations, errors included), in order.
        messages: what the agent says in its trace (parsing path, unsatisfied requests, relaxations).
        constraints: the constraints in force this turn (None for a static recommender).
        parse: how this turn's instruction was parsed, or None without a new instruction.
        decision: the policy's decision (features, log-probability, gradient), or None for a static one.
    """

    items: tuple[int, ...]
    explanations: tuple[str, ...]
    tool_calls: tuple[ToolResult, ...] = ()
    messages: tuple[str, ...] = ()
    constraints: Constraints | None = None
    parse: ParseResult | None = None
    decision: PageDecision | None = field(default=None, repr=False)

    def trace(self) -> dict[str, Any]:
        """The page as a JSON-able trace row (for session logs)."""
        return {
            "items": list(self.items), "explanations": list(self.explanations),
            "tool_calls": [{"name": t.name, "arguments": t.arguments, "ok": t.ok, "summary": t.summary(),
                            "seconds": round(t.seconds, 5)} for t in self.tool_calls],
            "messages": list(self.messages),
            "constraints": self.constraints.model_dump(exclude_defaults=True) if self.constraints else None,
            "parse_path": self.parse.path if self.parse else None,
            "unsatisfied": list(self.parse.unsatisfied) if self.parse else [],
            "log_prob": self.decision.log_prob if self.decision else None,
        }


@runtime_checkable
class Recommender(Protocol):
    """Anything the session environment can run: the agent or a static baseline."""

    name: str

    def recommend(self, history_visible: UserHistory, turn: int, last_reaction: Reaction | None, k: int,
                  rng: np.random.Generator) -> Page:
        """The page for ``turn`` (0 starts a new session and clears the recommender's session memory)."""
        ...


__all__ = ["Page", "Recommender"]
