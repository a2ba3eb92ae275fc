"""Training loop (MMRec's Trainer protocol), grid search selected on validation, run records.

Protocol (MMRec src/common/trainer.py + quick_start.py):
* each epoch: ``model.pre_epoch()``, shuffled pass over the training interactions in batches of
  ``train_batch_size`` with one uniform negative per positive, Adam (``learning_rate``, ``weight_decay``),
  LambdaLR ``lr * s0 ** (epoch / s1)`` stepped per epoch;
* evaluate on VALID every ``eval_step`` epochs; early stop when ``valid_metric`` (Recall@20) has not
  improved (strictly) for more than ``stopping_step`` evaluations. Scores are compared rounded to 4
  decimals, as MMRec does: its TopKEvaluator returns ``round(value, 4)`` (numpy rounding of a float64) and
  its ``early_stopping`` compares those values, so an epoch better only in the 5th decimal is not a new
  best and counts as a bad evaluation. The record keeps the full-precision metrics;
* TEST metrics are those of the best-valid epoch. MMRec evaluates test at every epoch and keeps the one
  at the best valid epoch; we snapshot the weights at the best valid epoch and evaluate test once at the
  end (identical numbers, one test pass instead of one per epoch).
* Grid search: every combination is trained; the best is chosen on VALID (rounded the same way, first
  combination wins ties). (MMRec's quick_start picks the "best" combination by its test score; we
  deliberately do not.)
* ``early_stopping: false`` (ours): train exactly ``epochs`` epochs and report TEST at the last one (the
  record's ``selection`` says ``last_epoch``); the only way to train on a split without validation users,
  which is otherwise an error (there is nothing to select on).
"""
from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import random
import resource
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError
from .data import InteractionData
from .models.base import build_model, check_hyper_parameters, feature_keys, resolve_config
from .tasks import EarlyStopping, task_for

log = logging.getLogger(__name__)

@dataclass
class RunRecord:
    run_id: str
    model: str
    config: dict
    split_hash: str
    feature_versions: dict  # only the features the model read
    missing_features: dict
    data: dict
    split: dict = field(default_factory=dict)  # how the split was made: {"method", "seed"} (seed None if unused)
    selection: str = "best_valid"  # "best_valid" (early stopping) or "last_epoch" (early_stopping false)
    epochs: list = field(default_factory=list)  # [{epoch, loss, train_s, eval_s, valid: {...}}]
    best_epoch: int = -1
    best_valid: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    stopped_early: bool = False
    #: why training ended: "epochs" (the budget), "early_stopping" or "time_limit"
    stop_reason: str = "epochs"
    wall_s: float = 0.0
    s_per_epoch: float = 0.0
    s_per_eval: float = 0.0
    peak_rss_mb: float = 0.0
    peak_rss_scope: str = "run"
    #: name -> {"valid", "test"} metrics of sub-models of the selected model at its epoch (fMRLRec's sizes)
    sub_models: dict = field(default_factory=dict)
    checkpoint: str | None = None
    curve_png: str | None = None
    record_path: str | None = None
    torch_threads: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# ---------------------------------------------------------------------------- peak memory
def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _curve_title(rec: RunRecord) -> str:
    """``MODEL on DATASET`` and the feature versions it read (one per line), so a saved curve says what it is.

    The dataset is the record's ``dataset`` when it has one, else the prefix of its feature versions
    (``dataset/feature_set/version``), else the split hash (a run without item features).
    """
    versions = dict(rec.feature_versions or {})
    prefixes = {str(v).split("/", 1)[0] for v in versions.values() if "/" in str(v)}
    dataset = getattr(rec, "dataset", None) or (prefixes.pop() if len(prefixes) == 1 else None)
    where = dataset or f"split {str(rec.split_hash)[:12]}"
    feats = ", ".join(f"{role}={str(v).split('/', 1)[-1] if dataset else v}" for role, v in versions.items())
    return f"{rec.model} on {where}\n{feats or 'no item features'}"


