"""Staging one run's parts and publishing them as one immutable version.

Staging is the same on every root: ``<ds>/<fs>/_staging/<run key>/part-*.parquet`` + ``_plan.json``, each
part written atomically (local: temp + fsync + rename; S3: one PUT) by any process (a Dask or Ray worker
calls :meth:`FeatureStore.stage_part`). Publishing differs, because an object store has no rename:

- **local folder**: checksum the parts, write ``_manifest.json`` into the staging folder, rename the
  folder to ``<version>`` under the feature set's file lock (a rename is atomic).
- **object store** (no renames, no cross-process lock): read each staged part's bytes *once* (those
  bytes are hashed, digested into the version id and uploaded; a staging object another run may
  overwrite meanwhile is never read again), upload them to ``<version>/<attempt id>/part-*.parquet``
  (an attempt id is unique per publisher), then create ``<version>/_manifest.json`` with a conditional
  PUT (``If-None-Match: *``) whose ``parts[].file`` name that attempt's objects. **That create is the
  commit**: a version is published iff its ``_manifest.json`` exists, and it can be created once. The
  loser of a race (412) deletes its own attempt, reads the winner's manifest, checks that its content
  digest is the one it computed (same id = same rows) and reports that version. A publisher killed
  before the commit leaves an attempt no manifest names: invisible to readers; the next run resumes
  from staging and publishes in a new attempt. Once a version is committed, no other attempt under it
  can ever be named, so the committer deletes them (:meth:`FeatureStore.orphan_attempts` lists any
  left behind).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmfeat.featurizers.fingerprinting import mmfeat_version
from mmfeat.pipelines.store.format import ContentDigest, content_version_id
from mmfeat.pipelines.store.fs import FileStat
from mmfeat.pipelines.store.verify import StoreError, file_sha256

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore

log = logging.getLogger("mmfeat.store")

MANIFEST_NAME = "_manifest.json"
ALIASES_NAME = "_aliases.json"
STAGING = "_staging"
PLAN_NAME = "_plan.json"
PART_GLOB = "part-*.parquet"
ATTEMPT_PREFIX = "a-"
FORMAT_VERSION = 2
#: Error rows of these stages are retried by the next run (the input was fine, computing failed).
RETRYABLE_STAGES = ("featurize",)
#: Parts up to this size are held in memory between reading them from staging and uploading them.
SPOOL_BYTES = 64 << 20


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def part_index(key: str) -> int:
    """``.../part-00012.parquet`` -> 12."""
    return int(key.rsplit("/", 1)[-1].split("-")[1].split(".")[0])


def count_errors(tables: Iterable[pa.Table]) -> tuple[int, int, int]:
    """(rows, error rows, retryable error rows) over tables with ``status`` and ``stage``."""
    rows = errors = retryable = 0
    for t in tables:
        err = pc.equal(t.column("status"), "error")
        rows += t.num_rows
        errors += int(pc.sum(err).as_py() or 0)
        retry = pc.and_(err, pc.is_in(t.column("stage"), pa.array(RETRYABLE_STAGES)))
        retryable += int(pc.sum(retry).as_py() or 0)
    return rows, errors, retryable


class VersionWriter:
    """Stages one run's parts under its run key; finished parts survive a crash.

    Parts with retryable error rows left by an earlier run are not "done": the next run recomputes
    them (reusing their ok rows). A part counts as recomputed when this writer wrote it, when
    :meth:`mark_written` says so (a runner whose workers staged it), or when its file changed since the
    writer opened. ``publish`` names the version by its content.
    """

    def __init__(self, store: "FeatureStore", dataset: str, feature_set: str, key: str, plan: dict[str, Any]):
        self.store, self.dataset, self.feature_set, self.key = store, dataset, feature_set, key
        self.fs = store.fs
        self.prefix = f"{dataset}/{feature_set}/{STAGING}/{key}"
        self.dir = self.fs.loc(self.prefix)  # a Path on a local root, an s3:// location on an object store
        if self.fs.is_local:
            self._open_local(plan)
        else:
            self._open_remote(plan)
        self._written: set[int] = set()
        self._known: set[int] = self._finished()  # every part this writer has seen staged
        self._retry: dict[int, FileStat | None] = {
            i: self.fs.stat(self.part_key(i)) for i in sorted(self._known)
            if count_errors([self.read_part(i, columns=["status", "stage"])])[2]}

    def _open_local(self, plan: dict[str, Any]) -> None:
        plan_path = self.dir / PLAN_NAME
        if self.dir.exists():
            old = json.loads(plan_path.read_text()) if plan_path.exists() else None
            if old != plan:  # a different shard plan cannot be resumed part by part
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):  # half-written by a dead run (the caller holds the lock)
            tmp.unlink(missing_ok=True)
        plan_path.write_text(json.dumps(plan, sort_keys=True))

    def _open_remote(self, plan: dict[str, Any]) -> None:
        plan_key = f"{self.prefix}/{PLAN_NAME}"
        got = self.fs.read_with_etag(plan_key)
        old = json.loads(got[0]) if got is not None else None
        if old != plan:
            if got is not None or self.fs.list_files(self.prefix):  # a different shard plan: start over
                self.fs.delete_prefix(self.prefix)
            self.fs.write_text(plan_key, json.dumps(plan, sort_keys=True))

    # ------------------------------------------------------------------ parts
    def part_key(self, index: int) -> str:
        return f"{self.prefix}/{part_name(index)}"

    def part_path(self, index: int) -> Any:
        """Where part ``index`` is staged (a Path, or an s3:// location); read it with :meth:`read_part`."""
        return self.fs.loc(self.part_key(index))

    def _finished(self) -> set[int]:
        return {part_index(k) for k in self.fs.list_files(self.prefix, PART_GLOB)}

    def done_parts(self) -> set[int]:
        """Parts that need no work: written by this run, or by an earlier one without retryable errors.

        Lists the staging folder again on every call, so parts staged by other processes (a runner's
        workers) since the last call are seen."""
        finished = self._finished()
        self._known |= finished
        return {i for i in finished
                if i in self._written or i not in self._retry or self.fs.stat(self.part_key(i)) != self._retry[i]}

    def mark_written(self, indices: Iterable[int]) -> None:
        """Count these parts as written by this run (a runner whose workers called
        :meth:`FeatureStore.stage_part` for them): a recomputed part is done even if its bytes came out
        identical to the earlier run's (same ETag on S3, so :meth:`done_parts` could not tell)."""
        self._written |= set(indices)
        self._known |= set(indices)

    def staged_parts(self) -> list[Any]:
        """Every finished part's location (for reusing their ok rows: :meth:`FeatureStore.reusable_rows`)."""
        return [self.fs.loc(k) for k in self.fs.list_files(self.prefix, PART_GLOB)]

    def read_part(self, index: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of staged part ``index`` (only ``columns`` if given)."""
        filesystem, path = self.fs.arrow(self.part_key(index))
        return pq.read_table(path, columns=list(columns) if columns else None, filesystem=filesystem)

    def iter_parts(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Every staged part's rows, in part order."""
        for k in self.fs.list_files(self.prefix, PART_GLOB):
            yield self.read_part(part_index(k), columns)

    def write_part(self, index: int, table: pa.Table) -> Any:
        """Stage part ``index`` (atomically) and count it as written by this run."""
        where = self.store.stage_part(self.dataset, self.feature_set, self.key, index, table)
        self._written.add(index)
        self._known.add(index)
        return where

    # ------------------------------------------------------------------ publish
    def publish(self, manifest: dict[str, Any], aliases: Sequence[str] = ("latest",), *,
                identity: str | None = None) -> Any:
        """Checksum the parts, name the version by its content, commit it (see the module docstring)
        and point ``aliases`` at it.

        Args:
            manifest: the version's description (output, featurizer, input, lineage, ...).
            aliases: aliases to point at the published version.
            identity: what made the rows (default: ``manifest["featurizer"]["fingerprint_hash"]``).

        Returns:
            The published version's folder (its ``.name`` is the version id): a Path on a local root,
            an :class:`~mmfeat.pipelines.store.fs.ObjectPath` on an object store.

        Raises:
            StoreError: on an object store, the staged parts vanished during the publish and no run of
                this request published a version; or a committed version with this id holds other rows.
        """
        identity = identity or manifest.get("featurizer", {}).get("fingerprint_hash", "")
        if self.fs.is_local:
            return self._publish_local(manifest, aliases, identity)
        return self._publish_remote(manifest, aliases, identity)

    def _describe(self, manifest: dict[str, Any], version: str, content: str, parts: list[dict[str, Any]],
                  totals: tuple[int, int, int]) -> dict[str, Any]:
        rows, errors, retryable = totals
        return {
            **manifest,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "feature_set": self.feature_set,
            "version": version,
            "run_key": self.key,
            "rows": rows,
            "errors": errors,
            "retryable_errors": retryable,
            "content_sha256": content,
            "parts": parts,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "mmfeat_version": mmfeat_version(),
        }

    def _publish_local(self, manifest: dict[str, Any], aliases: Sequence[str], identity: str) -> Any:
        parts = sorted(self.dir.glob(PART_GLOB))
        digest = ContentDigest()
        meta_parts = []
        totals = [0, 0, 0]
        for p in parts:
            table = pq.read_table(p)
            digest.update(table)
            counts = count_errors([table])
            totals = [a + b for a, b in zip(totals, counts)]
            meta_parts.append({"file": p.name, "rows": counts[0], "errors": counts[1], "sha256": file_sha256(p),
                               "bytes": p.stat().st_size})
        version = content_version_id(identity, digest.hexdigest())
        full = self._describe(manifest, version, digest.hexdigest(), meta_parts, tuple(totals))  # type: ignore[arg-type]
        with self.store.lock(self.dataset, self.feature_set):
            (self.dir / PLAN_NAME).unlink(missing_ok=True)
            tmp = self.dir / (MANIFEST_NAME + ".tmp")
            tmp.write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
            os.replace(tmp, self.dir / MANIFEST_NAME)
            final = self.store.feature_dir(self.dataset, self.feature_set) / version
            if final.exists() and not self._replaces_damaged(version):
                shutil.rmtree(self.dir)  # the same rows were published before: versions are immutable
            else:
                os.replace(self.dir, final)
            for alias in aliases:
                self.store.set_alias(self.dataset, self.feature_set, alias, version)
        return final

    def _publish_remote(self, manifest: dict[str, Any], aliases: Sequence[str], identity: str) -> Any:
        fs = self.fs
        keys = fs.list_files(self.prefix, PART_GLOB)
        lost = self._known - {part_index(k) for k in keys}
        if lost:
            return self._staging_vanished(aliases, f"parts {sorted(lost)}")
        attempt = ATTEMPT_PREFIX + uuid.uuid4().hex[:8]
        digest = ContentDigest()
        meta_parts: list[dict[str, Any]] = []
        spooled: list[tuple[str, Any]] = []
        totals = [0, 0, 0]
        try:
            for k in keys:
                try:
                    data = fs.read_bytes(k)  # the one read of this staged object
                except FileNotFoundError:
                    return self._staging_vanished(aliases, k.rsplit("/", 1)[-1])
                table = pq.read_table(pa.BufferReader(data))
                digest.update(table)
                counts = count_errors([table])
                totals = [a + b for a, b in zip(totals, counts)]
                name = k.rsplit("/", 1)[-1]
                meta_parts.append({"file": f"{attempt}/{name}", "rows": counts[0], "errors": counts[1],
                                   "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
                spooled.append((name, spool))
                spool.write(data)
                del data, table
            content = digest.hexdigest()
            version = content_version_id(identity, content)
            full = self._describe(manifest, version, content, meta_parts, tuple(totals))  # type: ignore[arg-type]
            vprefix = f"{self.dataset}/{self.feature_set}/{version}"
            with self.store.lock(self.dataset, self.feature_set):
                existing = self.store._manifest_or_none(self.dataset, self.feature_set, version)
                if existing is not None and self._replaces_damaged(version):
                    existing = None
                if existing is None:
                    for name, spool in spooled:
                        spool.seek(0)
                        fs.write_bytes(f"{vprefix}/{attempt}/{name}", spool.read())
                    body = json.dumps(full, indent=2, sort_keys=True, default=str).encode()
                    if fs.create_exclusive(f"{vprefix}/{MANIFEST_NAME}", body):  # the commit
                        self.store._sweep_attempts(self.dataset, self.feature_set, version, keep=attempt)
                    else:  # another publisher committed this version first
                        fs.delete_prefix(f"{vprefix}/{attempt}")
                        existing = self.store._manifest_or_none(self.dataset, self.feature_set, version)
                        log.info("%s/%s: %s was committed by another publisher; using it",
                                 self.dataset, self.feature_set, version)
                if existing is not None and existing.get("content_sha256") != content:
                    raise StoreError(f"{self.dataset}/{self.feature_set}/{version}: the committed version holds "
                                     f"other rows (content {existing.get('content_sha256')}) than this run's "
                                     f"({content}); the store is inconsistent, run `mmfeat store verify`")
                fs.delete_prefix(self.prefix)
                for alias in aliases:
                    self.store.set_alias(self.dataset, self.feature_set, alias, version)
        finally:
            for _, spool in spooled:
                spool.close()
        return fs.loc(vprefix)

    def _replaces_damaged(self, version: str) -> bool:
        """Called under the writer lock when ``version`` is already there: True if it is damaged (or a folder
        without a manifest) and was removed, so this publish puts the rebuilt rows in its place; False if it
        is intact (the same rows were published before: versions are immutable)."""
        from mmfeat.pipelines.store.recovery import remove_if_damaged, remove_version

        try:
            m = self.store._manifest_or_none(self.dataset, self.feature_set, version)
        except StoreError:
            m, why = None, "_manifest.json unreadable"
        else:
            why = "no _manifest.json"
        if m is None:  # a local folder without a readable _manifest.json is no version: it makes way
            remove_version(self.store, self.dataset, self.feature_set, version, (why,))
            return True
        removed = remove_if_damaged(self.store, m, "memo" if self.fs.is_local else "stat")
        if removed is not None:
            log.warning("%s was damaged (%s): replacing it with the rows just computed (same id)", removed,
                        "; ".join(removed.problems))
        return removed is not None

    def _staging_vanished(self, aliases: Sequence[str], what: str) -> Any:
        """Staged parts disappeared under this publish: another run of the same request published and
        removed the staging. Report the newest version that run published, else fail."""
        mine = [m for m in self.store.versions(self.dataset, self.feature_set) if m.get("run_key") == self.key]
        if not mine:
            raise StoreError(f"{self.dataset}/{self.feature_set}: staged {what} of run {self.key} disappeared "
                             f"during publish and no version of that run is published; re-run the extraction")
        version = mine[-1]["version"]
        log.info("%s/%s: run %s was published by another process as %s while this one published",
                 self.dataset, self.feature_set, self.key, version)
        for alias in aliases:
            self.store.set_alias(self.dataset, self.feature_set, alias, version)
        return self.fs.loc(f"{self.dataset}/{self.feature_set}/{version}")
