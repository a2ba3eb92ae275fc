"""Checksums of store parts: the rule that every read sees the bytes its manifest names.

A part is hashed (sha256, never memoized at the file level) and compared with ``_manifest.json`` before its
bytes are returned; :class:`VerifiedParts` remembers, per process, the parts that matched, keyed by location,
size and what identifies the bytes (mtime and inode on a local disk; the ETag on S3), so a part is re-hashed
only when it changed or was never checked. On S3 the size and ETag recorded are those of the GET that was
hashed, not of an earlier HEAD, so a memo entry always names bytes that really matched.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mmfeat.featurizers.hashing import file_sha256 as _file_sha256


class StoreError(RuntimeError):
    """Something in the store is missing or not what its manifest says."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes as they are now (never memoized: checksums must see the bytes)."""
    return _file_sha256(path, memo=False)


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


MISSING = "missing"
CHECKSUM_MISMATCH = "checksum mismatch"


def rebuild_hint(where: str) -> str:
    """What to do about a damaged version ``dataset/feature_set/version``: the next run of the request that
    made it finds it damaged and rebuilds it (same rows, same id); ``mmfeat store repair`` removes it now."""
    dataset, feature_set = (where.split("/") + ["DATASET", "FEATURE_SET"])[:2]
    return (f"re-run the extraction (or import) to rebuild this version, or remove it now with "
            f"`mmfeat store repair {dataset} {feature_set}`")


class VerifiedParts:
    """Parts whose bytes matched their manifest checksum in this process (bounded LRU).

    ``fs`` is the store's filesystem (:mod:`mmfeat.pipelines.store.fs`), ``key`` the part's key under it.
    """

    def __init__(self, maxsize: int = 65536) -> None:
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    @staticmethod
    def _key(fs: Any, key: str, expected: str) -> tuple | None:
        st = fs.stat(key)
        return None if st is None else (fs.uri, key, st.size, st.token, expected)

    def seen(self, fs: Any, key: str, expected: str) -> bool:
        """Whether this part, unchanged since, already matched ``expected`` in this process."""
        memo = self._key(fs, key, expected)
        with self._lock:
            return memo is not None and memo in self._seen

    def problem(self, fs: Any, key: str, expected: str, *, size: int | None = None, rehash: bool = True,
                fresh: bool = False) -> str | None:
        """What is wrong with one part now, or None when it is intact.

        Args:
            fs: the store's filesystem.
            key: the part's key under the store root.
            expected: its sha256 in ``_manifest.json``.
            size: its size in bytes in ``_manifest.json`` (manifests written before sizes were recorded: None).
            rehash: hash bytes this process has not seen match (False: only presence and size are checked,
                what an object-store cache hit can afford without downloading the version).
            fresh: hash even bytes this process has seen match (``mmfeat store verify`` / ``repair``).

        Returns:
            ``"missing"``, ``"checksum mismatch"``, ``"size mismatch (N bytes, manifest says M)"`` or None.
        """
        st = fs.stat(key)
        if st is None:
            return MISSING
        if size is not None and st.size != size:
            return f"size mismatch ({st.size} bytes, manifest says {size})"
        if not rehash:
            return None
        memo = (fs.uri, key, st.size, st.token, expected)
        if not fresh:
            with self._lock:
                if memo in self._seen:
                    self._seen.move_to_end(memo)
                    return None
        try:
            digest, hashed = fs.sha256(key)
        except FileNotFoundError:
            return MISSING
        if digest != expected:
            return CHECKSUM_MISMATCH
        with self._lock:  # keyed by the stat of the bytes just hashed (local: taken right before hashing)
            self._remember((fs.uri, key, hashed.size, hashed.token, expected))
        return None

    def check(self, fs: Any, key: str, expected: str, where: str, size: int | None = None) -> None:
        """Hash the part now unless it matched unchanged before; raise :class:`StoreError` if it is
        missing or its bytes differ from ``expected`` (``where`` is ``dataset/feature_set/version``)."""
        found = self.problem(fs, key, expected, size=size)
        if found is None:
            return
        what = {MISSING: "is missing", CHECKSUM_MISMATCH: "is corrupted (sha256 differs from _manifest.json)"}.get(
            found, f"is corrupted ({found})")
        raise StoreError(f"{where}: part {_name(key)} {what}; {rebuild_hint(where)}")

    def _remember(self, memo: tuple) -> None:
        self._seen[memo] = None
        if len(self._seen) > self._maxsize:
            self._seen.popitem(last=False)
