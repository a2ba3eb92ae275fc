"""The extract-features flow through a real (temporary) Prefect server, on the embedded sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from mmfeat.pipelines.store.feature_store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


def test_microlens_deployment_flow_on_sample(prefect_harness, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client  # noqa: F401

    from mmfeat.pipelines.flows.deployments import EXTRACT_DEPLOYMENTS
    from mmfeat.pipelines.flows.extract_flow import extract_features

    params = EXTRACT_DEPLOYMENTS["microlens"]
    out = extract_features(**params, feature_sets=["title_minilm"], store_root=str(tmp_path), tag="smoke")
    store = FeatureStore(tmp_path)
    (rep,) = out["feature_sets"]
    assert rep["rows"] == 40 and rep["errors"] == 0 and not rep["cache_hit"]
    m = store.manifest("microlens-mini", "title_minilm", "smoke")
    assert m["version"] == rep["version"] and m["lineage"]["source"]["kind"] == "microlens"
    assert m["featurizer"]["fingerprint"]["backbone"] == "all-MiniLM-L6-v2"
    store.verify("microlens-mini", "title_minilm")
    again = extract_features(**params, feature_sets=["title_minilm"], store_root=str(tmp_path))
    assert again["feature_sets"][0]["cache_hit"] and again["feature_sets"][0]["version"] == rep["version"]
    from prefect.artifacts import Artifact

    bar = Artifact.get("progress-microlens-mini-title-minilm")  # the UI's progress bar of the first run
    assert bar is not None and bar.type == "progress" and float(bar.data) == 100.0
    assert bar.description.startswith("title_minilm: 40/40 items (100%)") and "finished after" in bar.description


def test_flow_logs_progress_and_engine_lines_to_the_run_logger_without_a_bar(prefect_harness, tmp_path: Path,
                                                                            caplog, capsys) -> None:
    """Deployments log items done / total and items/s through the run logger (no tqdm bar in the
    run's log), and the engine's own lines (cache hit, no model loaded) reach the run's log too."""
    import logging

    from mmfeat.pipelines.flows.extract_flow import extract_features

    kw = dict(manifest="microlens", feature_sets=["title_minilm"], store_root=str(tmp_path))
    with caplog.at_level(logging.INFO):
        extract_features(**kw)
        extract_features(**kw)
    run_lines = [r.getMessage() for r in caplog.records if r.name == "prefect.flow_runs"]
    assert "title_minilm: starting, 0/40 items done" in run_lines
    assert any(line.startswith("title_minilm: 40/40 items (100%)") and "items/s" in line and "finished" in line
               for line in run_lines)
    assert any("cache hit, no model loaded" in line for line in run_lines)
    assert not [r for r in caplog.records if r.name == "mmfeat.extract"]  # forwarded once, not also propagated
    err = capsys.readouterr().err
    assert "it/s]" not in err and "item/s]" not in err and "Loading weights" not in err


def test_flow_with_broken_media_reports_rows_and_fails_over_threshold(prefect_harness, tmp_path: Path) -> None:
    """A sample copy where one item has no title: an error row with the reason; over the threshold
    the flow fails and publishes nothing."""
    from mmfeat.pipelines.flows.extract_flow import extract_features

    data = tmp_path / "data"
    shutil.copytree(REPO / "manifests" / "data" / "microlens-mini", data)
    titles = data / "MicroLens-100k_title_en.csv"
    lines = titles.read_text().splitlines()
    lines[2] = "2,"  # item 2 loses its title
    titles.write_text("\n".join(lines) + "\n")
    manifest = yaml.safe_load((REPO / "manifests" / "microlens.yaml").read_text())
    manifest["data_root"] = str(data)
    manifest["feature_sets"] = [manifest["feature_sets"][0]]
    manifest["failure_threshold"] = 0.0
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(manifest))
    store_root = tmp_path / "store"
    with pytest.raises(Exception, match="nothing published"):
        extract_features(manifest=str(path), store_root=str(store_root))
    assert FeatureStore(store_root).versions("microlens-mini", "title_minilm") == []
    manifest["failure_threshold"] = 0.2
    path.write_text(yaml.safe_dump(manifest))
    out = extract_features(manifest=str(path), store_root=str(store_root))
    assert out["feature_sets"][0]["errors"] >= 1
    errs = out["feature_sets"][0]["error_examples"]
    assert [(e["item_id"], e["stage"]) for e in errs] == [("2", "read")] and "no text" in errs[0]["error"]


def test_train_recommender_flow_reads_store_versions(prefect_harness, tmp_path: Path) -> None:
    """Extract title features, then train FREEDOM on them through the train-recommender flow; a grid is
    selected on validation and the record names the exact feature version and split."""
    from mmfeat.pipelines.flows.extract_flow import extract_features
    from mmfeat.pipelines.flows.train_flow import compare_runs, train_recommender

    ext = extract_features(manifest="microlens", feature_sets=["title_minilm"], store_root=str(tmp_path / "store"))
    version = ext["feature_sets"][0]["version"]
    out = train_recommender(manifest="microlens", model="FREEDOM", features={"text": "title_minilm"},
                            config={"epochs": 2}, grid={"learning_rate": [0.01, 0.001]},
                            store_root=str(tmp_path / "store"), runs_dir=str(tmp_path / "runs"))
    best = out["best"]
    assert best["feature_versions"] == {"text": f"microlens-mini/title_minilm/{version}"}
    assert len(out["runs"]) == 2 and Path(best["record_path"]).exists()
    assert 0.0 <= best["test"]["recall@20"] <= 1.0 and best["best_valid"]["recall@20"] > 0
    table = compare_runs([str(tmp_path / "runs" / r) for r in out["runs"]])
    assert table.count("FREEDOM") == 2 and version in table


