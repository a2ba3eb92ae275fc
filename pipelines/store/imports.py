"""``mmfeat store import``: feature files made elsewhere become store versions.

A researcher with vectors from another tool (MMRec's ``image_feat.npy``, a Parquet table, a NumPy
matrix) imports them once and then uses them like any extracted version: ``read_matrix``, the
recommenders, every export. The version's lineage says ``"kind": "imported"`` and names the
file's (and the ids file's) sha256, so it is never mistaken for a computed version.

Accepted inputs:

- ``.npy`` (2-D, numeric) with ``ids``: MMRec's ``i_id_mapping.csv`` (row k = itemID k; the id is
  its ``asin`` column, or ``id_column="itemID"`` for the ``"0".."n-1"`` ids that MMRec-layout
  sources use), a csv with an ``item_id`` column, or a text file with one id per line.
- ``.parquet`` with an id column (``id_column``) and a vector column (``vector_column``, a list or
  fixed-size list of numbers, all of one length).

Rules: ids count must equal rows; duplicate or empty ids, non-2-D or non-numeric arrays, ragged
vectors and a file whose every row is bad are errors. A row with NaN/inf values (or a null
vector) is kept as an **error row** (``status="error"``, ``stage="import"``, reason given), as
extraction does with an item that failed: readers treat it as missing, and exports fill it by
their explicit policy. Importing the same file twice is a cache hit (same version id).

An import becomes ``latest``, which training and exports read: one whose layout differs from the feature
set's current ``latest`` (output kind, dim, dtype, or what made it: an extracted ``text_embedding`` set
is not an imported one) is refused unless ``replace=True`` (``--replace``), so nothing silently switches
to other vectors (:func:`layout_difference`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.pipelines.store.exports import read_item_order
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, build_rows, file_sha256, row_schema, run_key

log = logging.getLogger("mmfeat.imports")

#: rows per Parquet part of an imported version
PART_ROWS = 65536
NON_FINITE = "imported vector has NaN/inf values"
NULL_VECTOR = "imported vector is null"


class FeatureImportError(StoreError):
    """A feature file that cannot become a store version (the message says why and what to do)."""


# ---------------------------------------------------------------------------- readers
def _numeric_matrix(mat: np.ndarray, what: str) -> np.ndarray:
    """A 2-D float32/float16 matrix, or an error saying what the array is instead."""
    if mat.ndim != 2:
        raise FeatureImportError(f"{what}: expected a 2-D matrix (items x dims), got shape {mat.shape}")
    if mat.shape[0] == 0 or mat.shape[1] == 0:
        raise FeatureImportError(f"{what}: empty matrix {mat.shape}")
    if not (np.issubdtype(mat.dtype, np.floating) or np.issubdtype(mat.dtype, np.integer)):
        raise FeatureImportError(f"{what}: expected numbers, got dtype {mat.dtype}")
    return np.ascontiguousarray(mat, dtype=np.float16 if mat.dtype == np.float16 else np.float32)


def _read_npy(path: Path, ids: str | Path | None, id_column: str) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    if ids is None:
        raise FeatureImportError(f"{path}: a NumPy matrix needs its ids: pass its ids file (ids= / --ids: an i_id_mapping.csv or one id per line)")
    try:
        raw = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        raise FeatureImportError(f"{path}: not a plain numeric .npy ({exc})") from None
    ids_path = Path(ids)
    if not ids_path.is_file():
        raise FeatureImportError(f"ids file {ids_path} does not exist")
    id_list = read_item_order(ids_path, id_column=id_column)
    header = ids_path.read_text().split("\n", 1)[0]
    fmt = "mmrec-npy" if "itemID" in header else "npy"
    info = {"format": fmt, "ids_file": str(ids_path.resolve()), "ids_sha256": file_sha256(ids_path),
            "source_dtype": str(raw.dtype)}
    return id_list, _numeric_matrix(np.asarray(raw), str(path)), info


def _read_parquet(path: Path, id_column: str, vector_column: str) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """ids, matrix (null vectors as zero rows) and the null mask of a Parquet id + vector table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    have = pq.read_schema(path).names
    lacking = [c for c in (id_column, vector_column) if c not in have]
    if lacking:
        raise FeatureImportError(f"{path}: no column {lacking} (columns: {have}); pass id_column= / vector_column=")
    t = pq.read_table(path, columns=[id_column, vector_column])
    col = t.column(vector_column).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise FeatureImportError(f"{path}: column {vector_column!r} is {col.type}, expected a list of numbers per row")
    null = col.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    dims = set(lengths[~null].astype(np.int64).tolist())
    if len(dims) > 1:
        raise FeatureImportError(f"{path}: vectors in {vector_column!r} have different lengths {sorted(dims)[:5]}")
    if not dims:
        raise FeatureImportError(f"{path}: every vector in {vector_column!r} is null")
    dim = dims.pop()
    filled = col.fill_null(pa.scalar([0] * dim, col.type)) if null.any() else col
    flat = filled.flatten().to_numpy(zero_copy_only=False)
    mat = _numeric_matrix(np.asarray(flat).reshape(len(col), dim), str(path))
    ids = [None if i is None else str(i) for i in t.column(id_column).to_pylist()]
    return ids, mat, null, {"format": "parquet", "id_column": id_column, "vector_column": vector_column,
                            "source_dtype": str(col.type.value_type)}


