"""Running a set-level feature set (``semantic_ids``): one parent embedding version in, one codes version out.

A quantizer is fitted to the whole catalogue, so this is one job, not shards; the store's rules still hold:

* **lineage**: the version names its parent (``input.from``) and the exact parent version it read; with the
  graph / CF options also the interactions (the source fingerprint and ``holdout``).
* **request key before work**: hash(kind, params, code fingerprint, parent version, interactions) over every
  item's input hash (the sha256 of its parent vector). A published version with that key is a cache hit:
  nothing is fitted. A version of another feature set with the same fit of the same vectors (the key without
  the parent's name) is reused the same way (:mod:`mmfeat.pipelines.engine.reuse`).
* **error rows, nothing silent**: an item whose parent row failed (or is missing) gets an error row, stage
  ``parent``, with the parent's reason; the good items get codes. Too many errors (the manifest's
  ``failure_threshold``) publish nothing.
* **crash-safe**: the codes are written to one staged part and published atomically; a killed run leaves no
  version (a re-run fits again: there is no partial fit to resume).
* **deterministic**: the quantizer is seeded (``params.seed``), so a re-run of the same request gives the same
  rows and therefore the same version id.
"""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.featurizers.fingerprinting import code_fingerprint
from mmfeat.pipelines.manifest import FeatureSetSpec, Manifest
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, build_rows, row_schema, run_key

log = logging.getLogger("mmfeat.extract")


def is_set_level(kind: str) -> bool:
    """True for kinds fitted to the whole item set at once (``semantic_ids``)."""
    from mmfeat.featurizers.registry import featurizer_kind

    return bool(getattr(featurizer_kind(kind).cls, "set_level", False))


def holdout_interactions(interactions: pa.Table, holdout: int) -> pd.DataFrame:
    """Each user's interactions in time order (ties: source row order) without the last ``holdout``:
    with 2, a leave-one-out split's valid and test targets never shape the codes."""
    df = interactions.select(["user_id", "item_id", "timestamp"]).to_pandas()
    df["row"] = np.arange(len(df))
    df = df.sort_values(["user_id", "timestamp", "row"], kind="stable")
    from_end = df.groupby("user_id", sort=False).cumcount(ascending=False)
    return df[from_end.to_numpy() >= holdout]


def user_item_matrix(df: pd.DataFrame, item_ids: Sequence[str]) -> sp.csr_matrix:
    """Binary [n_users, len(item_ids)] matrix of ``df``'s (user, item) pairs; items outside ``item_ids`` dropped."""
    col = pd.Index(list(item_ids)).get_indexer(df["item_id"].astype(str))
    keep = col >= 0
    users, uidx = np.unique(df["user_id"].astype(str).to_numpy()[keep], return_inverse=True)
    m = sp.csr_matrix((np.ones(int(keep.sum())), (uidx, col[keep])), shape=(len(users), len(item_ids)))
    m.data[:] = 1.0  # duplicates summed by the constructor count once
    return m


def _vector_hashes(matrix: np.ndarray) -> list[str]:
    rows = np.ascontiguousarray(matrix, np.float32)
    return [hashlib.sha256(r.tobytes()).hexdigest() for r in rows]


