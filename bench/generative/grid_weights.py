"""snap-research/GRID's trained TIGER weights in our TIGER: do our model and ranking give GRID's own numbers?

    python bench/generative/grid_weights.py --run parity-2024-d64l2h2-s2024-20261207-144846

``--run`` is a GRID run made by ``grid_tiger.py run`` or ``grid_parity.py`` (a folder under
bench/_work/generative/grid/<dataset>/runs/ with a ``result.json``). Its tested checkpoint is read in GRID's venv
(Lightning pickles GRID's classes into it) and every tensor is mapped one to one onto our TIGER with the same
sizes (``tiger-cpu``: T5 blocks, relative position bias, final norms, the shared code table, separator, start
vector, per-level heads; ``level_vocab: largest``, as GRID's table). Our evaluator then ranks the split's users
with ``beam_renormalise`` false (our rule) and true (GRID's rule), next to the numbers GRID's own test and its
best validation printed for that checkpoint.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from grid_tiger import GRID_PY, GRID_SRC, MANIFESTS, ROOT, WORK  # noqa: E402

#: GRID's checkpoint -> a plain tensor dict (run in GRID's venv, cwd GRID's checkout)
EXTRACT = """
import sys, torch
sys.path.insert(0, '.')
import src.utils  # GRID's import order
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=False)
torch.save(dict(ck['state_dict']), sys.argv[2])
"""
METRICS = ["recall@5", "ndcg@5", "recall@10", "ndcg@10"]


def load_into_ours(model, sd: dict) -> None:
    """GRID's parameter names -> our TIGER's (every tensor copied; shapes must agree)."""
    import torch

    model.encoder.load_transformers_state(sd, "encoder.encoder.encoder.")
    model.decoder.load_transformers_state(sd, "decoder.decoder.")
    with torch.no_grad():
        table, per_level = sd["item_sid_embedding_table_encoder.weight"], sd["decoder.decoder_mlp.0.weight"].shape[0]
        for level, (off, size) in enumerate(zip(model.offsets.tolist(), model.sizes.tolist())):
            model.token.weight[1 + off:1 + off + size] = table[level * per_level:level * per_level + size]
            model.head.weight[off:off + size] = sd[f"decoder.decoder_mlp.{level}.weight"][:size]
        model.separator.copy_(sd["sep_token"][0])
        model.start.copy_(sd["decoder.bos_token"][0])


def load_split(meta: dict):
    """The :class:`SequenceData` exported to GRID (``meta.json`` of ``grid_tiger.py export``), built again through
    the library's path; refuses a split that is not the exported one."""
    from mmfeat.pipelines.environment import apply_defaults

    apply_defaults()
    from mmfeat.pipelines.training.run import load_training_data

    _, fs, version = meta["codes_version"].split("/")
    data, _ = load_training_data(meta["manifest"], {"codes": f"{fs}@{version}"}, task="sequential",
                                 store_root=str(WORK / "store"), runs_dir=str(WORK / "runs"))
    if data.split_hash != meta["split_hash"]:
        raise SystemExit("the split differs from the one exported to GRID: re-export with grid_tiger.py export --force")
    return data


def tiger_config(res: dict, meta: dict) -> dict:
    """Our TIGER's config with the sizes of a GRID run (its Hydra overrides in ``result.json``) and GRID's level
    sizes (``level_vocab: largest``)."""
    o = {x.split("=", 1)[0]: x.split("=", 1)[1] for x in res["overrides"] if "=" in x}
    enc = "model.huggingface_model.config."
    return {"hidden_size": int(o[enc + "d_model"]), "n_heads": int(o[enc + "num_heads"]),
            "head_size": int(o[enc + "d_kv"]), "inner_size": int(o[enc + "d_ff"]), "n_layers": int(o[enc + "num_layers"]),
            "dropout_prob": float(o[enc + "dropout_rate"]), "beam_size": int(o["+model.top_k_for_generation"]),
            "max_seq_length": int(o["sequence_length"]) // meta["levels"] - 1, "level_vocab": "largest",
            "topk": [5, 10], "metrics": ["recall", "ndcg"]}


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(MANIFESTS), default="ml-1m")
    ap.add_argument("--run", required=True, help="a GRID run folder name under bench/_work/generative/grid/<dataset>/runs")
    a = ap.parse_args()
    run_dir = WORK / "grid" / a.dataset / "runs" / a.run
    if not (run_dir / "result.json").exists():
        raise SystemExit(f"no result.json in {run_dir}: pass a finished run of grid_tiger.py run / grid_parity.py")
    res = json.loads((run_dir / "result.json").read_text())
    meta = json.loads((WORK / "grid" / a.dataset / "meta.json").read_text())
    weights = run_dir / "weights.pt"
    subprocess.run([str(GRID_PY), "-c", EXTRACT, res["tested_checkpoint"], str(weights)], cwd=str(GRID_SRC), check=True,
                   stdout=subprocess.DEVNULL)

    import torch

    from mmfeat.recommenders import build_model
    from mmfeat.recommenders.sequential import SequentialEvaluator

    data = load_split(meta)
    cfg = tiger_config(res, meta)
    sd = torch.load(weights)
    lines = ["| split | ranking | " + " | ".join(METRICS) + " |", "|---|---|---|---|---|---|"]
    grid_valid = res["best_valid"] or {}
    for split, grid_row in (("valid", grid_valid), ("test", res["test"])):
        lines.append(f"| {split} | GRID's own | " + " | ".join(f"{grid_row.get(m, float('nan')):.5f}" for m in METRICS) + " |")
        ev = SequentialEvaluator(data, split, max_len=cfg["max_seq_length"], topk=(5, 10),
                                 metrics=("recall", "ndcg"), batch_size=128)
        for renorm in (False, True):
            model = build_model("TIGER", data, {**cfg, "beam_renormalise": renorm}).eval()
            load_into_ours(model, sd)
            got = ev.evaluate(model)
            rule = "ours, GRID's rule (beam_renormalise)" if renorm else "ours, our rule"
            lines.append(f"| {split} | {rule} | " + " | ".join(f"{got[m]:.5f}" for m in METRICS) + " |")
    body = (f"GRID run {a.run} (checkpoint {Path(res['tested_checkpoint']).name}) in our TIGER; GRID's valid row is "
            f"its best validation (the tested checkpoint's).\n\n" + "\n".join(lines))
    log_result(f"GRID's weights in our TIGER, {a.dataset}", body)


def log_result(title: str, body: str) -> None:
    """Print a GRID comparison's table and append it, with this run's command, to RESULTS_generative.md."""
    print(body)
    from _results import append_results

    append_results(HERE / "RESULTS_generative.md", "Generative recommendation benchmark log", title,
                   f"python {Path(sys.argv[0]).resolve().relative_to(ROOT)} " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
