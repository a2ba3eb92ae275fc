"""Sequential models through the same request path as the graph models: run_training, --versus arms
(features vs features vs IDs on one split), records naming versions and the split, the CLI checks."""
import json
from pathlib import Path

import pytest

from mmfeat.pipelines.training import run as tr
from mmfeat.pipelines.cli import main
from tests.conftest import import_microlens_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def microlens_store(tmp_path: Path) -> str:
    """The microlens sample's items with two imported 8-d feature sets (title_minilm, description_minilm)."""
    return import_microlens_features(tmp_path, [("title_minilm", None), ("description_minilm", None)])


SMALL = {"epochs": 2, "hidden_size": 16, "inner_size": 16, "max_seq_length": 10}


def test_sasrec_titles_vs_descriptions_vs_ids_on_one_split(microlens_store, tmp_path):
    out = tr.run_training("microlens", model="SASRec", features={"text": "title_minilm"},
                          versus=[{"text": "description_minilm"}, "ids"], overrides=SMALL,
                          store_root=microlens_store, runs_dir=str(tmp_path / "runs"))
    bests = [arm["best"] for arm in out["arms"]]
    assert [b["data"]["item_repr"] for b in bests] == ["feature", "feature", "id"]
    assert {b["split_hash"] for b in bests} == {out["data"]["split_hash"]}
    assert bests[0]["feature_versions"]["text"].startswith("microlens-mini/title_minilm/v-")
    assert bests[1]["feature_versions"]["text"].startswith("microlens-mini/description_minilm/v-")
    assert bests[2]["feature_versions"] == {}
    record = json.loads(Path(bests[0]["record_path"]).read_text())
    assert record["split"]["method"] == "loo" and record["split"]["dropped_users"] == 0
    assert record["config"]["valid_metric"] == "ndcg@10" and "hit@10" in record["test"]
    assert Path(out["data"]["split_file"]).is_file()


def test_a_grid_trains_sequential_models_selected_on_valid(microlens_store, tmp_path):
    """grid_search asked the data for ``valid`` user-item pairs, which next-item sequences (and CTR rows) have
    no attribute for: every sequential grid failed with AttributeError."""
    out = tr.run_training("microlens", model="SASRec", overrides={**SMALL, "epochs": 1},
                          grid={"learning_rate": [1e-3, 1e-2]}, store_root=microlens_store,
                          runs_dir=str(tmp_path / "runs"))
    assert sorted(r["config"]["learning_rate"] for r in out["records"]) == [1e-3, 1e-2]
    assert out["best"]["run_id"] in out["runs"]


def test_sequential_models_refuse_other_splits(microlens_store):
    with pytest.raises(tr.TrainRequestError, match="leave-one-out"):
        tr.validate_train_request("microlens", model="SASRec", features={}, versus=None, overrides=None, grid=None,
                                  store_root=microlens_store, split="random")


def test_cli_versus_ids_and_comma_arms(monkeypatch):
    seen = {}

    def fake_validate(manifest, **kw):
        seen.update(kw)
        raise tr.TrainRequestError("stop here")

    monkeypatch.setattr("mmfeat.pipelines.flows.train_flow.validate_train_request", fake_validate)
    rc = main(["train", "microlens", "--model", "SASRec", "--feature", "text=a", "--versus", "text=b,image=c",
               "--versus", "ids", "--split", "loo"])
    assert rc == 2 and seen["versus"] == [{"text": "b", "image": "c"}, "ids"] and seen["split"] == "loo"
    assert tr.versus_arms({"text": "a"}, seen["versus"]) == [{"text": "a"}, {"text": "b", "image": "c"}, {}]


@pytest.mark.parametrize("name", ["microlens", "movielens-100k", "microlens-sasrec", "movielens-1m-din",
                                  "microlens-tiger"])
def test_every_train_deployment_reads_feature_sets_its_manifest_builds(name):
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.flows.train_flow import TRAIN_DEPLOYMENTS
    from mmfeat.recommenders import check_features, resolve_config

    params = TRAIN_DEPLOYMENTS[name]
    names = {fs.name for fs in load_manifest(params["manifest"]).feature_sets}
    assert set(params["features"].values()) <= names
    check_features(params["model"], params["features"], resolve_config(params["model"], params.get("config")), [])


def test_cli_trains_sasrec_through_the_flow_and_prints_every_arm(prefect_harness, microlens_store, tmp_path,
                                                                  capsys):
    rc = main(["train", "microlens", "--model", "SASRec", "--feature", "text=title_minilm", "--versus", "ids",
               "--set", "epochs=1", "--set", "hidden_size=16", "--set", "inner_size=16", "--store", microlens_store,
               "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "SASRec on microlens-mini" in out and "(items: feature)" in out and "(items: id)" in out
    assert "valid ndcg@10" in out and "test hit@10" in out  # the compare table of both arms, sequential metrics


def test_compare_warns_when_history_masking_differs():
    from mmfeat.pipelines.training.report import comparability_warnings

    base = {"run_id": "a", "dataset": "d", "split_hash": "h", "test": {"hit@10": 0.1},
            "config": {"metrics": ["hit"], "topk": [10], "valid_metric": "ndcg@10", "mask_history": False,
                       "max_seq_length": 50}}
    other = {**base, "run_id": "b", "config": {**base["config"], "mask_history": True}}
    assert comparability_warnings([base, dict(base, run_id="c")]) == []
    assert any("metrics protocol" in w for w in comparability_warnings([base, other]))
