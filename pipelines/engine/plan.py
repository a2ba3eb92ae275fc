"""Planning a feature set: each item's input, its content hash, or the reason it has none.

Inputs are text built from item fields, a media path, or the text output of a parent feature set.
Every input gets a content hash (``source_sha256``): sha256 of the text, or of the media file's
bytes (hashed once per file per process, :mod:`mmfeat.featurizers.hashing`). Items with no usable input
become error rows right here: stage ``read`` (no text, no file, a path resolving outside the data
root, a field the source adapter could not read) or ``parent`` (the parent feature set failed for
it). A source problem belongs to the columns it touches: ``<column>__error`` fails the item only in
feature sets that read ``<column>``, with a reason naming it (``image_uri: ...``); ``row_error``
(a problem that invalidates the whole row) fails it everywhere.

:func:`request_key` names a run *before* any model loads: kind, params, the located weights'
hash, the featurizer code fingerprint and every item's input hash. A published version made by
the same key with no retryable errors is a cache hit that costs no model load.
"""

from __future__ import annotations

import inspect
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.featurizers.hashing import contained_path, file_sha256, text_sha256
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.sources.base import ROW_ERROR, error_column
from mmfeat.pipelines.store.feature_store import FeatureStore, run_key


@dataclass
class PlannedInputs:
    item_ids: list[str]
    inputs: list[Any]  # None where pre_errors has a reason
    source_hashes: list[str | None]
    pre_errors: list[tuple[str, str] | None]  # (stage, reason)
    parents: dict[str, str] = field(default_factory=dict)  # parent feature set -> version

    def keyed(self) -> list[tuple[str, str]]:
        """(item_id, input hash) per item; an input-less item's reason stands in for its hash."""
        return [(i, h if h is not None else "error:" + e[1])  # type: ignore[index]
                for i, h, e in zip(self.item_ids, self.source_hashes, self.pre_errors)]


