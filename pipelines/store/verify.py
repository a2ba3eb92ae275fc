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

    def check(self, fs: Any, key: str, expected: str, where: str) -> None:
        """Hash the part now unless it matched unchanged before; raise :class:`StoreError` if it is
        missing or its bytes differ from ``expected``."""
        memo = self._key(fs, key, expected)
        missing = StoreError(f"{where}: part {_name(key)} is missing; re-run the extraction to rebuild this version")
        if memo is None:
            raise missing
        with self._lock:
            if memo in self._seen:
                self._seen.move_to_end(memo)
                return
        try:
            digest, st = fs.sha256(key)
        except FileNotFoundError:
            raise missing from None
        if digest != expected:
            raise StoreError(f"{where}: part {_name(key)} is corrupted (sha256 differs from _manifest.json); "
                             f"re-run the extraction to rebuild this version")
        with self._lock:  # keyed by the stat of the bytes just hashed (local: taken right before hashing)
            self._remember((fs.uri, key, st.size, st.token, expected))

    def _remember(self, memo: tuple) -> None:
        self._seen[memo] = None
        if len(self._seen) > self._maxsize:
            self._seen.popitem(last=False)
