"""Progress a person can see while a feature set is extracted: items done / total and items/s.

The engine (:meth:`mmfeat.pipelines.engine.extract.FeatureSetJob.compute_shard`) reports, after every
sub-batch of a shard, how many rows of that shard are done. :class:`FeatureSetProgress` adds the
shards up and hands a :class:`Snapshot` to its sinks:

- :class:`BarSink`: a tqdm bar, for a terminal or a notebook (``mmfeat extract``, ``mmfeat.extract``);
- :class:`LogSink`: log lines, for Prefect's run logger, where a bar would be noise. A heartbeat
  thread writes one every ``interval`` seconds (10 by default) even while a slow sub-batch runs,
  plus a first and a last line;
- any other :class:`Sink` a caller adds (``progress_factory(..., also=...)``): the flows add a Prefect
  progress artifact per feature set (:mod:`mmfeat.pipelines.flows.extract_flow`; this module imports no
  Prefect). A sink with a ``beat(snapshot)`` method is also called by the heartbeat.

Updates arrive after every sub-batch of a shard and, inside a featurizer call, whenever the featurizer
reports finished inputs (:mod:`mmfeat.featurizers.item_progress`: the describer and the captioner do
after each generation batch), so a slow generator's count moves while it works.

A shard reports its own count (``set``, not ``add``), so a shard that Prefect retries starts again
at zero instead of counting its rows twice.

:func:`forward_logs` sends the engine's own log lines (cache hits, resumed runs, lock waits) to a
Prefect run logger, and :func:`quiet_library_bars` turns off the bars of model and dataset
libraries ("Loading weights", "Saving the dataset") that are noise on the default path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Protocol, Sequence

Clock = Callable[[], float]
ProgressMode = Literal["bar", "log", "none"]

#: Seconds between two progress log lines (the issue asks for at least one every 10 s).
LOG_INTERVAL_S = 10.0

#: ``(feature_set, total, initial) -> Sink``: an extra sink per feature set (``progress_factory(also=...)``).
SinkFactory = Callable[[str, int, int], "Sink"]


@dataclass(frozen=True)
class Snapshot:
    """Where one feature set stands: rows done of ``total`` and the rate since this run started."""

    feature_set: str
    done: int
    total: int
    initial: int  # rows already done when this run started (finished shards of a resumed run)
    elapsed: float

    @property
    def rate(self) -> float:
        """Items/s of this run (rows finished by earlier runs do not count)."""
        return (self.done - self.initial) / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """One human line, e.g. ``title_minilm: 1,200/3,000 items (40%), 85.3 items/s``."""
        pct = f" ({self.done / self.total:.0%})" if self.total else ""
        return f"{self.feature_set}: {self.done:,}/{self.total:,} items{pct}, {self.rate:.1f} items/s"


class Sink(Protocol):
    """Where snapshots go. ``update`` follows every sub-batch; ``close`` comes once, at the end."""

    def update(self, snap: Snapshot) -> None: ...

    def close(self, snap: Snapshot, ok: bool) -> None: ...


class BarSink:
    """A tqdm bar (``tqdm.auto``: a widget in a notebook) on stderr; tqdm throttles its redraws."""

    def __init__(self, feature_set: str, total: int, initial: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc=feature_set, unit="item", dynamic_ncols=True)

    def update(self, snap: Snapshot) -> None:
        delta = snap.done - self.bar.n
        if delta:
            self.bar.update(delta)

    def close(self, snap: Snapshot, ok: bool) -> None:
        self.update(snap)
        self.bar.close()


class LogSink:
    """Progress as log lines: a first line, one every ``interval`` seconds, and a last line.

    Sub-batch updates are counted, not logged; a daemon thread (:class:`Heartbeat`) logs the latest
    snapshot every ``interval`` seconds, so a sub-batch longer than the interval still shows life.
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, interval: float = LOG_INTERVAL_S) -> None:
        self.logger, self.interval = logger, interval

    def start(self, snap: Snapshot) -> None:
        self.logger.info("%s: %s", snap.feature_set, f"starting, {snap.done:,}/{snap.total:,} items done")

    def update(self, snap: Snapshot) -> None:
        pass  # the heartbeat logs; per-sub-batch lines would flood the run's log

    def beat(self, snap: Snapshot) -> None:
        self.logger.info("%s", snap.line())

    def close(self, snap: Snapshot, ok: bool) -> None:
        self.logger.info("%s (%s after %.1f s)", snap.line(), "finished" if ok else "stopped", snap.elapsed)


