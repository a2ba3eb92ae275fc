"""Shared argparse pieces of the ``mmfeat`` CLI: the parser class, the options every command
accepts, and parsers for ``ROLE=FEATURE_SET[@ref]`` / ``KEY=VALUE`` / ``KEY=V1,V2`` values that fail
with one line saying what was expected."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from mmfeat.pipelines.cli.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that refuses abbreviated options and whose epilog may be computed only
    when help is printed.

    Abbreviations are refused (``allow_abbrev=False``, also for every subcommand, which argparse builds
    with this class): ``--progres`` once started a full extraction as ``--progress``; a typo must be an
    error, never a guess. The lazy epilog: ``mmfeat train --help`` lists the models, and building that
    list imports torch, which no other command should pay for."""

    def __init__(self, *args: Any, lazy_epilog: Callable[[], str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.lazy_epilog = lazy_epilog

    def format_help(self) -> str:
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def common_options(top_level: bool = False) -> argparse.ArgumentParser:
    """Options accepted before or after the command (``mmfeat store list --store /tmp/s --debug``).

    The top-level copy holds the real defaults; the copy given to subcommands has SUPPRESS defaults
    so that a subcommand never overwrites a value given before it. Two separate parsers, because
    argparse shares action objects with the parsers built from ``parents=``."""
    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--store", default=default(None),
                        help="feature store root (default: $MMFEAT_STORE, else ./store)")
    common.add_argument("-v", "--verbose", action="store_true", default=default(False), help="log at DEBUG level")
    common.add_argument("--debug", action="store_true", default=default(False),
                        help="show the full traceback of an error instead of one line")
    return common


def parse_feature_refs(values: list[str] | None, option: str, key_name: str = "ROLE",
                       example: str = "text=text_minilm") -> dict[str, str]:
    """``["text=text_minilm@latest", ...]`` -> ``{"text": "text_minilm@latest"}``; each key once."""
    out: dict[str, str] = {}
    for raw in values or []:
        key, sep, ref = (s.strip() for s in raw.partition("="))
        name, _, version = ref.partition("@")
        if not sep or not key or not name or ("@" in ref and not version):
            raise UsageError(f"{option} expects {key_name}=FEATURE_SET[@ref], e.g. {option} {example}; got {raw!r}")
        if key in out:
            raise UsageError(f"{option}: {key_name.lower()} {key!r} given twice ({out[key]!r} and {ref!r}); give it once")
        out[key] = ref
    return out


def parse_settings(values: list[str] | None, option: str = "--set") -> dict[str, Any]:
    """``["epochs=50", "learning_rate=1e-3"]`` -> ``{"epochs": 50, "learning_rate": 0.001}`` (YAML scalars)."""
    out: dict[str, Any] = {}
    for raw in values or []:
        key, value = _key_value(raw, option, "KEY=VALUE", "epochs=50")
        if key in out:
            raise UsageError(f"{option}: {key!r} given twice; give it once")
        out[key] = _yaml_value(value, option, raw)
    return out


def parse_grid(values: list[str] | None, option: str = "--grid") -> dict[str, list[Any]]:
    """``["learning_rate=0.001,0.0001"]`` -> ``{"learning_rate": [0.001, 0.0001]}``."""
    out: dict[str, list[Any]] = {}
    for raw in values or []:
        key, value = _key_value(raw, option, "KEY=V1,V2,...", "learning_rate=0.001,0.0001")
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise UsageError(f"{option} {raw!r}: an empty value in the list; write {key}=V1,V2,...")
        if key in out:
            raise UsageError(f"{option}: {key!r} given twice; put all its values in one {key}=V1,V2,...")
        out[key] = [_yaml_value(v, option, raw) for v in items]
    return out


def _key_value(raw: str, option: str, form: str, example: str) -> tuple[str, str]:
    key, sep, value = (s.strip() for s in raw.partition("="))
    if not sep or not key or not value:
        raise UsageError(f"{option} expects {form}, e.g. {option} {example}; got {raw!r}")
    return key, value


def _yaml_value(text: str, option: str, raw: str) -> Any:
    """A value as YAML reads it (``50`` -> int, ``1e-3`` -> float, ``true`` -> bool, else the string)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{option} {raw!r}: cannot read {text!r} as a value ({one_problem(exc)})") from None
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; Python's float() does not
        try:
            return float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            return value
    return value


def one_problem(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def parse_number_or_mean(text: str | None, option: str) -> float | str | None:
    """``--fill-missing``: ``mean``, a number, or unset."""
    if text is None or text == "mean":
        return text
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option} expects a number or 'mean'; got {text!r}") from None