# ---------------------------------------------------------------------------- checks
def _check_ids(ids: Sequence[str | None], n_rows: int, what: str) -> None:
    if len(ids) != n_rows:
        raise FeatureImportError(f"{what}: {len(ids)} ids for {n_rows} rows; row k needs id k")
    empty = [k for k, i in enumerate(ids) if i is None or not str(i).strip()]
    if empty:
        raise FeatureImportError(f"{what}: {len(empty)} rows have an empty id (first rows: {empty[:5]})")
    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise FeatureImportError(f"{what}: {len(dups)} duplicate ids (first: {sorted(set(dups))[:5]}); each item once")


def _row_errors(mat: np.ndarray, null: np.ndarray | None) -> list[str | None]:
    """Per-row error reason (None for a usable row): null vectors, then NaN/inf values."""
    bad = ~np.isfinite(mat).all(axis=1)
    errors: list[str | None] = [NON_FINITE if b else None for b in bad.tolist()]
    if null is not None:
        for k in np.flatnonzero(null):
            errors[k] = NULL_VECTOR
    return errors


def _row_hashes(mat: np.ndarray, errors: Sequence[str | None]) -> list[str | None]:
    """sha256 of each usable row's little-endian bytes (the row's ``source_sha256``)."""
    data = np.ascontiguousarray(mat.astype(mat.dtype.newbyteorder("<"), copy=False))
    view = memoryview(data).cast("B")
    step = data.shape[1] * data.itemsize
    return [None if e else hashlib.sha256(view[k * step:(k + 1) * step]).hexdigest()
            for k, e in enumerate(errors)]


# ---------------------------------------------------------------------------- layout of the feature set
def current_latest(store: FeatureStore, dataset: str, feature_set: str) -> dict[str, Any] | None:
    """The manifest readers of ``latest`` get now (None: the feature set has no version yet). When the
    alias names a version no longer published, the newest published one (what it is compared with)."""
    if feature_set not in store.feature_sets(dataset):
        return None
    try:
        return store.manifest(dataset, feature_set, "latest")
    except StoreError:
        published = store.versions(dataset, feature_set)
        return published[-1] if published else None


