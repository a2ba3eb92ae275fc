"""Per-epoch validation curves of bench/graph/mmrec_parity.py: both sides' valid Recall@20 / NDCG@20 per epoch,
kept in each per-seed result JSON (``curve``), averaged over seeds, printed as a table and plotted.

A final best-valid match can hide a different trajectory (one side lagging mid-training and catching up), so
the table gives ours/ref at every epoch and the largest per-epoch relative gap (overall and from ``gap_from``).
Epochs are numbered from 0, as both trainers log them (epoch 0 = after the first training pass).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: the metrics each per-epoch entry keeps (the evaluators' lower-case keys)
CURVE_METRICS = ("recall@20", "ndcg@20")


def curve_entry(epoch: int, valid: dict, loss=None) -> dict:
    """One per-epoch entry of a result's ``curve``: the epoch, its valid metrics and (if known) the train loss."""
    e = {"epoch": int(epoch), **{m: float(valid[m]) for m in CURVE_METRICS}}
    if loss is not None:
        e["loss"] = float(loss)
    return e


def ours_curve(epochs: list[dict]) -> list[dict]:
    """The curve of our trainer's run record (``RunRecord.epochs``: evaluated epochs have ``valid``)."""
    return [curve_entry(e["epoch"], e["valid"], e.get("loss")) for e in epochs if e.get("valid")]


class MMRecCurve:
    """Records MMRec's (or an MMRec-layout fork's) per-epoch valid results by wrapping its trainer's
    ``_train_epoch`` (to know the epoch and its summed train loss) and ``_valid_epoch`` (called on the valid
    loader, then on the test loader, every ``eval_step`` epochs: only the valid calls are kept)."""

    def __init__(self, trainer, valid_data):
        self.curve: list[dict] = []
        self._epoch, self._loss = -1, None
        train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

        def _train(data, epoch_idx, *args, **kw):
            self._epoch = epoch_idx
            out = train_epoch(data, epoch_idx, *args, **kw)
            loss = out[0] if isinstance(out, tuple) else out
            self._loss = sum(loss) if isinstance(loss, tuple) else loss
            return out

        def _valid(data, *args, **kw):
            score, result = valid_epoch(data, *args, **kw)
            if data is valid_data:
                loss = self._loss if isinstance(self._loss, (int, float)) else None
                self.curve.append(curve_entry(self._epoch, result, loss))
            return score, result

        trainer._train_epoch, trainer._valid_epoch = _train, _valid


def mean_curve(results: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, mean over seeds) of ``metric``, on the epochs every seed evaluated; empty without curves."""
    curves = [{e["epoch"]: e[metric] for e in r.get("curve") or []} for r in results]
    if not curves or not all(curves):
        return np.array([], dtype=int), np.array([])
    common = sorted(set.intersection(*(set(c) for c in curves)))
    return np.array(common, dtype=int), np.array([np.mean([c[e] for c in curves]) for e in common])


def has_curves(res: dict) -> bool:
    """Both sides of one model's per-seed results carry a curve (results kept before curves existed do not)."""
    return all(r.get("curve") for k in ("mmrec", "ours") for r in res[k])


def curve_table(model: str, res: dict, ref: str = "ref", gap_from: int = 5) -> list[str]:
    """Markdown: per epoch, the mean-over-seeds valid Recall@20 and NDCG@20 of the reference and ours with
    ours/ref, then the largest per-epoch relative gap of each metric (all epochs, and from ``gap_from`` on)."""
    cols = {}
    for m in CURVE_METRICS:
        (er, vr), (eo, vo) = mean_curve(res["mmrec"], m), mean_curve(res["ours"], m)
        common = sorted(set(er.tolist()) & set(eo.tolist()))
        cols[m] = {e: (float(vr[er == e][0]), float(vo[eo == e][0])) for e in common}
    epochs = sorted(set.intersection(*(set(c) for c in cols.values())))
    if not epochs:
        return [f"{model}: no per-epoch curves in the kept results (kept before curves existed: rerun those seeds, with --force in bench/graph/mmrec_parity.py)"]
    ratio = lambda r, o: o / r if r > 0 else float("nan")
    L = [f"{model}: valid metrics per epoch (0-based), mean over {len(res['ours'])} seed(s); ref = {ref}", "",
         "| epoch | ref R@20 | ours R@20 | ours/ref | ref N@20 | ours N@20 | ours/ref |",
         "|---|---|---|---|---|---|---|"]
    for e in epochs:
        (rr, ro), (nr, no) = cols["recall@20"][e], cols["ndcg@20"][e]
        L.append(f"| {e} | {rr:.4f} | {ro:.4f} | {ratio(rr, ro):.3f} | {nr:.4f} | {no:.4f} | {ratio(nr, no):.3f} |")
    L.append("")
    for m, name in zip(CURVE_METRICS, ("Recall@20", "NDCG@20")):
        for lo in sorted({0, gap_from}):
            gaps = [(ratio(*cols[m][e]) - 1, e) for e in epochs if e >= lo and cols[m][e][0] > 0]
            if gaps:
                g, e = max(gaps, key=lambda t: abs(t[0]))
                L.append(f"- largest per-epoch gap of valid {name}, epochs >= {lo}: {g:+.1%} (epoch {e})")
    return L


def plot_mean_curves(rows: list[tuple[str, dict, str]], out: Path, title: str) -> Path:
    """A PNG of the mean-over-seeds valid Recall@20 (top) and NDCG@20 (bottom) per epoch, one column per
    (model, per-seed results, reference name): the reference solid, ours dashed (the CTR bench's convention)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(rows), figsize=(max(7.0, 4.5 * len(rows)), 6.5), squeeze=False)
    for j, (model, res, ref) in enumerate(rows):
        for i, (m, name) in enumerate(zip(CURVE_METRICS, ("Recall@20", "NDCG@20"))):
            ax = axes[i][j]
            for k, style, label in (("mmrec", "-", ref), ("ours", "--", "mmfeat")):
                ep, v = mean_curve(res[k], m)
                ax.plot(ep, v, style, marker=".", label=f"{label} (mean of {len(res[k])})")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"valid {name}")
            ax.set_title(model, fontsize="medium")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
