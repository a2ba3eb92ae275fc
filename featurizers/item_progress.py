"""Inputs finished inside one featurizer call, so a slow call still shows progress.

Why: the engine calls a featurizer with a sub-batch of inputs (:mod:`mmfeat.pipelines.engine.shards`) and
learns how many are done only when the call returns. For a generator (the describer, the captioner) one
call can take minutes, and the items done stayed at 0 the whole time. A featurizer that works through
its inputs batch by batch (or item by item) calls :func:`items_done` after each; the caller that wants
to hear about it wraps the call in :func:`reporting_items`. Outside such a block :func:`items_done` does
nothing, so a featurizer reports unconditionally and stays usable from a notebook or a test.

A context variable, not a featurizer attribute: one featurizer object is shared by every shard of a
process (the model cache), and a shard's callback must not leak into another thread's call.

Example:
    >>> seen = []
    >>> with reporting_items(seen.append):
    ...     items_done(2)
    ...     items_done(0)  # nothing to say: not reported
    >>> items_done(5)      # outside the block: a no-op
    >>> seen
    [2]
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, Iterator

_LISTENER: ContextVar[Callable[[int], None] | None] = ContextVar("mmfeat_items_done", default=None)


def items_done(n: int) -> None:
    """Say that ``n`` more inputs of the current featurizer call are finished (values or error results).

    Args:
        n: inputs finished since the last report (positions of the call's input list, duplicates included).
    """
    listener = _LISTENER.get()
    if listener is not None and n > 0:
        listener(n)


@contextlib.contextmanager
def reporting_items(listener: Callable[[int], None] | None) -> Iterator[None]:
    """While the block runs, :func:`items_done` calls in this thread (and context) go to ``listener``.

    Args:
        listener: receives each report's count; None turns reporting off inside the block.
    """
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


__all__ = ["items_done", "reporting_items"]
