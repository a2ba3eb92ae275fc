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
