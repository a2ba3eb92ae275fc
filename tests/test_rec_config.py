"""Strict recommender configs and train requests: declared hyper-parameters, modality roles, seeds,
store references, all checked before data loads."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmfeat.recommenders.trainer as trainer_mod
from mmfeat.recommenders import build_model, fit, from_split_frame, grid_search
from mmfeat.recommenders.models import get_model_class

# ConfigError is a ValueError: the tests match on ValueError so that, on code without the rules, they
# fail on the missing error rather than on an import.

TINY = {"epochs": 2, "train_batch_size": 128, "embedding_size": 8, "topk": [5, 10, 20], "eval_batch_size": 64}


@pytest.fixture(scope="module")
def tiny():
    """30 users x 8 random items of 24; text and image features with store versions."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}", k) for u in range(30) for k, i in enumerate(rng.choice(24, 8, replace=False))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["split"] = np.select([df["timestamp"] == 6, df["timestamp"] == 7], [1, 2], 0)
    ids = [f"i{i}" for i in range(24)]
    feats = {"text": (ids, rng.normal(size=(24, 6))), "image": (ids, rng.normal(size=(24, 4)))}
    return from_split_frame(df, features=feats, feature_versions={"text": "ds/t/v-1", "image": "ds/i/v-2"})


# ---------------------------------------------------------------------------- hyper-parameter names
def test_unknown_hyper_parameter_names_the_closest_key(tiny):
    with pytest.raises(ValueError, match=r"unknown hyper-parameter 'n_layer'.*did you mean n_layers\?"):
        fit(tiny, "LightGCN", {**TINY, "n_layer": 3}, progress=False)
    with pytest.raises(ValueError, match="did you mean learning_rate"):
        build_model("FREEDOM", tiny, {"learning_rte": 0.1})


def test_unknown_grid_key_fails_before_any_training(tiny, monkeypatch):
    def no_fit(*a, **k):
        raise AssertionError("trained before checking the grid")

    monkeypatch.setattr(trainer_mod, "fit", no_fit)
    with pytest.raises(ValueError, match="did you mean reg_weight"):
        grid_search(tiny, "LightGCN", {"n_layers": [1], "reg_wieght": [0.1]}, TINY)


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(KeyError, match=r"unknown model 'FREEDOMM'; did you mean FREEDOM\? models: .*LightGCN"):
        get_model_class("FREEDOMM")
    from mmfeat.recommenders import model_names

    assert {"FREEDOM", "LightGCN", "VBPR", "LATTICE", "BM3", "DGVAE", "BPR"} <= set(model_names())


def test_every_key_the_code_reads_is_declared():
    """The declaration is the source of valid keys, so it must cover every ``hp("...")`` a model reads."""
    from mmfeat.recommenders import declared_keys, model_names

    for name in model_names():
        cls = get_model_class(name)
        src = Path(__import__(cls.__module__, fromlist=["x"]).__file__).read_text()
        read = set(re.findall(r"""\bhp\(\s*["']([A-Za-z_]+)["']""", src))
        assert read <= declared_keys(name), (name, read - declared_keys(name))
        assert {f"{r}_feature" for r in cls.modality_roles} <= set(cls.defaults), name
    assert set(trainer_mod.REQUIRED_KEYS) <= declared_keys("BPR")


# ---------------------------------------------------------------------------- modality roles
def test_feature_no_role_reads_is_an_error():
    from mmfeat.recommenders import ConfigError, check_features, resolve_config

    with pytest.raises(ConfigError, match="LightGCN uses no item features.*'image'"):
        check_features("LightGCN", ["image"], resolve_config("LightGCN"))
    with pytest.raises(ConfigError, match=r"FREEDOM has no modality role reading feature 'imag'; did you mean image\?"):
        check_features("FREEDOM", ["imag"], resolve_config("FREEDOM"))
    with pytest.raises(ConfigError, match="'image'"):  # the role is switched off in the config
        check_features("VBPR", ["text", "image"], resolve_config("VBPR", {"image_feature": None}))
    check_features("VBPR", ["text", "image"], resolve_config("VBPR"))
    check_features("VBPR", ["t2"], resolve_config("VBPR"), [resolve_config("VBPR", {"text_feature": "t2"})])


def test_run_record_lists_only_the_features_the_model_read(tiny):
    rec = fit(tiny, "VBPR", {**TINY, "image_feature": None}, progress=False)
    assert rec.feature_versions == {"text": "ds/t/v-1"} and rec.missing_features == {"text": 0}
    assert list(rec.data["features"]) == ["text"]
    cf = fit(tiny, "LightGCN", TINY, progress=False)
    assert cf.feature_versions == {} and cf.data["features"] == {}


