"""Strict recommender configs: every key a model or the trainer reads is declared, nothing else is accepted.

The declaration is the one the models already carry: the trainer's ``OVERALL_DEFAULTS`` (MMRec's
overall.yaml), a model's ``defaults`` (its yaml) and ``grid`` (its search space), and its
``modality_roles`` (which item features it can consume, through the ``<role>_feature`` keys). A key
outside them would be ignored by the code, so a typo (``--set learning_rte=0.1``) would silently train
with the default; here it is a :class:`ConfigError` naming the closest declared key.

This module holds the model-independent checks (pure functions of names); the model-aware ones live
next to the declarations in :mod:`mmfeat.recommenders.models.base`.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


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
