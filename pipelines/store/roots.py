"""Where the store is: the default root, and the rule that reading a root that does not exist is an error.

Extraction and import create the root on first use; a command that reads the store (``mmfeat store
list``, ``show``, exports, ``train``) opens it with :func:`open_existing_store`, so a mistyped ``--store``
or ``$MMFEAT_STORE`` is an error naming the path, never an empty store.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mmfeat.pipelines.store.fs import is_uri
from mmfeat.pipelines.store.verify import StoreError

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore


def default_store_root() -> Path | str:
    """``$MMFEAT_STORE`` (a folder or an ``s3://`` URI, kept as a string), else ``store/`` in the working
    directory (never the install location)."""
    root = os.environ.get("MMFEAT_STORE")
    if root and is_uri(root):
        return root
    return Path(root or Path.cwd() / "store")


class StoreRootMissing(StoreError):
    """A command that reads the store was pointed at a root that does not exist (a mistyped path)."""


def root_source(given: str | os.PathLike[str] | None) -> str:
    """How a store root was chosen, for messages: given explicitly, ``$MMFEAT_STORE``, or the default."""
    if given:
        return "given with --store / store_root"
    if os.environ.get("MMFEAT_STORE"):
        return "from $MMFEAT_STORE"
    return "the default: ./store in the working directory"


def open_existing_store(given: str | os.PathLike[str] | None = None) -> "FeatureStore":
    """The store at ``given`` (else :func:`default_store_root`) for a command that reads it.

    Extraction and import create the root on first use; a read of a root that does not exist is a mistyped
    path, never an empty store.

    Args:
        given: ``--store`` / ``store_root`` as the user gave it (None: ``$MMFEAT_STORE``, else ``./store``).

    Returns:
        The store.

    Raises:
        StoreRootMissing: the root does not exist (a local folder), or holds no object (``s3://``).
    """
    from mmfeat.pipelines.store.feature_store import FeatureStore

    store = FeatureStore(given or default_store_root())
    if not store.fs.root_exists():
        what = "does not exist" if store.fs.is_local else "holds no object"
        raise StoreRootMissing(
            f"feature store {store.root} {what} ({root_source(given)}); pass the root extraction wrote to with "
            f"--store PATH or $MMFEAT_STORE (the default is $MMFEAT_STORE, else ./store in the working directory), "
            f"or build it with `mmfeat extract MANIFEST`")
    return store