class Heartbeat:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until :meth:`stop`.

    ``wait`` is ``threading.Event.wait``-like (returns True once stopped); tests inject their own.
    """

    def __init__(self, fn: Callable[[], None], interval: float) -> None:
        self.fn, self.interval = fn, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mmfeat-progress", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fn()
            except Exception:  # noqa: BLE001 - a broken log handler must not kill the run; say so once
                logging.getLogger("mmfeat.progress").exception("progress heartbeat failed; no more progress lines")
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class FeatureSetProgress:
    """Rows done of one feature set, fed per shard, fanned out to sinks.

    Args:
        feature_set: the name shown on the bar / in the log lines.
        total: rows of the feature set.
        initial: rows already done (finished shards of a resumed run).
        sinks: where snapshots go.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(self, feature_set: str, total: int, initial: int, sinks: Sequence[Sink],
                 clock: Clock = time.monotonic) -> None:
        self.feature_set, self.total, self.initial = feature_set, total, initial
        self.sinks, self.clock = list(sinks), clock
        self.t0 = clock()
        self._by_shard: dict[int, int] = {}
        self._lock = threading.Lock()
        self._heartbeats: list[Heartbeat] = []

    def snapshot(self) -> Snapshot:
        with self._lock:
            done = self.initial + sum(self._by_shard.values())
        return Snapshot(self.feature_set, min(done, self.total), self.total, self.initial, self.clock() - self.t0)

    def shard(self, index: int, done: int) -> None:
        """Shard ``index`` has ``done`` rows finished (0 again when a retry restarts it)."""
        with self._lock:
            self._by_shard[index] = done
        snap = self.snapshot()
        for sink in self.sinks:
            sink.update(snap)

    def add_heartbeat(self, hb: Heartbeat) -> None:
        self._heartbeats.append(hb)

    def close(self, ok: bool = True) -> Snapshot:
        """Stop the heartbeats and tell the sinks the last snapshot (``ok``: False when the run failed)."""
        for hb in self._heartbeats:
            hb.stop()
        snap = self.snapshot()
        for sink in self.sinks:
            sink.close(snap, ok)
        return snap


ProgressFactory = Callable[[str, int, int], FeatureSetProgress]


def progress_factory(mode: ProgressMode, logger: logging.Logger | logging.LoggerAdapter | None = None,
                     interval: float = LOG_INTERVAL_S, also: Sequence[SinkFactory] = ()) -> ProgressFactory | None:
    """What reports the progress of each feature set: a bar, log lines on ``logger``, or nothing.

    Args:
        mode: ``"bar"``, ``"log"`` or ``"none"``.
        logger: where ``"log"`` lines go (default ``mmfeat.progress``).
        interval: seconds between heartbeat lines in ``"log"`` mode.
        also: more sinks per feature set (e.g. a Prefect progress artifact), made when its progress
            starts; ignored for ``"none"``.

    Returns:
        A factory ``(feature_set, total, initial) -> FeatureSetProgress``, or None for ``"none"``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode == "none":
        return None
    if mode not in ("bar", "log"):
        raise ValueError(f"progress must be 'bar', 'log' or 'none', not {mode!r}")
    log = logger or logging.getLogger("mmfeat.progress")

    def make(feature_set: str, total: int, initial: int) -> FeatureSetProgress:
        extra = [factory(feature_set, total, initial) for factory in also]
        if mode == "bar":
            return FeatureSetProgress(feature_set, total, initial, [BarSink(feature_set, total, initial), *extra])
        sink = LogSink(log, interval)
        tracker = FeatureSetProgress(feature_set, total, initial, [sink, *extra])
        sink.start(tracker.snapshot())
        beating = [s for s in tracker.sinks if callable(getattr(s, "beat", None))]

        def beat() -> None:
            snap = tracker.snapshot()
            for s in beating:
                s.beat(snap)  # type: ignore[attr-defined]

        tracker.add_heartbeat(Heartbeat(beat, interval).start())
        return tracker

    return make


@contextlib.contextmanager
def track(job: "FeatureSetJob", progress: ProgressFactory | None) -> Iterator[None]:  # noqa: F821
    """While the block runs, the job's sub-batch reports feed a progress bar or log lines
    (nothing when ``progress`` is None); the last report says whether the block failed."""
    if progress is None:
        yield
        return
    tracker = progress(job.spec.name, len(job.planned.item_ids), job.done_rows())
    job.on_progress = tracker.shard
    ok = False
    try:
        yield
        ok = True
    finally:
        job.on_progress = None
        tracker.close(ok)


class _Forward(logging.Handler):
    """Re-logs a record on another logger (a Prefect run logger), keeping level and message."""

    def __init__(self, target: logging.Logger | logging.LoggerAdapter) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.log(record.levelno, "%s", record.getMessage())
        except Exception:  # noqa: BLE001 - logging must never sink a run (logging's own convention)
            self.handleError(record)


@contextlib.contextmanager
def forward_logs(target: logging.Logger | logging.LoggerAdapter, name: str = "mmfeat",
                 level: int = logging.INFO) -> Iterator[None]:
    """While the block runs, records of logger ``name`` (and its children) at ``level`` and above go
    to ``target`` instead of propagating: in a Prefect run they reach the run's log (UI and
    console) once, instead of being dropped by the root logger's WARNING level."""
    source = logging.getLogger(name)
    handler = _Forward(target)
    handler.setLevel(level)
    old_level, old_propagate = source.level, source.propagate
    source.addHandler(handler)
    if source.getEffectiveLevel() > level:
        source.setLevel(level)
    source.propagate = False
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.setLevel(old_level)
        source.propagate = old_propagate


def quiet_library_bars() -> dict[str, Any]:
    """Turn off the progress bars of Hugging Face libraries for this process ("Loading weights",
    "Fetching files", dataset map/save bars): the extraction's own bar or log lines say what runs.

    Called by the CLI and the flow, not at import. Libraries not imported yet read the environment
    variable when they load; ones already loaded are told directly.

    Returns:
        What was turned off (for tests and ``--debug``).
    """
    done: dict[str, Any] = {}
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    done["HF_HUB_DISABLE_PROGRESS_BARS"] = os.environ["HF_HUB_DISABLE_PROGRESS_BARS"]
    import sys

    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
        done["huggingface_hub"] = True
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()
        done["transformers"] = True
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
        done["datasets"] = True
    return done
