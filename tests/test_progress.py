"""Progress a person can see: items done / total and items/s per feature set, reported inside a
long shard (sub-batches), as a bar in a terminal and as log lines in Prefect; no library noise bars."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs, sub_batch_size, track
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.engine.progress import (FeatureSetProgress, Heartbeat, LogSink, Snapshot, forward_logs,
                                       progress_factory, quiet_library_bars)
from mmfeat.pipelines.store.feature_store import FeatureStore

SPEC = FeatureSetSpec(name="emb", kind="fake", input={"text_fields": ["title"]})


class Batches:
    """A deterministic 2-d embedder that records the size of every call."""

    name, input_kind, output = "batches", "text", OutputSpec("embedding", 2, "float32")

    def __init__(self, failing: frozenset[str] = frozenset()):
        self.calls: list[list[str]] = []
        self.failing = failing

    def fingerprint(self):
        return {"kind": "batches"}

    def __call__(self, inputs):
        self.calls.append(list(inputs))
        return [Result.failed("boom") if t in self.failing else Result(value=np.array([len(t), 1.0], np.float32))
                for t in inputs]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.updates: list[Snapshot] = []
        self.closed: list[tuple[Snapshot, bool]] = []

    def update(self, snap: Snapshot) -> None:
        self.updates.append(snap)

    def close(self, snap: Snapshot, ok: bool) -> None:
        self.closed.append((snap, ok))


def _items(titles: list[str]) -> pa.Table:
    return pa.table({"item_id": [f"{i:03d}" for i in range(len(titles))], "title": titles})


def _job(store, featurizer, titles, shard_size=8, sub_batch=None):
    return FeatureSetJob(store, "ds", SPEC, featurizer, plan_inputs(_items(titles), SPEC),
                         shard_size=shard_size, sub_batch=sub_batch)


def test_snapshot_line_and_rate_exclude_rows_done_by_an_earlier_run() -> None:
    snap = Snapshot("title", done=1200, total=3000, initial=200, elapsed=10.0)
    assert snap.rate == 100.0
    assert snap.line() == "title: 1,200/3,000 items (40%), 100.0 items/s"
    assert Snapshot("t", 0, 0, 0, 0.0).rate == 0.0


def test_tracker_sums_shards_and_a_retried_shard_starts_again_at_zero() -> None:
    clock, rec = FakeClock(), Recorder()
    tracker = FeatureSetProgress("emb", total=20, initial=8, sinks=[rec], clock=clock)
    tracker.shard(1, 4)
    clock.now += 2
    tracker.shard(1, 8)
    tracker.shard(2, 3)
    tracker.shard(2, 0)  # Prefect retries shard 2: its rows are not counted twice
    tracker.shard(2, 4)
    assert [s.done for s in rec.updates] == [12, 16, 19, 16, 20]
    snap = tracker.close()
    assert (snap.done, snap.elapsed, snap.rate) == (20, 2.0, 6.0)
    assert rec.closed == [(snap, True)]


def test_a_long_shard_is_featurized_in_sub_batches_with_progress_after_each(tmp_path: Path) -> None:
    titles = [f"t{i}" for i in range(7)] + ["t0"]  # one duplicate: computed once
    f = Batches()
    job = _job(FeatureStore(tmp_path), f, titles, shard_size=8, sub_batch=3)
    seen: list[tuple[int, int]] = []
    job.on_progress = lambda shard, done: seen.append((shard, done))
    with job.store.lock("ds", "emb"):
        job.compute_shard(0)
    assert [len(c) for c in f.calls] == [3, 3, 1]  # 7 unique inputs in sub-batches of 3
    assert seen == [(0, 0), (0, 4), (0, 7), (0, 8)]  # t0's two rows both count with the first sub-batch
    assert job.computed == 7


def test_sub_batches_give_the_same_rows_as_one_call_per_shard(tmp_path: Path) -> None:
    titles = [f"title {i}" for i in range(10)] + ["title 3", "title 4"]
    failing = frozenset({"title 4"})
    one = _job(FeatureStore(tmp_path / "a"), Batches(failing), titles, shard_size=12, sub_batch=100)
    many = _job(FeatureStore(tmp_path / "b"), Batches(failing), titles, shard_size=12, sub_batch=2)
    r1, r2 = one.run_all(0.5, progress=False), many.run_all(0.5, progress=False)
    assert len(one.featurizer.calls) == 1 and len(many.featurizer.calls) == 5
    assert r1.version == r2.version and (r1.errors, r1.computed) == (r2.errors, r2.computed) == (2, 10)
    t1 = one.store.read_table("ds", "emb").to_pylist()
    t2 = many.store.read_table("ds", "emb").to_pylist()
    assert t1 == t2


def test_reused_rows_count_as_done_before_any_featurizer_call(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    titles = [f"title {i}" for i in range(6)]
    _job(store, Batches(), titles, shard_size=6).run_all(0.5, progress=False)
    job = _job(store, Batches(), titles[:5] + ["new"], shard_size=6, sub_batch=4)
    seen: list[int] = []
    job.on_progress = lambda shard, done: seen.append(done)
    with store.lock("ds", "emb"):
        job.compute_shard(0)
    assert seen == [5, 6] and job.featurizer.calls == [["new"]]


def test_sub_batch_size_is_a_few_featurizer_batches() -> None:
    class WithBatch:
        batch_size = 64

    class Tiny:
        batch_size = 2

    assert sub_batch_size(WithBatch()) == 256
    assert sub_batch_size(Tiny()) == 32
    assert sub_batch_size(Batches()) == 256


def test_run_all_with_progress_draws_a_bar_of_items(tmp_path: Path, capsys) -> None:
    job = _job(FeatureStore(tmp_path), Batches(), [f"t{i}" for i in range(20)], shard_size=8, sub_batch=4)
    job.run_all(0.5, progress=True)
    err = capsys.readouterr().err
    assert "emb" in err and "20/20" in err and "item" in err


def test_track_on_a_resumed_job_starts_at_the_finished_shards_and_says_when_it_failed(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    job = _job(store, Batches(), [f"t{i}" for i in range(20)], shard_size=8)
    with store.lock("ds", "emb"):
        job.compute_shard(0)
    rec, made = Recorder(), []

    def factory(name, total, initial):
        made.append((name, total, initial))
        return FeatureSetProgress(name, total, initial, [rec])

    with pytest.raises(RuntimeError, match="interrupted"):
        with track(job, factory):
            job.compute_shard(1)
            raise RuntimeError("interrupted")
    assert made == [("emb", 20, 8)]
    (snap, ok), = rec.closed
    assert snap.done == 16 and ok is False and job.on_progress is None


def test_log_mode_writes_a_first_line_heartbeat_lines_and_a_last_line(caplog) -> None:
    logger = logging.getLogger("test.progress")
    beat = threading.Event()

    class Signalling(LogSink):
        def beat(self, snap: Snapshot) -> None:
            super().beat(snap)
            beat.set()

    with caplog.at_level(logging.INFO, logger="test.progress"):
        sink = Signalling(logger, interval=0.01)
        tracker = FeatureSetProgress("emb", total=10, initial=0, sinks=[sink])
        sink.start(tracker.snapshot())
        tracker.add_heartbeat(Heartbeat(lambda: sink.beat(tracker.snapshot()), 0.01).start())
        tracker.shard(0, 5)
        assert beat.wait(30), "the heartbeat never logged"
        tracker.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "emb: starting, 0/10 items done"
    assert any(line.startswith("emb: 5/10 items (50%)") for line in lines[1:-1])
    assert lines[-1].startswith("emb: 5/10 items (50%)") and "finished after" in lines[-1]


def test_log_mode_factory_stops_its_heartbeat_on_close() -> None:
    logger = logging.getLogger("test.progress.factory")
    tracker = progress_factory("log", logger, interval=3600)("emb", 4, 0)
    (hb,) = tracker._heartbeats
    assert hb._thread.is_alive()
    tracker.close()
    assert not hb._thread.is_alive()
    assert progress_factory("none") is None
    with pytest.raises(ValueError, match="bar', 'log' or 'none"):
        progress_factory("loud")  # type: ignore[arg-type]


def test_forward_logs_sends_engine_lines_to_the_run_logger_once() -> None:
    got: list[tuple[int, str]] = []

    class Target:
        def log(self, level, msg, *args):
            got.append((level, msg % args))

    engine = logging.getLogger("mmfeat.extract")
    propagated: list[str] = []

    class Root(logging.Handler):
        def emit(self, record):
            propagated.append(record.getMessage())

    root_handler = Root()
    logging.getLogger().addHandler(root_handler)
    try:
        with forward_logs(Target()):  # type: ignore[arg-type]
            engine.info("title: resuming run k, %d of %d shards left", 2, 5)
            engine.debug("not at INFO")
        engine.warning("after the block")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert got == [(logging.INFO, "title: resuming run k, 2 of 5 shards left")]
    assert "title: resuming run k, 2 of 5 shards left" not in propagated and "after the block" in propagated
    assert logging.getLogger("mmfeat").propagate is True


def test_quiet_library_bars_turns_off_transformers_and_hub_bars(monkeypatch) -> None:
    import datasets
    import huggingface_hub.utils as hub
    from transformers.utils import logging as tf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    try:
        done = quiet_library_bars()
        assert not tf_logging.is_progress_bar_enabled()
        assert hub.are_progress_bars_disabled()
        assert datasets.is_progress_bar_enabled() is False
        assert {"transformers", "huggingface_hub", "datasets"} <= set(done)
    finally:
        monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
        tf_logging.enable_progress_bar()
        hub.enable_progress_bars()
        datasets.enable_progress_bars()


def test_cli_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise() -> None:
    from mmfeat.pipelines.cli.extract import progress_mode

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_mode(Tty()) == "bar"
    assert progress_mode(io.StringIO()) == "log"


def test_hf_export_draws_no_saving_the_dataset_bar_and_leaves_bars_as_they_were(tmp_path: Path, capsys) -> None:
    import datasets

    from mmfeat.pipelines.store.exports import export_hf

    store = FeatureStore(tmp_path / "store")
    _job(store, Batches(), [f"t{i}" for i in range(5)]).run_all(0.5, progress=False)
    datasets.enable_progress_bars()
    capsys.readouterr()
    export_hf(store, "ds", "emb", tmp_path / "hf")
    assert "Saving the dataset" not in capsys.readouterr().err
    assert datasets.is_progress_bar_enabled()  # scoped: a notebook's own datasets bars stay on


class OneByOne:
    """A slow generator's shape: works item by item inside one call and says so after each item."""

    name, input_kind, output = "one-by-one", "text", OutputSpec("text")

    def __init__(self) -> None:
        self.calls: list[int] = []

    def fingerprint(self):
        return {"kind": "one-by-one"}

    def __call__(self, inputs):
        from mmfeat.featurizers.item_progress import items_done

        self.calls.append(len(inputs))
        out = []
        for text in inputs:
            out.append(Result(value=text.upper()))  # a real generator spends seconds here
            items_done(1)
        return out


