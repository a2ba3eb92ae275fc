"""Checksums of store parts: the rule that every read sees the bytes its manifest names.

A part is hashed (sha256, never memoized at the file level) and compared with ``_manifest.json`` before its
bytes are returned; :class:`VerifiedParts` remembers, per process, the parts that matched, keyed by path, size,
mtime and inode, so a part is re-hashed only when it changed or was never checked.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from mmfeat.featurizers.hashing import file_sha256 as _file_sha256


class StoreError(RuntimeError):
    """Something in the store is missing or not what its manifest says."""


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes as they are now (never memoized: checksums must see the bytes)."""
    return _file_sha256(path, memo=False)


class VerifiedParts:
    """Parts whose bytes matched their manifest checksum in this process (bounded LRU)."""

    def __init__(self, maxsize: int = 65536) -> None:
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._maxsize = maxsize
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: Path, expected: str) -> tuple | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (str(path), st.st_size, st.st_mtime_ns, st.st_ino, expected)

    def seen(self, path: Path, expected: str) -> bool:
        """Whether this part, unchanged since, already matched ``expected`` in this process."""
        key = self._key(path, expected)
        with self._lock:
            return key is not None and key in self._seen

    def check(self, path: Path, expected: str, where: str) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise StoreError(f"{where}: part {path.name} is missing; re-run the extraction to rebuild this version") from None
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, expected)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
        if file_sha256(path) != expected:
            raise StoreError(f"{where}: part {path.name} is corrupted (sha256 differs from _manifest.json); "
                             f"re-run the extraction to rebuild this version")
        with self._lock:
            self._seen[key] = None
            if len(self._seen) > self._maxsize:
                self._seen.popitem(last=False)
