"""Content hashes of inputs, computed once per file per process.

Every media file a run touches is hashed for its ``source_sha256`` (the version id and reuse key)
and again by featurizers that deduplicate by content. Both go through :func:`file_sha256`, whose
memo is keyed by ``(real path, size, mtime_ns, inode)``: the second call is one ``stat``. A file
rewritten in place gets a new mtime (and usually size), so the memo never serves a stale hash for
a changed file. Checksums that must see the bytes on every call (store verification) pass
``memo=False``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

_CHUNK = 1 << 22
_MEMO_MAX = 1 << 20  # entries (~200 bytes each): bounded so a long-lived worker cannot grow forever
_memo: "OrderedDict[tuple[str, int, int, int], str]" = OrderedDict()
_memo_lock = threading.Lock()


def text_sha256(text: str) -> str:
    """sha256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike[str], *, memo: bool = True) -> str:
    """sha256 hex digest of a file's bytes, streamed in 4 MiB chunks.

    Args:
        path: the file.
        memo: reuse the digest of an unchanged file (same real path, size, mtime_ns, inode) from
            earlier in this process.

    Returns:
        The hex digest.

    Raises:
        OSError: the file cannot be opened or read (``FileNotFoundError`` when it is missing).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as fh:
        ...     _ = fh.write(b"abc")
        >>> file_sha256(fh.name)[:12]
        'ba7816bf8f01'
    """
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if memo:
            with _memo_lock:
                hit = _memo.get(key)
                if hit is not None:
                    _memo.move_to_end(key)
                    return hit
        h = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if memo:
        with _memo_lock:
            _memo[key] = digest
            if len(_memo) > _MEMO_MAX:
                _memo.popitem(last=False)
    return digest


def contained_path(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """The real path of ``path`` if it lies inside the real path of ``root``.

    Symlinks are resolved on both sides, so a link inside the data root that points outside it is
    caught before the file is ever opened.

    Args:
        path: a media path (absolute, or relative to ``root``).
        root: the data root every media path must stay inside.

    Returns:
        The resolved path.

    Raises:
        PermissionError: the resolved path lies outside the resolved root (message names both).

    Example:
        >>> contained_path("a/b.jpg", "/data")  # doctest: +SKIP
        PosixPath('/data/a/b.jpg')
    """
    real_root = Path(os.path.realpath(root))
    p = Path(path)
    real = Path(os.path.realpath(p if p.is_absolute() else real_root / p))
    if real != real_root and real_root not in real.parents:
        raise PermissionError(f"{path} resolves to {real}, outside the data root {real_root}")
    return real