def test_cli_train_versus_compares_two_feature_versions(prefect_harness, tmp_path: Path, capsys) -> None:
    """One command trains the same model on two feature versions (same split and seed) and prints both."""
    from mmfeat.pipelines.cli import main
    from mmfeat.pipelines.flows.extract_flow import extract_features

    store = str(tmp_path / "store")
    extract_features(manifest="microlens", feature_sets=["title_minilm"], store_root=store, tag="a")
    store_obj = FeatureStore(store)
    v = store_obj.resolve("microlens-mini", "title_minilm", "a")
    rc = main(["--store", store, "train", "microlens", "--model", "VBPR", "--feature", "text=title_minilm@a",
               "--versus", f"text=title_minilm@{v}", "--set", "epochs=2", "--runs", str(tmp_path / "runs")])
    assert rc == 0
    out = capsys.readouterr().out
    table = out[out.index("| run |"):]
    assert table.count("VBPR") == 2 and table.count(v) == 2
    rows = [line for line in table.splitlines() if line.startswith("| vbpr")]
    assert rows[0].split("|")[4:9] == rows[1].split("|")[4:9]  # same version, split and seed: same metrics


def test_progress_artifact_is_throttled_and_always_gets_the_last_update(monkeypatch) -> None:
    """Items complete many times a second: the artifact is updated at most every ``min_interval`` seconds,
    the heartbeat sends what was held back, the last update always goes out, and a Prefect error only
    stops the updates (with a warning), never the run."""
    import mmfeat.pipelines.flows.extract_flow as ef
    from mmfeat.pipelines.engine.progress import Snapshot

    calls: list[tuple] = []
    monkeypatch.setattr(ef, "create_progress_artifact", lambda **kw: calls.append(("create", kw)) or "id-1")
    monkeypatch.setattr(ef, "update_progress_artifact",
                        lambda artifact_id, progress, description: calls.append(("update", progress, description)))
    now = [0.0]
    sink = ef.ProgressArtifactSink(ef.artifact_key("progress", "MicroLens_mini", "cover.caption"), "cap", 40, 0,
                                   min_interval=2.0, clock=lambda: now[0])
    assert calls[0] == ("create", {"progress": 0.0, "key": "progress-microlens-mini-cover-caption",
                                   "description": "cap: starting, 0/40 items done"})

    def snap(done: int) -> Snapshot:
        return Snapshot("cap", done, 40, 0, now[0])

    for t, done in ((0.5, 1), (1.0, 2), (2.5, 3), (3.0, 4)):
        now[0] = t
        sink.update(snap(done))
    assert [c[1] for c in calls[1:]] == [7.5]  # only the update 2 s after the last send
    sink.beat(snap(4))
    assert calls[-1][1] == 10.0  # the heartbeat sent the held-back count
    sink.beat(snap(4))
    assert len(calls) == 3  # nothing new: nothing sent
    now[0] = 4.0
    sink.close(snap(40), ok=True)
    assert calls[-1][1] == 100.0 and calls[-1][2].endswith("(finished after 4.0 s)")

    def broken(*a, **kw):
        raise RuntimeError("server gone")

    monkeypatch.setattr(ef, "update_progress_artifact", broken)
    failing = ef.ProgressArtifactSink("k", "cap", 40, 0, clock=lambda: 100.0)
    failing.close(snap(40), ok=True)
    assert failing.artifact_id is None  # told once (a warning), no more tries


def test_runlog_follows_only_new_flow_run_lines_and_reads_the_rest_when_stopped(tmp_path: Path) -> None:
    """What scripts/demo.sh shows next to `--watch`: the flow run's own lines from the runner's log."""
    import io
    import threading

    from mmfeat.pipelines.flows.runlog import follow

    log = tmp_path / "serve.log"
    log.write_text("09:00:00.000 | INFO    | Flow run 'old-run' - title: 40/40 items (100%), 9.0 items/s\n")
    out, stop = io.StringIO(), threading.Event()
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("10:00:01.123 | INFO    | Flow run 'red-fox' - item_description: 16/40 items (40%), 1.9 items/s\n"
                "10:00:01.200 | INFO    | Task run 'item_description-shard-0' - Finished in state Completed()\n"
                "\x1b[33m10:00:02.000 | WARNING | Flow run 'red-fox' - skipping optional feature set cover_clip\x1b[0m\n"
                "10:00:03.000 | INFO    | Flow run 'red-fox' - cover_caption: same work")  # no newline yet
    stop.set()  # stopped: one last read, the unfinished line stays out
    assert follow(log, out, stop, offset=offset) == 2
    assert out.getvalue() == ("  10:00:01 item_description: 16/40 items (40%), 1.9 items/s\n"
                              "  10:00:02 WARNING: skipping optional feature set cover_clip\n")
