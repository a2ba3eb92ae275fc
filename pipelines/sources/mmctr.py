"""MicroLens_1M_MMCTR (the WWW 2025 multimodal CTR challenge) as a source.

The layout (``train/valid/test.parquet`` + ``item_info.parquet``; see
:mod:`mmfeat.recommenders.ctr.layout`) is read as normalized tables so that every generic tool works on
it (``mmfeat store``, the flows): items ``"1".."n"`` (row k of ``item_info`` is item k; row 0, the
padding, is not an item) with their tag ids as ``tags`` text; interactions = the labelled impressions
of the three files with their ``split`` (0/1/2) and ``label``, ``timestamp`` = the row's order index
(train, then valid, then test; the layout has no times). A test file without labels (the challenge's
hidden test set) gives no interactions. CTR training reads the files themselves (their ``item_seq``
and levels are not representable here): :func:`mmfeat.pipelines.training.ctr_data.load_ctr_data`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ._paths import _root
from .base import SourceError, SourceTables


def load_mmctr(root: str | Path, encoding: str = "utf-8") -> SourceTables:
    """Normalized tables of a MicroLens_1M_MMCTR folder.

    Args:
        root: the folder with ``train/valid/test.parquet`` and ``item_info.parquet``.
        encoding: unused (the files are Parquet); accepted like every adapter's option.

    Raises:
        SourceError: a file or column is missing or the item table breaks the layout.
    """
    from mmfeat.recommenders.ctr.data import CTRDataError
    from mmfeat.recommenders.ctr.layout import read_layout

    folder = _root(root, "mmctr")
    try:
        data = read_layout(folder, max_len=None)
    except CTRDataError as exc:
        raise SourceError(f"mmctr: {exc}") from None
    n = data.n_items
    tags = [" ".join(str(t) for t in row[row > 0]) or None for row in data.item_tags[1:]]
    items = pa.table({"item_id": pa.array([str(k) for k in range(1, n + 1)], pa.string()),
                      "tags": pa.array(tags, pa.string())})
    users, item_ids, labels, splits = [], [], [], []
    for code, name in enumerate(("train", "valid", "test")):
        s = data.splits[name]
        users.append(s.user)
        item_ids.append(s.item)
        labels.append(s.label)
        splits.append(np.full(len(s), code, np.int8))
    u, i = np.concatenate(users), np.concatenate(item_ids)
    interactions = pa.table({
        "user_id": pa.array(u.astype(str), pa.string()), "item_id": pa.array(i.astype(str), pa.string()),
        "timestamp": pa.array(np.arange(len(u), dtype=np.int64)),
        "label": pa.array(np.concatenate(labels), pa.float32()), "split": pa.array(np.concatenate(splits), pa.int8())})
    files = {p.stem: str(p) for p in sorted(folder.glob("*.parquet"))}
    return SourceTables(items=items, interactions=interactions, kind="mmctr", root=folder, files=files)