# ---------------------------------------------------------------------------- train requests (pipelines)
@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> str:
    """A store holding microlens-mini/title_minilm (embeddings, aliases latest and a) and a text set."""
    from mmfeat.pipelines.store.feature_store import FeatureStore, build_rows, row_schema

    root = tmp_path_factory.mktemp("store")
    store = FeatureStore(root)
    ids = [str(i) for i in range(1, 41)]

    def publish(fs: str, kind: str, values: list, aliases: tuple[str, ...]) -> None:
        schema = row_schema(kind, 4 if kind == "embedding" else None, "float32" if kind == "embedding" else None)
        w = store.writer("microlens-mini", fs, f"r-{fs}", {"n": len(ids)})
        w.write_part(0, build_rows(schema, ids, values, [None] * len(ids), [None] * len(ids), [f"h{i}" for i in ids]))
        w.publish({"output": {"kind": kind, "dim": 4 if kind == "embedding" else None,
                              "dtype": "float32" if kind == "embedding" else None},
                   "featurizer": {"name": "t", "kind": "t", "fingerprint": {}, "fingerprint_hash": fs},
                   "lineage": {"parents": {}}, "input": {}}, aliases=aliases)

    rng = np.random.default_rng(0)
    publish("title_minilm", "embedding", list(rng.normal(size=(40, 4)).astype(np.float32)), ("latest", "a"))
    publish("item_description", "text", [f"item {i}" for i in ids], ("latest",))
    return str(root)


def _request(store_root: str, **kw) -> None:
    from mmfeat.pipelines.flows.train_flow import validate_train_request

    args = {"model": "FREEDOM", "features": {"text": "title_minilm"}, "versus": None, "overrides": None,
            "grid": None, "store_root": store_root}
    validate_train_request("microlens", **{**args, **kw})


@pytest.mark.parametrize("kw, message", [
    ({"model": "FREEDOMM"}, r"unknown model 'FREEDOMM'; did you mean FREEDOM\? models: "),
    ({"overrides": {"learning_rte": 0.1}}, r"'learning_rte' in --set for FREEDOM; did you mean learning_rate\?"),
    ({"grid": {"reg_wieght": [0.1]}}, r"'reg_wieght' in --grid for FREEDOM; did you mean reg_weight\?"),
    ({"grid": {"reg_weight": []}}, "non-empty list"),
    ({"overrides": {"split_seed": 3}}, "'split_seed' in --set is not a hyper-parameter"),
    ({"model": "LightGCN", "features": {"image": "title_minilm"}}, "LightGCN uses no item features"),
    ({"features": {"imag": "title_minilm"}}, r"no modality role reading feature 'imag'; did you mean image\?"),
    ({"features": {}}, "FREEDOM needs item features"),
    ({"features": {"text": "title_minlm"}},  # the real name suggested, never the typo as a command
     r"no feature set 'title_minlm' in manifest 'microlens' or in the store .*; did you mean title_minilm\?$"),
    ({"features": {"text": "title_minilm@nope"}}, r"'nope' is not a version or alias.*mmfeat store list"),
    ({"features": {"text": "@a"}}, "no feature set name"),
    ({"versus": {"text": "cover_clip"}},
     r"--versus text=cover_clip: .*`mmfeat extract microlens --feature-set cover_clip`"),
    ({"versus": {"image": "title_minilm"}, "model": "LightGCN", "features": {}}, "LightGCN uses no item features"),
    ({"features": {"text": "item_description"}}, "holds text, not embeddings"),
    ({"seed": 1, "overrides": {"seed": 2}}, r"training seed given twice with different values"),
    ({"seed": 1, "grid": {"seed": [1, 2]}}, "the grid varies 'seed'"),
])
def test_invalid_train_request_is_one_line_before_data_loads(store_root, monkeypatch, kw, message):
    from mmfeat.pipelines.engine import extract as extract
    from mmfeat.pipelines.flows.train_flow import TrainRequestError

    monkeypatch.setattr(extract, "load_items", lambda *a, **k: pytest.fail("validation loaded data"))
    with pytest.raises(TrainRequestError, match=message) as info:
        _request(store_root, **kw)
    assert "\n" not in str(info.value)


