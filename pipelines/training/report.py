"""How training runs are shown to a person: one run's summary, runs side by side, comparability checks.

Run records (``runs/<run>/record.json``, written by :mod:`mmfeat.recommenders.trainer`) are plain JSON;
everything here reads them as dicts, so a record from an older version (fewer keys) still prints, with
``-`` where a value is missing. No Prefect and no torch: ``mmfeat compare`` stays fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: the metrics every summary and table reports, at the best-valid (or last) epoch: user-item models
REPORT_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
#: ... and next-item (sequential) models, whose records hold hit/mrr (RecBole's and MicroLens' names)
SEQUENTIAL_REPORT_METRICS = ("hit@10", "ndcg@10", "mrr@10", "hit@20")

#: config keys that define how metrics were computed and which epoch is reported (the last two: how a
#: sequential model's history is read and ranked; absent from user-item records)
PROTOCOL_KEYS = ("metrics", "topk", "valid_metric", "mask_history", "max_seq_length", "max_len")


def record_path(path: str | Path) -> Path:
    """A run folder or its ``record.json`` -> the record file."""
    p = Path(path)
    return p / "record.json" if p.is_dir() else p


def load_records(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Read run records (run folders or ``record.json`` files).

    Raises:
        FileNotFoundError: a path holds no run record.
    """
    records = []
    for p in paths:
        path = record_path(p)
        if not path.is_file():
            raise FileNotFoundError(f"no run record at {path}")
        records.append(json.loads(path.read_text()))
    return records


def record_dataset(rec: dict[str, Any]) -> str | None:
    """The store dataset a run trained on: its ``dataset`` key, else the prefix of its feature versions."""
    if rec.get("dataset"):
        return str(rec["dataset"])
    prefixes = {str(v).split("/", 1)[0] for v in (rec.get("feature_versions") or {}).values() if "/" in str(v)}
    return prefixes.pop() if len(prefixes) == 1 else None


