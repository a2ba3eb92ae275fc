"""What one more epoch of each training-sample mode adds late in training, from one shared checkpoint.

    python bench/sequential/late_epochs.py --model GRU4Rec --warm-epochs 15 --extra-epochs 2 --modes window:10 prefix --seeds 1 2 --set train_batch_size=4096 learning_rate=0.005 train_precision=bfloat16

Why: the converged GRU4Rec runs level off below RecBole's published valid NDCG@10, and the early epochs of
``window:10`` and RecBole's own ``prefix`` samples learn alike; this asks whether they still do where the
curve flattens. The model trains ``--warm-epochs`` epochs with the first mode (seed 2024, the trainer's own
``train_epoch``, optimizer and learning-rate schedule); the model, optimizer and schedule are kept, and every
mode restarts from them for ``--extra-epochs`` epochs under each of ``--seeds`` (the order of the samples and
the dropout masks). Two seeds of one mode show the noise; a mode that learns more late shows above it.
MovieLens-1M of the converged benchmark (ratings >= 3, 10-core; ``recbole_seq_parity.py`` prepares it),
RecBole's hyper-parameters with ``--set`` on top, one thread, one process (the checkpoint stays in memory).
Results: bench/sequential/RESULTS_sequential.md.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import recbole_seq_parity as parity  # noqa: E402
from _results import exit_on_sigterm  # noqa: E402


#: config keys this benchmark decides (a --set of them would be ignored, so it is refused)
OWN_KEYS = {"epochs": "--warm-epochs, --extra-epochs", "seed": "2024 for the warm-up, --seeds after it",
            "train_mode": "--modes", "train_stride": "--modes window:S", "early_stopping": "no selection",
            "stopping_step": "no selection", "eval_step": "valid after every epoch", "time_limit_s": "no cap",
            "device": "cpu"}


def mode_configs(model_name: str, modes: list[str], extra: dict) -> dict[str, dict]:
    """Mode -> resolved config (RecBole's hyper-parameters, ``extra`` on top, the mode's samples).

    Raises:
        SystemExit: an unknown model, a mistyped mode or a value the model refuses, named before any training.
    """
    parity.check_model(model_name, "--model")
    owned = sorted(set(extra) & set(OWN_KEYS))
    if owned:
        raise SystemExit(f"--set {', '.join(owned)}: this benchmark sets them itself ({OWN_KEYS[owned[0]]}); "
                         f"drop them")
    return {mode: parity.resolved_config(model_name, {**extra, **parity.parse_train_mode(mode)}, f"{model_name} {mode}")
            for mode in modes}


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="GRU4Rec")
    ap.add_argument("--modes", nargs="+", default=["window:10", "prefix"], help="the first one warms the model up")
    ap.add_argument("--warm-epochs", type=int, default=15)
    ap.add_argument("--extra-epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config keys on top of RecBole's")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.warm_epochs < 1 or args.extra_epochs < 1:
        raise SystemExit("--warm-epochs and --extra-epochs must be >= 1")
    exit_on_sigterm()
    configs = mode_configs(args.model, args.modes, parity.parse_sets(args.set))

    import numpy as np
    import pandas as pd
    import torch

    from mmfeat.recommenders.models.base import build_model
    from mmfeat.recommenders.sequential import from_loo_frame
    from mmfeat.recommenders.sequential.training import SequentialTask
    from mmfeat.recommenders.trainer import build_optimizer

    torch.set_num_threads(args.threads)
    data = from_loo_frame(pd.read_parquet(parity.prepare("ml-1m", 3.0, 10) / "split.parquet"))
    device = torch.device("cpu")
    tasks = {mode: SequentialTask(args.model, data, cfg) for mode, cfg in configs.items()}
    first = args.modes[0]
    torch.manual_seed(2024)
    model = build_model(args.model, data, configs[first])
    opt, sched = build_optimizer(model, configs[first], device)

    def valid() -> tuple[float, float]:
        res = tasks[first].evaluator("valid").evaluate(model)
        return res["ndcg@10"], res["hit@10"]

    def epoch(task: SequentialTask, rng: np.random.Generator, index: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        loss = task.train_epoch(model, opt, rng, device, index)
        sched.step()
        return loss, time.perf_counter() - t0

    rng = np.random.default_rng(2024)
    warm = []
    for e in range(args.warm_epochs):
        loss, secs = epoch(tasks[first], rng, e)
        warm.append(valid()[0])
        print(f"warm-up epoch {e} ({first}): loss {loss:.2f}, valid NDCG@10 {warm[-1]:.4f}, {secs:.0f} s", flush=True)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))
    rows = []
    for mode in args.modes:
        for seed in args.seeds:
            model.load_state_dict(saved[0])
            opt.load_state_dict(saved[1])
            sched.load_state_dict(saved[2])
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            for e in range(args.warm_epochs, args.warm_epochs + args.extra_epochs):
                loss, secs = epoch(tasks[mode], rng, e)
                ndcg, hit = valid()
                rows.append(f"| {mode} | {seed} | {e} | {ndcg:.4f} | {hit:.4f} | {loss:.2f} | {secs:.0f} |")
                print(rows[-1], flush=True)
    body = (f"{args.model}, {' '.join(args.set) or 'RecBole defaults'}, one thread. Warm-up with {first}, valid "
            f"NDCG@10 per epoch: {' '.join(f'{v:.4f}' for v in warm)}\n\n"
            "| samples after the checkpoint | seed | epoch | valid NDCG@10 | valid Hit@10 | epoch loss | s |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(body)
    parity.append_results(f"late epochs: ml-1m (min rating 3, 10-core), {args.model}",
                          "python bench/sequential/late_epochs.py " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
