"""Alias files (``<ds>/<fs>/_aliases.json``: ``{"latest": "<version>", "<tag>": "<version>"}``): changed
without ever losing a concurrent change of another alias.

One job: apply a change (set some aliases, remove others) to the file atomically. On a local root the file
is swapped (temp + rename) under the feature set's writer lock; on an object store (no lock across
processes) it is replaced with a conditional PUT on the ETag it was read with (``If-Match``, or
``If-None-Match: *`` for the first alias), re-read and retried when another writer got there first.
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import TYPE_CHECKING, Mapping

from mmfeat.pipelines.store.verify import StoreError
from mmfeat.pipelines.store.writer import ALIASES_NAME

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore

#: conflicting writers an object-store alias update outlasts before it gives up
MAX_ATTEMPTS = 20


def update_aliases(store: "FeatureStore", dataset: str, feature_set: str,
                   changes: Mapping[str, str | None]) -> dict[str, str]:
    """Point each alias of ``changes`` at its version (None: remove the alias); other aliases are kept.

    The caller checks that the versions are published (:meth:`FeatureStore.set_alias` does).

    Args:
        store: the feature store.
        dataset, feature_set: whose alias file.
        changes: alias -> version id, or None to remove that alias.

    Returns:
        The aliases after the change.

    Raises:
        StoreError: on an object store, the alias file kept changing under 20 attempts.
    """
    def apply(current: dict[str, str]) -> dict[str, str]:
        out = dict(current)
        for alias, version in changes.items():
            if version is None:
                out.pop(alias, None)
            else:
                out[alias] = version
        return out

    fs = store.fs
    key = f"{dataset}/{feature_set}/{ALIASES_NAME}"
    if not fs.is_local:
        for attempt in range(MAX_ATTEMPTS):
            got = fs.read_with_etag(key)
            aliases = apply(json.loads(got[0]) if got is not None else {})
            body = json.dumps(aliases, indent=2, sort_keys=True).encode()
            if fs.create_exclusive(key, body) if got is None else fs.replace_if(key, body, got[1]):
                return aliases
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # another writer won: re-read, retry
        raise StoreError(f"{dataset}/{feature_set}: {ALIASES_NAME} kept changing under {MAX_ATTEMPTS} attempts to "
                         f"change {sorted(changes)}; try again")
    with store.lock(dataset, feature_set):
        aliases = apply(store.aliases(dataset, feature_set))
        path = store.feature_dir(dataset, feature_set) / ALIASES_NAME
        if not aliases:  # the last alias removed: no file (a feature set with nothing left is not listed)
            path.unlink(missing_ok=True)
            return aliases
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(aliases, indent=2, sort_keys=True))
        os.replace(tmp, path)
        return aliases
