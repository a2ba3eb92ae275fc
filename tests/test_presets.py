"""Training presets (``--preset din-mmctr``): a published baseline's settings and search space, under the
user's explicit values; every key one the model declares."""
from __future__ import annotations

import pytest

from mmfeat.pipelines.cli import main
from mmfeat.pipelines.training.presets import PRESETS, PresetError, apply_preset
from mmfeat.recommenders.models.base import check_hyper_parameters, resolve_config
from tests.test_cli import _forbid, _one_error_line, store_dir  # noqa: F401 (fixture)


def test_din_mmctr_is_the_challenge_tuner_config():
    model, cfg, grid = apply_preset("din-mmctr", None, {}, {})
    assert model == "DIN"
    assert cfg == {"net_dropout": 0.1, "train_batch_size": 8192, "learning_rate": 1e-3, "stopping_step": 2}
    assert grid == {"embedding_regularizer": [1e-6, 1e-7]}


def test_explicit_values_win_over_the_preset():
    _, cfg, grid = apply_preset("DIN-MMCTR", "din", {"net_dropout": 0.0, "embedding_regularizer": 1e-5},
                                {"learning_rate": [1e-3, 1e-4]})
    assert cfg["net_dropout"] == 0.0 and cfg["embedding_regularizer"] == 1e-5
    assert "learning_rate" not in cfg and grid == {"learning_rate": [1e-3, 1e-4]}  # --set drops the preset's grid key
    assert apply_preset(None, "LightGCN", None, None) == ("LightGCN", {}, {})


@pytest.mark.parametrize("name, model, match", [("din-mmctrr", None, "unknown preset 'din-mmctrr'; presets: din-mmctr"),
                                                ("din-mmctr", "SASRec", "configures DIN, not SASRec")])
def test_a_wrong_preset_is_refused(name, model, match):
    with pytest.raises(PresetError, match=match):
        apply_preset(name, model, None, None)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_key_is_a_declared_hyper_parameter_with_a_valid_value(preset):
    p = PRESETS[preset]
    check_hyper_parameters(p.model, p.settings, where="preset")  # a typo would be ignored otherwise
    check_hyper_parameters(p.model, list(p.grid), where="preset grid")
    for values in zip(*p.grid.values()) if p.grid else [()]:
        resolve_config(p.model, {**p.settings, **dict(zip(p.grid, values))})  # pydantic bounds


def test_cli_refuses_a_preset_for_another_model_before_the_flow(store_dir, monkeypatch, capsys):
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    assert main(["train", "microlens", "--preset", "din-mmctr", "--model", "SASRec"]) == 2
    assert "configures DIN, not SASRec" in _one_error_line(capsys.readouterr().err)
    assert main(["train", "microlens", "--preset", "nope"]) == 2
    assert "presets: din-mmctr" in _one_error_line(capsys.readouterr().err)


def test_cli_takes_the_model_from_the_preset_and_keeps_set_values_over_it():
    import argparse

    from mmfeat.pipelines.cli.train import train_request

    ns = argparse.Namespace(feature=["text=text_minilm"], versus=None, set=["net_dropout=0.2"], grid=None,
                            preset="din-mmctr", model=None)
    req = train_request(ns)
    assert ns.model == "DIN" and req["overrides"]["net_dropout"] == 0.2
    assert req["overrides"]["train_batch_size"] == 8192 and req["grid"] == {"embedding_regularizer": [1e-6, 1e-7]}
    plain = argparse.Namespace(feature=None, versus=None, set=None, grid=None, preset=None, model=None)
    assert train_request(plain)["grid"] == {} and plain.model == "LightGCN"