class _BlankMissing(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _format_texts(items: pa.Table, fields: Sequence[str], template: str | None) -> list[str | None]:
    missing = [f for f in fields if f not in items.column_names]
    if missing:
        raise ValueError(f"text_fields {missing} are not columns of the items table ({items.column_names})")
    cols = {f: items.column(f).to_pylist() for f in fields}
    if template:
        names = {n for _, n, _, _ in string.Formatter().parse(template) if n}
        if names - set(fields):
            raise ValueError(f"template uses {sorted(names - set(fields))}, which are not in text_fields {list(fields)}")
    out: list[str | None] = []
    for i in range(items.num_rows):
        vals = {f: ("" if cols[f][i] is None else str(cols[f][i]).strip()) for f in fields}
        if not any(vals.values()):
            out.append(None)
        elif template:
            out.append(template.format_map(_BlankMissing(vals)).strip())
        else:
            out.append(". ".join(v for v in vals.values() if v))
    return out


def _parent_rows(store: FeatureStore | None, dataset: str | None, parent: str,
                 parent_versions: dict[str, str] | None) -> tuple[str, dict[str, dict[str, Any]]]:
    """A parent text feature set's rows by item id (the version built in this run, else ``latest``)."""
    if store is None or dataset is None:
        raise ValueError(f"reading parent feature set {parent!r} needs the store and dataset")
    version = (parent_versions or {}).get(parent) or store.resolve(dataset, parent, "latest")
    kind = store.manifest(dataset, parent, version)["output"]["kind"]
    if kind != "text":
        raise ValueError(f"parent feature set {parent}/{version} holds {kind}, not text: a per-item featurizer "
                         f"reads text from its parent (semantic_ids reads embeddings and runs as a set-level job)")
    table = store.read_table(dataset, parent, version, columns=["item_id", "text", "status", "error"])
    return version, {r["item_id"]: r for r in table.to_pylist()}


def _source_problems(items: pa.Table, columns: Sequence[str]) -> dict[int, str]:
    """``{row: reason}`` for the items the source could not read as far as ``columns`` go.

    ``row_error`` counts whatever is read; ``<column>__error`` only for the ``columns`` this
    feature set reads, prefixed with the column's name so the reason says which field failed.
    Arrow finds the non-null cells; only those rows are visited in Python. Reasons of one row
    are joined with ``"; "`` (row first, then columns in the order read).
    """
    found: dict[int, list[str]] = {}
    named = [(ROW_ERROR, "")] + [(error_column(c), f"{c}: ") for c in dict.fromkeys(columns)]
    for name, prefix in named:
        if name not in items.column_names:
            continue
        col = items.column(name)
        idx = pc.indices_nonzero(pc.is_valid(col))
        for i, reason in zip(idx.to_pylist(), col.take(idx).to_pylist()):
            found.setdefault(i, []).append(prefix + str(reason))
    return {i: "; ".join(r) for i, r in found.items()}


def _media_inputs(paths: list[Any], kind: str, data_root: Path | None, inputs: list[Any],
                  hashes: list[str | None], errors: list[tuple[str, str] | None]) -> None:
    """Contain each media path by its real path, then hash it; problems become ``read`` errors."""
    if data_root is None:
        raise ValueError("media inputs need data_root: every media path is checked against it")
    for i, p in enumerate(paths):
        if errors[i] is not None:
            continue
        if not p:
            errors[i] = ("read", f"item has no {kind}")
            continue
        try:
            real = contained_path(p, data_root)
        except PermissionError as exc:
            errors[i] = ("read", f"{kind}: refused: {exc}")
            continue
        try:
            hashes[i], inputs[i] = file_sha256(real), str(real)
        except FileNotFoundError:
            errors[i] = ("read", f"{kind}: file not found: {p}")
        except IsADirectoryError:
            errors[i] = ("read", f"{kind}: is a directory, not a file: {p}")
        except OSError as exc:
            errors[i] = ("read", f"{kind}: cannot read {p}: {exc.strerror or exc}")


def plan_inputs(
    items: pa.Table,
    spec: FeatureSetSpec,
    *,
    store: FeatureStore | None = None,
    dataset: str | None = None,
    parent_versions: dict[str, str] | None = None,
    data_root: str | Path | None = None,
) -> PlannedInputs:
    """Each item's input, content hash, or the reason it has none. Sorted by item id.

    Args:
        items: the normalized items table (``item_id``, text fields, media paths, optional
            problem columns ``<column>__error`` and ``row_error``).
        spec: the feature set (its ``input`` says what to read).
        store, dataset: where parent feature sets are read from (chained inputs).
        parent_versions: parent feature set -> version built in this run (else ``latest``).
        data_root: the folder every media path must resolve inside (required for media inputs).

    Returns:
        The planned inputs.

    Raises:
        ValueError: the spec reads fields the table does not have, or media without a data root.
    """
    items = items.sort_by("item_id")
    item_ids = [str(i) for i in items.column("item_id").to_pylist()]
    n = len(item_ids)
    inputs: list[Any] = [None] * n
    hashes: list[str | None] = [None] * n
    errors: list[tuple[str, str] | None] = [None] * n
    src = spec.input
    read = src.text_fields or ([src.media] if src.media else [])
    for i, reason in _source_problems(items, read).items():
        errors[i] = ("read", reason)
    parents: dict[str, str] = {}
    if src.text_fields:
        texts = _format_texts(items, src.text_fields, src.template)
        if src.append_from:
            version, by_id = _parent_rows(store, dataset, src.append_from, parent_versions)
            parents[src.append_from] = version
            for i, item in enumerate(item_ids):
                row = by_id.get(item)
                if row is not None and row["status"] == "ok" and row["text"]:
                    texts[i] = f"{texts[i]} {row['text']}" if texts[i] else row["text"]
        for i, text in enumerate(texts):
            if errors[i] is not None:
                continue
            if text is None:
                errors[i] = ("read", f"no text in fields {src.text_fields}")
            else:
                inputs[i], hashes[i] = text, text_sha256(text)
    elif src.media:
        paths = items.column(src.media).to_pylist() if src.media in items.column_names else [None] * n
        _media_inputs(paths, src.media, Path(data_root) if data_root is not None else None, inputs, hashes, errors)
    else:
        parent = src.from_
        version, by_id = _parent_rows(store, dataset, parent, parent_versions)
        parents[parent] = version
        for i, item in enumerate(item_ids):
            row = by_id.get(item)
            if errors[i] is not None:
                continue
            if row is None:
                errors[i] = ("parent", f"no row in parent {parent}/{version}")
            elif row["status"] != "ok" or not row["text"]:
                errors[i] = ("parent", f"parent {parent} failed: {row['error'] or 'empty text'}")
            else:
                inputs[i], hashes[i] = row["text"], text_sha256(row["text"])
    return PlannedInputs(item_ids, inputs, hashes, errors, parents)


def featurizer_class(kind: str) -> type | None:
    """The class registered for a featurizer kind (None for an unknown kind)."""
    from mmfeat.featurizers.registry import FEATURIZER_KINDS, _import_builtin_kinds

    _import_builtin_kinds()
    entry = FEATURIZER_KINDS.get(kind)
    owner = getattr(entry, "cls", None) or getattr(entry, "__self__", None)
    return owner if isinstance(owner, type) else None


def _located_weights(cls: type, params: dict[str, Any]) -> str | None:
    """sha256 of the weights the ``backbone`` param (or the class default) names, located but not loaded.

    Raises:
        WeightsUnavailable: the weights are not here (the caller decides about fallbacks).
    """
    from mmfeat.featurizers.registry import resolve_backbone, weights_hash

    backbone = params.get("backbone")
    if backbone is None:
        default = inspect.signature(cls.__init__).parameters.get("backbone")
        backbone = None if default is None or default.default is inspect.Parameter.empty else default.default
    if not isinstance(backbone, str):
        return None
    if Path(backbone).expanduser().is_file():
        return file_sha256(Path(backbone).expanduser())
    path, _ = resolve_backbone(backbone)
    return weights_hash(path)


def request_key(spec: FeatureSetSpec, planned: PlannedInputs) -> str | None:
    """The run key of ``spec`` over ``planned`` computed without loading a model (None when the
    kind is not a registered class, e.g. a test's fake featurizer).

    Raises:
        WeightsUnavailable: the spec's weights are not available here.
    """
    work = _work(spec)
    if work is None:
        return None
    request = {**work, "input": spec.input.model_dump(by_alias=True, exclude_none=True)}
    return run_key(fingerprint_hash(request), planned.keyed())


def work_key(spec: FeatureSetSpec, planned: PlannedInputs) -> str | None:
    """The key of the *work* a request asks for, whichever feature set asks: :func:`request_key`
    without the manifest's ``input:`` entry (None for an unregistered kind).

    Why: the values depend on the featurizer (kind, params, weights, code) and on each item's input,
    and every input is already in the key by its content hash. The ``input:`` entry only says where
    the input came from (``from: item_description`` or ``from: cover_caption``, a template that
    renders the same text), so two feature sets computing the same values from the same inputs
    share this key, and the second reuses the first one's rows (:mod:`mmfeat.pipelines.engine.reuse`).

    Raises:
        WeightsUnavailable: the spec's weights are not available here.
    """
    work = _work(spec)
    if work is None:
        return None
    return run_key(fingerprint_hash({"work": work}), planned.keyed())


def _work(spec: FeatureSetSpec) -> dict[str, Any] | None:
    """What decides a request's values besides its inputs: kind, params, located weights, code."""
    from mmfeat.featurizers.fingerprinting import code_fingerprint

    cls = featurizer_class(spec.kind)
    if cls is None:
        return None
    return {
        "kind": spec.kind,
        "params": dict(spec.params),
        "weights_sha256": _located_weights(cls, dict(spec.params)),
        "code": code_fingerprint(cls),
    }