def run_codes_set(store: FeatureStore, manifest: Manifest, spec: FeatureSetSpec, items: pa.Table,
                  interactions: pa.Table | None, *, parent_versions: dict[str, str] | None = None,
                  lineage: dict[str, Any] | None = None, aliases: Sequence[str] = ("latest",)):
    """Build (or find) the codes version of a ``semantic_ids`` feature set, holding its writer lock.

    Args:
        store, manifest, spec: where, which manifest, which feature set (its ``input.from`` names an
            embedding feature set).
        items: the source's items table (every item gets a row: codes or an error).
        interactions: the source's interactions (read only by ``graph_layers`` / ``cf_align``).
        parent_versions: versions built earlier in this run (else the parent's ``latest``).
        lineage: what to record about the source.
        aliases: aliases for the result.

    Returns:
        A :class:`mmfeat.pipelines.engine.extract.FeatureSetReport`.

    Raises:
        ValueError: no ``from``, or a parent that does not hold embeddings, or interactions needed but absent.
        FeatureSetFailed: too many items without a parent vector; nothing published.
    """
    from mmfeat.featurizers.registry import build_featurizer
    from mmfeat.pipelines.engine.extract import FeatureSetFailed, FeatureSetReport, cached_report
    from mmfeat.pipelines.engine.reuse import find_equal_work, publish_reused

    dataset = manifest.store_dataset
    parent = spec.input.from_
    if not parent:
        raise ValueError(f"{spec.name}: {spec.kind} reads an embedding feature set: give input.from")
    try:
        version = (parent_versions or {}).get(parent) or store.resolve(dataset, parent, "latest")
    except StoreError as exc:
        raise StoreError(f"{spec.name} reads {parent}, which has no version yet ({exc}); build it first: "
                         f"`mmfeat extract {manifest.name} --feature-set {parent}`") from None
    pm = store.manifest(dataset, parent, version)
    if pm["output"]["kind"] != "embedding":
        raise ValueError(f"{spec.name}: parent {parent}/{version} holds {pm['output']['kind']}, not embeddings")
    featurizer = build_featurizer(spec.kind, dict(spec.params))
    item_ids = sorted(str(i) for i in items.column("item_id").to_pylist())
    read = store.read_matrix(dataset, parent, version, item_ids, fill_missing=0.0)
    missing = set(read.missing)
    reasons: dict[str, str] = {}
    if missing:  # why the parent has no vector for them (only read when some item lacks one)
        failed = store.read_table(dataset, parent, version, columns=["item_id", "status", "error"]).to_pylist()
        reasons = {r["item_id"]: r["error"] for r in failed if r["status"] != "ok"}
    ok = np.array([i not in missing for i in item_ids], bool)
    hashes = _vector_hashes(read.matrix[ok])
    row_hash: list[str | None] = [None] * len(item_ids)
    for pos, h in zip(np.flatnonzero(ok), hashes):
        row_hash[pos] = h
    interactions_id = None
    user_item = None
    if featurizer.reads_interactions:
        if interactions is None or interactions.num_rows == 0:
            raise ValueError(f"{spec.name}: graph_layers / cf_align read the source's interactions; it has none")
        holdout = featurizer.params.holdout
        kept = holdout_interactions(interactions, holdout)
        user_item = user_item_matrix(kept, [i for i, k in zip(item_ids, ok) if k])
        interactions_id = {"source": (lineage or {}).get("source", {}).get("fingerprint"), "holdout": holdout,
                           "pairs": int(user_item.nnz), "users": int(user_item.shape[0])}
    fp = {**featurizer.fingerprint(), "code": code_fingerprint(type(featurizer))}
    request = {"kind": spec.kind, "fingerprint": fp, "parent": f"{parent}/{version}", "interactions": interactions_id}
    fp_hash = fingerprint_hash(fp)
    keyed = [(i, h if h is not None else "error:parent") for i, h in zip(item_ids, row_hash)]
    key = run_key(fingerprint_hash(request), keyed)
    # the same fit of the same vectors, whichever feature set reads them (reuse.find_equal_work)
    work = run_key(fingerprint_hash({"work": {k: v for k, v in request.items() if k != "parent"}}), keyed)
    with store.lock(dataset, spec.name):
        hit = store.complete_version(dataset, spec.name, key)
        if hit is not None:
            log.info("%s: version %s already published by the same request (cache hit, nothing fitted)",
                     spec.name, hit["version"])
            return cached_report(store, dataset, spec, hit, {parent: version}, aliases)
        source = find_equal_work(store, dataset, work)
        if source is not None:
            m = publish_reused(store, dataset, spec, source, key=key, work=work, parents={parent: version},
                               lineage={**(lineage or {}), "interactions": interactions_id}, aliases=aliases)
            report = cached_report(store, dataset, spec, m, {parent: version}, (),
                                   f"rows reused from {source['feature_set']}/{source['version']} (same fit, same vectors)")
            report.cache_hit, report.reused = False, m["rows"] - m["errors"]
            return report
        n_err = int((~ok).sum())
        if item_ids and n_err / len(item_ids) > manifest.failure_threshold:
            first = [i for i, k in zip(item_ids, ok) if not k][:5]
            raise FeatureSetFailed(f"{spec.name}: {n_err}/{len(item_ids)} items have no vector in {parent}/{version} "
                                   f"(> failure_threshold {manifest.failure_threshold:.0%}); nothing published. "
                                   f"First: {first}")
        log.info("%s: fitting %s on %d items of %s/%s%s", spec.name, featurizer.name, int(ok.sum()), parent, version,
                 f" and {user_item.nnz} interactions" if user_item is not None else "")
        t0 = time.perf_counter()
        fit = featurizer.fit(read.matrix[ok], user_item)
        seconds = time.perf_counter() - t0
        codes: list[Any] = [None] * len(item_ids)
        for pos, c in zip(np.flatnonzero(ok), fit.codes):
            codes[pos] = c
        errors = [None if k else f"parent {parent} has no ok vector: {reasons.get(i) or 'no row'}"
                  for i, k in zip(item_ids, ok)]
        schema = row_schema("codes", featurizer.output.dim)
        table = build_rows(schema, item_ids, codes, errors, [None if k else "parent" for k in ok], row_hash)
        writer = store.writer(dataset, spec.name, key, {"set_level": True, "items": len(item_ids)})
        writer.write_part(0, table)
        final = writer.publish({
            "schema": schema.to_string(show_schema_metadata=False),
            "output": {"kind": "codes", "dim": featurizer.output.dim, "dtype": "int32"},
            "featurizer": {"name": featurizer.name, "kind": spec.kind, "fingerprint": fp, "fingerprint_hash": fp_hash},
            "input": spec.input.model_dump(by_alias=True, exclude_none=True),
            "lineage": {**(lineage or {}), "parents": {parent: version}, "interactions": interactions_id},
            "codes": {**fit.stats, "seconds": round(seconds, 2)},
            "shard_size": len(item_ids),
            "work_key": work,
        }, aliases=aliases)
    log.info("%s: %d items -> codes in %.1fs (collision rate before de-dup %.4f, usage per level %s)", spec.name,
             int(ok.sum()), seconds, fit.stats["collision_rate"], fit.stats["usage_per_level"])
    return FeatureSetReport(
        feature_set=spec.name, version=final.name, rows=len(item_ids), errors=n_err, reused=0,
        computed=int(ok.sum()), seconds=seconds, cache_hit=False,
        featurizer={"name": featurizer.name, "fingerprint_hash": fp_hash, "backbone": None},
        parents={parent: version}, path=str(final),
        error_examples=[{"item_id": i, "stage": "parent", "error": e} for i, e in zip(item_ids, errors) if e][:5])