def layout_difference(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between two versions' layouts (manifests, or an import's ``output`` + ``featurizer``):
    ``["dim 384 -> 128", "kind text_embedding -> imported"]``; ``[]`` when readers would not notice."""
    if old is None:
        return []
    fields = (("output", lambda m: m.get("output", {}).get("kind")), ("dim", lambda m: m.get("output", {}).get("dim")),
              ("dtype", lambda m: m.get("output", {}).get("dtype")),
              ("kind", lambda m: m.get("featurizer", {}).get("kind")))
    return [f"{name} {get(old)} -> {get(new)}" for name, get in fields if get(old) != get(new)]


def _check_layout(store: FeatureStore, dataset: str, feature_set: str, new: dict[str, Any], replace: bool) -> None:
    """Refuse an import that would change what ``latest`` holds, unless ``replace``."""
    old = current_latest(store, dataset, feature_set)
    diff = layout_difference(old, new)
    if not diff:
        return
    assert old is not None
    if not replace:
        raise FeatureImportError(
            f"{dataset}/{feature_set}: the import differs from its latest version {old['version']} "
            f"({', '.join(diff)}); it would become latest and training and exports would silently switch to it. "
            f"Import under a new feature-set name, or pass --replace (replace=True) to make it latest anyway")
    log.warning("%s/%s: replacing latest %s with an import that differs (%s)", dataset, feature_set,
                old["version"], ", ".join(diff))


# ---------------------------------------------------------------------------- writing
def _publish_rows(store: FeatureStore, dataset: str, feature_set: str, table: pa.Table,
                  manifest_extra: dict[str, Any], aliases: Sequence[str] = ("latest",), *,
                  replace: bool = False) -> str:
    """The one place imports write to the store: rows -> a published version.

    ``manifest_extra`` holds ``output``, ``featurizer`` (with ``fingerprint_hash``), ``input`` and
    ``lineage``. The request key is the fingerprint plus every (item_id, row hash / error); a
    published version with that key is a cache hit (import rows have no retryable errors). The
    store names the version by its content at publish. Held under the feature set's lock, as a run;
    a layout that differs from ``latest`` is refused unless ``replace`` (:func:`_check_layout`).
    """
    fp_hash = manifest_extra["featurizer"]["fingerprint_hash"]
    ids = table.column("item_id").to_pylist()
    keyed = [(i, h if h is not None else "error:" + (e or ""))
             for i, h, e in zip(ids, table.column("source_sha256").to_pylist(), table.column("error").to_pylist())]
    key = run_key(fp_hash, keyed)
    if feature_set in store.feature_sets(dataset):  # checked first: a refused import leaves no folder behind
        _check_layout(store, dataset, feature_set, manifest_extra, replace)
    with store.lock(dataset, feature_set):
        if "latest" in aliases:
            _check_layout(store, dataset, feature_set, manifest_extra, replace)  # again: another writer may have won
        done = store.complete_version(dataset, feature_set, key)
        if done is not None:
            for alias in aliases:
                store.set_alias(dataset, feature_set, alias, done["version"])
            return done["version"]
        writer = store.writer(dataset, feature_set, key, {"import": fp_hash, "items": len(ids)})
        for k, start in enumerate(range(0, max(len(ids), 1), PART_ROWS)):
            writer.write_part(k, table.slice(start, PART_ROWS))
        final = writer.publish({"schema": table.schema.to_string(show_schema_metadata=False), **manifest_extra},
                               aliases=aliases)
    return final.name


def import_features(store: FeatureStore, dataset: str, feature_set: str, path: str | Path, *,
                    ids: str | Path | None = None, id_column: str = "item_id",
                    vector_column: str = "embedding", tag: str | None = None, replace: bool = False) -> str:
    """Bring an existing feature file into the store as a version whose lineage says ``imported``.

    Args:
        store: the feature store.
        dataset: store namespace (the manifest's ``dataset``, so recommenders and exports find it).
        feature_set: the feature set to add a version to.
        path: a ``.npy`` matrix (with ``ids``) or a ``.parquet`` table (id + vector columns).
        ids: for ``.npy``: MMRec's ``i_id_mapping.csv``, a csv with ``item_id``, or one id per line.
        id_column: Parquet id column; for an MMRec mapping, the mapping column used as the id
            (default ``asin``; ``"itemID"`` gives ``"0".."n-1"``).
        vector_column: Parquet vector column.
        tag: an alias to point at the version, besides ``latest``.
        replace: accept a layout (output kind, dim, dtype, producer kind) that differs from the feature
            set's ``latest`` (it becomes ``latest``; a warning names the difference).

    Returns:
        The version id.

    Raises:
        FeatureImportError: unreadable or non-2-D data, ids that do not match the rows, duplicate
            or empty ids, ragged vectors, no usable row at all, or a layout that differs from the feature
            set's ``latest`` without ``replace``.

    Example:
        >>> import_features(store, "baby", "image_mmrec", "data/baby/image_feat.npy",
        ...                 ids="data/baby/i_id_mapping.csv", id_column="itemID")  # doctest: +SKIP
        'v-3f2a...'
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureImportError(f"{path} does not exist")
    null = None
    if path.suffix == ".npy":
        id_list, mat, info = _read_npy(path, ids, id_column)
    elif path.suffix in (".parquet", ".pq"):
        if ids is not None:
            raise FeatureImportError(f"{path}: a Parquet file carries its ids in id_column={id_column!r}; drop ids=")
        id_list, mat, null, info = _read_parquet(path, id_column, vector_column)
    else:
        raise FeatureImportError(f"{path}: unsupported file type {path.suffix!r} (.npy with ids, or .parquet)")
    _check_ids(id_list, mat.shape[0], str(path))
    errors = _row_errors(mat, null)
    n_bad = sum(e is not None for e in errors)
    if n_bad == len(errors):
        raise FeatureImportError(f"{path}: no usable row (every vector is null or has NaN/inf values)")
    if n_bad:
        log.warning("%s: %d of %d rows have NaN/inf or null vectors; imported as error rows", path, n_bad, len(errors))
    dtype = "float16" if mat.dtype == np.float16 else "float32"
    file_hash = file_sha256(path)
    fingerprint = {"kind": "imported", "file_sha256": file_hash, **{k: v for k, v in info.items() if k != "ids_file"}}
    lineage = {"kind": "imported", "file": str(path.resolve()), "file_sha256": file_hash, **info,
               "rows": len(errors), "error_rows": n_bad, "parents": {}}
    order = sorted(range(len(id_list)), key=lambda k: id_list[k])  # stored sorted by id, like extraction
    mat, id_list, errors = mat[order], [id_list[k] for k in order], [errors[k] for k in order]
    table = build_rows(row_schema("embedding", mat.shape[1], dtype), id_list, list(mat), errors,
                       ["import" if e else None for e in errors], _row_hashes(mat, errors))
    extra = {"output": {"kind": "embedding", "dim": int(mat.shape[1]), "dtype": dtype},
             "featurizer": {"name": "imported", "kind": "imported", "fingerprint": fingerprint,
                            "fingerprint_hash": fingerprint_hash(fingerprint)},
             "input": {"imported": str(path.resolve())}, "lineage": lineage}
    aliases = ("latest",) + ((tag,) if tag and tag != "latest" else ())
    return _publish_rows(store, dataset, feature_set, table, extra, aliases, replace=replace)