def test_valid_train_request_passes_without_loading_data(store_root, monkeypatch):
    from mmfeat.pipelines.engine import extract as extract

    monkeypatch.setattr(extract, "load_items", lambda *a, **k: pytest.fail("validation loaded data"))
    _request(store_root, features={"text": "title_minilm@a"}, versus={"text": "title_minilm@latest"},
             overrides={"epochs": 2, "seed": 7}, grid={"learning_rate": [0.01, 0.001]}, seed=7)
    _request(store_root, model="lightgcn", features=None, overrides={"n_layers": 1})


def test_known_models_lists_the_registry():
    from mmfeat.pipelines.flows.train_flow import known_models
    from mmfeat.recommenders import model_names

    assert known_models() == model_names() and "FREEDOM" in known_models()


# ---------------------------------------------------------------------------- split seed vs training seed
def test_training_seed_resolution():
    from mmfeat.pipelines.flows.train_flow import DEFAULT_SEED, TrainRequestError, resolve_training_seed

    assert resolve_training_seed(None, None) == DEFAULT_SEED == 2024
    assert resolve_training_seed(5, {"seed": 5}) == 5 and resolve_training_seed(None, {"seed": 6}) == 6
    assert resolve_training_seed(None, {}, {"seed": [1, 2]}) is None
    with pytest.raises(TrainRequestError):
        resolve_training_seed(5, {"seed": 6})


def test_split_seed_and_training_seed_are_separate_and_recorded(tmp_path):
    from mmfeat.pipelines.flows.train_flow import load_training_data
    from mmfeat.recommenders import split_interactions

    data, info = load_training_data("microlens", {}, split_seed=7, runs_dir=str(tmp_path))
    default, _ = load_training_data("microlens", {}, runs_dir=str(tmp_path))
    assert info["split"] == data.split_info == {"method": "random", "seed": 7}
    assert default.split_info == {"method": "random", "seed": 2024}
    assert data.split_hash != default.split_hash
    # no split seed given = today's default split (seed 2024)
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.recommenders import hash_split_frame

    df = load_items(load_manifest("microlens"))[1].to_pandas()
    assert default.split_hash == hash_split_frame(split_interactions(df, "random", seed=2024))
    a = fit(data, "BPR", {**TINY, "seed": 3}, progress=False)
    b = fit(data, "BPR", {**TINY, "seed": 4}, progress=False)
    assert a.split == b.split == {"method": "random", "seed": 7}
    assert (a.config["seed"], b.config["seed"]) == (3, 4)
    assert [e["loss"] for e in a.epochs] != [e["loss"] for e in b.epochs]  # same split, another training seed


def test_train_flow_takes_split_seed_and_seed_separately(prefect_harness, store_root, tmp_path):
    from mmfeat.pipelines.flows.train_flow import TrainRequestError, train_recommender

    kw = {"manifest": "microlens", "model": "LightGCN", "config": {"epochs": 1, "embedding_size": 8},
          "store_root": store_root, "runs_dir": str(tmp_path)}
    default = train_recommender(**kw)["best"]
    assert default["split"] == {"method": "random", "seed": 2024} and default["config"]["seed"] == 2024
    both = train_recommender(**kw, split_seed=3, seed=4)["best"]
    assert both["split"] == {"method": "random", "seed": 3} and both["config"]["seed"] == 4
    via_set = train_recommender(**{**kw, "config": {**kw["config"], "seed": 4}}, split_seed=3)["best"]
    assert via_set["config"]["seed"] == 4 and via_set["split_hash"] == both["split_hash"]
    assert [e["loss"] for e in via_set["epochs"]] == [e["loss"] for e in both["epochs"]]
    with pytest.raises(TrainRequestError, match="given twice"):
        train_recommender(**{**kw, "config": {**kw["config"], "seed": 5}}, seed=4)


def test_min_rating_on_a_source_without_ratings_is_a_request_error() -> None:
    """One split path for training and the MMRec export; a filter that cannot apply is a usage error
    (exit 2, one line), not a bare ValueError from inside the flow."""
    from mmfeat.pipelines.cli.errors import classify
    from mmfeat.pipelines.training.interactions import SplitRequestError, filtered_split
    from mmfeat.pipelines.manifest import load_manifest

    with pytest.raises(SplitRequestError, match="needs ratings") as info:
        filtered_split(load_manifest("microlens"), min_rating=4)
    code, line = classify(info.value)
    assert code == 2 and "drop --min-rating" in line


