"""Benchmark: image-embedding throughput of ImageEmbedder (batch 32, threaded decode + prefetch)
vs a plain loop (open, process, embed one image at a time) over the same ~200 real images.

    python bench/features/bench_image_embedding.py [--images 200] [--config small|vit-b-32] [--repeats 3] [--threads 1] [--no-write]

The backbone is a RANDOM-INIT CLIP built from a config in this script: no CLIP weights exist
offline, so this measures the pipeline's throughput (decode, preprocessing, batching, model
compute for that architecture shape), never embedding quality. Images are unique crops of
scikit-image's bundled photos (CC0) saved as JPEG/PNG of varied sizes (no duplicates, so
content dedup gives no free speed-up here). Prints a markdown table and writes it, with the command,
to bench/features/RESULTS_media.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from mmfeat.featurizers.image_embedding import ImageEmbedder  # noqa: E402

CONFIGS = {
    # vision tower shape (tiny_clip keyword arguments); the text tower stays tiny (image embeddings do not use it)
    "small": dict(vision_hidden=256, vision_intermediate=1024, vision_layers=4, vision_heads=4,
                  image_size=224, patch_size=32, projection_dim=128),
    "vit-b-32": dict(vision_hidden=768, vision_intermediate=3072, vision_layers=12, vision_heads=12,
                     image_size=224, patch_size=32, projection_dim=512),
}


def random_clip(name: str):
    """A random-init CLIP of the named vision shape (:func:`mmfeat.featurizers.tiny_models.tiny_clip`)."""
    from mmfeat.featurizers.tiny_models import tiny_clip

    model, processor, _tokenizer = tiny_clip(0, **CONFIGS[name])
    return model, processor


def make_images(folder: Path, n: int) -> list[Path]:
    import skimage.data as skdata

    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "text",
             "immunohistochemistry", "hubble_deep_field", "horse", "clock", "motorcycle_left", "logo"]
    photos = []
    for name in names:
        try:
            arr = getattr(skdata, name)()
        except Exception:  # some datasets need a download: skip them
            continue
        if arr.dtype == bool:
            arr = (arr * 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3]
        photos.append(arr)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = photos[i % len(photos)]
        h, w = arr.shape[:2]
        ch, cw = rng.integers(min(h, 120), h + 1), rng.integers(min(w, 120), w + 1)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = arr[y : y + ch, x : x + cw]
        ext = "png" if i % 4 == 0 else "jpg"
        path = folder / f"img_{i:04d}.{ext}"
        Image.fromarray(crop).save(path, **({"quality": 90} if ext == "jpg" else {}))
        paths.append(path)
    return paths


def plain_loop(model, processor, paths) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for p in paths:
            image = Image.open(p).convert("RGB")
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            feats = model.get_image_features(pixel_values=pixels)
            feats = getattr(feats, "pooler_output", feats)
            out.append(torch.nn.functional.normalize(feats, dim=-1)[0].numpy())
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared, loaded 2-core machine 2 threads "
                         "made every op ~50x slower from thread contention)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    folder = Path(tempfile.mkdtemp(prefix="bench_img_"))
    paths = make_images(folder, args.images)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    model, processor = random_clip(args.config)
    n_params = sum(p.numel() for p in model.vision_model.parameters()) / 1e6

    emb_b = ImageEmbedder.from_model(model, processor, name=f"random-init-{args.config}", batch_size=args.batch_size)
    emb_1 = ImageEmbedder.from_model(model, processor, name=f"random-init-{args.config}", batch_size=1, num_workers=1)
    methods = [lambda ps: plain_loop(model, processor, ps), emb_1, emb_b]
    for fn in methods:
        fn(paths[:8])  # warm-up
    times: list[list[float]] = [[] for _ in methods]
    outs: list = [None] * len(methods)
    for _ in range(args.repeats):  # interleaved rounds: a load spike on the shared machine hits all alike
        for k, fn in enumerate(methods):
            t0 = time.perf_counter()
            outs[k] = fn(paths)
            times[k].append(time.perf_counter() - t0)
    (t_plain, t_one, t_batch), (ref, _, res_b) = [statistics.median(t) for t in times], outs
    got = np.stack([r.value for r in res_b])
    assert all(r.ok for r in res_b) and np.allclose(got, ref, atol=1e-4), "batched output differs from the plain loop"
    n = len(paths)
    rows = [
        ("plain loop, batch 1 (PIL open + processor + model per image)", t_plain),
        ("ImageEmbedder, batch_size=1, 1 decode thread", t_one),
        (f"ImageEmbedder, batch_size={args.batch_size}, 2 decode threads + prefetch", t_batch),
    ]
    table = "| method | wall time | items/s | vs plain loop |\n|---|---|---|---|\n" + "\n".join(
        f"| {label} | {t:.2f} s | {n / t:.1f} | {t_plain / t:.2f}x |" for label, t in rows
    )
    print(table)
    cmd = "python bench/features/bench_image_embedding.py " + " ".join(sys.argv[1:])
    note = (
        f"{n} unique images ({mb:.1f} MB, crops of scikit-image photos, 3/4 JPEG, 1/4 PNG). Backbone: a "
        f"**random-init** CLIP built from a config (vision tower `{args.config}`: "
        f"{CONFIGS[args.config]['vision_layers']} layers, hidden {CONFIGS[args.config]['vision_hidden']}, "
        f"224 px, patch 32; {n_params:.1f} M vision parameters) — no CLIP weights exist offline, so this "
        "measures throughput only. Median of "
        f"{args.repeats} interleaved rounds after a warm-up, CPU ({os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s), load average {os.getloadavg()[0]:.1f} at the end "
        "— the machine is shared, absolute numbers are noisy, the ratio is the point). Outputs of the batched featurizer equal the plain loop's (atol 1e-4)."
    )
    if not args.no_write:
        from bench_frames import write_section

        write_section(f"bench_image_embedding_{args.config}",
                      f"## Image embedding throughput ({args.config} random-init backbone)\n\n`{cmd.strip()}`\n\n{table}\n\n{note}\n")


if __name__ == "__main__":
    main()
