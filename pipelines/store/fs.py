"""The few file operations the feature store needs, on a local folder or an object store.

The store names everything by a *key*: a ``/``-separated path relative to its root
(``ds/fs/v-0123/_manifest.json``). :func:`open_fs` turns the root into one of two filesystems with the
same operations:

- :class:`LocalFS` (a folder): what the store always did -- files written to a private temp name,
  fsynced and renamed; an exclusive create is a hard link of a finished temp file (atomic, fails if
  the name exists).
- :class:`S3FS` (``s3://bucket/prefix``): every PUT is atomic (readers see the old object or the new
  one, never a part), an exclusive create is a PUT with ``If-None-Match: *`` (S3 answers 412 if the key
  exists; the conditional write is atomic on the server), an update of a small JSON file is a PUT with
  ``If-Match: <etag>``. Parquet is read through :class:`pyarrow.fs.S3FileSystem`; the conditional
  writes, listings and deletes go through boto3 (pyarrow has no conditional PUT).

The endpoint of an S3-compatible server (MinIO, moto, Ceph) comes from the root's query
(``s3://bucket/prefix?endpoint_override=http://127.0.0.1:9000``, pyarrow's own spelling), else the
standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables; credentials and region from the
standard AWS chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles).

Both are picklable and cheap to rebuild: an :class:`S3FS` pickles its settings, never a live client,
so a Dask or Ray worker opens its own connection.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: Query parameters an ``s3://`` root may carry (anything else is an error, never ignored).
S3_QUERY_KEYS = ("endpoint_override", "region")


@dataclass(frozen=True)
class FileStat:
    """What identifies a file's current bytes cheaply: its size plus mtime and inode (local) or ETag (S3)."""

    size: int
    token: tuple


