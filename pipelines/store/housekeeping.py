"""What a store holds besides published versions: unfinished runs and abandoned upload attempts.

- **Staged runs** (``<ds>/<fs>/_staging/<run key>/``): a run that crashed or failed its threshold; the
  next run of the same request resumes from its parts. Listed by ``mmfeat store list``.
- **Orphan attempts** (object store only, ``<ds>/<fs>/<version>/a-<id>/``): parts uploaded by a publisher
  whose manifest never named them. Readers never see them (they read only what a manifest names). Two kinds:
  under a *committed* version they can never be named (the manifest is created once), so they are garbage
  at any age -- the committer removes them itself, only a loser killed between its upload and its own
  cleanup leaves one; under an *uncommitted* version (a publisher killed before its commit) they may belong
  to a publisher still uploading, so they count as orphans only after ``min_age_s`` (1 hour) without a
  write. The next run of the request publishes in a new attempt and removes them when it commits.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmfeat.pipelines.store.writer import ATTEMPT_PREFIX, MANIFEST_NAME, PART_GLOB, STAGING

if TYPE_CHECKING:
    from mmfeat.pipelines.store.feature_store import FeatureStore


@dataclass(frozen=True)
class StagedRun:
    """An unfinished run: where its parts are and how many are staged."""

    dataset: str
    feature_set: str
    key: str
    parts: int
    location: Any  # a Path (local root) or an s3:// ObjectPath

    @property
    def relative(self) -> str:
        return f"{self.dataset}/{self.feature_set}/{STAGING}/{self.key}"


@dataclass(frozen=True)
class OrphanAttempt:
    """An upload attempt no manifest names (object store only)."""

    dataset: str
    feature_set: str
    version: str
    attempt: str
    committed: bool  # the version is published (by another attempt): garbage at any age
    age_s: float  # seconds since its newest object was written
    key: str  # its prefix under the store root

    @property
    def relative(self) -> str:
        return self.key


def staged_runs(store: "FeatureStore") -> list[StagedRun]:
    """Every unfinished run under the store's root, sorted by location."""
    fs = store.fs
    out = []
    for ds in store.datasets():
        for name in store.feature_sets(ds):
            for key in fs.list_dirs(f"{ds}/{name}/{STAGING}"):
                prefix = f"{ds}/{name}/{STAGING}/{key}"
                out.append(StagedRun(ds, name, key, len(fs.list_files(prefix, PART_GLOB)), fs.loc(prefix)))
    return out


def orphan_attempts(store: "FeatureStore", min_age_s: float = 3600.0) -> list[OrphanAttempt]:
    """Upload attempts no manifest names: every one under a committed version, and those under an
    uncommitted version whose newest object is older than ``min_age_s`` (a younger one may be a publisher
    still uploading). Always empty on a local root (a local publish renames, it has no attempts)."""
    fs = store.fs
    if fs.is_local:
        return []
    now = time.time()
    out: list[OrphanAttempt] = []
    for ds in store.datasets():
        for name in store.feature_sets(ds):
            attempts: dict[tuple[str, str], float] = {}
            committed: set[str] = set()
            for key, _, modified in fs.list_tree(f"{ds}/{name}"):
                rel = key.split("/")[2:]  # <version>/<attempt>/<file> or <version>/_manifest.json
                if len(rel) == 2 and rel[0].startswith("v-") and rel[1] == MANIFEST_NAME:
                    committed.add(rel[0])
                elif len(rel) >= 3 and rel[0].startswith("v-") and rel[1].startswith(ATTEMPT_PREFIX):
                    attempts[(rel[0], rel[1])] = max(attempts.get((rel[0], rel[1]), 0.0), modified)
            named: dict[str, set[str]] = {}
            for version in committed:
                m = json.loads(fs.read_text(f"{ds}/{name}/{version}/{MANIFEST_NAME}"))
                named[version] = {p["file"].split("/", 1)[0] for p in m["parts"]}
            for (version, attempt), modified in sorted(attempts.items()):
                age = now - modified
                if version in committed and attempt not in named[version]:
                    out.append(OrphanAttempt(ds, name, version, attempt, True, age, f"{ds}/{name}/{version}/{attempt}"))
                elif version not in committed and age > min_age_s:
                    out.append(OrphanAttempt(ds, name, version, attempt, False, age, f"{ds}/{name}/{version}/{attempt}"))
    return out
