"""Damaged versions: found, shown and removed, so a failure never leaves the store at a dead end.

A published version is *damaged* when a part its ``_manifest.json`` names is missing or its bytes differ
from the manifest (checksum or size). Reads refuse it (:mod:`.verify`); this module makes the way out work:

- **A cache hit verifies what it hits** (:meth:`FeatureStore.complete_version`): a damaged version is
  removed under the feature set's writer lock and the run rebuilds it. Version ids hash rows, so the
  rebuilt version gets the same id and every alias naming it is right again.
- ``mmfeat store repair`` re-hashes every part and removes the damaged versions (:func:`repair`);
  ``mmfeat store drop`` removes one version on purpose (:func:`drop_version`).
- ``mmfeat store list`` / ``show`` mark damaged versions (:func:`version_damage`).

How much is checked (``check``): ``"memo"`` hashes every part not already seen to match in this process
(the per-process memo of :mod:`.verify`); ``"fresh"`` re-hashes every part; ``"stat"`` only looks at
presence and size (an object-store cache hit: no download of the whole version; a replaced object is
caught by the full check of every read, of ``store verify`` and of ``store repair``).

Removal: on a local root the version folder is renamed aside (one atomic rename: readers see the whole
version or none) and then deleted, under the writer lock. On an object store there is no rename and no
cross-process lock: the version's ``_manifest.json`` -- its commit -- is deleted first (one atomic DELETE:
the version is unpublished), then the attempt folder that manifest named. A second process that found the
same damage at the same moment may delete a rebuild committed in between; it rebuilds the same version
itself right after, so the store ends consistent, and readers in between see "not published".
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmfeat.pipelines.store.aliases import update_aliases
from mmfeat.pipelines.store.verify import StoreError
from mmfeat.pipelines.store.writer import MANIFEST_NAME

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore

log = logging.getLogger("mmfeat.store")

CHECKS = ("stat", "memo", "fresh")
#: prefix of a local version folder renamed aside before it is deleted (never listed as a version)
REMOVING_PREFIX = ".removing-"


@dataclass(frozen=True)
class Removed:
    """A version taken out of the store, and why."""

    dataset: str
    feature_set: str
    version: str
    problems: tuple[str, ...]  # e.g. ("part-00000.parquet checksum mismatch",); () when dropped on purpose
    imported: bool  # made by `mmfeat store import` (rebuilt by importing again, not by extracting)

    def __str__(self) -> str:
        return f"{self.dataset}/{self.feature_set}/{self.version}"

    @property
    def rebuild(self) -> str:
        """How the version comes back (same rows -> same id)."""
        how = "importing the file again (`mmfeat store import`)" if self.imported else "the next `mmfeat extract`"
        return f"{how} rebuilds it (same rows, same version id)"


def version_damage(store: "FeatureStore", m: dict[str, Any], check: str = "memo") -> list[str]:
    """What is wrong with a published version's parts: ``[]`` when it is intact.

    Args:
        store: the feature store.
        m: the version's manifest.
        check: ``"memo"``, ``"fresh"`` or ``"stat"`` (the module docstring says what each checks).

    Returns:
        One line per damaged part, e.g. ``"part-00000.parquet checksum mismatch"``.

    Raises:
        ValueError: an unknown ``check``.
    """
    from mmfeat.pipelines.store.feature_store import _VERIFIED

    if check not in CHECKS:
        raise ValueError(f"check={check!r}: expected one of {CHECKS}")
    where = f"{m['dataset']}/{m['feature_set']}/{m['version']}"
    parts = [(f"{where}/{p['file']}", p["sha256"], p.get("bytes"), p["file"]) for p in m["parts"]]

    if check == "stat" and not store.fs.is_local:  # one LIST for the whole version, not a HEAD per part
        listed = {key: st for key, st, _ in store.fs.list_tree(where)}
        out = []
        for key, _, size, name in parts:
            st = listed.get(key)
            if st is None:
                out.append(f"{name} missing")
            elif size is not None and st.size != size:
                out.append(f"{name} size mismatch ({st.size} bytes, manifest says {size})")
        return out

    def one(part: tuple[str, str, int | None, str]) -> str | None:
        key, sha, size, name = part
        found = _VERIFIED.problem(store.fs, key, sha, size=size, rehash=check != "stat", fresh=check == "fresh")
        return None if found is None else f"{name} {found}"

    if len(parts) > 1 and check != "stat":  # hashlib releases the GIL: about one part's hash per core
        with ThreadPoolExecutor(max_workers=min(len(parts), os.cpu_count() or 1)) as pool:
            found = list(pool.map(one, parts))
    else:
        found = [one(p) for p in parts]
    return [f for f in found if f is not None]


def _is_imported(m: dict[str, Any] | None) -> bool:
    return bool(m) and m.get("featurizer", {}).get("kind") == "imported"  # type: ignore[union-attr]


def remove_version(store: "FeatureStore", dataset: str, feature_set: str, version: str,
                   problems: tuple[str, ...] = ()) -> Removed:
    """Take a version out of the store under the feature set's writer lock (the module docstring says how,
    per root). Aliases are left as they are (the caller decides: a rebuild brings the same id back).

    Returns:
        What was removed.
    """
    fs = store.fs
    vprefix = f"{dataset}/{feature_set}/{version}"
    with store.lock(dataset, feature_set):
        try:
            m = store._manifest_or_none(dataset, feature_set, version)
        except StoreError:  # an unreadable manifest: the version goes all the same
            m = None
        if fs.is_local:
            fdir = store.feature_dir(dataset, feature_set)
            for old in fdir.glob(f"{REMOVING_PREFIX}*"):  # left by a removal killed mid-delete
                shutil.rmtree(old, ignore_errors=True)
            vdir = fdir / version
            if vdir.exists():
                aside = fdir / f"{REMOVING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
                os.replace(vdir, aside)  # atomic: the version is gone for every reader at once
                shutil.rmtree(aside, ignore_errors=True)
        else:
            fs.delete(f"{vprefix}/{MANIFEST_NAME}")  # the commit first: the version is unpublished
            named = {p["file"].split("/", 1)[0] for p in (m or {}).get("parts", []) if "/" in p["file"]}
            for attempt in sorted(named) if m is not None else [""]:
                fs.delete_prefix(f"{vprefix}/{attempt}" if attempt else vprefix)
    removed = Removed(dataset, feature_set, version, tuple(problems), _is_imported(m))
    log.debug("%s: removed%s", removed, f" ({'; '.join(problems)})" if problems else "")
    return removed


def remove_if_damaged(store: "FeatureStore", m: dict[str, Any], check: str) -> Removed | None:
    """Remove the version of manifest ``m`` if it is damaged (checked again under the writer lock, so a
    version another process rebuilt meanwhile is kept); None when it is intact."""
    dataset, feature_set, version = m["dataset"], m["feature_set"], m["version"]
    if not version_damage(store, m, check):
        return None
    with store.lock(dataset, feature_set):
        now = store._manifest_or_none(dataset, feature_set, version)
        problems = version_damage(store, now, check) if now is not None else []
        if not problems:
            return None
        return remove_version(store, dataset, feature_set, version, tuple(problems))


def repair(store: "FeatureStore", dataset: str, feature_set: str,
           ref: str | None = None) -> tuple[list[str], list[Removed]]:
    """Re-hash every part of every version (or of ``ref``) and remove the damaged versions.

    Returns:
        (the versions checked, what was removed).

    Raises:
        StoreError: an unknown feature set or ref.
    """
    if ref is not None or feature_set not in store.feature_sets(dataset):
        store.resolve(dataset, feature_set, ref or "latest")  # an unknown name fails before the lock makes a folder
    with store.lock(dataset, feature_set):
        if ref is None:
            versions = store.versions(dataset, feature_set)
        else:
            versions = [store.manifest(dataset, feature_set, ref)]
        removed = [r for r in (remove_if_damaged(store, m, "fresh") for m in versions) if r is not None]
    return [m["version"] for m in versions], removed


@dataclass(frozen=True)
class Dropped:
    """A version dropped on purpose and what became of the aliases that named it."""

    removed: Removed
    aliases: dict[str, str | None]  # alias -> the version it now names (None: removed)


def drop_version(store: "FeatureStore", dataset: str, feature_set: str, ref: str, *, force: bool = False) -> Dropped:
    """Remove one version on purpose.

    Refused when an alias names it, unless ``force``: then ``latest`` moves to the newest remaining
    version (or is removed when none remains) and every other alias naming it is removed.

    Returns:
        What was removed and the alias changes.

    Raises:
        StoreError: an unknown ref, or an alias names the version and ``force`` is False.
    """
    store.resolve(dataset, feature_set, ref)  # an unknown name fails before the lock makes a folder
    with store.lock(dataset, feature_set):
        version = store.resolve(dataset, feature_set, ref)
        if not store.fs.exists(f"{dataset}/{feature_set}/{version}/{MANIFEST_NAME}"):
            raise StoreError(f"{dataset}/{feature_set}: {version} is not published; nothing to drop "
                             f"(`mmfeat store list --dataset {dataset}` lists the versions)")
        named_by = sorted(a for a, v in store.aliases(dataset, feature_set).items() if v == version)
        if named_by and not force:
            raise StoreError(
                f"{dataset}/{feature_set}/{version} is named by {', '.join(named_by)}: readers of "
                f"{'it' if len(named_by) == 1 else 'them'} would find nothing. Point "
                f"{'it' if len(named_by) == 1 else 'them'} at another version first (`mmfeat store tag "
                f"{dataset} {feature_set} VERSION {named_by[0]}`), or pass --force (latest then names the newest "
                f"remaining version; other aliases are removed)")
        removed = remove_version(store, dataset, feature_set, version)
        remaining = store.versions(dataset, feature_set)
        changes: dict[str, str | None] = {
            a: (remaining[-1]["version"] if a == "latest" and remaining else None) for a in named_by}
        if changes:
            update_aliases(store, dataset, feature_set, changes)
    return Dropped(removed, changes)


def unreadable_manifest(dataset: str, feature_set: str, version: str, exc: Exception) -> StoreError:
    """The error for a ``_manifest.json`` that is not valid JSON (a version that cannot be read or listed)."""
    return StoreError(f"{dataset}/{feature_set}/{version}/{MANIFEST_NAME} is unreadable ({exc}); remove the "
                      f"version with `mmfeat store drop {dataset} {feature_set} {version} --force` and rebuild it")


def manifest_json(text: str, dataset: str, feature_set: str, version: str) -> dict[str, Any]:
    """A manifest's JSON, or :func:`unreadable_manifest`'s error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise unreadable_manifest(dataset, feature_set, version, exc) from None
