"""What a re-run of an unchanged feature set costs: a cache hit must load no model and take well
under the featurization time.

Two feature sets, each run twice in fresh processes (``run_feature_set``, the code a deployment
runs, minus Prefect):

- **MovieLens-1M text** (3,706 items, all-MiniLM-L6-v2 real weights): plan (texts + sha256),
  request key (weights located and hashed, code fingerprint), manifest lookup;
- **the MicroLens sample's covers** (40 real photo crops; image embedding with a small random-init
  CLIP saved to a temp folder, since no CLIP weights exist offline): the same plus one sha256 per
  media file (memoized per process by ``mmfeat.featurizers.hashing``).

Each child reports its wall time split into phases and whether any model object was created.

    python bench/features/bench_cache_hit.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from mmfeat.pipelines.engine.extract import load_items, run_feature_set
from mmfeat.pipelines.manifest import load_manifest
from mmfeat.pipelines.store.feature_store import FeatureStore
t_import = time.perf_counter()
m = load_manifest(sys.argv[1])
items, _, _ = load_items(m)
t_load = time.perf_counter()
rep = run_feature_set(FeatureStore(sys.argv[2]), m, m.feature_sets[0], items)
t_end = time.perf_counter()
from mmfeat.featurizers.cache import MODELS
print("RESULT " + json.dumps({
    "cache_hit": rep.cache_hit, "rows": rep.rows, "computed": rep.computed, "version": rep.version,
    "models_loaded": len(MODELS),
    "import_s": t_import - t0, "load_source_s": t_load - t_import, "feature_set_s": t_end - t_load,
    "total_s": t_end - t0,
}))
"""


def _child(manifest: Path, store: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(manifest), str(store)], capture_output=True,
                          text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _manifests(work: Path) -> dict[str, Path]:
    from bench_image_embedding import random_clip

    clip_dir = work / "tiny-clip"
    model, processor = random_clip("small")
    model.save_pretrained(clip_dir)
    processor.save_pretrained(clip_dir)
    ml1m = {
        "name": "ml1m-bench", "source": {"kind": "movielens", "options": {"variant": "ml-1m"}},
        "failure_threshold": 0.05, "shard_size": 2048,
        "feature_sets": [{"name": "text_minilm", "kind": "text_embedding",
                          "input": {"text_fields": ["title", "genres", "year"],
                                    "template": "{title} ({year}). Genres: {genres}"},
                          "params": {"backbone": "all-MiniLM-L6-v2", "batch_size": 64}}],
    }
    covers = {
        "name": "covers-bench", "dataset": "microlens-mini",
        "data_root": str(ROOT / "manifests" / "data" / "microlens-mini"),
        "source": {"kind": "microlens", "root": ".", "options": {"prefix": "MicroLens-100k"}},
        "shard_size": 16,
        "feature_sets": [{"name": "cover_tinyclip", "kind": "image_embedding", "input": {"media": "image_uri"},
                          "params": {"backbone": str(clip_dir), "backend": "transformers"}}],
    }
    out = {}
    for name, m in (("MovieLens-1M text (3,706 items, MiniLM)", ml1m), ("MicroLens sample covers (40 images, small CLIP)", covers)):
        path = work / f"{m['name']}.yaml"
        path.write_text(yaml.safe_dump(m))
        out[name] = path
    return out


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="cache-hit re-runs per feature set")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-hit-") as tmp:
        work = Path(tmp)
        for label, manifest in _manifests(work).items():
            store = work / ("store-" + manifest.stem)
            first = _child(manifest, store)
            hits = [_child(manifest, store) for _ in range(args.repeats)]
            assert not first["cache_hit"] and all(h["cache_hit"] and h["version"] == first["version"] for h in hits)
            best = min(hits, key=lambda h: h["total_s"])
            rows.append((label, first, best))
    print("| feature set | first run: total s (source, feature set) | cache hit: total s (import, source, feature set) "
          "| models loaded on the hit | hit / first (feature-set phase) |")
    print("|---|---|---|---|---|")
    for label, first, best in rows:
        print(f"| {label} | {first['total_s']:.1f} ({first['load_source_s']:.2f}, {first['feature_set_s']:.2f}) "
              f"| {best['total_s']:.2f} ({best['import_s']:.2f}, {best['load_source_s']:.2f}, {best['feature_set_s']:.2f}) "
              f"| {best['models_loaded']} | {best['feature_set_s'] / first['feature_set_s']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