# ---------------------------------------------------------------------------- typed values
@pytest.mark.parametrize("model, overrides, message", [
    ("FREEDOM", {"knn_k": "ten"}, r"hyper-parameter 'knn_k' in config for FREEDOM must be int, got 'ten'"),
    ("LightGCN", {"n_layers": 1.5}, r"'n_layers' .* must be int, got 1.5"),
    ("LightGCN", {"n_layers": True}, r"'n_layers' .* must be int, got True \(a boolean\)"),
    ("BPR", {"reg_weight": [0.1]}, r"'reg_weight' .* must be float"),
    ("BPR", {"topk": 10}, r"'topk' .* must be list\[int\]"),
    ("DGVAE", {"user_sampling": "some"}, r"'user_sampling' .* must be Literal\['inverse_degree', 'all'\]"),
    ("FREEDOM", {"dropout": 1.5}, r"'dropout' .* must be float, got 1.5 \(input should be less than 1"),
    ("BPR", {"learning_rate_scheduler": [0.9]}, r"'learning_rate_scheduler'"),
])
def test_wrong_type_is_an_error_naming_the_key(tiny, model, overrides, message):
    from mmfeat.recommenders import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=message) as info:
        resolve_config(model, overrides)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):
        build_model(model, tiny, overrides)


def test_values_are_coerced_to_the_declared_types():
    """What the CLI's YAML reading of ``--set`` gives (ints for floats, strings for exponents) and what a
    Python caller gives end in the same typed config."""
    from mmfeat.recommenders import resolve_config

    cfg = resolve_config("LATTICE", {"reg_weight": 0, "learning_rate": "1e-3", "knn_k": 4.0, "text_feature": 7,
                                     "topk": (5, 10), "image_feature": None})
    assert cfg["reg_weight"] == 0.0 and isinstance(cfg["reg_weight"], float)
    assert cfg["learning_rate"] == 1e-3 and cfg["knn_k"] == 4 and isinstance(cfg["knn_k"], int)
    assert cfg["text_feature"] == "7" and cfg["topk"] == [5, 10] and cfg["image_feature"] is None
    assert cfg["learning_rate_scheduler"] == [0.96, 50.0]  # LATTICE's yaml overrides the trainer default
    assert resolve_config("BPR")["learning_rate_scheduler"] == [1.0, 50.0]


def test_set_values_parsed_by_the_cli_are_typed():
    from mmfeat.pipelines.cli.args import parse_settings
    from mmfeat.recommenders import resolve_config

    cfg = resolve_config("FREEDOM", parse_settings(["learning_rate=1e-3", "knn_k=5", "reg_weight=0",
                                                    "early_stopping=false", "image_feature=null"]))
    assert (cfg["learning_rate"], cfg["knn_k"], cfg["reg_weight"]) == (1e-3, 5, 0.0)
    assert cfg["early_stopping"] is False and cfg["image_feature"] is None


def test_defaults_and_grid_are_views_of_the_one_declaration():
    from mmfeat.recommenders import default_config
    from mmfeat.recommenders.models import OVERALL_DEFAULTS
    from mmfeat.recommenders.models.lightgcn import LightGCN, LightGCNConfig

    assert LightGCN.config_class is LightGCNConfig
    assert LightGCN.defaults == {"embedding_size": 64, "n_layers": 2, "reg_weight": 1e-4}
    assert LightGCN.grid == {"n_layers": [1, 2, 3, 4], "reg_weight": [1e-02, 1e-03, 1e-04, 1e-05, 1e-06]}
    assert default_config("LightGCN") == {**OVERALL_DEFAULTS, **LightGCN.defaults}


def test_wrong_grid_value_fails_before_any_training(tiny, monkeypatch):
    def no_fit(*a, **k):
        raise AssertionError("trained before checking the grid")

    monkeypatch.setattr(trainer_mod, "fit", no_fit)
    with pytest.raises(ValueError, match=r"'n_layers' in grid for LightGCN must be int, got 'two'"):
        grid_search(tiny, "LightGCN", {"n_layers": [1, "two"]}, TINY)


@pytest.mark.parametrize("kw, message", [
    ({"overrides": {"knn_k": "ten"}}, r"'knn_k' in --set for FREEDOM must be int, got 'ten'"),
    ({"grid": {"reg_weight": [0.1, "lots"]}}, r"'reg_weight' in --grid for FREEDOM must be float, got 'lots'"),
])
def test_mistyped_train_request_is_one_line_before_data_loads(store_root, monkeypatch, kw, message):
    from mmfeat.pipelines.engine import extract as extract
    from mmfeat.pipelines.flows.train_flow import TrainRequestError

    monkeypatch.setattr(extract, "load_items", lambda *a, **k: pytest.fail("validation loaded data"))
    with pytest.raises(TrainRequestError, match=message) as info:
        _request(store_root, **kw)
    assert "\n" not in str(info.value)