def test_a_slow_featurizer_reports_progress_per_item_inside_one_sub_batch(tmp_path: Path) -> None:
    """The describer showed 0/40 items for minutes: one sub-batch held every item. Progress now follows the
    featurizer's own reports; duplicated inputs count their rows, and the exact count follows the call."""
    titles = [f"t{i}" for i in range(6)] + ["t0"]
    f = OneByOne()
    job = _job(FeatureStore(tmp_path), f, titles, shard_size=8)
    assert job.sub_batch >= 32  # one call for the whole shard
    seen: list[int] = []
    job.on_progress = lambda shard, done: seen.append(done)
    with job.store.lock("ds", "emb"):
        job.compute_shard(0)
    assert f.calls == [6]
    assert seen == [0, 2, 3, 4, 5, 6, 7, 7]  # "t0" (two rows) first, then one row per item, then the exact count


def test_item_reports_reach_the_log_and_extra_sinks_and_the_heartbeat_beats_them(tmp_path: Path, caplog) -> None:
    class Extra(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.beats: list[int] = []
            self.beaten = threading.Event()

        def beat(self, snap: Snapshot) -> None:
            self.beats.append(snap.done)
            self.beaten.set()

    extra: list[Extra] = []

    def also(name, total, initial):
        extra.append(Extra())
        return extra[-1]

    job = _job(FeatureStore(tmp_path), OneByOne(), [f"t{i}" for i in range(3)], shard_size=8)
    with caplog.at_level(logging.INFO, logger="test.items"):
        with track(job, progress_factory("log", logging.getLogger("test.items"), interval=0.01, also=[also])):
            with job.store.lock("ds", "emb"):
                job.compute_shard(0)
            assert extra[0].beaten.wait(30)
    (sink,) = extra
    assert [s.done for s in sink.updates] == [0, 1, 2, 3, 3] and sink.closed[0][1] is True
    assert caplog.records[-1].getMessage().startswith("emb: 3/3 items (100%)")
