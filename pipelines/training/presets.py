"""Named training presets: a published baseline's hyper-parameters (and its search space) under one name.

A preset is what a paper or challenge baseline trained with, written once, so that ``mmfeat train
movielens-1m --preset din-mmctr`` runs that baseline instead of our model defaults. It fills the model,
``--set`` values and a ``--grid`` (selected on validation, as the baseline's tuner did); anything the user
sets explicitly wins over the preset, and the run record names the preset it used.

Imports nothing heavy (no torch, no Prefect): the CLI resolves presets before anything loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PresetError(ValueError):
    """An unknown preset, or a preset that does not fit the requested model."""


@dataclass(frozen=True)
class Preset:
    """One baseline's settings.

    Attributes:
        name: what users type (``--preset NAME``).
        model: the model it configures.
        settings: hyper-parameters over the model's defaults (our key names).
        grid: hyper-parameter -> values searched and selected on validation, as the baseline's tuner did.
        source: where each value comes from (repository, file); training logs it.
    """

    name: str
    model: str
    settings: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    source: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset(
        name="din-mmctr",
        model="DIN",
        # DIN_default (our defaults) + the challenge's tuner_space; Base.early_stop_patience 3 = FuxiCTR stops
        # after 3 non-improving epochs, which is our stopping_step 2 (stop when more than 2 in a row).
        # net_regularizer 0 is the baseline's value and the only one we implement (there is no key for it).
        settings={"net_dropout": 0.1, "train_batch_size": 8192, "learning_rate": 1e-3, "stopping_step": 2},
        grid={"embedding_regularizer": [1e-6, 1e-7]},
        source=("reczoo/WWW2025_MMCTR_Challenge: config/DIN_microlens_mmctr_tuner_config_01.yaml (tuner_space: "
                "embedding_regularizer [1e-6, 1e-7], net_regularizer 0, net_dropout 0.1, learning_rate 1e-3, "
                "batch_size 8192; its README: best validation AUC 0.8655 on MicroLens_1M_x1) on "
                "config/din_config/model_config.yaml (DIN_default, Base early_stop_patience 3)"),
    ),
    Preset(
        name="tiger-cpu",
        model="TIGER",
        # the paper's 128-d 4+4-layer model is 7.4x the work per target: one thread trains 982k ML-1M targets
        # (one epoch of sub-sequences) in about 5.2 hours at the paper size, 42 minutes at this one (bfloat16,
        # 19.1 vs 2.6 ms per target; bench/generative/tiger_speed.py)
        settings={"hidden_size": 64, "n_heads": 2, "head_size": 32, "inner_size": 256, "n_layers": 2},
        source=("TIGER at RecBole's SASRec size (SASRec.yaml: hidden_size 64, inner_size 256, n_layers 2, "
                "n_heads 2), so TIGER and SASRec compare at one model size on a CPU budget"),
    ),
)}


def preset_names() -> list[str]:
    """The preset names, sorted (for ``--help`` and messages)."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive).

    Raises:
        PresetError: no preset has that name (the message lists the ones that exist).
    """
    preset = PRESETS.get(name.strip().lower())
    if preset is None:
        raise PresetError(f"unknown preset {name!r}; presets: {', '.join(preset_names())}")
    return preset


def apply_preset(name: str | None, model: str | None, overrides: dict[str, Any] | None,
                 grid: dict[str, list[Any]] | None) -> tuple[str | None, dict[str, Any], dict[str, list[Any]]]:
    """The model, overrides and grid of a request once the preset ``name`` is applied.

    Explicit values win: a key in ``overrides`` replaces the preset's setting and removes the preset's grid
    over that key; a key in ``grid`` replaces the preset's grid (and its setting).

    Args:
        name: the preset, or None (the request is returned unchanged).
        model: the requested model, or None to take the preset's.
        overrides: the user's ``--set`` values.
        grid: the user's ``--grid`` values.

    Returns:
        ``(model, overrides, grid)`` to train with.

    Raises:
        PresetError: unknown preset, or ``model`` is not the preset's model.

    Example:
        >>> apply_preset("din-mmctr", None, {"epochs": 3}, None)[1]["train_batch_size"]
        8192
    """
    overrides, grid = dict(overrides or {}), dict(grid or {})
    if name is None:
        return model, overrides, grid
    preset = get_preset(name)
    if model is not None and model.lower() != preset.model.lower():
        raise PresetError(f"preset {preset.name!r} configures {preset.model}, not {model}; drop --model or the preset")
    settings = {k: v for k, v in preset.settings.items() if k not in overrides and k not in grid}
    preset_grid = {k: list(v) for k, v in preset.grid.items() if k not in overrides and k not in grid}
    return preset.model, {**settings, **overrides}, {**preset_grid, **grid}
