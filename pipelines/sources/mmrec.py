"""MMRec / Amazon layout: ``<dataset>.inter`` plus optional item metadata and an image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pyarrow as pa

from ._paths import _check_path_options, _first_existing, _option_path, _required_file, _root, media_dir_paths
from ._read import MARK, RowProblems, _line
from ._tables import (
    _column_mapping, _id_sort_key, _ints, _items_table, _keep_readable_ids, _norm_id, _order_index,
    _read_frame, _split_codes, _text, cell_problems, ignore_unloaded, row_problems,
)
from .base import SourceError, SourceTables

_DEFAULT_TEXT_COLUMNS = ("title", "description", "categories", "brand", "tags", "genres")


def _readable_id(v: object) -> str | None:
    i = _norm_id(v)
    return None if i is None or MARK in i else i


def _inter_path(root: Path, dataset: str | None, inter_file: str | None) -> tuple[Path, str]:
    if inter_file is not None:
        p = _required_file(root, inter_file, "inter_file")
        return p, dataset or p.stem
    if dataset is not None:
        return _required_file(root, f"{dataset}.inter", "dataset"), dataset
    found = sorted(root.glob("*.inter"))
    if len(found) != 1:
        raise SourceError(
            f"mmrec: expected exactly one <dataset>.inter in {root}, found "
            f"{[p.name for p in found] or 'none'}; pass dataset="
        )
    return found[0], found[0].stem


def _interactions(inter_p: Path, encoding: str, problems: RowProblems) -> pa.Table:
    df = _read_frame(inter_p, "interactions file", encoding, problems)
    cols = {c.lower().split(":")[0]: c for c in df.columns if c != "_problem"}

    def pick(*names: str, required: bool = True) -> str | None:
        for n in names:
            if n.lower() in cols:
                return cols[n.lower()]
        if required:
            raise SourceError(f"{inter_p}: no {names[0]} column (columns: {list(cols.values())})")
        return None

    uc, ic = pick("userID", "user_id", "user"), pick("itemID", "item_id", "item")
    tc, rc, sc = pick("timestamp", "time", required=False), pick("rating", "label", required=False), pick("x_label", "split", required=False)
    used = [c for c in (uc, ic, tc, rc, sc) if c]
    bad = row_problems(df, used)
    problems.skip(inter_p, f"bytes not valid {encoding}", [_line(p) for p in bad if p])
    ignore_unloaded(df, used, inter_p, encoding, problems)
    df = df[[p is None for p in bad]]
    users = [_readable_id(v) for v in df[uc]]
    keep = _keep_readable_ids(users, [_readable_id(v) for v in df[ic]], inter_p, problems,
                              (df.index + 1).tolist(), unit="data row")
    df = df.iloc[keep]
    users = [users[k] for k in keep]
    icols: dict[str, pa.Array] = {
        "user_id": pa.array(users, pa.string()),
        "item_id": pa.array([_norm_id(v) for v in df[ic]], pa.string()),
        "timestamp": _ints(df[tc], "timestamp", inter_p) if tc else pa.array(_order_index(users), pa.int64()),
    }
    if rc:
        icols["label"] = pa.array([float(v) if _text(v) is not None else None for v in df[rc]], pa.float32())
    if sc:
        icols["split"] = _split_codes(df[sc], inter_p)
    return pa.table(icols)


def _map_asins(meta, root: Path, encoding: str, problems: RowProblems, meta_p: Path, files: dict[str, str]):
    mp_p = root / "i_id_mapping.csv"
    mp = _read_frame(mp_p, "id mapping", encoding, problems)
    if not {"asin", "itemID"} <= set(mp.columns):
        raise SourceError(f"{mp_p}: expected columns asin, itemID")
    amap = dict(zip(mp["asin"].astype(str), mp["itemID"]))
    meta = meta.assign(itemID=[amap.get(str(a)) for a in meta["asin"]])
    unmapped = [str(a) for a, i in zip(meta["asin"], meta["itemID"]) if i is None]
    problems.skip(meta_p, f"asin not in {mp_p.name}", unmapped[:1000], unit="asin")
    files["id_mapping"] = str(mp_p)
    return meta[meta["itemID"].notna()]


def _metadata(
    root: Path, meta_p: Path, item_id_column: str | None, text_columns, encoding: str,
    problems: RowProblems, files: dict[str, str],
) -> tuple[list[str], dict[str, dict[str, str | None]]]:
    meta = _read_frame(meta_p, "item metadata file", encoding, problems)
    idc = item_id_column
    if idc is None:
        idc = next((c for c in ("itemID", "item_id", "item") if c in meta.columns), None)
    if idc is None and "asin" in meta.columns and (root / "i_id_mapping.csv").is_file():
        meta, idc = _map_asins(meta, root, encoding, problems, meta_p, files), "itemID"
    if idc is None or idc not in meta.columns:
        raise SourceError(
            f"{meta_p}: item id column {item_id_column or 'itemID/item_id'!r} not found "
            f"(columns: {[c for c in meta.columns if c != '_problem']}); pass item_id_column="
        )
    cols = [c for c in meta.columns if c != "_problem"]
    mapping = _column_mapping(text_columns, [c for c in _DEFAULT_TEXT_COLUMNS if c in cols], meta_p, cols, "text_columns")
    ids = [_readable_id(v) for v in meta[idc]]
    problems.skip(meta_p, f"empty or undecodable {idc}", [k + 1 for k, i in enumerate(ids) if i is None],
                  unit="data row")
    cells = cell_problems(meta)
    text: dict[str, dict[str, str | None]] = {}
    for src, dst in mapping.items():
        text[dst] = {}
        for i, v, bad in zip(ids, meta[src], cells):
            if i is None:
                continue
            if src in bad:  # undecodable bytes in this field: charged to it, the other fields stay
                problems.cell(i, dst, f"{meta_p.name} {bad[src]}")
            text[dst][i] = None if src in bad else _text(v)
    ignore_unloaded(meta, {idc, *mapping}, meta_p, encoding, problems)
    files["meta"] = str(meta_p)
    return [i for i in ids if i is not None], text


def load_mmrec(
    root: Path | str,
    *,
    dataset: str | None = None,
    inter_file: str | None = None,
    meta_file: str | None = None,
    item_id_column: str | None = None,
    text_columns: Sequence[str] | Mapping[str, str] | None = None,
    image_dir: str | None = None,
    image_ext: str = ".jpg",
    encoding: str = "utf-8",
) -> SourceTables:
    """MMRec layout: ``<root>/<dataset>.inter`` (tab-separated, header
    ``userID itemID rating timestamp x_label``; x_label -> ``split``).

    ``dataset`` defaults to the single ``*.inter`` in ``root``. Optional item metadata:
    ``meta_file`` (csv/tsv/parquet; default ``meta-<dataset>.csv`` or ``<dataset>_meta.csv`` when
    present) with ``item_id_column`` (default ``itemID``/``item_id``; an ``asin`` column is mapped
    through ``i_id_mapping.csv`` when there is no itemID), ``text_columns`` (list, or mapping
    source -> output name; default: title, description, categories, brand, tags, genres present).
    ``image_dir`` (``<item><image_ext>``) -> ``image_uri``. Item ids stay strings. Text files
    are read with ``encoding``.

    Returns:
        The normalized tables; undecodable bytes in a metadata field are charged to that field
        (``<column>__error``, e.g. ``description__error``), an image path that escapes the data
        root to ``image_uri__error``; the item's other fields stay usable.

    Raises:
        SourceError: a required file or column is missing, or a path option leaves ``root``.
    """
    root = _root(root, "mmrec")
    _check_path_options(root, inter_file=inter_file, meta_file=meta_file, image_dir=image_dir)
    if dataset is not None:
        _check_path_options(root, dataset=f"{dataset}.inter")
    problems = RowProblems()
    inter_p, dataset = _inter_path(root, dataset, inter_file)
    interactions = _interactions(inter_p, encoding, problems)
    files = {"inter": str(inter_p)}
    if meta_file is not None:
        meta_p: Path | None = _required_file(root, meta_file, "meta_file")
    else:
        meta_p = _first_existing(root, [f"meta-{dataset}.csv", f"{dataset}_meta.csv", f"{dataset}_meta.parquet", f"meta-{dataset}.parquet"])
    meta_ids: list[str] = []
    text: dict[str, dict[str, str | None]] = {}
    if meta_p is not None:
        meta_ids, text = _metadata(root, meta_p, item_id_column, text_columns, encoding, problems, files)
    ids = sorted(set(meta_ids) | set(interactions.column("item_id").to_pylist()), key=_id_sort_key)
    media: dict[str, list[str | None]] = {}
    if image_dir is not None:
        d = _option_path(root, image_dir, "image_dir")
        if not d.is_dir():
            raise SourceError(f"option image_dir={image_dir!r}: folder {d} does not exist")
        media["image_uri"], bad = media_dir_paths(root, ids, d, image_ext)
        for i, reason in bad.items():
            problems.cell(i, "image_uri", reason)
    problems.warn()
    items = _items_table(ids, text, media, None, problems)
    return SourceTables(items, interactions, kind="mmrec", root=root, files=files)
