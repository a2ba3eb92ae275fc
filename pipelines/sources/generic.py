"""Any Parquet/CSV/TSV/JSON items table plus an interactions table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pyarrow as pa

from ._paths import _check_path_options, _required_file, _root, media_path
from ._read import MARK, RowProblems, _line
from ._tables import (
    _column_mapping, _id_sort_key, _ints, _items_table, _keep_readable_ids, _norm_id, _number, _order_index,
    _read_frame, _split_codes, _text, cell_problems, ignore_unloaded, row_problems,
)
from .base import MEDIA_COLUMNS, NUMERIC_ITEM_COLUMNS, SourceError, SourceTables

_DEFAULT_MEDIA = {
    "image_uri": "image_uri", "image_path": "image_uri", "image": "image_uri", "cover": "image_uri",
    "video_uri": "video_uri", "video_path": "video_uri", "video": "video_uri",
    "audio_uri": "audio_uri", "audio_path": "audio_uri", "audio": "audio_uri",
}


def _columns(df) -> list[str]:
    return [c for c in df.columns if c != "_problem"]


def _unique_ids(df, ip: Path, item_id_column: str, problems: RowProblems):
    """Rows with a readable, first-seen id. Unreadable ids are skipped and reported; a repeated
    id keeps its first row, which gets a whole-row error naming both rows: with two rows for one
    id, no field of the item can be trusted, so every feature set fails it."""
    raw = [_norm_id(v) for v in df[item_id_column]]
    unreadable = [k + 1 for k, i in enumerate(raw) if i is None or MARK in i]
    problems.skip(ip, f"empty or undecodable {item_id_column}", unreadable, unit="data row")
    first: dict[str, int] = {}
    keep: list[int] = []
    for k, i in enumerate(raw):
        if i is None or MARK in i:
            continue
        if i in first:
            problems.row(i, f"{ip.name}: item id {i!r} appears on data rows {first[i] + 1} and {k + 1}; "
                            "ids must be unique")
            continue
        first[i] = k
        keep.append(k)
    return df.iloc[keep], [raw[k] for k in keep]


def _undecodable(ids: list[str], df, ip: Path) -> dict[str, dict[str, str]]:
    """``{source column: {item id: reason}}`` of the cells with undecodable bytes."""
    out: dict[str, dict[str, str]] = {}
    for i, cells in zip(ids, cell_problems(df)):
        for col, reason in cells.items():
            out.setdefault(col, {})[i] = f"{ip.name} {reason}"
    return out


def _read_items(
    root: Path, ip: Path, encoding: str, item_id_column: str, text_columns, media_columns, numeric_columns,
    problems: RowProblems,
) -> tuple[list[str], dict, dict, dict]:
    """The items file's columns by output name. A bad cell (undecodable bytes, a media path that
    leaves the root or is a URL, a non-numeric count) is charged to its output column only."""
    df = _read_frame(ip, "items file", encoding, problems)
    cols = _columns(df)
    if item_id_column not in cols:
        raise SourceError(f"{ip}: item_id_column {item_id_column!r} not found (columns: {cols})")
    df, ids = _unique_ids(df, ip, item_id_column, problems)
    bad = _undecodable(ids, df, ip)
    mmap = dict(media_columns) if media_columns is not None else {c: _DEFAULT_MEDIA[c] for c in cols if c in _DEFAULT_MEDIA}
    media: dict[str, list[str | None]] = {}
    for src, dst in mmap.items():
        if src not in cols:
            raise SourceError(f"{ip}: media column {src!r} not found (columns: {cols})")
        if dst not in MEDIA_COLUMNS:
            raise SourceError(f"option media_columns: {dst!r} is not one of {MEDIA_COLUMNS}")
        where = f"{ip.name} column {src!r}: " if src != dst else ""
        media[dst] = []
        for i, v in zip(ids, df[src]):
            if i in bad.get(src, {}):
                problems.cell(i, dst, bad[src][i])
                media[dst].append(None)
                continue
            path, problem = media_path(root, _text(v))
            media[dst].append(path)
            if problem:
                problems.cell(i, dst, where + problem)
    num = list(numeric_columns) if numeric_columns is not None else [c for c in NUMERIC_ITEM_COLUMNS if c in cols]
    numeric: dict[str, dict[str, Any]] = {}
    for c in num:
        if c not in cols:
            raise SourceError(f"{ip}: numeric column {c!r} not found (columns: {cols})")
        numeric[c] = {}
        for i, v in zip(ids, df[c]):
            if i in bad.get(c, {}):
                problems.cell(i, c, bad[c][i])
                numeric[c][i] = None
                continue
            n, ok = _number(v)
            numeric[c][i] = n
            if not ok:
                problems.cell(i, c, f"{ip.name}: value {v!r} is not a number")
    taken = {item_id_column, *mmap, *num}
    tmap = _column_mapping(text_columns, [c for c in cols if c not in taken], ip, cols, "text_columns")
    text: dict[str, dict[str, str | None]] = {}
    for src, dst in tmap.items():
        for i, reason in bad.get(src, {}).items():
            problems.cell(i, dst, reason)
        text[dst] = {i: (None if i in bad.get(src, {}) else _text(v)) for i, v in zip(ids, df[src])}
    ignore_unloaded(df, {item_id_column, *mmap, *num, *tmap}, ip, encoding, problems)
    return ids, text, media, numeric


def _read_interactions(
    xp: Path, encoding: str, user_id_column: str, item_column: str, timestamp_column: str | None,
    label_column: str | None, split_column: str | None, problems: RowProblems,
) -> pa.Table:
    dx = _read_frame(xp, "interactions file", encoding, problems)
    cols = _columns(dx)
    for opt, c in (("user_id_column", user_id_column), ("interaction_item_column", item_column),
                   ("label_column", label_column), ("split_column", split_column)):
        if c is not None and c not in cols:
            raise SourceError(f"{xp}: {opt} {c!r} not found (columns: {cols})")
    used = [c for c in (user_id_column, item_column, timestamp_column, label_column, split_column) if c in cols]
    bad = row_problems(dx, used)
    problems.skip(xp, f"bytes not valid {encoding}", [_line(p) for p in bad if p])
    ignore_unloaded(dx, used, xp, encoding, problems)
    dx = dx[[p is None for p in bad]]
    users = [_norm_id(v) for v in dx[user_id_column]]
    keep = _keep_readable_ids(users, [_norm_id(v) for v in dx[item_column]], xp, problems,
                              (dx.index + 1).tolist(), unit="data row")
    dx, users = dx.iloc[keep], [users[k] for k in keep]
    icols: dict[str, pa.Array] = {
        "user_id": pa.array(users, pa.string()),
        "item_id": pa.array([_norm_id(v) for v in dx[item_column]], pa.string()),
    }
    if timestamp_column and timestamp_column in cols:
        icols["timestamp"] = _ints(dx[timestamp_column], "timestamp", xp)
        if icols["timestamp"].null_count:
            raise SourceError(f"{xp}: empty values in timestamp column {timestamp_column!r}; one ordering "
                              "per file: give every row a timestamp, or drop the column (then file order is used)")
    else:
        icols["timestamp"] = pa.array(_order_index(users), pa.int64())
    if label_column:
        icols["label"] = pa.array([float(v) if _text(v) is not None else None for v in dx[label_column]], pa.float32())
    if split_column:
        icols["split"] = _split_codes(dx[split_column], xp)
    return pa.table(icols)


def load_generic(
    root: Path | str,
    *,
    items_file: str | None = None,
    interactions_file: str | None = None,
    item_id_column: str = "item_id",
    text_columns: Sequence[str] | Mapping[str, str] | None = None,
    media_columns: Mapping[str, str] | None = None,
    numeric_columns: Sequence[str] | None = None,
    user_id_column: str = "user_id",
    interaction_item_column: str | None = None,
    timestamp_column: str | None = "timestamp",
    label_column: str | None = None,
    split_column: str | None = None,
    encoding: str = "utf-8",
) -> SourceTables:
    """Any Parquet/CSV/TSV items table plus an interactions table.

    Items (``items_file``): ``item_id_column``; ``text_columns`` (list or mapping source -> output;
    default every other non-media, non-numeric column); ``media_columns`` (mapping source ->
    ``image_uri``/``video_uri``/``audio_uri``; default recognises ``image_uri``, ``image_path``,
    ``video_uri``, ... ; relative paths resolved against ``root``); ``numeric_columns`` (default
    ``likes``/``views`` when present).
    Interactions (``interactions_file``): ``user_id_column``, ``interaction_item_column`` (default
    ``item_id_column``), ``timestamp_column`` (missing column -> order index per user),
    ``label_column``, ``split_column`` (0/1/2 or train/valid/test).
    At least one of the two files is required. Text files are read with ``encoding``.

    Returns:
        The normalized tables. A bad cell of the items table is charged to its output column
        (``<column>__error``): undecodable bytes, a media path whose real path leaves the data
        root or a remote URL, a non-numeric numeric cell. A repeated id invalidates the whole row
        (``row_error``). Rows without a readable id are skipped, undecodable cells of columns not
        loaded are ignored; both are logged with their row numbers.

    Raises:
        SourceError: a file or a named column is missing, a path option leaves ``root``, or the
            timestamps are not numeric throughout.
    """
    root = _root(root, "generic")
    _check_path_options(root, items_file=items_file, interactions_file=interactions_file)
    if items_file is None and interactions_file is None:
        raise SourceError("generic: give items_file=, interactions_file= or both")
    problems = RowProblems()
    files: dict[str, str] = {}
    ids: list[str] = []
    text: dict = {}
    media: dict[str, list[str | None]] = {}
    numeric: dict = {}
    if items_file is not None:
        ip = _required_file(root, items_file, "items_file")
        ids, text, media, numeric = _read_items(root, ip, encoding, item_id_column, text_columns, media_columns,
                                                numeric_columns, problems)
        files["items"] = str(ip)
    if interactions_file is not None:
        xp = _required_file(root, interactions_file, "interactions_file")
        interactions = _read_interactions(xp, encoding, user_id_column, interaction_item_column or item_id_column,
                                          timestamp_column, label_column, split_column, problems)
        files["interactions"] = str(xp)
        xitems = interactions.column("item_id").to_pylist()
        extra = sorted(set(xitems) - set(ids), key=_id_sort_key)
        ids = ids + extra if items_file is not None else extra
        for dst in media:
            media[dst] = media[dst] + [None] * len(extra)
    else:
        interactions = pa.table(
            {"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string()), "timestamp": pa.array([], pa.int64())}
        )
    problems.warn()
    items = _items_table(ids, text, media, numeric, problems)
    return SourceTables(items, interactions, kind="generic", root=root, files=files)
