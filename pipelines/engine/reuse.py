"""Work already done, found instead of computed again.

Two cases besides a feature set's own cache hit (:meth:`FeatureStore.complete_version`):

- **Equal work of another feature set** (:func:`find_equal_work`, :func:`publish_reused`). Two feature
  sets can ask for the same values: the demo's ``cover_caption`` runs the same fallback describer on the
  same title + comments as ``item_description``, and ``cover_caption_minilm`` embeds the same texts as
  ``description_minilm``. Their :func:`~mmfeat.pipelines.engine.plan.work_key` (featurizer kind, params,
  weights, code and every item's input hash, not where the inputs came from) is equal, so the second
  one gets a version of its own holding the first one's rows, copied, nothing computed and no model
  loaded; its lineage says where the rows came from (``reused_from``). This holds within a run
  (feature sets run in manifest order) and across runs (any published version of the dataset).
- **A staged run with nothing left to compute** (:func:`staged_featurizer`): a run killed after its last
  shard, or one that stopped over the failure threshold, left every part staged; the next run only has
  to publish. The staged plan records the featurizer's name, output and full fingerprint, so the
  version is published without building the featurizer (loading a model to compute nothing took
  seconds to minutes).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.pipelines.manifest import FeatureSetSpec
from mmfeat.pipelines.store.feature_store import FeatureStore
from mmfeat.pipelines.store.writer import PLAN_NAME, STAGING

log = logging.getLogger("mmfeat.extract")


def find_equal_work(store: FeatureStore, dataset: str, work: str) -> dict[str, Any] | None:
    """The newest published version of any feature set of ``dataset`` made by the work ``work`` with
    no retryable error rows (what a cache hit requires too), else None.

    Args:
        store: the feature store.
        dataset: the store dataset whose feature sets are searched.
        work: a :func:`~mmfeat.pipelines.engine.plan.work_key`.

    Returns:
        That version's manifest (``feature_set`` and ``version`` name it), or None.
    """
    found: list[dict[str, Any]] = []
    for feature_set in store.feature_sets(dataset):
        for m in store.versions(dataset, feature_set):
            if m.get("work_key") == work and m.get("retryable_errors", 1) == 0:
                found.append(m)
    return max(found, key=lambda m: (m["created_at"], m["feature_set"], m["version"])) if found else None


def publish_reused(store: FeatureStore, dataset: str, spec: FeatureSetSpec, source: dict[str, Any], *,
                   key: str, work: str, parents: dict[str, str], lineage: dict[str, Any] | None,
                   aliases: Sequence[str]) -> dict[str, Any]:
    """Publish ``source``'s rows as a version of ``spec``'s feature set (the caller holds its writer lock).

    The parts are copied (verified on read), so each feature set's versions stay self-contained and
    immutable whatever happens to the other one; the version id names the same content, so it equals
    the source's id. The manifest records this feature set's own request key (its next run is a plain
    cache hit), its input and parents, and ``lineage.reused_from``.

    Args:
        store, dataset: where.
        spec: the feature set that gets the version (the spec that would have run).
        source: the manifest of the version whose rows are reused (:func:`find_equal_work`).
        key: this feature set's request key (:func:`~mmfeat.pipelines.engine.plan.request_key`).
        work: the shared work key.
        parents: this feature set's parent versions (chained inputs).
        lineage: what to record about the source data.
        aliases: aliases for the new version.

    Returns:
        The new version's manifest.

    Raises:
        StoreError: a part of ``source`` is missing or changed since it was published.
    """
    origin = {"feature_set": source["feature_set"], "version": source["version"]}
    writer = store.writer(dataset, spec.name, key, {"reused_from": origin, "work_key": work})
    parts = store.version_part_tables(dataset, source["feature_set"], source["version"])
    for index, table in enumerate(parts):
        writer.write_part(index, table)
    final = writer.publish({
        "schema": source["schema"],
        "output": source["output"],
        "featurizer": source["featurizer"],
        "input": spec.input.model_dump(by_alias=True, exclude_none=True),
        "lineage": {**(lineage or {}), "parents": parents, "reused_from": origin},
        "shard_size": source.get("shard_size"),
        "work_key": work,
        **({"codes": source["codes"]} if "codes" in source else {}),  # a fit's statistics describe its rows
    }, aliases=aliases)
    log.info("%s: same work as %s/%s (featurizer and inputs): its %d rows reused, nothing computed, no model "
             "loaded -> %s", spec.name, origin["feature_set"], origin["version"], source["rows"], final.name)
    return store.manifest(dataset, spec.name, final.name)


@dataclass
class StagedFeaturizer:
    """The featurizer a staged run recorded (name, output, full fingerprint), standing in for it when
    every part is staged and only the publish is left. It cannot compute: a call is a bug."""

    name: str
    output: OutputSpec
    recorded_fingerprint: dict[str, Any]
    input_kind: str = "text"

    def fingerprint(self) -> dict[str, Any]:
        return {k: v for k, v in self.recorded_fingerprint.items() if k != "code"}

    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        raise RuntimeError(f"{self.name}: a staged run's stand-in was asked to compute {len(inputs)} inputs; "
                           "build the real featurizer for pending shards")


def featurizer_record(featurizer: Any, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """What a staged plan records about the featurizer, as JSON gives it back (so a re-read plan compares equal)."""
    out = featurizer.output
    record = {"name": featurizer.name, "output": {"kind": out.kind, "dim": out.dim, "dtype": out.dtype},
              "fingerprint": fingerprint}
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def staged_featurizer(store: FeatureStore, dataset: str, feature_set: str, key: str) -> StagedFeaturizer | None:
    """The stand-in for the featurizer of the staged run ``key``, or None when there is no staged run or
    its plan predates the featurizer record (then the featurizer is built as before).

    Whether anything is left to compute is the job's business (:meth:`FeatureSetJob.pending_shards`).
    """
    try:
        plan = json.loads(store.fs.read_text(f"{dataset}/{feature_set}/{STAGING}/{key}/{PLAN_NAME}"))
    except FileNotFoundError:
        return None
    record = plan.get("featurizer")
    if not isinstance(record, dict):
        return None
    out = record["output"]
    return StagedFeaturizer(record["name"], OutputSpec(out["kind"], out["dim"], out["dtype"]), record["fingerprint"])


__all__ = ["find_equal_work", "publish_reused", "StagedFeaturizer", "featurizer_record", "staged_featurizer"]
