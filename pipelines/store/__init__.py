"""The feature store: immutable, content-addressed Parquet versions with lineage, and the files that move
vectors in and out of it.

One job: keep what extraction made trustworthy (atomic publish, verified reads, aliases, writer lock) on a local
folder or an ``s3://`` root.

Public names:

- :class:`FeatureStore`, :class:`MatrixRead`, :func:`default_store_root`, :func:`open_existing_store`
  (:mod:`.feature_store`); :class:`StoreError` (:mod:`.verify`).
- :mod:`.exports`: ``export_mmrec``, ``export_fuxictr``, ``export_hf`` (files other repositories read unchanged).
- :mod:`.imports`: ``import_features`` (``mmfeat store import``).
- Internals, one job each: :mod:`.format` (rows and digests), :mod:`.fs` (local / object-store files),
  :mod:`.writer` (staging and publish), :mod:`.lock` (writer lock), :mod:`.verify` (part checksums),
  :mod:`.aliases` (alias files), :mod:`.recovery` (damaged versions: found, marked, removed, rebuilt),
  :mod:`.reuse` (rows a run reuses), :mod:`.roots` (default root; reads need an existing root),
  :mod:`.housekeeping` (staged runs, orphan attempts).

Example::

    from mmfeat.pipelines.store import FeatureStore
    store = FeatureStore("store")
    matrix = store.read_matrix("microlens-mini", "title_minilm", item_ids)
"""
from mmfeat.pipelines.store.feature_store import FeatureStore, MatrixRead, default_store_root, open_existing_store
from mmfeat.pipelines.store.verify import StoreError

__all__ = ["FeatureStore", "MatrixRead", "StoreError", "default_store_root", "open_existing_store"]