class ObjectPath(str):
    """An object-store location (``s3://bucket/prefix/ds/fs/v-...``) that callers can treat like the
    :class:`~pathlib.Path` a local store returns: ``str()`` is the URI, ``.name`` its last segment and
    ``/`` appends a segment (before a ``?query``, which stays at the end)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return self.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def __truediv__(self, other: str) -> "ObjectPath":
        base, sep, query = self.partition("?")
        return ObjectPath(f"{base.rstrip('/')}/{str(other).strip('/')}{sep}{query}")


def is_uri(root: str | os.PathLike[str]) -> bool:
    """Whether a store root is an object-store URI (``scheme://...``) rather than a local path."""
    return isinstance(root, str) and "://" in root


def open_fs(root: str | os.PathLike[str]) -> "LocalFS | S3FS":
    """The filesystem of a store root: a local path, or an ``s3://bucket/prefix`` URI.

    Args:
        root: a folder (``str`` or path), or ``s3://bucket[/prefix][?endpoint_override=URL&region=R]``.

    Returns:
        A :class:`LocalFS` or :class:`S3FS`.

    Raises:
        ValueError: an unsupported scheme, a URI without a bucket, or an unknown query parameter.

    Example:
        >>> open_fs("s3://features/team-a").uri
        's3://features/team-a'
    """
    if not is_uri(root):
        return LocalFS(root)
    scheme = str(root).split("://", 1)[0].lower()
    if scheme != "s3":
        raise ValueError(f"store root {root!r}: only local folders and s3:// URIs are supported (got {scheme}://)")
    return S3FS(str(root))


def _new_tmp_name(name: str) -> str:
    return f"{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


class LocalFS:
    """A store root on the local filesystem (the layout and write rules the store always had)."""

    is_local = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)

    def __reduce__(self) -> tuple:
        return (LocalFS, (str(self.root),))

    def path(self, key: str = "") -> Path:
        """The local path of a key (``""``: the root)."""
        return self.root / key if key else self.root

    loc = path  # what a user is shown for a key

    def key_of(self, location: str | os.PathLike[str]) -> str | None:
        """The key of a path under this root (None if it is elsewhere)."""
        try:
            return Path(location).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return None

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def root_exists(self) -> bool:
        """Whether the root folder exists (a store that was never written has none)."""
        return self.root.is_dir()

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_text(self, key: str) -> str:
        return self.path(key).read_text()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace a file atomically (private temp name, fsync, rename): a reader sees old or new bytes."""
        path, tmp = self._synced_temp(key, data)
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def _synced_temp(self, key: str, data: bytes) -> tuple[Path, Path]:
        """``data`` written and fsynced under a private temp name next to ``key``: (final path, temp path)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(_new_tmp_name(path.name))
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path, tmp

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` only if it does not exist; True if this call created it.

        The bytes are written and fsynced under a private name first, then hard-linked to the final
        name (``link`` fails when the name exists), so the file appears whole or not at all."""
        path, tmp = self._synced_temp(key, data)
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def list_files(self, prefix: str, pattern: str = "*") -> list[str]:
        """Keys of the files directly under folder ``prefix`` whose name matches ``pattern``, sorted."""
        d = self.path(prefix)
        if not d.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" if prefix else p.name for p in d.glob(pattern) if p.is_file())

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the sub-folders of ``prefix``, sorted."""
        d = self.path(prefix)
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def stat(self, key: str) -> FileStat | None:
        try:
            st = self.path(key).stat()
        except OSError:
            return None
        return FileStat(st.st_size, (st.st_mtime_ns, st.st_ino))

    def sha256(self, key: str) -> tuple[str, FileStat | None]:
        """(sha256 of the bytes now, the stat taken just before hashing); never memoized."""
        from mmfeat.featurizers.hashing import file_sha256

        st = self.stat(key)
        if st is None:
            raise FileNotFoundError(key)
        return file_sha256(self.path(key), memo=False), st

    def arrow(self, key: str) -> tuple[Any, str]:
        """``(filesystem, path)`` for pyarrow readers (None: pyarrow's local filesystem)."""
        return None, str(self.path(key))


class S3FS:
    """A store root on S3 or an S3-compatible server (``s3://bucket/prefix``)."""

    is_local = False

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        if not parts.netloc:
            raise ValueError(f"store root {uri!r}: give a bucket, e.g. s3://my-bucket/features")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - set(S3_QUERY_KEYS))
        if unknown:
            raise ValueError(f"store root {uri!r}: unknown option(s) {unknown}; an s3:// root takes "
                             f"{list(S3_QUERY_KEYS)}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.endpoint = (query.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3")
                         or os.environ.get("AWS_ENDPOINT_URL") or None)
        if self.endpoint and "://" not in self.endpoint:
            self.endpoint = "https://" + self.endpoint
        self.region = query.get("region") or None
        base = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.uri = base + (f"?{parts.query}" if parts.query else "")
        self._base = base
        self._client: Any = None
        self._arrow: Any = None
        self._pid = os.getpid()
        self._connect = threading.Lock()  # the store hashes parts on a few threads

    def __reduce__(self) -> tuple:
        return (S3FS, (self.uri,))  # settings only: a worker opens its own connections

    # ------------------------------------------------------------------ connections
    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix and key else (key or self.prefix)

    def client(self) -> Any:
        """A boto3 S3 client (one per process; a forked child makes its own)."""
        with self._connect:
            if self._client is None or self._pid != os.getpid():
                from mmfeat.featurizers.registry import require_extra

                boto3 = require_extra("boto3", "s3", "a feature store on s3://")
                from botocore.config import Config

                self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                                            config=Config(retries={"max_attempts": 5, "mode": "standard"}))
                self._arrow = None if self._pid != os.getpid() else self._arrow
                self._pid = os.getpid()
            return self._client

    def arrow_fs(self) -> Any:
        """pyarrow's S3 filesystem with this root's endpoint and region."""
        with self._connect:
            if self._arrow is None or self._pid != os.getpid():
                from pyarrow import fs as pafs

                kwargs: dict[str, Any] = {}
                if self.endpoint:
                    kwargs["endpoint_override"] = self.endpoint
                if self.region:
                    kwargs["region"] = self.region
                self._arrow = pafs.S3FileSystem(**kwargs)
                self._client = None if self._pid != os.getpid() else self._client
                self._pid = os.getpid()
            return self._arrow

    # ------------------------------------------------------------------ operations
    def loc(self, key: str = "") -> ObjectPath:
        """The ``s3://`` URI of a key (``""``: the root, without the query)."""
        return ObjectPath(f"{self._base}/{key}" if key else self._base)

    def key_of(self, location: str) -> str | None:
        """The key of an ``s3://`` location under this root (None if it is elsewhere)."""
        base = str(location).split("?", 1)[0]
        return base[len(self._base) + 1:] if base.startswith(self._base + "/") else None

    def arrow(self, key: str) -> tuple[Any, str]:
        return self.arrow_fs(), f"{self.bucket}/{self._object_key(key)}"

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _missing(self, exc: Exception) -> bool:
        return self._code(exc) in ("404", "NoSuchKey", "NotFound")

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def root_exists(self) -> bool:
        """Whether any object lies under the root prefix (an object store has no empty folders); False for a
        bucket that does not exist."""
        from botocore.exceptions import ClientError

        base = f"{self.prefix}/" if self.prefix else ""
        try:
            r = self.client().list_objects_v2(Bucket=self.bucket, Prefix=base, MaxKeys=1)
        except ClientError as exc:
            if self._code(exc) in ("NoSuchBucket", "404"):
                return False
            raise
        return int(r.get("KeyCount", 0)) > 0

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client().get_object(Bucket=self.bucket, Key=self._object_key(key))["Body"].read()
        except ClientError as exc:
            if self._missing(exc):
                raise FileNotFoundError(self.loc(key)) from None
            raise

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """The bytes and ETag of ``key`` from one GET, or None if it does not exist."""
        from botocore.exceptions import ClientError

        try:
            r = self.client().get_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return r["Body"].read(), r["ETag"]

    def write_bytes(self, key: str, data: bytes) -> None:
        """One PUT: atomic on S3 (readers see the old object or the new one)."""
        self.client().put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> bool:
        """A PUT with a precondition; False on 412. S3 answers 409 while another conditional write of
        the key is in flight: retried (it then succeeds or fails on the precondition)."""
        from botocore.exceptions import ClientError

        for attempt in range(8):
            try:
                self.client().put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data, **condition)
                return True
            except ClientError as exc:
                code = self._code(exc)
                if code in ("PreconditionFailed", "412"):
                    return False
                if code in ("ConditionalRequestConflict", "409") and attempt < 7:
                    time.sleep(0.05 * 2 ** attempt)
                    continue
                if "IfMatch" in condition and self._missing(exc):
                    return False  # deleted since it was read: the caller re-reads
                raise
        return False  # pragma: no cover (the loop returns or raises)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """PUT with ``If-None-Match: *``: True if this call created ``key``, False if it existed."""
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace_if(self, key: str, data: bytes, etag: str) -> bool:
        """PUT with ``If-Match: <etag>``: True if ``key`` still had that ETag and now holds ``data``."""
        return self._conditional_put(key, data, IfMatch=etag)

    def _list(self, prefix: str, delimiter: bool) -> tuple[list[dict], list[str]]:
        base = self._object_key(prefix).rstrip("/") + "/" if self._object_key(prefix) else ""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        if delimiter:
            kwargs["Delimiter"] = "/"
        objects: list[dict] = []
        dirs: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(**kwargs):
            objects += page.get("Contents", [])
            dirs += [p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return objects, dirs

    def _rel(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1:] if self.prefix else object_key

    def list_files(self, prefix: str, pattern: str = "*") -> list[str]:
        """Keys of the objects directly under ``prefix`` whose name matches ``pattern``, sorted."""
        objects, _ = self._list(prefix, delimiter=True)
        keys = [self._rel(o["Key"]) for o in objects]
        return sorted(k for k in keys if fnmatch.fnmatchcase(k.rsplit("/", 1)[-1], pattern))

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the "folders" (common prefixes) directly under ``prefix``, sorted."""
        return sorted(self._list(prefix, delimiter=True)[1])

    def list_tree(self, prefix: str) -> list[tuple[str, FileStat, float]]:
        """Every object under ``prefix`` (recursively): (key, stat, last-modified epoch seconds)."""
        objects, _ = self._list(prefix, delimiter=False)
        return [(self._rel(o["Key"]), FileStat(int(o["Size"]), (o["ETag"],)), o["LastModified"].timestamp())
                for o in objects]

    def delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def delete_prefix(self, prefix: str) -> None:
        """Delete every object under ``prefix`` (1000 per request)."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete the whole store root")
        keys = [o["Key"] for o in self._list(prefix, delimiter=False)[0]]
        for i in range(0, len(keys), 1000):
            self.client().delete_objects(Bucket=self.bucket,
                                         Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})

    def stat(self, key: str) -> FileStat | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client().head_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise
        return FileStat(int(r["ContentLength"]), (r["ETag"],))

    def sha256(self, key: str) -> tuple[str, FileStat | None]:
        """(sha256 of the object's bytes, the size and ETag of *those* bytes) from one streamed GET."""
        from botocore.exceptions import ClientError

        try:
            r = self.client().get_object(Bucket=self.bucket, Key=self._object_key(key))
        except ClientError as exc:
            if self._missing(exc):
                raise FileNotFoundError(self.loc(key)) from None
            raise
        h = hashlib.sha256()
        for chunk in r["Body"].iter_chunks(1 << 20):
            h.update(chunk)
        return h.hexdigest(), FileStat(int(r["ContentLength"]), (r["ETag"],))
