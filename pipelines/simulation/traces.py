"""Session traces in the feature store, and the run record ``mmfeat compare`` reads.

Layout: a run's trace is one version of the reserved feature set ``_sessions`` of its dataset::

    <store>/<dataset>/_sessions/<version>/part-00000.parquet ... _manifest.json
    <store>/<dataset>/_sessions/_aliases.json        {"latest": "v-...", "<tag>": "v-..."}

Why a feature set of the store rather than files next to it: the store's rules then hold for traces with no
new code -- staged parts and an atomic publish (:class:`~mmfeat.pipelines.store.writer.VersionWriter`), a
version id that names the content (``v-`` + hash(what made the rows, every row)), ``_manifest.json`` with
per-part sha256 that every read verifies, the writer lock, aliases, ``mmfeat store list / show / verify /
drop``, and object-store roots. Output kind ``trace``; the manifest's ``lineage`` holds what the run depends
on (feature versions, the base model's run id, the LLM, seeds, the agent's policy and config, the taste
model's fit), and its ``metrics`` the population's metrics.

Rows: one per session turn. ``item_id`` is the store's row key column, here ``"<session>:<turn>"``; ``status``
/ ``error`` / ``stage`` are the store's row status (a turn where the recommender or the simulator failed is
an error row, ``stage`` ``recommend`` or ``react``); ``source_sha256`` is null. List and record fields
(``items``, ``clicked``, ``constraints``, ``tool_calls``, ...) are JSON text, so the store's content digest
and any Parquet reader handle them; :func:`read_trace` decodes them.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, run_key

#: the reserved feature set holding session traces
TRACE_FEATURE_SET = "_sessions"
#: rows per Parquet part
PART_ROWS = 50_000
#: trace columns stored as JSON text
JSON_COLUMNS = ("items", "item_ids", "clicked", "ratings", "constraints", "unsatisfied", "explanations",
                "tool_calls", "messages", "reasons")
#: scalar columns and their Arrow types
SCALAR_COLUMNS: dict[str, pa.DataType] = {
    "session": pa.int64(), "user": pa.int64(), "user_id": pa.string(), "turn": pa.int32(),
    "recommender": pa.string(), "left": pa.bool_(), "end_reason": pa.string(), "instruction_in": pa.string(),
    "instruction": pa.string(), "parse_path": pa.string(), "reaction_text": pa.string(), "log_prob": pa.float64(),
}


class TraceError(StoreError):
    """A trace that cannot be written or read (the message says why)."""


def trace_schema() -> pa.Schema:
    """The on-disk schema of trace rows."""
    fields = [pa.field("item_id", pa.string(), nullable=False)]
    fields += [pa.field(k, t) for k, t in SCALAR_COLUMNS.items()]
    fields += [pa.field(k, pa.string()) for k in JSON_COLUMNS]
    fields += [pa.field("status", pa.string(), nullable=False), pa.field("error", pa.string()),
               pa.field("stage", pa.string()), pa.field("source_sha256", pa.string())]
    return pa.schema(fields)


def _json(value: Any) -> str:
    """Canonical JSON (sorted keys); NaN and infinities become null (manifests and records stay plain JSON)."""
    return json.dumps(_finite(value), sort_keys=True, default=_default, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _finite(value.item())
    return value


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def trace_table(rows: Sequence[dict[str, Any]], item_ids: Sequence[str] | None = None) -> pa.Table:
    """Trace rows (:func:`mmfeat.agents.environment.trace_row`) as the store's Arrow table.

    Args:
        rows: the run's rows.
        item_ids: the catalog's item ids; when given, each row's ``item_ids`` names its page's items (traces
            stay readable without the catalog's index order).

    Returns:
        A table of :func:`trace_schema`.
    """
    schema = trace_schema()
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    for r in rows:
        cols["item_id"].append(f"{r['session']}:{r['turn']}")
        for k in SCALAR_COLUMNS:
            cols[k].append(r.get(k))
        page = r.get("items") or []
        full = dict(r, item_ids=[str(item_ids[i]) for i in page] if item_ids is not None else [])
        for k in JSON_COLUMNS:
            cols[k].append(_json(full.get(k)))
        cols["status"].append(r.get("status") or "ok")
        cols["error"].append(r.get("error"))
        cols["stage"].append(r.get("stage"))
        cols["source_sha256"].append(None)
    return pa.Table.from_pydict(cols, schema=schema)


def publish_trace(store: FeatureStore, dataset: str, rows: Sequence[dict[str, Any]], *, lineage: dict[str, Any],
                  config: dict[str, Any], metrics: dict[str, Any] | None = None,
                  item_ids: Sequence[str] | None = None, tag: str | None = None) -> str:
    """Publish a run's trace as an immutable, content-named version of ``<dataset>/_sessions``.

    Args:
        store: the feature store.
        dataset: the store dataset (the manifest's).
        rows: the run's trace rows.
        lineage: what the run depends on (feature versions, base model run, LLM, seeds, taste model, population).
        config: the run's configuration (recommender, policy weights, turns, page size, seed); with
            ``lineage`` it is what made the rows (the version's identity).
        metrics: the population's metrics, recorded in the manifest.
        item_ids: the catalog's item ids (each row then names its items by id too).
        tag: an alias besides ``latest``.

    Returns:
        The version id. Publishing the same rows with the same config and lineage again returns the same id
        (a cache hit: nothing is rewritten).

    Raises:
        TraceError: ``tag`` is not a plain name.

    Example:
        >>> v = publish_trace(store, "movielens-100k", run.rows, lineage={...}, config={...})   # doctest: +SKIP
        >>> read_trace(store, "movielens-100k", v).shape                                         # doctest: +SKIP
    """
    if tag is not None and (not tag or "/" in tag or tag.startswith(".")):
        raise TraceError(f"tag {tag!r}: use a plain name (letters, digits, - and _)")
    table = trace_table(rows, item_ids)
    fingerprint = {"kind": "trace", "config": _stable(config), "lineage": _stable(lineage)}
    fp_hash = fingerprint_hash(json.loads(_json(fingerprint)))
    content = _table_digest(table)
    key = run_key(fp_hash, [("trace", content), ("rows", str(table.num_rows))])
    manifest = {
        "schema": table.schema.to_string(show_schema_metadata=False),
        "output": {"kind": "trace", "rows": "one per session turn"},
        "featurizer": {"name": "simulate-sessions", "kind": "trace", "fingerprint": json.loads(_json(fingerprint)),
                       "fingerprint_hash": fp_hash},
        "input": {"population": lineage.get("population", {})},
        "lineage": {**json.loads(_json(lineage)), "kind": "simulation", "parents": lineage.get("parents", {})},
        "metrics": json.loads(_json(metrics or {})),
    }
    aliases = ("latest",) + ((tag,) if tag and tag != "latest" else ())
    with store.lock(dataset, TRACE_FEATURE_SET):
        done = store.complete_version(dataset, TRACE_FEATURE_SET, key)
        if done is not None:
            for alias in aliases:
                store.set_alias(dataset, TRACE_FEATURE_SET, alias, done["version"])
            return done["version"]
        writer = store.writer(dataset, TRACE_FEATURE_SET, key, {"trace": fp_hash, "rows": table.num_rows})
        for k, start in enumerate(range(0, max(table.num_rows, 1), PART_ROWS)):
            writer.write_part(k, table.slice(start, PART_ROWS))
        final = writer.publish(manifest, aliases=aliases)
    return final.name


def _stable(value: Any) -> Any:
    """``value`` without timings (keys ending in ``seconds`` or ``_s``): what made the rows, not how long it took,
    so a replay of the same run gets the same version id."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()
                if not (str(k).endswith("seconds") or str(k).endswith("_s"))}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


def _table_digest(table: pa.Table) -> str:
    from mmfeat.pipelines.store.format import ContentDigest

    d = ContentDigest()
    d.update(table)
    return d.hexdigest()


def read_trace(store: FeatureStore, dataset: str, ref: str = "latest") -> pd.DataFrame:
    """A published trace, every part verified against its manifest sha256, JSON fields decoded.

    Args:
        store: the feature store.
        dataset: the store dataset.
        ref: a version id, an alias (``latest``, a tag) or a unique id prefix.

    Returns:
        One row per session turn (the columns of :func:`mmfeat.agents.environment.trace_row`, ``item_ids`` added).

    Raises:
        StoreError: no such version, or a part missing or changed (a corrupted trace is refused, never read).
        TraceError: the version is not a trace.
    """
    m = store.manifest(dataset, TRACE_FEATURE_SET, ref)
    if m.get("output", {}).get("kind") != "trace":
        raise TraceError(f"{dataset}/{TRACE_FEATURE_SET}/{m['version']} is not a session trace")
    df = store.read_table(dataset, TRACE_FEATURE_SET, m["version"]).to_pandas()
    for k in JSON_COLUMNS:
        df[k] = [json.loads(v) if v is not None else None for v in df[k]]
    return df.drop(columns=["source_sha256"])


def trace_manifest(store: FeatureStore, dataset: str, ref: str = "latest") -> dict[str, Any]:
    """The trace version's ``_manifest.json`` (lineage, config, metrics)."""
    return store.manifest(dataset, TRACE_FEATURE_SET, ref)


# ---------------------------------------------------------------------------- run records
#: the metrics a simulation run record carries in ``test`` (what ``mmfeat compare`` shows)
RECORD_METRICS = ("retention", "completed", "clicks_per_session", "ctr", "mean_rating", "instruction_following",
                  "hit_rate", "hits_per_page", "diversity", "coverage", "bubble_drift")


def population_hash(dataset: str, users: Sequence[int], seed: int, segment: str, turns: int, page_size: int,
                    source_fingerprint: str | None = None) -> str:
    """What makes two simulation runs comparable (the role a split hash plays for training runs)."""
    payload = {"dataset": dataset, "users": [int(u) for u in users], "seed": int(seed), "segment": segment,
               "turns": int(turns), "page_size": int(page_size), "source": source_fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_run_record(runs_dir: str | os.PathLike[str], *, name: str, dataset: str, population: str,
                     config: dict[str, Any], metrics: dict[str, Any], trace: dict[str, Any],
                     lineage: dict[str, Any], wall_s: float, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<runs_dir>/<run_id>/record.json`` (atomically) for ``mmfeat compare``.

    The record has the keys :mod:`mmfeat.pipelines.training.report` reads (``run_id``, ``model`` = the
    recommender, ``dataset``, ``split_hash`` = the population hash, ``config``, ``test`` = the metrics) plus
    ``kind: "simulation"``, the trace version and the lineage.

    Returns:
        The record's path.
    """
    run_id = f"sim-{name.lower().replace('[', '-').replace(']', '').replace('/', '-')}-" \
             f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    out = Path(runs_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    test = {k: metrics.get(k) for k in RECORD_METRICS}
    record = {"run_id": run_id, "kind": "simulation", "model": name, "dataset": dataset, "split_hash": population,
              "config": {**config, "metrics": list(RECORD_METRICS)}, "selection": "none", "test": test,
              "best_valid": {}, "metrics": metrics, "trace": trace, "lineage": lineage, "wall_s": round(wall_s, 2),
              "record_path": str(out / "record.json"), **(extra or {})}
    tmp = out / "record.json.tmp"
    tmp.write_text(json.dumps(json.loads(_json(record)), indent=2, sort_keys=True))
    os.replace(tmp, out / "record.json")
    return out / "record.json"


__all__ = ["TRACE_FEATURE_SET", "TraceError", "trace_schema", "trace_table", "publish_trace", "read_trace",
           "trace_manifest", "population_hash", "write_run_record", "RECORD_METRICS"]
