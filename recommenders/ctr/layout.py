"""Read and write the MicroLens_1M_MMCTR file layout, exactly as the challenge's data loader reads it.

Files: ``train.parquet`` / ``valid.parquet`` / ``test.parquet`` with ``user_id``, ``item_seq`` (list of item
ids, fixed length, left-padded with 0), ``likes_level``, ``views_level``, ``item_id``, ``label``; and
``item_info.parquet`` where row k holds item k (row 0: all-zero padding) with ``item_id``, ``item_tags``
(list of 5 ints) and ``item_emb_d{D}`` (list of D float32).

What the challenge's loader (``mmctr_dataloader.py`` of the challenge baseline / QIN) does with them, and
so what the writer guarantees:

- ``ParquetDataset`` stacks every row column into one numpy array (``np.column_stack``), a list column
  expanded by ``np.array(df[col].to_list())``: every ``item_seq`` must have the same length, and every row
  column must be an integer (one float column would make the whole array float, and the collator then
  indexes ``item_info`` with float ids, which pandas refuses), so ``label`` is int64.
- ``BatchCollator`` keeps ``item_seq[:, -max_len:]`` (the most recent items are last), masks ``seq > 0``
  and reads ``item_info.iloc[seq + target]``: row position, not the ``item_id`` value, selects the item.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .data import SPLITS, CTRData, CTRDataError, CTRSplit

ROW_COLUMNS = ("user_id", "item_seq", "likes_level", "views_level", "item_id", "label")
ITEM_FILE = "item_info.parquet"


def emb_column(dim: int) -> str:
    return f"item_emb_d{dim}"


def _list_matrix(column, what: str, dtype) -> np.ndarray:
    """A list<...> Arrow column of equal-length lists as a 2-D numpy array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(col) == 0:
        return np.zeros((0, 0), dtype)
    if col.null_count:
        raise CTRDataError(f"{what}: {col.null_count} null lists")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():
        first = int(np.flatnonzero(lengths != lengths[0])[0])
        raise CTRDataError(f"{what}: lists must all have one length (row 0 has {lengths[0]}, row {first} "
                           f"has {lengths[first]}); the challenge's loader stacks them into one array")
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    return np.array(flat, dtype).reshape(len(col), int(lengths[0]))  # a copy: writable, owned