def _plot_curve(rec: RunRecord, path: Path) -> str | None:
    """Train loss and the valid metric per epoch, best epoch marked; None (logged) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        log.warning("matplotlib is not installed: no curve.png for run %s", rec.run_id)
        return None
    ep = [e["epoch"] for e in rec.epochs]
    fig, ax = plt.subplots(figsize=(7, 4))
    handles = ax.plot(ep, [e["loss"] for e in rec.epochs], color="tab:blue", marker=".", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    vm = str(rec.config.get("valid_metric", "recall@20")).lower()  # the evaluator's keys are lower case
    ev = [(e["epoch"], e["valid"][vm]) for e in rec.epochs if e.get("valid")]
    if ev:
        ax2 = ax.twinx()
        handles += ax2.plot(*zip(*ev), color="tab:red", marker=".", label=f"valid {vm}")
        ax2.set_ylabel(f"valid {vm}", color="tab:red")
    if rec.best_epoch >= 0:
        which = "best valid epoch" if rec.selection == "best_valid" else "reported (last) epoch"
        handles.append(ax.axvline(rec.best_epoch, color="gray", ls="--", lw=0.8, label=f"{which} ({rec.best_epoch})"))
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_title(_curve_title(rec), fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


# ---------------------------------------------------------------------------- training
#: optimizers the ``learner`` key names (MMRec and RecBole: adam; fMRLRec: adamw)
LEARNERS = ("adam", "adamw")

REQUIRED_KEYS = ("epochs", "train_batch_size", "learning_rate", "stopping_step", "eval_step", "valid_metric",
                 "topk", "metrics", "eval_batch_size", "seed", "learner", "weight_decay",
                 "learning_rate_scheduler", "early_stopping")


def _check_config(model_name: str, cfg: dict, has_valid: bool, computed: list[str] | None = None) -> None:
    """Fail before training on a config the loop cannot honour (missing key, no validation to select on)."""
    for k in REQUIRED_KEYS:
        if k not in cfg:
            raise KeyError(f"trainer: missing config key {k!r}")
    if cfg["learner"].lower() not in LEARNERS:
        raise ConfigError(f"{model_name}: learner={cfg['learner']!r} is not one of {', '.join(LEARNERS)}")
    if computed is None:  # the ranking tasks: metric@k
        computed = [f"{m.lower()}@{k}" for m in cfg["metrics"] for k in cfg["topk"]]
    if cfg["valid_metric"].lower() not in computed:
        raise ConfigError(f"{model_name}: valid_metric={cfg['valid_metric']!r} is not among the computed metrics "
                          f"({', '.join(computed)}); choose one of them or add it through metrics / topk")
    if cfg["early_stopping"] and not has_valid:
        raise ConfigError(f"{model_name}: the split has no validation users, so there is nothing to select an "
                          f"epoch on; use a split with validation rows, or set early_stopping=false to train "
                          f"exactly epochs={cfg['epochs']} epochs and report test at the last one")


def _used_features(model_name: str, cfg: dict, data: InteractionData) -> set[str]:
    """The ``data.item_features`` keys the model reads under ``cfg``; logs (warning) the ones it ignores."""
    codes = {"codes"} if getattr(data, "item_codes", None) is not None else set()  # semantic IDs (generative)
    used = set(feature_keys(model_name, cfg).values()) & (set(data.item_features) | codes)
    unused = sorted((set(data.item_features) | codes) - used)
    if unused:
        log.warning("%s reads none of the features %s; they are not used and not recorded", model_name, unused)
    return used


def _new_record(run_id: str, model_name: str, cfg: dict, data: InteractionData) -> RunRecord:
    """A run record naming the split and only the features the model reads."""
    used = _used_features(model_name, cfg, data)
    summary = data.summary()
    summary["features"] = {k: v for k, v in summary["features"].items() if k in used}
    summary["missing_features"] = {k: v for k, v in summary["missing_features"].items() if k in used}
    return RunRecord(run_id=run_id, model=model_name, config=cfg, split_hash=data.split_hash,
                     feature_versions={k: v for k, v in data.feature_versions.items() if k in used},
                     missing_features={k: v for k, v in data.missing_features.items() if k in used},
                     data=summary, split=dict(data.split_info),
                     selection="best_valid" if cfg["early_stopping"] else "last_epoch",
                     torch_threads=torch.get_num_threads())


def build_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device):
    """Adam/AdamW (``learner``; fused where supported) and MMRec's LambdaLR ``lr * s0 ** (epoch / s1)``.

    ``cfg`` needs ``learner``, ``learning_rate``, ``weight_decay`` and ``learning_rate_scheduler`` ([s0, s1]).
    """
    # fused Adam: same update rule as the default for-each loop, one kernel per step (~20% of a FREEDOM
    # epoch on CPU); falls back to the default where fused is unsupported (e.g. sparse gradients).
    params = [p for p in model.parameters() if p.requires_grad]
    klass = torch.optim.AdamW if cfg["learner"].lower() == "adamw" else torch.optim.Adam
    kw = {"lr": float(cfg["learning_rate"]), "weight_decay": float(cfg["weight_decay"])}
    try:
        opt = klass(params, **kw, fused=device.type in ("cpu", "cuda"))
    except (RuntimeError, ValueError, TypeError):
        opt = klass(params, **kw)
    s0, s1 = cfg["learning_rate_scheduler"]
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: s0 ** (e / s1))


def _save_run(rec: RunRecord, model: torch.nn.Module, runs_dir: str | os.PathLike) -> None:
    """Checkpoint, curve and record.json (atomically) under ``runs_dir/<run_id>``."""
    out = Path(runs_dir) / rec.run_id
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    rec.checkpoint = str(out / "model.pt")
    rec.curve_png = _plot_curve(rec, out / "curve.png")
    rec.record_path = str(out / "record.json")
    tmp = out / "record.json.tmp"
    tmp.write_text(rec.to_json())
    os.replace(tmp, out / "record.json")


def fit(data: InteractionData, model_name: str, config: dict | None = None, runs_dir: str | os.PathLike | None = None,
        *, run_id: str | None = None, progress: bool = True, save: bool = True) -> RunRecord:
    """Train one model with one config; returns the run record (also written to runs_dir).

    Args:
        data: the split and the item features.
        model_name: a registered model (case-insensitive).
        config: overrides of the model's declared defaults (every key must be declared).
        runs_dir: where to write ``<run_id>/record.json``, the checkpoint and the curve (None: nowhere).
        run_id: the run's folder name (default: model, time and a random suffix).
        progress: show a tqdm bar.
        save: write the run folder when ``runs_dir`` is given.

    Returns:
        The run record; ``rec._model`` holds the trained model (best-valid or last-epoch weights).

    Raises:
        ConfigError: an unknown model or config key, or early stopping asked on a split without
            validation users.
        FloatingPointError: a NaN loss.
    """
    cfg = resolve_config(model_name, config)
    task = task_for(model_name, data, cfg)
    _check_config(model_name, cfg, task.has_valid, getattr(task, "computed_metrics", lambda: None)())
    device = torch.device(cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    run_id = run_id or f"{model_name.lower()}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    _reset_peak_rss()
    t_start = time.perf_counter()

    seed_everything(int(cfg["seed"]))
    model = build_model(model_name, data, cfg).to(device)
    trainable = getattr(model, "trainable", True)  # False: closed-form (ItemKNNCBF), evaluated once, no optimizer
    opt, sched = build_optimizer(model, cfg, device) if trainable else (None, None)
    rng = np.random.default_rng(int(cfg["seed"]))
    valid_eval = task.evaluator("valid") if task.has_valid else None
    vm = cfg["valid_metric"].lower()

    rec = _new_record(run_id, model_name, cfg, data)
    rec.data.update(task.describe(model))
    selecting = bool(cfg["early_stopping"])
    stopper = (task.early_stopping(int(cfg["stopping_step"])) if hasattr(task, "early_stopping")
               else EarlyStopping(int(cfg["stopping_step"])))
    best_state = None
    train_times, eval_times = [], []
    epochs = int(cfg["epochs"]) if trainable else 1
    eval_step = max(1, min(int(cfg["eval_step"]), epochs))
    it = range(epochs)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"{model_name}", leave=False)
    limit = cfg.get("time_limit_s")
    for epoch in it:
        if limit and epoch:
            # stop before an epoch that would end past the limit (judged by the mean epoch so far, its
            # validation included), so a budget is not overshot by up to one epoch
            elapsed = time.perf_counter() - t_start
            expected = (sum(train_times) + sum(eval_times)) / len(train_times)  # validations every eval_step
            if elapsed + expected > limit:
                rec.stop_reason = "time_limit"
                log.info("%s: time limit %.0f s: stopped after %d epochs (%.0f s so far; the next epoch would "
                         "take about %.0f s)", model_name, limit, epoch, elapsed, expected)
                break
        t0 = time.perf_counter()
        total = 0.0
        if trainable:
            total = task.train_epoch(model, opt, rng, device, epoch)
            sched.step()
        train_times.append(time.perf_counter() - t0)
        row = {"epoch": epoch, "loss": total, "train_s": train_times[-1]}
        rec.epochs.append(row)
        if valid_eval is None or (epoch + 1) % eval_step:
            continue
        t1 = time.perf_counter()
        res = valid_eval.evaluate(model)
        eval_times.append(time.perf_counter() - t1)
        row.update(valid=res, eval_s=eval_times[-1])
        score = res[vm]
        if progress:
            it.set_postfix(loss=f"{total:.3f}", **{vm: f"{score:.4f}"})
        log.info("epoch %d loss %.4f valid %s %.4f (%.2fs train, %.2fs eval)", epoch, total, vm, score,
                 train_times[-1], eval_times[-1])
        if not selecting:
            continue
        improved, stop = stopper.update(score)
        if improved:
            rec.best_epoch, rec.best_valid = epoch, res
            best_state = copy.deepcopy(model.state_dict())
        elif hasattr(task, "on_plateau"):  # e.g. the CTR task's reduce-LR-on-plateau
            task.on_plateau(opt, sched)
        if stop:
            rec.stopped_early, rec.stop_reason = True, "early_stopping"
            break

    if not selecting:  # fixed number of epochs: the last epoch is the reported one
        rec.best_epoch = len(rec.epochs) - 1
        rec.best_valid = dict(rec.epochs[-1].get("valid", {})) if rec.epochs else {}
    elif best_state is not None:
        model.load_state_dict(best_state)
    rec.test = task.evaluator("test").evaluate(model)
    rec.sub_models = task.sub_models(model)
    rec.wall_s = time.perf_counter() - t_start
    rec.s_per_epoch = float(np.mean(train_times)) if train_times else 0.0
    rec.s_per_eval = float(np.mean(eval_times)) if eval_times else 0.0
    rec.peak_rss_mb = _peak_rss_mb()
    if runs_dir is not None and save:
        _save_run(rec, model, runs_dir)
    log.info("%s %s epoch %d valid %s=%.4f test %s=%.4f", model_name, rec.selection, rec.best_epoch, vm,
             rec.best_valid.get(vm, float("nan")), vm, rec.test.get(vm, float("nan")))
    rec._model = model  # not serialized; handy for callers
    return rec


def train(data: InteractionData, model_name: str, config: dict | None = None,
          runs_dir: str | os.PathLike | None = None, **kw) -> RunRecord:
    """Train one model (alias of :func:`fit`)."""
    return fit(data, model_name, config, runs_dir, **kw)


@dataclass
class GridResult:
    best: RunRecord
    runs: list
    grid: dict
    selected_on: str = "valid"

    def table(self) -> list[dict]:
        vm = self.best.config["valid_metric"].lower()
        return [{**{k: r.config[k] for k in self.grid}, f"valid_{vm}": r.best_valid.get(vm),
                 f"test_{vm}": r.test.get(vm), "run_id": r.run_id} for r in self.runs]


def grid_search(data, model_name: str, grid: dict, config: dict | None = None,
                runs_dir: str | os.PathLike | None = None, **kw) -> GridResult:
    """Train every combination of ``grid`` on top of ``config``; the best is the one with the highest VALID
    ``valid_metric`` at its reported epoch, rounded as MMRec rounds (test is only reported).

    Args:
        data: what the model's task trains on (user-item pairs, next-item sequences or CTR rows).
        model_name: a registered model.
        grid: hyper-parameter name -> non-empty list of values.
        config: fixed overrides shared by every combination.
        runs_dir: where each run writes its folder (see :func:`fit`).
        **kw: passed to :func:`fit`.

    Returns:
        Every run and the best one (the first of equal rounded scores).

    Raises:
        ConfigError: an unknown key, an empty value list, or a split without validation users.
    """
    check_hyper_parameters(model_name, grid, where="grid")
    empty = [k for k, v in grid.items() if not isinstance(v, (list, tuple)) or not v]
    if empty:
        raise ConfigError(f"grid {empty[0]!r} needs a non-empty list of values, got {grid[empty[0]]!r}")
    # the task knows what validation means for its data (user-item pairs, next items, labelled CTR rows)
    if not task_for(model_name, data, resolve_config(model_name, config)).has_valid:
        raise ConfigError(f"{model_name}: a grid is selected on validation and the split has no validation "
                          f"users; train one configuration with early_stopping=false instead")
    keys = list(grid)
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        cfg = dict(config or {})
        cfg.update(dict(zip(keys, values)))
        runs.append(fit(data, model_name, cfg, runs_dir, **kw))
    vm = runs[0].config["valid_metric"].lower()
    # VALID only, compared as MMRec compares scores; max keeps the first of equal keys
    best = max(runs, key=lambda r: EarlyStopping(0).rounded(r.best_valid.get(vm, -np.inf)))
    return GridResult(best=best, runs=runs, grid=dict(grid))
