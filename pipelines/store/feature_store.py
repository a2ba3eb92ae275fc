"""The versioned Parquet feature store.

Layout (the root is a local folder or an object-store URI, ``s3://bucket/prefix``)::

    <root>/<dataset>/<feature_set>/<version>/part-00000.parquet ... _manifest.json      (local root)
    <root>/<dataset>/<feature_set>/<version>/a-<attempt>/part-00000.parquet ...         (object store)
    <root>/<dataset>/<feature_set>/<version>/_manifest.json   parts[].file name the part files
    <root>/<dataset>/<feature_set>/_aliases.json          {"latest": "<version>", "<tag>": "<version>"}
    <root>/<dataset>/<feature_set>/_staging/<run key>/    parts of an unfinished run (resume from here)
    <root>/<dataset>/<feature_set>/.lock                  held by the one run writing this feature set (local)

Promises (docs/store.md states them for users):

- **A version id identifies its content**: ``v-`` + hash(featurizer fingerprint hash, digest of
  every row: ids, values, statuses, errors, input hashes). Two versions with different rows never
  share an id; the same rows always get the same id, however they were sharded.
- **A run key identifies a request**: hash(featurizer fingerprint, every item's input hash). A
  published version with the run's key and no retryable errors is a cache hit; one with error rows
  of stage ``featurize`` is not -- those rows are recomputed and the ok rows reused.
- **Atomic, immutable publish**: parts are staged under the run key and checksummed; on a local
  root the manifest is written and the folder renamed to its version id; on an object store (no
  renames) the parts are uploaded under a fresh attempt folder and the version's ``_manifest.json``
  is created with a conditional PUT (``If-None-Match: *``) -- a version is published iff that file
  exists, and it is created once (:mod:`mmfeat.pipelines.store.writer`). Readers never see half a version.
- **Resume**: a crashed run (even ``kill -9``) leaves its finished parts staged; the next run with
  the same key skips those without retryable errors.
- **Reads verify**: every part's sha256 is checked against ``_manifest.json`` before its bytes are
  returned (once per part per process, memoized by location, size and mtime + inode or ETag).
- **No dead end after a failure** (:mod:`mmfeat.pipelines.store.recovery`): a cache hit verifies what it
  hits and rebuilds a damaged version (same rows, same id); ``latest`` without an alias (a run killed
  after its publish) reads the newest version; ``mmfeat store repair`` / ``drop`` remove versions.
- **One writer per feature set** (local root): a run holds the feature set's file lock from
  planning to publish (a second run waits, then finds the cache hit); alias files are replaced
  atomically under it. The OS drops the lock of a killed process, so a dead run never blocks; temp
  files it left are removed by the next holder.
- **Object stores have no cross-process lock**: correctness comes from the conditional commit. Two
  runs of one request may both compute; both end with the same version id and one manifest.
  :meth:`FeatureStore.lock` holds only this process's thread lock there. Aliases are updated with a
  conditional PUT on the file's ETag (``If-Match``), retried on conflict, so no update is lost.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfeat.pipelines.store.format import (  # noqa: F401  (re-exported: the store's row API)
    ContentDigest,
    as_list_column,
    build_rows,
    content_version_id,
    embedding_layout,
    embedding_matrix,
    parquet_bytes,
    row_schema,
    write_parquet,
)
from mmfeat.pipelines.store.aliases import update_aliases
from mmfeat.pipelines.store.fs import ObjectPath, is_uri, open_fs  # noqa: F401  (re-exported)
from mmfeat.pipelines.store.housekeeping import OrphanAttempt, StagedRun, orphan_attempts, staged_runs  # noqa: F401
from mmfeat.pipelines.store.lock import LOCK_NAME, feature_set_lock  # noqa: F401
from mmfeat.pipelines.store.recovery import Dropped, Removed, manifest_json, remove_if_damaged, version_damage
from mmfeat.pipelines.store.roots import (  # noqa: F401  (re-exported)
    StoreRootMissing,
    default_store_root,
    open_existing_store,
    root_source,
)
from mmfeat.pipelines.store.verify import StoreError, file_sha256, rebuild_hint  # noqa: F401  (re-exported)
from mmfeat.pipelines.store.verify import VerifiedParts as _VerifiedParts
from mmfeat.pipelines.store.writer import (  # noqa: F401  (re-exported)
    ALIASES_NAME,
    ATTEMPT_PREFIX,
    FORMAT_VERSION,
    MANIFEST_NAME,
    RETRYABLE_STAGES,
    STAGING,
    VersionWriter,
    part_name,
)

log = logging.getLogger("mmfeat.store")



def _not_published(dataset: str, feature_set: str, alias: str, version: str) -> StoreError:
    """An alias names a version that is not (or no longer) published: never another version instead."""
    return StoreError(f"{dataset}/{feature_set}: {alias!r} names version {version}, which is not published (removed "
                      f"as damaged or dropped): re-run the extraction (or import) that made it to rebuild it, or "
                      f"point {alias!r} at another version with `mmfeat store tag`")


def run_key(featurizer_fp_hash: str, input_hashes: Iterable[tuple[str, str]]) -> str:
    """The key of a request: the featurizer fingerprint hash plus every (item_id, input hash)."""
    import hashlib

    h = hashlib.sha256(featurizer_fp_hash.encode())
    for item_id, src in sorted(input_hashes):
        h.update(b"\0" + item_id.encode() + b"\1" + src.encode())
    return "r-" + h.hexdigest()[:16]


@dataclass
class MatrixRead:
    """A feature matrix aligned to the requested item order, and what was missing."""

    matrix: np.ndarray
    missing: list[str]  # requested ids with no ok row (zero/fill rows in the matrix if allowed)
    version: str
    _ids: Callable[[], list[str]] = field(repr=False, default=lambda: [])

    @property
    def item_ids(self) -> list[str]:
        """The item id of each matrix row (read on first use: not needed to get the matrix)."""
        return self._ids()


_VERIFIED = _VerifiedParts()



class FeatureStore:
    """Read and write feature versions under one root: a local folder or ``s3://bucket/prefix``.

    An object-store root takes its endpoint from ``?endpoint_override=URL`` or ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL`` (MinIO, moto, Ceph) and its credentials from the standard AWS chain.
    ``root`` is a :class:`~pathlib.Path` for a local folder and the URI string for an object store;
    ``uri`` is the string that rebuilds the same store (``FeatureStore(store.uri)``). A store pickles as
    its root only (a Dask or Ray worker opens its own connections).

    Example:
        >>> store = FeatureStore("store")                                  # doctest: +SKIP
        >>> store.read_matrix("microlens-mini", "title_minilm", "latest",  # doctest: +SKIP
        ...                   item_ids=["1", "2"]).matrix.shape
        (2, 384)
        >>> FeatureStore("s3://features/team-a").root                      # doctest: +SKIP
        's3://features/team-a'
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.fs = open_fs(root)
        self.uri: str = self.fs.uri
        self.root: Any = self.fs.root if self.fs.is_local else ObjectPath(self.fs.uri)

    def __reduce__(self) -> tuple:
        return (FeatureStore, (self.uri,))

    def __repr__(self) -> str:
        return f"FeatureStore({self.uri!r})"

    # ------------------------------------------------------------------ layout and lookup
    def feature_dir(self, dataset: str, feature_set: str) -> Any:
        """The feature set's folder: a Path (local root) or an s3:// :class:`ObjectPath`."""
        return self.fs.loc(f"{dataset}/{feature_set}")

    def datasets(self) -> list[str]:
        """Datasets holding at least one feature set (see :meth:`feature_sets`)."""
        names = self.fs.list_dirs("")
        return names if not self.fs.is_local else [d for d in names if self.feature_sets(d)]

    def feature_sets(self, dataset: str) -> list[str]:
        """Feature sets of ``dataset`` holding a version, an unfinished run or aliases. A local folder with
        none (the writer lock's folder of a feature set skipped before it wrote anything, e.g. for missing
        weights) is not one; an object store has no empty folders."""
        names = self.fs.list_dirs(dataset)
        if not self.fs.is_local:
            return names
        return [n for n in names if any(v.startswith("v-") for v in self.fs.list_dirs(f"{dataset}/{n}"))
                or self.fs.list_dirs(f"{dataset}/{n}/{STAGING}") or self.fs.exists(f"{dataset}/{n}/{ALIASES_NAME}")]

    def _manifest_or_none(self, dataset: str, feature_set: str, version: str) -> dict[str, Any] | None:
        try:
            text = self.fs.read_text(f"{dataset}/{feature_set}/{version}/{MANIFEST_NAME}")
        except FileNotFoundError:
            return None
        return manifest_json(text, dataset, feature_set, version)

    def versions(self, dataset: str, feature_set: str) -> list[dict[str, Any]]:
        """Published versions' manifests, oldest first (a folder without ``_manifest.json`` is not one)."""
        names = [n for n in self.fs.list_dirs(f"{dataset}/{feature_set}") if n.startswith("v-")]
        found = [m for m in (self._manifest_or_none(dataset, feature_set, n) for n in names) if m is not None]
        return sorted(found, key=lambda m: (m["created_at"], m["version"]))

    def aliases(self, dataset: str, feature_set: str) -> dict[str, str]:
        try:
            return json.loads(self.fs.read_text(f"{dataset}/{feature_set}/{ALIASES_NAME}"))
        except FileNotFoundError:
            return {}

    def lock(self, dataset: str, feature_set: str, *, log_every: float = 30.0) -> Any:
        """Hold the feature set's writer lock (a context manager): reentrant for the thread holding it,
        exclusive against other threads (any :class:`FeatureStore` object on this root) and, on a local
        root, other processes. A run holds it from planning to publish, so the second of two runs
        waits, then finds the first's version. On an object store only this process's threads are
        excluded (:mod:`mmfeat.pipelines.store.lock` says why that is still correct)."""
        return feature_set_lock(self.fs, dataset, feature_set, log_every=log_every)

    def set_alias(self, dataset: str, feature_set: str, alias: str, version: str) -> None:
        """Point an alias (``latest`` or a user tag) at a published version, never losing a concurrent
        update of another alias: on a local root an atomic file swap under the feature set's lock; on an
        object store a conditional PUT on the file's ETag (``If-Match``, or ``If-None-Match: *`` for the
        first alias), re-read and retried when another writer got there first.

        Raises:
            StoreError: ``version`` is not published, or the alias file kept changing (20 conflicts).
        """
        if not self.has_version(dataset, feature_set, version):
            raise StoreError(f"cannot tag {dataset}/{feature_set}: version {version} is not published")
        update_aliases(self, dataset, feature_set, {alias: version})

    def resolve(self, dataset: str, feature_set: str, ref: str = "latest") -> str:
        """A version id from an id, an alias, or a unique id prefix.

        ``latest`` without an alias (a run killed between publishing its version and writing the alias
        file) is the newest published version; the next publish or cache hit writes the alias again. An
        alias that names a version no longer published is returned as is (:meth:`manifest` says so):
        readers never silently switch to another version."""
        have = self.feature_sets(dataset)
        if feature_set not in have:
            where = (f"in {self.root}" if self.fs.root_exists() else
                     f"because the feature store {self.root} does not exist (a mistyped --store or $MMFEAT_STORE?)")
            from mmfeat.featurizers.params import did_you_mean  # the closest real name, never the typo again

            raise StoreError(f"no feature set {dataset}/{feature_set} {where}"
                             f"{did_you_mean(feature_set, have) if have else ' (it has: nothing)'}")
        aliases = self.aliases(dataset, feature_set)
        if ref in aliases:
            return aliases[ref]
        if ref == "latest":
            published = self.versions(dataset, feature_set)
            if published:
                log.info("%s/%s: no latest alias (a run stopped before writing it?); using the newest version %s",
                         dataset, feature_set, published[-1]["version"])
                return published[-1]["version"]
        matches = [n for n in self.fs.list_dirs(f"{dataset}/{feature_set}")
                   if n.startswith("v-") and n.startswith(ref) and self.has_version(dataset, feature_set, n)]
        if len(matches) == 1:
            return matches[0]
        named_by = sorted(a for a, v in aliases.items() if v == ref)
        if named_by and not matches:  # a version an alias names was removed (damaged, dropped)
            raise _not_published(dataset, feature_set, named_by[0], ref)
        raise StoreError(
            f"{dataset}/{feature_set}: {ref!r} is {'ambiguous' if matches else 'not a version or alias'}; "
            f"aliases {sorted(aliases)}, versions {[m['version'] for m in self.versions(dataset, feature_set)]}"
        )

    def has_version(self, dataset: str, feature_set: str, version: str) -> bool:
        """Whether ``version`` is published (its ``_manifest.json`` exists: on an object store, the commit)."""
        return self.fs.exists(f"{dataset}/{feature_set}/{version}/{MANIFEST_NAME}")

    def manifest(self, dataset: str, feature_set: str, ref: str = "latest") -> dict[str, Any]:
        v = self.resolve(dataset, feature_set, ref)
        m = self._manifest_or_none(dataset, feature_set, v)
        if m is None:
            raise _not_published(dataset, feature_set, ref, v)
        return m

    def complete_version(self, dataset: str, feature_set: str, key: str) -> dict[str, Any] | None:
        """The newest published, intact version made by the request ``key`` with no retryable error rows
        (a cache hit), else None.

        A cache hit verifies what it hits: every part is checked (local root: sha256 unless it matched
        earlier in this process; object store: presence and size, no download). A damaged one is removed
        under the writer lock (:func:`mmfeat.pipelines.store.recovery.remove_if_damaged`) and not a hit,
        so the caller rebuilds it -- under the same id, since ids name rows."""
        check = "memo" if self.fs.is_local else "stat"
        for m in reversed(self.versions(dataset, feature_set)):
            if m.get("run_key") == key and m.get("retryable_errors", 1) == 0:
                removed = remove_if_damaged(self, m, check)
                if removed is None:
                    return m
                log.warning("%s was damaged (%s): removed it, so this run rebuilds it (same rows, same id)",
                            removed, "; ".join(removed.problems))
        return None

    # ------------------------------------------------------------------ damage and recovery
    def damage(self, dataset: str, feature_set: str, ref: str = "latest", check: str = "memo") -> list[str]:
        """What is wrong with a version's parts (``[]``: intact), e.g. ``["part-00000.parquet checksum
        mismatch"]``; ``check`` as in :func:`mmfeat.pipelines.store.recovery.version_damage`."""
        return version_damage(self, self.manifest(dataset, feature_set, ref), check)

    def repair(self, dataset: str, feature_set: str, ref: str | None = None) -> tuple[list[str], list[Removed]]:
        """Re-hash every version of a feature set (or ``ref``) and remove the damaged ones
        (:func:`mmfeat.pipelines.store.recovery.repair`): (versions checked, what was removed)."""
        from mmfeat.pipelines.store.recovery import repair

        return repair(self, dataset, feature_set, ref)

    def drop(self, dataset: str, feature_set: str, ref: str, *, force: bool = False) -> Dropped:
        """Remove one version on purpose (:func:`mmfeat.pipelines.store.recovery.drop_version`): refused
        when an alias names it unless ``force``."""
        from mmfeat.pipelines.store.recovery import drop_version

        return drop_version(self, dataset, feature_set, ref, force=force)

    # ------------------------------------------------------------------ writing
    def writer(self, dataset: str, feature_set: str, key: str, plan: dict[str, Any]) -> VersionWriter:
        """A stager for the run ``key`` (a run key, or any name unique to what is being written)."""
        return VersionWriter(self, dataset, feature_set, key, plan)

    def stage_part(self, dataset: str, feature_set: str, key: str, index: int, table: pa.Table) -> Any:
        """Stage part ``index`` of run ``key`` from any process (a runner's worker): written atomically
        (local: temp + fsync + rename; object store: one PUT), no lock taken, nothing cleaned up. The
        run's :class:`VersionWriter` (opened by the driver first) sees it in ``done_parts()``.

        Args:
            dataset, feature_set, key: the run (its staging folder must exist on a local root: the
                driver's :meth:`writer` made it).
            index: the shard number.
            table: the part's rows (:func:`build_rows`).

        Returns:
            Where the part is: a Path (local root) or an s3:// :class:`ObjectPath`.

        Example:
            >>> FeatureStore(root).stage_part("ds", "title", job.key, 3, rows)   # doctest: +SKIP
        """
        part = f"{dataset}/{feature_set}/{STAGING}/{key}/{part_name(index)}"
        if self.fs.is_local:
            write_parquet(table, self.fs.path(part))
        else:
            self.fs.write_bytes(part, parquet_bytes(table))
        return self.fs.loc(part)

    # ------------------------------------------------------------------ reading
    def verify(self, dataset: str, feature_set: str, ref: str = "latest") -> None:
        """Re-hash every part now (no memo); raise :class:`StoreError` naming a missing or changed one."""
        m = self.manifest(dataset, feature_set, ref)
        where = f"{dataset}/{feature_set}/{m['version']}"
        for part in m["parts"]:
            key = f"{where}/{part['file']}"
            try:
                digest, _ = self.fs.sha256(key)
            except FileNotFoundError:
                raise StoreError(f"{where}: part {part['file']} is missing; {rebuild_hint(where)}") from None
            if digest != part["sha256"]:
                raise StoreError(f"{where}: part {part['file']} is corrupted (sha256 differs from "
                                 f"_manifest.json); {rebuild_hint(where)}")

    def _verified_paths(self, m: dict[str, Any]) -> list[str]:
        """The version's part paths for pyarrow (on :meth:`fs`'s arrow filesystem), each checked against its
        manifest sha256 (parts hashed on a few threads: hashlib releases the GIL, so a cold read costs
        about one part's hash per core)."""
        where = f"{m['dataset']}/{m['feature_set']}/{m['version']}"
        checks = [(f"{where}/{part['file']}", part["sha256"], part.get("bytes")) for part in m["parts"]]
        checks_left = [c for c in checks if not _VERIFIED.seen(self.fs, c[0], c[1])]
        if len(checks_left) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(len(checks), os.cpu_count() or 1)) as pool:
                list(pool.map(lambda c: _VERIFIED.check(self.fs, c[0], c[1], where, c[2]), checks_left))
        else:
            for key, sha, size in checks_left:
                _VERIFIED.check(self.fs, key, sha, where, size)
        return [self.fs.arrow(key)[1] for key, _, _ in checks]

    def version_part_tables(self, dataset: str, feature_set: str, ref: str = "latest", *,
                            columns: Sequence[str] | None = None, verify: bool = True) -> Iterator[pa.Table]:
        """A published version's parts one at a time, in manifest order (each verified just before it is
        read), for callers that stop early (e.g. the first few error rows)."""
        m = self.manifest(dataset, feature_set, ref)
        where = f"{dataset}/{feature_set}/{m['version']}"
        for part in m["parts"]:
            key = f"{where}/{part['file']}"
            if verify:
                _VERIFIED.check(self.fs, key, part["sha256"], where, part.get("bytes"))
            filesystem, path = self.fs.arrow(key)
            yield pq.read_table(path, columns=list(columns) if columns else None, filesystem=filesystem)

    def read_table(
        self, dataset: str, feature_set: str, ref: str = "latest", *, verify: bool = True,
        columns: Sequence[str] | None = None, only_ok: bool = False, raw: bool = False,
    ) -> pa.Table:
        """All rows of a version as one Arrow table (parts in order).

        Args:
            dataset, feature_set, ref: which version (an id, alias or unique id prefix).
            verify: check each part's sha256 against ``_manifest.json`` before reading it (once per
                part per process); ``False`` only for callers that verified already.
            columns: read only these columns.
            only_ok: drop error rows.
            raw: keep the on-disk fixed-size-binary embedding column instead of
                ``fixed_size_list<float>[dim]``.

        Returns:
            The rows as an Arrow table.

        Raises:
            StoreError: unknown version, or a part missing, changed or unreadable.
        """
        m = self.manifest(dataset, feature_set, ref)
        where = f"{dataset}/{feature_set}/{m['version']}"
        paths = (self._verified_paths(m) if verify
                 else [self.fs.arrow(f"{where}/{p['file']}")[1] for p in m["parts"]])
        if columns is not None and only_ok and "status" not in columns:
            columns = [*columns, "status"]
        if not paths:
            return row_schema(**m["output"]).empty_table()
        try:
            table = pq.read_table(paths, columns=list(columns) if columns else None, memory_map=self.fs.is_local,
                                  use_threads=True, filesystem=self.fs.arrow("")[0])
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{where}: unreadable part ({exc}); run `mmfeat store verify` to find it") from exc
        if only_ok:
            table = table.filter(pc.equal(table.column("status"), "ok"))
        if not raw and "embedding" in table.column_names:
            i = table.schema.get_field_index("embedding")
            field = table.schema.field(i)
            dim, dtype = embedding_layout(field)
            value_type = pa.float16() if dtype.itemsize == 2 else pa.float32()
            table = table.set_column(i, pa.field("embedding", pa.list_(value_type, dim)),
                                     as_list_column(table.column(i), field))
        return table

    def read_matrix(
        self,
        dataset: str,
        feature_set: str,
        ref: str = "latest",
        item_ids: Sequence[str] | None = None,
        *,
        fill_missing: float | str | None = None,
        verify: bool = True,
    ) -> MatrixRead:
        """Embeddings as a numpy matrix, row i = ``item_ids[i]`` (or the stored order if None).

        Items without an ok row are an error unless ``fill_missing`` says what to put there: a number
        (e.g. 0.0) or ``"mean"`` (the mean of the present rows). Either way they are reported.
        """
        version = self.resolve(dataset, feature_set, ref)
        m = self.manifest(dataset, feature_set, version)
        if m.get("output", {}).get("kind", "embedding") != "embedding":
            kind = m["output"]["kind"]
            hint = ("semantic IDs are read by TIGER (--feature codes=...), FeatureStore.read_codes and "
                    "`mmfeat store export hf`" if kind == "codes" else "read it with read_table")
            raise StoreError(f"{dataset}/{feature_set}/{version} holds {kind}, not embeddings: pass an embedding "
                             f"feature set ({hint})")
        has_errors = m["errors"] > 0
        need_ids = item_ids is not None or has_errors
        columns = ["embedding"] + (["item_id", "status"] if need_ids else [])
        table = self.read_table(dataset, feature_set, version, verify=verify, columns=columns, raw=True)
        field = table.schema.field("embedding")
        column = table.column("embedding")
        ok_rows = None  # row numbers of ok rows (None: every row is ok)
        if has_errors:
            ok_rows = np.flatnonzero(table.column("status").to_numpy(zero_copy_only=False) == "ok")
        if item_ids is None:
            def stored_ids() -> list[str]:
                if "item_id" in table.column_names:
                    ids = table.column("item_id")
                    return (ids.take(pa.array(ok_rows)) if ok_rows is not None else ids).to_pylist()
                return self.read_table(dataset, feature_set, version, columns=["item_id"]).column("item_id").to_pylist()
            return MatrixRead(embedding_matrix(column, field, ok_rows), [], version, _ids=stored_ids)
        try:
            wanted = pa.array(item_ids, pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            wanted = pa.array([str(i) for i in item_ids], pa.string())
        stored = table.column("item_id")
        if ok_rows is not None:  # errors: look ids up among ok rows only
            stored = stored.take(pa.array(ok_rows))
        idx = pc.index_in(wanted, value_set=stored.combine_chunks())
        missing_mask = idx.is_null().to_numpy(zero_copy_only=False)
        n_missing = int(missing_mask.sum())
        missing = [str(item_ids[i]) for i in np.flatnonzero(missing_mask)] if n_missing else []
        if missing and fill_missing is None:
            raise StoreError(
                f"{dataset}/{feature_set}/{version}: {len(missing)} of {len(item_ids)} requested items have no "
                f"feature row (first: {missing[:5]}); pass fill_missing=0.0 or 'mean' to fill them explicitly"
            )
        positions = idx.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        if ok_rows is not None:
            positions = ok_rows[positions] if len(ok_rows) else positions
        dim = embedding_layout(field)[0]
        if len(stored) == 0:
            out = np.zeros((len(positions), dim), embedding_layout(field)[1])
        else:
            out = embedding_matrix(column, field, positions)
        if missing:  # "mean": the mean of every ok row of the version, not just of the requested ones
            if fill_missing == "mean":
                fill = embedding_matrix(column, field, ok_rows).mean(axis=0) if len(stored) else 0.0
            else:
                fill = float(fill_missing)  # type: ignore[arg-type]
            out[missing_mask] = fill
        return MatrixRead(out, missing, version, _ids=lambda: [str(i) for i in item_ids])

    def read_codes(self, dataset: str, feature_set: str, ref: str = "latest",
                   item_ids: Sequence[str] | None = None, *, verify: bool = True) -> tuple[np.ndarray, list[str], str]:
        """Semantic IDs (a ``codes`` version) as an int64 matrix [n, levels], row i = ``item_ids[i]``
        (or every ok row in stored order when None).

        No fill policy: a code tuple cannot be made up for an item the quantizer never saw, so a requested
        item without an ok row is an error.

        Returns:
            ``(codes, item_ids, version)``.

        Raises:
            StoreError: the version holds no codes, or requested items have no ok row.
        """
        m = self.manifest(dataset, feature_set, ref)
        version = m["version"]
        if m.get("output", {}).get("kind") != "codes":
            raise StoreError(f"{dataset}/{feature_set}/{version} holds {m.get('output', {}).get('kind')}, not semantic "
                             f"IDs (codes); build them with a `semantic_ids` feature set")
        table = self.read_table(dataset, feature_set, version, verify=verify, columns=["item_id", "codes"],
                                only_ok=True)
        col = table.column("codes").combine_chunks()
        levels = col.type.list_size
        stored = np.asarray(col.values.slice(col.offset * levels, len(col) * levels), np.int64).reshape(-1, levels)
        ids = table.column("item_id").to_pylist()
        if item_ids is None:
            return stored, ids, version
        wanted = pa.array([str(i) for i in item_ids], pa.string())
        idx = pc.index_in(wanted, value_set=table.column("item_id").combine_chunks())
        missing_mask = idx.is_null().to_numpy(zero_copy_only=False)
        if missing_mask.any():
            missing = [str(item_ids[i]) for i in np.flatnonzero(missing_mask)]
            raise StoreError(f"{dataset}/{feature_set}/{version}: {len(missing)} of {len(item_ids)} items have no "
                             f"semantic ID (first: {missing[:5]}); rebuild the codes from an embedding version that "
                             f"covers every item")
        return stored[idx.to_numpy(zero_copy_only=False).astype(np.int64)], [str(i) for i in item_ids], version

    # ------------------------------------------------------------------ reuse across versions
    def reusable_rows(self, dataset: str, feature_set: str, fingerprint_hash: str,
                      needed: Iterable[str] | None = None, *,
                      extra_parts: Sequence[Any] = ()) -> dict[str, Any]:
        """``source_sha256 -> value`` of ok rows made by the same featurizer, for the ``needed`` input hashes
        only (all when None): staged parts first, then published versions newest first (damaged ones skipped);
        see :func:`mmfeat.pipelines.store.reuse.reusable_rows`."""
        from mmfeat.pipelines.store.reuse import reusable_rows

        return reusable_rows(self, dataset, feature_set, fingerprint_hash, needed, extra_parts=extra_parts)

    # ------------------------------------------------------------------ housekeeping
    def staged(self) -> list[Any]:
        """Unfinished runs (resumable) under the root: their staging folders (Paths on a local root)."""
        if self.fs.is_local:
            return sorted(p for p in self.root.glob(f"*/*/{STAGING}/*") if p.is_dir()) if self.root.exists() else []
        return [run.location for run in staged_runs(self)]

    def staged_runs(self) -> list[StagedRun]:
        """Unfinished runs with their dataset, feature set, run key and number of staged parts."""
        return staged_runs(self)

    def orphan_attempts(self, min_age_s: float = 3600.0) -> list[OrphanAttempt]:
        """Object store only: upload attempts no manifest names (see
        :func:`mmfeat.pipelines.store.housekeeping.orphan_attempts`)."""
        return orphan_attempts(self, min_age_s)

    def remove_orphan_attempts(self, min_age_s: float = 3600.0) -> list[OrphanAttempt]:
        """Delete what :meth:`orphan_attempts` lists (never a committed version's parts, never an attempt
        of an uncommitted version younger than ``min_age_s``: it may be in flight); returns them."""
        found = orphan_attempts(self, min_age_s)
        for o in found:
            self.fs.delete_prefix(o.key)
        return found

    def _sweep_attempts(self, dataset: str, feature_set: str, version: str, keep: str) -> None:
        """After committing ``version`` with attempt ``keep``: no other attempt under it can ever be
        named by its manifest (it is created once), so they are garbage now (a killed publisher's, or a
        racing loser's that it deletes itself anyway)."""
        vprefix = f"{dataset}/{feature_set}/{version}"
        for name in self.fs.list_dirs(vprefix):
            if name.startswith(ATTEMPT_PREFIX) and name != keep:
                log.info("%s/%s: removing attempt %s, which the committed manifest does not name", dataset,
                         feature_set, f"{version}/{name}")
                self.fs.delete_prefix(f"{vprefix}/{name}")
