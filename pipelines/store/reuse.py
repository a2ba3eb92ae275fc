"""Rows an extraction can reuse instead of computing them: ok rows made by the same featurizer.

One job: find, for the input hashes a run still needs, the values already computed -- in a resumed run's
staged parts first, then in published versions newest first -- reading only what it reuses.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfeat.pipelines.store.format import embedding_matrix
from mmfeat.pipelines.store.verify import StoreError

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore

log = logging.getLogger("mmfeat.store")


def read_part_at(store: "FeatureStore", location: Any) -> pa.Table:
    """Rows of a part given by location (a Path, or an s3:// location under the store's root)."""
    key = None if store.fs.is_local else store.fs.key_of(str(location))
    if key is None:
        return pq.read_table(location)
    filesystem, path = store.fs.arrow(key)
    return pq.read_table(path, filesystem=filesystem)


def reusable_rows(store: "FeatureStore", dataset: str, feature_set: str, fingerprint_hash: str,
                  needed: Iterable[str] | None = None, *, extra_parts: Sequence[Any] = ()) -> dict[str, Any]:
    """``source_sha256 -> value`` of ok rows made by the same featurizer, for the ``needed``
    input hashes only (all when None).

    Looks in ``extra_parts`` first (a resumed run's staged parts: :meth:`VersionWriter.staged_parts`),
    then in published versions newest first, filtering each by the still-needed hashes in Arrow
    (``pc.is_in``) and stopping once every needed hash is found: a re-run reads only what it reuses.
    A damaged version is skipped with a warning (its rows are computed again): a broken old version
    never stops a new run.

    Returns:
        The values: a numpy vector per hash (embeddings) or a string (text).
    """
    want = None if needed is None else pa.array(sorted(set(needed)), pa.string())
    out: dict[str, Any] = {}

    def take(table: pa.Table) -> None:
        nonlocal want
        mask = pc.equal(table.column("status"), "ok")
        if want is not None:
            mask = pc.and_(mask, pc.is_in(table.column("source_sha256"), value_set=want))
        t = table.filter(mask)
        if not t.num_rows:
            return
        srcs = t.column("source_sha256").to_pylist()
        if "embedding" in t.column_names:
            vals: Any = embedding_matrix(t.column("embedding"), t.schema.field("embedding"))
        else:
            vals = t.column("text").to_pylist()
        for s, v in zip(srcs, vals):
            out.setdefault(s, v)
        if want is not None:
            want = pc.filter(want, pc.invert(pc.is_in(want, value_set=pa.array(list(out), pa.string()))))

    for part in extra_parts:
        take(read_part_at(store, part))
    for m in reversed(store.versions(dataset, feature_set)):
        if want is not None and len(want) == 0:
            break
        if m.get("featurizer", {}).get("fingerprint_hash") != fingerprint_hash:
            continue
        try:
            table = store.read_table(dataset, feature_set, m["version"], raw=True)
        except StoreError as exc:  # a damaged version is no dead end: its rows are computed again
            log.warning("%s/%s: not reusing rows of %s (%s)", dataset, feature_set, m["version"], exc)
            continue
        take(table)
    return out