def metrics_protocol(rec: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' numbers comparable besides the data: metrics, cut-offs, selection rule."""
    cfg = rec.get("config") or {}
    proto: dict[str, Any] = {}
    for key in PROTOCOL_KEYS:
        value = cfg.get(key)
        if isinstance(value, (list, tuple)):
            value = sorted(str(v).lower() for v in value)
        elif isinstance(value, str):
            value = value.lower()
        proto[key] = value
    proto["selection"] = rec.get("selection", "best_valid")
    return proto


def comparability_warnings(records: list[dict[str, Any]]) -> list[str]:
    """One line per way the runs differ that makes their metrics not comparable (empty when they are).

    Checked: the dataset, the split hash (same interactions, same split), the metrics protocol.
    """
    if len(records) < 2:
        return []
    checks = {
        "dataset": [record_dataset(r) or "?" for r in records],
        "split hash": [_short(r.get("split_hash")) for r in records],
        "metrics protocol": [json.dumps(metrics_protocol(r), sort_keys=True) for r in records],
    }
    out = []
    for what, values in checks.items():
        if len(set(values)) > 1:
            listed = "; ".join(f"{r.get('run_id', '?')}: {v}" for r, v in zip(records, values))
            out.append(f"warning: runs are not comparable: different {what} ({listed})")
    return out


def _short(split_hash: Any) -> str:
    return str(split_hash)[:12] if split_hash else "-"


def _num(value: Any, fmt: str = ".4f") -> str:
    """A metric for a table; ``-`` for a missing or NaN value (never a crash on an old record)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _features(rec: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in (rec.get("feature_versions") or {}).items()) or "-"


#: the generative models' metrics (TIGER ranks beam_size items: @5 and @10, as the TIGER paper reports)
GENERATIVE_REPORT_METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")

#: the CTR models' metrics (AUC, logloss; gAUC when computed)
CTR_REPORT_METRICS = ("auc", "logloss")


#: simulation runs (``mmfeat simulate``): retention and the other population metrics of the session trace
SIMULATION_REPORT_METRICS = ("retention", "clicks_per_session", "mean_rating", "instruction_following", "hit_rate",
                             "diversity", "coverage", "bubble_drift")


def report_metrics(records: list[dict[str, Any]]) -> tuple[str, ...]:
    """The metrics to show for these runs: the simulation set when every run is a simulation, the sequential set
    when every run has hit@10, the CTR set when every run has auc, else the user-item set."""
    if records and all(r.get("kind") == "simulation" for r in records):
        return SIMULATION_REPORT_METRICS
    if records and all("hit@10" in (r.get("test") or {}) for r in records):
        return SEQUENTIAL_REPORT_METRICS
    if records and all("auc" in (r.get("test") or {}) for r in records):
        return CTR_REPORT_METRICS
    if records and all({"recall@5", "ndcg@5"} <= set(r.get("test") or {}) and "recall@20" not in (r.get("test") or {})
                       for r in records):
        return GENERATIVE_REPORT_METRICS
    return REPORT_METRICS


def _valid_metric(records: list[dict[str, Any]]) -> str:
    """The valid metric the runs were selected on (the first run's, lower case; recall@20 for old records)."""
    return str(((records[0].get("config") or {}) if records else {}).get("valid_metric", "recall@20")).lower()


def metrics_table(records: list[dict[str, Any]]) -> str:
    """Runs side by side as a markdown table (the compare output and the Prefect artifact)."""
    shown, vm = report_metrics(records), _valid_metric(records)
    cols = ["run", "model", "dataset", "split", "features", f"valid {vm}",
            *(f"test {k}" for k in shown), "best epoch", "s/epoch", "peak MiB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        valid, test = r.get("best_valid") or {}, r.get("test") or {}
        cells = [r.get("run_id", "?"), r.get("model", "?"), record_dataset(r) or "-", _short(r.get("split_hash")),
                 _features(r), _num(valid.get(vm)), *(_num(test.get(k)) for k in shown),
                 str(r.get("best_epoch", "-")), _num(r.get("s_per_epoch"), ".3f"), _num(r.get("peak_rss_mb"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_text(records: list[dict[str, Any]]) -> str:
    """The table, then a warning line per reason the runs are not comparable."""
    return "\n".join([metrics_table(records), *comparability_warnings(records)])


def run_summary(rec: dict[str, Any]) -> str:
    """A short, human summary of one run: what was trained on what, valid/test metrics, best epoch, speed."""
    split = rec.get("split") or {}
    split_how = split.get("method", "?") + (f", seed {split['seed']}" if split.get("seed") is not None else "")
    if split.get("dropped_users"):
        split_how += f", {split['dropped_users']} users with < 3 interactions dropped"
    head = (f"{rec.get('model', '?')} on {record_dataset(rec) or '?'}: split {_short(rec.get('split_hash'))} "
            f"({split_how}), training seed {(rec.get('config') or {}).get('seed', '?')}")
    shown = report_metrics([rec])
    width = max(len(k) for k in shown)
    rows = ["        " + "  ".join(k.rjust(width) for k in shown)]
    for name, values in (("valid", rec.get("best_valid") or {}), ("test", rec.get("test") or {})):
        rows.append(f"  {name:<6}" + "  ".join(_num(values.get(k)).rjust(width) for k in shown))
    for sub, res in (rec.get("sub_models") or {}).items():  # e.g. fMRLRec's nested sizes
        rows.append(f"  {sub:<6}" + "  ".join(_num((res.get("test") or {}).get(k)).rjust(width) for k in shown)
                    + "  (test)")
    data = rec.get("data") or {}
    items = f" (items: {data['item_repr']})" if data.get("item_repr") else ""
    cold = data.get("cold_targets") or {}
    if cold.get("items"):
        items += f"; {cold['items']} cold target items (never in train)"
    return "\n".join([head, f"  features: {_features(rec)}{items}", *rows, "  " + _epoch_line(rec),
                      f"  run: {rec.get('record_path', '?')}"])


def _epoch_line(rec: dict[str, Any]) -> str:
    """Which epoch the metrics are from and how long an epoch took."""
    n = len(rec.get("epochs") or [])
    how = ("selected on valid" if rec.get("selection", "best_valid") == "best_valid"
           else "last epoch, no selection")
    stop = f", stopped early after {n} epochs" if rec.get("stopped_early") else (f" of {n}" if n else "")
    return (f"best epoch {rec.get('best_epoch', '-')}{stop} ({how}), {_num(rec.get('s_per_epoch'), '.3f')} s/epoch, "
            f"{_num(rec.get('wall_s'), '.1f')} s in all")
