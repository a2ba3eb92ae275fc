"""The main job's training edges: ``run_training`` without Prefect, the train deployment's defaults, what
``mmfeat train`` / ``mmfeat compare`` print, and the runner's shutdown settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

import mmfeat.pipelines.flows.train_flow as tf
from mmfeat.pipelines.cli import main
from mmfeat.pipelines.training.report import comparability_warnings, compare_text, metrics_table, run_summary
from tests.conftest import import_microlens_features

METRICS = {"recall@10": 0.11, "ndcg@10": 0.05, "recall@20": 0.22, "ndcg@20": 0.07}
RECORD = {"run_id": "freedom-a", "model": "FREEDOM", "dataset": "microlens-mini", "split_hash": "ab" * 32,
          "split": {"method": "random", "seed": 2024}, "selection": "best_valid",
          "config": {"seed": 2024, "metrics": ["Recall", "NDCG"], "topk": [10, 20], "valid_metric": "Recall@20"},
          "feature_versions": {"text": "microlens-mini/title_minilm/v-1"}, "best_valid": dict(METRICS),
          "test": {k: v / 2 for k, v in METRICS.items()}, "best_epoch": 7, "epochs": [{}] * 12,
          "stopped_early": True, "s_per_epoch": 0.031, "wall_s": 1.5, "peak_rss_mb": 900.0,
          "record_path": "runs/freedom-a/record.json"}


def _record(**changes) -> dict:
    rec = copy.deepcopy(RECORD)
    rec.update(changes)
    return rec


# ---------------------------------------------------------------------------- one run, runs side by side
def test_run_summary_is_a_table_of_best_epoch_metrics_not_a_dict() -> None:
    text = run_summary(RECORD)
    lines = text.splitlines()
    assert "{" not in text
    assert lines[0].startswith("FREEDOM on microlens-mini: split abababababab (random, seed 2024)")
    header = next(line for line in lines if "recall@10" in line).split()
    assert header == ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]
    assert next(line for line in lines if line.strip().startswith("valid")).split()[1:] == [
        "0.1100", "0.0500", "0.2200", "0.0700"]
    assert next(line for line in lines if line.strip().startswith("test")).split()[1:] == [
        "0.0550", "0.0250", "0.1100", "0.0350"]
    assert "best epoch 7, stopped early after 12 epochs (selected on valid), 0.031 s/epoch" in text


def test_run_summary_of_a_sparse_record_prints_dashes() -> None:
    text = run_summary({"run_id": "r", "record_path": "r", "best_valid": {}, "test": {"recall@20": float("nan")}})
    assert "-" in text and "nan" not in text


def test_compare_table_shows_dataset_and_split_hash() -> None:
    table = metrics_table([RECORD])
    head, _, row = table.splitlines()
    assert "| dataset | split |" in head
    assert "| microlens-mini | abababababab |" in row


def test_dataset_of_an_older_record_comes_from_its_feature_versions() -> None:
    rec = _record()
    del rec["dataset"]
    assert "| microlens-mini |" in metrics_table([rec])


def test_comparable_runs_give_no_warning() -> None:
    assert comparability_warnings([RECORD, _record(run_id="freedom-b", best_epoch=3)]) == []


@pytest.mark.parametrize("change, what", [
    ({"dataset": "movielens-100k"}, "different dataset"),
    ({"split_hash": "cd" * 32}, "different split hash"),
    ({"config": {**RECORD["config"], "topk": [5, 10]}}, "different metrics protocol"),
    ({"selection": "last_epoch"}, "different metrics protocol"),
])
def test_runs_that_differ_are_flagged_not_comparable(change, what) -> None:
    other = _record(run_id="other", **change)
    warnings = comparability_warnings([RECORD, other])
    assert len(warnings) == 1 and what in warnings[0] and "freedom-a" in warnings[0] and "other" in warnings[0]
    assert compare_text([RECORD, other]).splitlines()[-1] == warnings[0]


def test_cli_compare_warns_on_different_splits(tmp_path: Path, capsys) -> None:
    paths = []
    for name, split_hash in (("a", "ab" * 32), ("b", "cd" * 32)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps(_record(run_id=name, split_hash=split_hash)))
        paths.append(str(tmp_path / name))
    assert main(["compare", *paths]) == 0
    out = capsys.readouterr().out
    assert "abababababab" in out and "cdcdcdcdcdcd" in out
    assert "warning: runs are not comparable: different split hash" in out


def test_cli_train_prints_the_summary_table(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MMFEAT_STORE", str(tmp_path / "store"))
    monkeypatch.setattr(tf, "validate_train_request", lambda *a, **k: None)
    monkeypatch.setattr(tf, "train_recommender", lambda **kw: {"best": RECORD, "runs": ["freedom-a"]})
    assert main(["train", "microlens", "--model", "FREEDOM"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == run_summary(RECORD)


# ---------------------------------------------------------------------------- Prefect-free training
@pytest.fixture()
def microlens_store(tmp_path: Path) -> str:
    """The microlens sample's items with two imported 8-d feature versions (aliases a and b)."""
    return import_microlens_features(tmp_path, [("title_minilm", "a"), ("title_minilm", "b")])