def read_rows(path: Path, max_len: int | None = None) -> CTRSplit | None:
    """One split file as a :class:`CTRSplit` (``item_seq`` cut to its last ``max_len`` items); None when
    the file has no ``label`` column (the challenge's hidden test set)."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    lacking = [c for c in ROW_COLUMNS if c not in t.column_names and c != "label"]
    if lacking:
        raise CTRDataError(f"{path}: lacks the columns {lacking} (has {t.column_names})")
    if "label" not in t.column_names:
        return None
    seq = _list_matrix(t.column("item_seq"), f"{path}: item_seq", np.int64)
    if max_len is not None:
        seq = seq[:, -max_len:]
        if seq.shape[1] < max_len:
            seq = np.hstack([np.zeros((len(seq), max_len - seq.shape[1]), np.int64), seq])
    col = {c: t.column(c).to_numpy(zero_copy_only=False) for c in ("user_id", "likes_level", "views_level",
                                                                   "item_id", "label")}
    for c, v in col.items():
        if np.isnan(np.asarray(v, np.float64)).any():
            raise CTRDataError(f"{path}: {c} has missing values")
    return CTRSplit(user=col["user_id"].astype(np.int64), item=col["item_id"].astype(np.int64),
                    likes_level=col["likes_level"].astype(np.int64), views_level=col["views_level"].astype(np.int64),
                    label=col["label"].astype(np.float32), item_seq=seq.astype(np.int32))


def read_layout(folder: str | os.PathLike[str], *, max_len: int | None = 64) -> CTRData:
    """A MicroLens_1M_MMCTR folder (the challenge download, or our export) as :class:`CTRData`.

    Args:
        folder: holds ``train/valid/test.parquet`` and ``item_info.parquet``.
        max_len: keep the last ``max_len`` items of ``item_seq`` (the challenge uses 64); None keeps all.

    Returns:
        The data; the info says which file lacked labels (the challenge's test set has none: its test
        split is then empty and test metrics are not reported).

    Raises:
        CTRDataError: a missing file or column, unequal list lengths, an item table whose row k is not
            item k or whose row 0 is not padding, ids outside the item table.

    Example:
        >>> data = read_layout("data/MicroLens_1M_x1")  # doctest: +SKIP
        >>> data.n_items, data.emb_dim  # doctest: +SKIP
        (91717, 128)
    """
    import pyarrow.parquet as pq

    root = Path(folder)
    missing = [f for f in (*[f"{s}.parquet" for s in SPLITS], ITEM_FILE) if not (root / f).is_file()]
    if missing:
        raise CTRDataError(f"{root}: not a MicroLens_1M_MMCTR folder, missing {missing}")
    items = pq.read_table(root / ITEM_FILE)
    embs = [c for c in items.column_names if re.fullmatch(r"item_emb_d\d+", c)]
    if "item_tags" not in items.column_names or len(embs) > 1:
        raise CTRDataError(f"{root / ITEM_FILE}: needs item_tags and one item_emb_d<D> column, has {items.column_names}")
    n_rows = items.num_rows
    if "item_id" in items.column_names:
        ids = items.column("item_id").to_numpy(zero_copy_only=False)
        if not np.array_equal(ids.astype(np.int64), np.arange(n_rows)):
            bad = int(np.flatnonzero(ids.astype(np.int64) != np.arange(n_rows))[0])
            raise CTRDataError(f"{root / ITEM_FILE}: row {bad} holds item_id {ids[bad]}; the loader reads item k "
                               f"at row k (iloc), so rows must be sorted by item_id 0..{n_rows - 1}")
    tags = _list_matrix(items.column("item_tags"), f"{root / ITEM_FILE}: item_tags", np.int64)
    emb = _list_matrix(items.column(embs[0]), f"{root / ITEM_FILE}: {embs[0]}", np.float32) if embs else None
    splits, unlabeled = {}, []
    for s in SPLITS:
        rows = read_rows(root / f"{s}.parquet", max_len)
        if rows is None:
            unlabeled.append(s)
            seq_len = max_len or 0
            rows = CTRSplit(*(np.zeros(0, np.int64) for _ in range(4)), np.zeros(0, np.float32),
                            np.zeros((0, seq_len), np.int32))
        splits[s] = rows
    if "train" in unlabeled:
        raise CTRDataError(f"{root / 'train.parquet'}: has no label column; nothing to train on")
    data = CTRData(splits=splits, item_tags=tags, item_emb=emb, item_ids=[""] + [str(k) for k in range(1, n_rows)],
                   info={"source": {"kind": "mmctr", "path": str(root.resolve())}, "unlabeled_splits": unlabeled})
    data.validate()
    return data


def write_layout(data: CTRData, folder: str | os.PathLike[str]) -> list[Path]:
    """Write ``data`` as a MicroLens_1M_MMCTR folder; returns the files written.

    Every row column is int64 (see the module doc), lists are plain ``list<...>`` columns of one length.

    Raises:
        CTRDataError: ``data`` breaks a layout rule (:meth:`CTRData.validate`) or has no item embedding.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data.validate()
    if data.item_emb is None:
        raise CTRDataError("the MMCTR layout needs an item embedding (item_emb_d<D>)")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)

    def lists(mat: np.ndarray, typ) -> pa.Array:
        offsets = np.arange(len(mat) + 1, dtype=np.int64) * mat.shape[1]
        if offsets[-1] >= 2 ** 31:
            raise CTRDataError(f"{len(mat)} lists of {mat.shape[1]} values exceed one parquet list column's offsets")
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                        pa.array(np.ascontiguousarray(mat).reshape(-1), typ))

    written = []
    for name, s in data.splits.items():
        table = pa.table({"user_id": pa.array(s.user, pa.int64()),
                          "item_seq": lists(s.item_seq.astype(np.int64), pa.int64()),
                          "likes_level": pa.array(s.likes_level, pa.int64()),
                          "views_level": pa.array(s.views_level, pa.int64()),
                          "item_id": pa.array(s.item, pa.int64()),
                          "label": pa.array(s.label.astype(np.int64), pa.int64())})
        pq.write_table(table, out / f"{name}.parquet")
        written.append(out / f"{name}.parquet")
    items = pa.table({"item_id": pa.array(np.arange(data.n_items + 1), pa.int64()),
                      "item_tags": lists(data.item_tags.astype(np.int64), pa.int64()),
                      emb_column(data.emb_dim): lists(data.item_emb.astype(np.float32), pa.float32())})
    pq.write_table(items, out / ITEM_FILE)
    return [*written, out / ITEM_FILE]
