"""Strict, typed recommender configs: every key a model or the trainer reads is declared with a type and a
default, nothing else is accepted.

The declaration is one pydantic model per model (:class:`TrainerConfig` -- MMRec's overall.yaml -- subclassed
by the model, which adds its own keys, re-declares the trainer defaults its yaml overrides, and marks its
search space with ``param(..., grid=[...])``). A key outside it would be ignored by the code, so a typo
(``--set learning_rte=0.1``) would silently train with the default; here it is a :class:`ConfigError`
naming the closest declared key. A value of the wrong type (``--set knn_k=ten``) is a :class:`ConfigError`
naming the key and the type; a value of an accepted spelling is coerced to the declared type (``"1e-3"``
and ``1`` to float, ``2.0`` to int, a number to str), so ``--set`` values, which the CLI reads as YAML
scalars, and Python values give the same config. Booleans are never numbers here (pydantic would read
``True`` as 1): ``--set n_layers=true`` is an error.

This module holds the model-independent part (pure functions of names and declarations); the registry-aware
functions live in :mod:`mmfeat.recommenders.models.base`.
"""
from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(ValueError):
    """A recommender config that cannot run; the message is one line saying what is wrong and what to do."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (difflib ratio >= 0.6, case-insensitive), or None."""
    by_lower = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return by_lower[match[0]] if match else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``" did you mean X?"`` for the closest candidate, or ``""`` when none is close."""
    match = closest(name, candidates)
    return f" did you mean {match}?" if match else ""


def check_keys(keys: Iterable[str], declared: Iterable[str], *, owner: str, where: str = "config") -> None:
    """Raise :class:`ConfigError` for the first key of ``keys`` that is not ``declared``.

    Args:
        keys: the keys a caller set (``--set`` / ``--grid`` names, a config dict's keys).
        declared: every key ``owner`` reads.
        owner: what the keys configure (a model name), for the message.
        where: where the keys came from (``"--set"``, ``"--grid"``, ``"config"``), for the message.

    Raises:
        ConfigError: naming the unknown key and the closest declared key.
    """
    declared = sorted(set(declared))
    unknown = [k for k in keys if k not in declared]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"unknown hyper-parameter {key!r} in {where} for {owner};{did_you_mean(key, declared)} "
                          f"valid keys: {', '.join(declared)}")


# ---------------------------------------------------------------------------- typed declarations
def param(default: Any, *, grid: Iterable[Any] | None = None, **constraints: Any) -> Any:
    """A declared hyper-parameter: its default, optionally MMRec's search space (``grid``) and pydantic
    constraints (``ge``, ``gt``, ``le``, ``lt``, ``min_length``, ...). Mutable defaults are copied per config
    by pydantic, so ``param([64, 64])`` is safe."""
    extra = {"grid": list(grid)} if grid is not None else None
    return Field(default, json_schema_extra=extra, **constraints)


class TrainerConfig(BaseModel):
    """Training/evaluation keys shared by every model: MMRec's src/configs/overall.yaml (plus two of ours).

    A model's config subclasses this one; re-declaring a field there overrides its default for that model
    (LATTICE's ``learning_rate_scheduler``).
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, validate_default=True)

    seed: int = param(999)
    embedding_size: int = param(64, ge=1)
    weight_decay: float = param(0.0, ge=0.0)
    epochs: int = param(1000, ge=1)
    stopping_step: int = param(20, ge=0)
    train_batch_size: int = param(2048, ge=1)
    learner: str = param("adam")
    learning_rate: float = param(1e-3, ge=0.0)
    #: lr * s[0] ** (epoch / s[1]); [1.0, 50] = constant
    learning_rate_scheduler: list[float] = param([1.0, 50.0], min_length=2, max_length=2)
    eval_step: int = param(1, ge=1)
    topk: list[int] = param([5, 10, 20, 50], min_length=1)
    metrics: list[str] = param(["recall", "ndcg", "precision", "map"], min_length=1)
    valid_metric: str = param("recall@20")
    eval_batch_size: int = param(4096, ge=1)
    #: keyword arguments of torch.nn.utils.clip_grad_norm_ (``{"max_norm": 5.0}``), None = no clipping
    clip_grad_norm: dict[str, float] | None = param(None)
    # ours, not MMRec's:
    device: str | None = param(None)  # None: cuda when available, else cpu
    #: False: train exactly ``epochs`` epochs, report test at the last one (no selection)
    early_stopping: bool = param(True)
    #: a wall-time budget in seconds (a benchmark's time cap): no epoch starts that the mean epoch so far
    #: (training and validation) says would end past it; the first epoch always runs. The record's
    #: ``stop_reason`` says ``time_limit``; None: no limit
    time_limit_s: float | None = param(None, gt=0)


def declared_fields(config_class: type[TrainerConfig]) -> dict[str, Any]:
    """Key -> pydantic FieldInfo of every key ``config_class`` declares (trainer keys included)."""
    return dict(config_class.model_fields)


def own_defaults(config_class: type[TrainerConfig]) -> dict[str, Any]:
    """Defaults of the keys declared (or re-declared) below :class:`TrainerConfig` -- the model's yaml."""
    own: list[str] = []
    for klass in config_class.__mro__:
        if klass is TrainerConfig or not issubclass(klass, TrainerConfig):
            break
        own += [k for k in klass.__dict__.get("__annotations__", {}) if k not in own]
    return {k: v for k, v in config_class().model_dump().items() if k in own}


def grid_of(config_class: type[TrainerConfig]) -> dict[str, list]:
    """The search space declared with ``param(..., grid=...)``: key -> candidate values."""
    return {k: list(f.json_schema_extra["grid"]) for k, f in config_class.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and "grid" in f.json_schema_extra}


def type_name(annotation: Any) -> str:
    """``int``, ``str | None``, ``list[float]``: the declared type as a reader writes it."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in typing.get_args(annotation))
    return False


def validate_values(config_class: type[TrainerConfig], values: Mapping[str, Any], *, owner: str,
                    where: str = "config") -> dict[str, Any]:
    """``values`` checked and coerced against the declared types; returns the full config (defaults filled).

    Args:
        config_class: the declaration.
        values: declared keys -> values (unknown keys are :func:`check_keys`' job; they fail here too).
        owner: the model name, for the message.
        where: where the values came from, for the message.

    Raises:
        ConfigError: naming the first key whose value does not fit its declared type or constraint.
    """
    fields = config_class.model_fields
    for key, value in values.items():
        if isinstance(value, bool) and key in fields and not _admits_bool(fields[key].annotation):
            raise ConfigError(f"hyper-parameter {key!r} in {where} for {owner} must be "
                              f"{type_name(fields[key].annotation)}, got {value!r} (a boolean)")
    try:
        return config_class(**dict(values)).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule across keys (a model validator): its own message says what is wrong
            raise ConfigError(f"{owner} ({where}): {err['ctx']['error'] if 'ctx' in err else err['msg']}") from None
        key = str(err["loc"][0])
        if err["type"] == "extra_forbidden":
            check_keys([key], fields, owner=owner, where=where)
        expected = type_name(fields[key].annotation) if key in fields else "?"
        got = values.get(key, err.get("input"))
        raise ConfigError(f"hyper-parameter {key!r} in {where} for {owner} must be {expected}, got {got!r} "
                          f"({err['msg'][0].lower() + err['msg'][1:]})") from None