def test_run_training_runs_without_prefect_and_trains_versus_on_the_same_split(microlens_store, tmp_path,
                                                                              monkeypatch, capsys) -> None:
    import prefect

    monkeypatch.setattr(prefect, "get_run_logger", lambda: pytest.fail("run_training must not need Prefect"))
    monkeypatch.setattr(tf, "get_run_logger", lambda: pytest.fail("run_training must not need Prefect"))
    out = tf.run_training("microlens", model="VBPR", features={"text": "title_minilm@a"},
                          versus={"text": "title_minilm@b"}, overrides={"epochs": 2}, store_root=microlens_store,
                          runs_dir=str(tmp_path / "runs"))
    first, second = out["best"], out["versus"]["best"]
    assert first["feature_versions"] != second["feature_versions"]
    assert first["split_hash"] == second["split_hash"] and first["config"]["seed"] == second["config"]["seed"]
    record = json.loads(Path(first["record_path"]).read_text())
    assert record["dataset"] == first["dataset"] == "microlens-mini" and record["manifest"] == "microlens"
    assert out["runs"] == [first["run_id"]] and out["data"]["split_hash"] == first["split_hash"]
    assert "it/s" not in capsys.readouterr().err  # no epoch bar when stderr is not a terminal (a served run's log)


def test_run_training_checks_the_request_first(microlens_store) -> None:
    with pytest.raises(tf.TrainRequestError, match="no_such_set"):
        tf.run_training("microlens", model="FREEDOM", features={"text": "no_such_set"}, store_root=microlens_store)


def test_microlens_train_deployment_reads_what_extract_builds() -> None:
    """train-recommender/microlens trains a multimodal model on feature sets of the microlens manifest
    that run offline (not the CLIP one), one per role the model reads."""
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.recommenders import check_features, get_model_class, resolve_config

    params = tf.TRAIN_DEPLOYMENTS["microlens"]
    cls = get_model_class(params["model"])
    assert set(params["features"]) == set(cls.modality_roles) == {"text", "image"}
    names = {fs.name for fs in load_manifest(params["manifest"]).feature_sets}
    assert set(params["features"].values()) <= names and "cover_clip" not in params["features"].values()
    check_features(params["model"], params["features"], resolve_config(params["model"], params.get("config")), [])


# ---------------------------------------------------------------------------- the runner's shutdown
def test_runner_does_not_pause_deployments_and_stops_on_sigterm_like_on_ctrl_c(monkeypatch) -> None:
    """Prefect's serve pauses every deployment on the way out and its SIGTERM handler leaves an un-awaited
    coroutine; ours does neither: SIGTERM becomes SIGINT, which Python handles even in a background job."""
    import signal

    from prefect.runner import Runner

    import mmfeat.pipelines.flows.deployments as deps

    added: list = []
    monkeypatch.setattr(Runner, "add_deployment", lambda self, dep: added.append(dep))
    old_int = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # how a script's background job starts
    try:
        runner = deps.build_runner(["d1", "d2"])
        assert added == ["d1", "d2"] and runner.pause_on_shutdown is False and runner.limit == 1
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            runner.handle_sigterm(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGINT, old_int)


def test_serve_main_says_when_the_runner_stopped(monkeypatch, capsys) -> None:
    import mmfeat.pipelines.flows.deployments as deps

    class Dep:
        flow_name, name = "extract-features", "microlens"

    class FakeRunner:
        async def start(self) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(deps, "deployments", lambda: [Dep()])
    monkeypatch.setattr(deps, "build_runner", lambda d: FakeRunner())
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        deps.main()
    err = capsys.readouterr().err
    assert "serving 1 deployments: extract-features/microlens (server http://127.0.0.1:1/api" in err
    assert "deployment runner stopped" in err


def test_serve_without_a_server_is_an_error_not_a_temporary_server(monkeypatch, capsys) -> None:
    import mmfeat.pipelines.flows.deployments as deps

    monkeypatch.setattr(deps, "deployments", lambda: pytest.fail("nothing is registered without a server"))
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(SystemExit) as exc:
        deps.main()
    assert exc.value.code == 2 and "PREFECT_API_URL is not set" in capsys.readouterr().err
