"""The versioned Parquet feature store.

Layout::

    <root>/<dataset>/<feature_set>/<version>/part-00000.parquet ... _manifest.json
    <root>/<dataset>/<feature_set>/_aliases.json          {"latest": "<version>", "<tag>": "<version>"}
    <root>/<dataset>/<feature_set>/_staging/<run key>/    parts of an unfinished run (resume from here)
    <root>/<dataset>/<feature_set>/.lock                  held by the one run writing this feature set

Promises (the README's store section states them for users):

- **A version id identifies its content**: ``v-`` + hash(featurizer fingerprint hash, digest of
  every row: ids, values, statuses, errors, input hashes). Two versions with different rows never
  share an id; the same rows always get the same id, however they were sharded.
- **A run key identifies a request**: hash(featurizer fingerprint, every item's input hash). A
  published version with the run's key and no retryable errors is a cache hit; one with error rows
  of stage ``featurize`` is not -- those rows are recomputed and the ok rows reused.
- **Atomic, immutable publish**: parts are staged under the run key, checksummed, the manifest
  written, then the folder renamed to its version id. Readers never see half a version.
- **Resume**: a crashed run (even ``kill -9``) leaves its finished parts staged; the next run with
  the same key skips those without retryable errors.
- **Reads verify**: every part's sha256 is checked against ``_manifest.json`` before its bytes are
  returned (once per part per process, memoized by path, size, mtime and inode).
- **One writer per feature set**: a run holds the feature set's file lock from planning to publish
  (a second run waits, then finds the cache hit); alias files are replaced atomically under it.
  The OS drops the lock of a killed process, so a dead run never blocks; temp files it left are
  removed by the next holder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfeat.featurizers.fingerprinting import mmfeat_version
from mmfeat.pipelines.store_format import (  # noqa: F401  (re-exported: the store's row API)
    ContentDigest,
    as_list_column,
    build_rows,
    content_version_id,
    embedding_layout,
    embedding_matrix,
    row_schema,
    write_parquet,
)
from mmfeat.pipelines.store_verify import StoreError, file_sha256  # noqa: F401  (re-exported)
from mmfeat.pipelines.store_verify import VerifiedParts as _VerifiedParts

log = logging.getLogger("mmfeat.store")

MANIFEST_NAME = "_manifest.json"
ALIASES_NAME = "_aliases.json"
STAGING = "_staging"
LOCK_NAME = ".lock"
FORMAT_VERSION = 2
#: Error rows of these stages are retried by the next run (the input was fine, computing failed).
RETRYABLE_STAGES = ("featurize",)


def default_store_root() -> Path:
    """``$MMFEAT_STORE``, else ``store/`` in the working directory (never the install location)."""
    return Path(os.environ.get("MMFEAT_STORE", Path.cwd() / "store"))


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


def _count_errors(paths: Sequence[Path]) -> tuple[int, int, int]:
    """(rows, error rows, retryable error rows) over parts."""
    rows = errors = retryable = 0
    for p in paths:
        t = pq.read_table(p, columns=["status", "stage"])
        err = pc.equal(t.column("status"), "error")
        rows += t.num_rows
        errors += int(pc.sum(err).as_py() or 0)
        retry = pc.and_(err, pc.is_in(t.column("stage"), pa.array(RETRYABLE_STAGES)))
        retryable += int(pc.sum(retry).as_py() or 0)
    return rows, errors, retryable


class VersionWriter:
    """Stages one run's parts under its run key; finished parts survive a crash.

    Parts with retryable error rows left by an earlier run are not "done": the next run recomputes
    them (reusing their ok rows). ``publish`` names the version by its content.
    """

    def __init__(self, store: "FeatureStore", dataset: str, feature_set: str, key: str, plan: dict[str, Any]):
        self.store, self.dataset, self.feature_set, self.key = store, dataset, feature_set, key
        self.dir = store.feature_dir(dataset, feature_set) / STAGING / key
        plan_path = self.dir / "_plan.json"
        if self.dir.exists():
            old = json.loads(plan_path.read_text()) if plan_path.exists() else None
            if old != plan:  # a different shard plan cannot be resumed part by part
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):  # half-written by a dead run (the caller holds the lock)
            tmp.unlink(missing_ok=True)
        plan_path.write_text(json.dumps(plan, sort_keys=True))
        self._written: set[int] = set()
        self._retry: set[int] = {i for i in self._finished() if _count_errors([self.part_path(i)])[2]}

    def part_path(self, index: int) -> Path:
        return self.dir / f"part-{index:05d}.parquet"

    def _finished(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("part-*.parquet")}

    def done_parts(self) -> set[int]:
        """Parts that need no work: written by this run, or by an earlier one without retryable errors."""
        return {i for i in self._finished() if i in self._written or i not in self._retry}

    def staged_parts(self) -> list[Path]:
        """Every finished part file (for reusing their ok rows)."""
        return sorted(self.dir.glob("part-*.parquet"))

    def write_part(self, index: int, table: pa.Table) -> Path:
        path = self.part_path(index)
        write_parquet(table, path)
        self._written.add(index)
        return path

    def publish(self, manifest: dict[str, Any], aliases: Sequence[str] = ("latest",), *,
                identity: str | None = None) -> Path:
        """Checksum the parts, name the version by its content, write ``_manifest.json``, rename
        the folder into place and point ``aliases`` at it.

        Args:
            manifest: the version's description (output, featurizer, input, lineage, ...).
            aliases: aliases to point at the published version.
            identity: what made the rows (default: ``manifest["featurizer"]["fingerprint_hash"]``).

        Returns:
            The published version's folder (its name is the version id).
        """
        identity = identity or manifest.get("featurizer", {}).get("fingerprint_hash", "")
        parts = sorted(self.dir.glob("part-*.parquet"))
        digest = ContentDigest()
        meta_parts = []
        for p in parts:
            digest.update(pq.read_table(p))
            rows, n_err, n_retry = _count_errors([p])
            meta_parts.append({"file": p.name, "rows": rows, "errors": n_err, "sha256": file_sha256(p)})
        rows, errors, retryable = _count_errors(parts)
        version = content_version_id(identity, digest.hexdigest())
        manifest = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "feature_set": self.feature_set,
            "version": version,
            "run_key": self.key,
            "rows": rows,
            "errors": errors,
            "retryable_errors": retryable,
            "content_sha256": digest.hexdigest(),
            "parts": meta_parts,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mmfeat_version": mmfeat_version(),
        }
        with self.store.lock(self.dataset, self.feature_set):
            (self.dir / "_plan.json").unlink(missing_ok=True)
            tmp = self.dir / (MANIFEST_NAME + ".tmp")
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
            os.replace(tmp, self.dir / MANIFEST_NAME)
            final = self.store.feature_dir(self.dataset, self.feature_set) / version
            if final.exists():  # the same rows were published before: versions are immutable
                shutil.rmtree(self.dir)
            else:
                os.replace(self.dir, final)
            for alias in aliases:
                self.store.set_alias(self.dataset, self.feature_set, alias, version)
        return final


_VERIFIED = _VerifiedParts()


_LOCKS: dict[str, tuple[Any, Any]] = {}
_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> tuple[Any, Any]:
    """One (thread RLock, inter-process FileLock) pair per lock file in this process, shared by
    every FeatureStore on the same root, so a nested acquire never deadlocks on itself."""
    from filelock import FileLock

    key = os.path.realpath(path)
    with _LOCKS_GUARD:
        if key not in _LOCKS:
            _LOCKS[key] = (threading.RLock(), FileLock(key, thread_local=False))
        return _LOCKS[key]


class FeatureStore:
    """Read and write feature versions under one root folder.

    Example:
        >>> store = FeatureStore("store")                                  # doctest: +SKIP
        >>> store.read_matrix("microlens-mini", "title_minilm", "latest",  # doctest: +SKIP
        ...                   item_ids=["1", "2"]).matrix.shape
        (2, 384)
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().resolve()

    # ------------------------------------------------------------------ layout and lookup
    def feature_dir(self, dataset: str, feature_set: str) -> Path:
        return self.root / dataset / feature_set

    def datasets(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.exists() else []

    def feature_sets(self, dataset: str) -> list[str]:
        d = self.root / dataset
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.exists() else []

    def versions(self, dataset: str, feature_set: str) -> list[dict[str, Any]]:
        """Published versions' manifests, oldest first."""
        d = self.feature_dir(dataset, feature_set)
        found = [json.loads(m.read_text()) for m in d.glob(f"v-*/{MANIFEST_NAME}")] if d.exists() else []
        return sorted(found, key=lambda m: (m["created_at"], m["version"]))

    def aliases(self, dataset: str, feature_set: str) -> dict[str, str]:
        path = self.feature_dir(dataset, feature_set) / ALIASES_NAME
        return json.loads(path.read_text()) if path.exists() else {}

    @contextmanager
    def lock(self, dataset: str, feature_set: str, *, log_every: float = 30.0) -> Iterator[None]:
        """Hold the feature set's writer lock: reentrant for the thread holding it, exclusive against
        other threads (any :class:`FeatureStore` object on this root) and other processes.

        A run holds it from planning to publish, so two runs of one feature set never stage or
        publish over each other: the second waits (logging that it waits), then finds the first's
        version. The OS releases the file lock of a killed process.
        """
        d = self.feature_dir(dataset, feature_set)
        d.mkdir(parents=True, exist_ok=True)
        thread_lock, file_lock = _process_lock(d / LOCK_NAME)
        waited = 0.0
        while not thread_lock.acquire(timeout=log_every):
            waited += log_every
            log.warning("%s/%s: waiting for another thread of this process writing it (%.0f s so far)",
                        dataset, feature_set, waited)
        try:
            from filelock import Timeout

            while True:
                try:
                    file_lock.acquire(timeout=log_every)
                    break
                except Timeout:
                    waited += log_every
                    log.warning("%s/%s: waiting for another run that holds %s (%.0f s so far)",
                                dataset, feature_set, d / LOCK_NAME, waited)
            try:
                yield
            finally:
                file_lock.release()
        finally:
            thread_lock.release()

    def set_alias(self, dataset: str, feature_set: str, alias: str, version: str) -> None:
        """Point an alias (``latest`` or a user tag) at a published version (atomic file swap under
        the feature set's lock, so two writers never lose each other's aliases)."""
        if not (self.feature_dir(dataset, feature_set) / version / MANIFEST_NAME).exists():
            raise StoreError(f"cannot tag {dataset}/{feature_set}: version {version} is not published")
        with self.lock(dataset, feature_set):
            aliases = {**self.aliases(dataset, feature_set), alias: version}
            path = self.feature_dir(dataset, feature_set) / ALIASES_NAME
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(aliases, indent=2, sort_keys=True))
            os.replace(tmp, path)

    def resolve(self, dataset: str, feature_set: str, ref: str = "latest") -> str:
        """A version id from an id, an alias, or a unique id prefix."""
        d = self.feature_dir(dataset, feature_set)
        if not d.exists():
            have = self.feature_sets(dataset)
            raise StoreError(f"no feature set {dataset}/{feature_set} in {self.root} (it has: {have or 'nothing'})")
        aliases = self.aliases(dataset, feature_set)
        if ref in aliases:
            return aliases[ref]
        matches = [p.name for p in d.glob("v-*") if p.name.startswith(ref) and (p / MANIFEST_NAME).exists()]
        if len(matches) == 1:
            return matches[0]
        raise StoreError(
            f"{dataset}/{feature_set}: {ref!r} is {'ambiguous' if matches else 'not a version or alias'}; "
            f"aliases {sorted(aliases)}, versions {[m['version'] for m in self.versions(dataset, feature_set)]}"
        )

    def has_version(self, dataset: str, feature_set: str, version: str) -> bool:
        return (self.feature_dir(dataset, feature_set) / version / MANIFEST_NAME).exists()

    def manifest(self, dataset: str, feature_set: str, ref: str = "latest") -> dict[str, Any]:
        v = self.resolve(dataset, feature_set, ref)
        return json.loads((self.feature_dir(dataset, feature_set) / v / MANIFEST_NAME).read_text())

    def complete_version(self, dataset: str, feature_set: str, key: str) -> dict[str, Any] | None:
        """The newest published version made by the request ``key`` with no retryable error rows
        (a cache hit), else None."""
        for m in reversed(self.versions(dataset, feature_set)):
            if m.get("run_key") == key and m.get("retryable_errors", 1) == 0:
                return m
        return None

    # ------------------------------------------------------------------ writing
    def writer(self, dataset: str, feature_set: str, key: str, plan: dict[str, Any]) -> VersionWriter:
        """A stager for the run ``key`` (a run key, or any name unique to what is being written)."""
        return VersionWriter(self, dataset, feature_set, key, plan)

    # ------------------------------------------------------------------ reading
    def verify(self, dataset: str, feature_set: str, ref: str = "latest") -> None:
        """Re-hash every part now (no memo); raise :class:`StoreError` naming a missing or changed one."""
        m = self.manifest(dataset, feature_set, ref)
        d = self.feature_dir(dataset, feature_set) / m["version"]
        where = f"{dataset}/{feature_set}/{m['version']}"
        for part in m["parts"]:
            path = d / part["file"]
            if not path.exists():
                raise StoreError(f"{where}: part {part['file']} is missing")
            if file_sha256(path) != part["sha256"]:
                raise StoreError(f"{where}: part {part['file']} is corrupted (sha256 differs from "
                                 f"_manifest.json); re-run the extraction to rebuild this version")

    def _verified_paths(self, m: dict[str, Any]) -> list[str]:
        """The version's part paths, each checked against its manifest sha256 (parts hashed on a
        few threads: hashlib releases the GIL, so a cold read costs about one part's hash per core)."""
        d = self.feature_dir(m["dataset"], m["feature_set"]) / m["version"]
        where = f"{m['dataset']}/{m['feature_set']}/{m['version']}"
        checks = [(d / part["file"], part["sha256"]) for part in m["parts"]]
        checks_left = [c for c in checks if not _VERIFIED.seen(*c)]
        if len(checks_left) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(len(checks), os.cpu_count() or 1)) as pool:
                list(pool.map(lambda c: _VERIFIED.check(c[0], c[1], where), checks_left))
        else:
            for path, sha in checks_left:
                _VERIFIED.check(path, sha, where)
        return [str(path) for path, _ in checks]

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
        d = self.feature_dir(dataset, feature_set) / m["version"]
        paths = self._verified_paths(m) if verify else [str(d / p["file"]) for p in m["parts"]]
        if columns is not None and only_ok and "status" not in columns:
            columns = [*columns, "status"]
        if not paths:
            return row_schema(**m["output"]).empty_table()
        try:
            table = pq.read_table(paths, columns=list(columns) if columns else None, memory_map=True,
                                  use_threads=True)
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"{dataset}/{feature_set}/{m['version']}: unreadable part ({exc}); "
                             f"run `mmfeat store verify` to find it") from exc
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
                      extra_parts: Sequence[Path] = ()) -> dict[str, Any]:
        """``source_sha256 -> value`` of ok rows made by the same featurizer, for the ``needed``
        input hashes only (all when None).

        Looks in ``extra_parts`` first (a resumed run's staged parts), then in published versions
        newest first, filtering each by the still-needed hashes in Arrow (``pc.is_in``) and
        stopping once every needed hash is found: a re-run reads only what it reuses.
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
            take(pq.read_table(part))
        for m in reversed(self.versions(dataset, feature_set)):
            if want is not None and len(want) == 0:
                break
            if m.get("featurizer", {}).get("fingerprint_hash") != fingerprint_hash:
                continue
            take(self.read_table(dataset, feature_set, m["version"], raw=True))
        return out

    # ------------------------------------------------------------------ housekeeping
    def staged(self) -> list[Path]:
        """Unfinished runs (resumable) under the root."""
        return sorted(p for p in self.root.glob(f"*/*/{STAGING}/*") if p.is_dir()) if self.root.exists() else []
