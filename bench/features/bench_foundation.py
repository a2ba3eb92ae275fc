"""Foundation benchmark: what the pipeline costs over the plain library calls it wraps.

    HF_HUB_OFFLINE=1 python bench/features/bench_foundation.py            # full run (writes bench/features/RESULTS_foundation.md)
    HF_HUB_OFFLINE=1 python bench/features/bench_foundation.py --quick    # tiny smoke run

Three measurements in one run, printed as one markdown table:

1. Text featurization: ``plan_inputs`` + ``FeatureSetJob.run_all`` into a fresh temp store (hashing,
   sharding, Parquet writes, fsync, checksums, publish) vs a plain
   ``SentenceTransformer.encode(texts, batch_size=64, normalize_embeddings=True)`` on the same
   10,000 unique real item texts, same model object (all-MiniLM-L6-v2, loaded once, warmed up).
   Runs alternate (P,N then N,P, ...). Outputs are compared (max abs diff).
2. Reading a published 100,000 x 384 float32 version with ``FeatureStore.read_matrix`` (stored order,
   and aligned to a shuffled id list) vs ``np.load`` of the same matrix (page cache warm).
3. Peak RSS + wall time of extracting the ``movielens-100k`` manifest's text feature set, in a fresh
   subprocess through the engine (no Prefect), and through the full Prefect flow
   (``mmfeat --store <tmp> extract movielens-100k`` under ``/usr/bin/time -v``).

Texts (part 1): the items of MovieLens-100K then MovieLens-1M (from the recbole wheel via
``load_source("movielens", None, variant=...)``), each formatted with three templates, in this order:
T1 ``"{title} ({year}). Genres: {genres}"`` for every item, then T2 ``"{title}: a {genres} film from {year}"``,
then T3 ``"{genres} movie: {title} ({year})"``; a missing field formats as "" and the text is stripped
(as the pipeline does); duplicates are dropped keeping the first occurrence, and the first 10,000 unique
texts are used. (T1 and T2 together give only 7,956 unique texts: the two catalogues share most movies.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEMPLATES = [
    "{title} ({year}). Genres: {genres}",
    "{title}: a {genres} film from {year}",
    "{genres} movie: {title} ({year})",
]


# ----------------------------------------------------------------------------------------- helpers
def _s(v) -> str:
    return "" if v is None else str(v).strip()


def movie_texts(n: int) -> tuple[list[str], dict[str, int]]:
    """The first n unique texts (see module docstring) and how many came from each template."""
    from mmfeat.pipelines.sources import load_source

    rows = []
    for variant in ("ml-100k", "ml-1m"):
        rows += load_source("movielens", None, variant=variant).items.to_pylist()
    seen: dict[str, None] = {}
    per_template: dict[str, int] = {}
    for k, tpl in enumerate(TEMPLATES):
        for r in rows:
            if len(seen) >= n:
                break
            t = tpl.format(title=_s(r["title"]), year=_s(r["year"]), genres=_s(r["genres"])).strip()
            if t and t not in seen:
                seen[t] = None
                per_template[f"T{k + 1}"] = per_template.get(f"T{k + 1}", 0) + 1
    texts = list(seen)
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} unique texts available, wanted {n}")
    return texts, per_template


def machine_info() -> dict[str, str]:
    import pyarrow
    import sentence_transformers
    import torch

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    return {
        "cpu": cpu_model or platform.processor(),
        "os.cpu_count()": str(os.cpu_count()),
        "usable cores (sched_getaffinity)": str(affinity),
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def best_median(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


# ----------------------------------------------------------------------------- 1. text featurization
def bench_text(n_texts: int, reps: int, shard_size: int) -> dict:
    import pyarrow as pa

    from mmfeat.featurizers.text_embedding import TextEmbedder
    from mmfeat.pipelines.engine.extract import FeatureSetJob, plan_inputs
    from mmfeat.pipelines.manifest import FeatureSetSpec
    from mmfeat.pipelines.store.feature_store import FeatureStore

    texts, per_template = movie_texts(n_texts)
    ids = [f"t{i:06d}" for i in range(len(texts))]  # zero-padded: the pipeline's id order == text order
    items = pa.table({"item_id": ids, "text": texts})
    spec = FeatureSetSpec(name="text_minilm", kind="text_embedding", input={"text_fields": ["text"]},
                          params={"backbone": "all-MiniLM-L6-v2", "batch_size": 64, "normalize": True})
    embedder = TextEmbedder("all-MiniLM-L6-v2", batch_size=64)
    model = embedder.model

    def plain() -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=False)

    def pipeline() -> tuple[float, np.ndarray]:
        tmp = Path(tempfile.mkdtemp(prefix="bench-foundation-store-"))
        try:
            store = FeatureStore(tmp)
            t0 = time.perf_counter()
            planned = plan_inputs(items, spec)
            job = FeatureSetJob(store, "bench", spec, embedder, planned, shard_size=shard_size)
            rep = job.run_all(0.0, progress=False)
            dt = time.perf_counter() - t0
            assert rep.rows == len(texts) and rep.errors == 0 and rep.computed == len(texts), rep
            mat = store.read_matrix("bench", spec.name, "latest", item_ids=ids).matrix.copy()
            return dt, mat
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # warm-up: both code paths once on a slice (thread pools, allocator, tokenizer caches)
    model.encode(texts[:512], batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    embedder(texts[:256])

    t_pipe, t_plain = [], []
    pipe_mat = plain_mat = None
    for r in range(reps):
        order = ("pipeline", "plain") if r % 2 == 0 else ("plain", "pipeline")
        for which in order:
            if which == "pipeline":
                dt, pipe_mat = pipeline()
                t_pipe.append(dt)
            else:
                t0 = time.perf_counter()
                plain_mat = plain()
                t_plain.append(time.perf_counter() - t0)
            print(f"  [text] round {r + 1} {which:8s} {t_pipe[-1] if which == 'pipeline' else t_plain[-1]:.2f}s",
                  flush=True)
    diff = float(np.max(np.abs(pipe_mat - plain_mat)))
    n = len(texts)
    pb, pm = max(n / t for t in t_pipe), statistics.median([n / t for t in t_pipe])
    nb, nm = max(n / t for t in t_plain), statistics.median([n / t for t in t_plain])
    return {
        "n": n, "per_template": per_template, "reps": reps, "shard_size": shard_size,
        "pipe_s": t_pipe, "plain_s": t_plain,
        "pipe_best": pb, "pipe_median": pm,
        "plain_best": nb, "plain_median": nm,
        "ratio_best": pb / nb, "ratio_median": pm / nm,
        "max_abs_diff": diff,
        "cos_min": float(np.min(np.sum(pipe_mat * plain_mat, axis=1))),
    }


# ----------------------------------------------------------------------------- 2. matrix read
def bench_read(n_rows: int, dim: int, reps: int, shard_rows: int) -> dict:
    from mmfeat.pipelines.store import feature_store as store_module
    from mmfeat.pipelines.store.feature_store import FeatureStore, build_rows, row_schema

    rng = np.random.default_rng(0)
    mat = rng.standard_normal((n_rows, dim), dtype=np.float32)
    ids = [f"i{i:07d}" for i in range(n_rows)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-foundation-read-"))
    try:
        store = FeatureStore(tmp / "store")
        ds, fs = "bench", "random"
        schema = row_schema("embedding", dim, "float32")
        t0 = time.perf_counter()
        w = store.writer(ds, fs, "r-bench", {"rows": n_rows, "shard_rows": shard_rows})
        for k, s in enumerate(range(0, n_rows, shard_rows)):
            e = min(s + shard_rows, n_rows)
            none = [None] * (e - s)
            w.write_part(k, build_rows(schema, ids[s:e], mat[s:e], none, none, none))
        version = w.publish({"output": {"kind": "embedding", "dim": dim, "dtype": "float32"}}).name
        t_write = time.perf_counter() - t0
        npy = tmp / "matrix.npy"
        t0 = time.perf_counter()
        np.save(npy, mat)
        with open(npy, "rb+") as fh:  # fsync like the store does, for a fair write number
            os.fsync(fh.fileno())
        t_save = time.perf_counter() - t0
        vdir = store.feature_dir(ds, fs) / version
        store_bytes = sum(p.stat().st_size for p in vdir.glob("part-*.parquet"))

        perm = np.random.default_rng(1).permutation(n_rows)
        shuffled = [ids[i] for i in perm]

        def r_np():
            return np.load(npy)

        def r_stored():
            return store.read_matrix(ds, fs, "latest").matrix

        def r_aligned():
            return store.read_matrix(ds, fs, "latest", item_ids=shuffled).matrix

        def r_cold():  # the first read of a version in a process: every part's sha256 is checked
            store_module._VERIFIED = store_module._VerifiedParts()
            return store.read_matrix(ds, fs, "latest").matrix

        pos = {item: i for i, item in enumerate(ids)}

        def r_np_aligned():  # what a user does with a bare .npy: load, then reorder to their ids
            return np.load(npy)[np.fromiter((pos[i] for i in shuffled), np.int64, len(shuffled))]

        fns = {"np.load": r_np, "stored": r_stored, "aligned": r_aligned, "np.load+align": r_np_aligned,
               "stored_cold": r_cold}
        # warm the page cache and verify once
        a, b, c = r_np(), r_stored(), r_aligned()
        eq_np = bool(np.array_equal(a, mat))
        eq_stored = bool(np.array_equal(b, mat))
        eq_aligned = bool(np.array_equal(c, mat[perm]))
        del a, b, c
        times: dict[str, list[float]] = {k: [] for k in fns}
        names = list(fns)
        for r in range(reps):
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                out = fns[name]()
                times[name].append(time.perf_counter() - t0)
                del out
        return {
            "n": n_rows, "dim": dim, "reps": reps, "shard_rows": shard_rows,
            "t_write": t_write, "t_save": t_save, "store_bytes": store_bytes, "npy_bytes": npy.stat().st_size,
            "times": times, "eq_np": eq_np, "eq_stored": eq_stored, "eq_aligned": eq_aligned,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- 3. peak memory
CHILD_ENGINE = r"""
import json, resource, sys, tempfile, time
t0 = time.perf_counter()
from mmfeat.featurizers.text_embedding import TextEmbedder
from mmfeat.pipelines.engine.extract import FeatureSetJob, load_items, plan_inputs
from mmfeat.pipelines.manifest import load_manifest
from mmfeat.pipelines.store.feature_store import FeatureStore
t_import = time.perf_counter()
m = load_manifest("movielens-100k")
spec = [s for s in m.feature_sets if s.kind == "text_embedding"][0]
items, _, _ = load_items(m)
t_load = time.perf_counter()
f = TextEmbedder.from_spec(dict(spec.params))
t_model = time.perf_counter()
store = FeatureStore(sys.argv[1])
planned = plan_inputs(items, spec)
job = FeatureSetJob(store, m.store_dataset, spec, f, planned, shard_size=m.shard_size)
rep = job.run_all(m.failure_threshold, progress=False)
t_end = time.perf_counter()
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print("RESULT " + json.dumps({
    "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "vmhwm_mib": hwm[0] / 1024 if hwm else None,
    "rows": rep.rows, "errors": rep.errors, "version": rep.version, "feature_set": spec.name,
    "import_s": t_import - t0, "load_items_s": t_load - t_import, "model_s": t_model - t_load,
    "extract_s": t_end - t_model, "child_total_s": t_end - t0,
}))
"""

CHILD_BASELINE = r"""
import json, resource
from mmfeat.featurizers.text_embedding import TextEmbedder
f = TextEmbedder("all-MiniLM-L6-v2", batch_size=64)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print("RESULT " + json.dumps({"maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                              "vmhwm_mib": hwm[0] / 1024 if hwm else None}))
"""


def _clean_child(args: list[str]) -> list[str]:
    """Linux keeps ru_maxrss across fork+execve, so a child started straight from this (big) process
    reports *our* RSS as its peak. Start it from a small ``sh`` that forks it (no exec) instead."""
    return ["/bin/sh", "-c", " ".join(shlex.quote(a) for a in args) + "; exit $?"]


def _child_result(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("child printed no RESULT line:\n" + stdout[-3000:])


def bench_memory(with_flow: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-foundation-mem-"))
    try:
        t0 = time.perf_counter()
        p = subprocess.run(_clean_child([sys.executable, "-c", CHILD_BASELINE]), capture_output=True, text=True, env=env,
                           cwd=ROOT)
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        out["baseline"] = {**_child_result(p.stdout), "wall_s": time.perf_counter() - t0}

        t0 = time.perf_counter()
        p = subprocess.run(_clean_child([sys.executable, "-c", CHILD_ENGINE, str(tmp / "engine-store")]), capture_output=True,
                           text=True, env=env, cwd=ROOT)
        if p.returncode:
            raise RuntimeError(p.stderr[-3000:])
        out["engine"] = {**_child_result(p.stdout), "wall_s": time.perf_counter() - t0}

        if with_flow:
            mmfeat = shutil.which("mmfeat") or str(Path(sys.executable).parent / "mmfeat")
            cmd = [mmfeat, "--store", str(tmp / "flow-store"), "extract", "movielens-100k"]
            timev = Path("/usr/bin/time")
            use_timev = timev.exists()
            if use_timev:
                cmd = [str(timev), "-v", *cmd]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
            wall = time.perf_counter() - t0
            flow = {"cmd": " ".join(shlex.quote(c) for c in cmd), "rc": p.returncode, "wall_s": wall,
                    "method": "/usr/bin/time -v" if use_timev else "RUSAGE_CHILDREN"}
            if p.returncode:
                flow["error_tail"] = (p.stderr or p.stdout)[-2000:]
            if use_timev:
                m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
                flow["maxrss_mib"] = int(m.group(1)) / 1024 if m else None
                m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr)
                flow["time_elapsed"] = m.group(1) if m else None
            else:
                after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                flow["maxrss_mib"] = after / 1024 if after > before else None
            fs_dir = tmp / "flow-store"
            flow["published"] = sorted(str(pth.relative_to(fs_dir)) for pth in fs_dir.glob("*/*/v-*"))
            out["flow"] = flow
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- report
def render(args, info, text, read, mem, total_s) -> str:
    L: list[str] = []
    L.append("| # | measurement | pipeline / store | baseline | ratio (target) | check |")
    L.append("|---|---|---|---|---|---|")
    tgt = "≥ 0.95"
    L.append(
        f"| 1 | text featurization, {text['n']:,} texts, MiniLM-L6, batch 64 (items/s, best / median of "
        f"{text['reps']}) | plan_inputs + FeatureSetJob.run_all: **{text['pipe_best']:.1f}** / {text['pipe_median']:.1f} "
        f"| SentenceTransformer.encode: **{text['plain_best']:.1f}** / {text['plain_median']:.1f} "
        f"| pipeline/plain = **{text['ratio_best']:.3f}** best, {text['ratio_median']:.3f} median ({tgt}: "
        f"{'PASS' if text['ratio_best'] >= 0.95 else 'FAIL'}) "
        f"| max abs diff {text['max_abs_diff']:.2e}, min cosine {text['cos_min']:.6f} |"
    )
    tnp = read["times"]["np.load"]
    npb, npm = best_median(tnp)
    for key, label, base in (("stored", "read_matrix(ds, fs, 'latest') (stored order; parts verified once per process)", "np.load"),
                             ("stored_cold", "read_matrix, first read in a process (sha256 of every part checked)", "np.load"),
                             ("aligned", "read_matrix(..., item_ids=shuffled) (aligned)", "np.load+align")):
        if key not in read["times"]:
            continue
        npb, npm = best_median(read["times"][base])
        b, m = best_median(read["times"][key])
        eq = read["eq_aligned"] if key == "aligned" else read["eq_stored"]
        L.append(
            f"| 2 | read {read['n']:,} x {read['dim']} float32 (ms, best / median of {read['reps']}, cache warm) "
            f"| {label}: **{b * 1e3:.1f}** / {m * 1e3:.1f} | {base}: **{npb * 1e3:.1f}** / {npm * 1e3:.1f} "
            f"| speed vs {base} = **{npb / b:.2f}x** best, {npm / m:.2f}x median (≥ 0.5x: "
            f"{'PASS' if npb / b >= 0.5 else 'FAIL'}) | equal to source: {eq} |"
        )
    L.append(
        f"| 2b | write the same matrix (s, once, incl. fsync) | build_rows + write_part x{-(-read['n'] // read['shard_rows'])}"
        f" + publish: {read['t_write']:.2f} ({read['store_bytes'] / 2**20:.1f} MiB) | np.save: {read['t_save']:.2f} "
        f"({read['npy_bytes'] / 2**20:.1f} MiB) | {read['t_save'] / read['t_write']:.2f}x | (info only) |"
    )
    b, e = mem["baseline"], mem["engine"]
    L.append(
        f"| 3a | peak RSS, movielens-100k `{e['feature_set']}` via engine in a fresh `python -c` "
        f"| ru_maxrss **{e['maxrss_mib']:.0f} MiB** (VmHWM {e.get('vmhwm_mib') or 0:.0f}), wall {e['wall_s']:.1f} s (import {e['import_s']:.1f}, "
        f"load items {e['load_items_s']:.1f}, model {e['model_s']:.1f}, extract {e['extract_s']:.1f}) "
        f"| import + load model only: {b['maxrss_mib']:.0f} MiB, {b['wall_s']:.1f} s "
        f"| +{e['maxrss_mib'] - b['maxrss_mib']:.0f} MiB for the extraction | {e['rows']} rows, {e['errors']} errors, {e['version']} |"
    )
    if "flow" in mem:
        f = mem["flow"]
        rss = f"{f['maxrss_mib']:.0f} MiB" if f.get("maxrss_mib") else "n/a"
        L.append(
            f"| 3b | peak RSS, full Prefect flow `mmfeat --store <tmp> extract movielens-100k` ({f['method']}) "
            f"| max RSS **{rss}**, wall {f['wall_s']:.1f} s"
            f"{' (time -v: ' + f['time_elapsed'] + ')' if f.get('time_elapsed') else ''} | engine alone: "
            f"{e['maxrss_mib']:.0f} MiB, {e['wall_s']:.1f} s | {('%.2fx RSS' % (f['maxrss_mib'] / e['maxrss_mib'])) if f.get('maxrss_mib') else ''} "
            f"| rc {f['rc']}; published {', '.join(f['published']) or 'nothing'} |"
        )
    table = "\n".join(L)

    notes = [
        f"- Texts: {text['n']:,} unique, built as described in the script docstring; per template: "
        + ", ".join(f"{k} {v:,}" for k, v in text["per_template"].items())
        + f". T1 = `{TEMPLATES[0]}`, T2 = `{TEMPLATES[1]}`, T3 = `{TEMPLATES[2]}`; items = MovieLens-100K then "
        "MovieLens-1M from `load_source('movielens', None, variant=...)`.",
        f"- Pipeline timing = `plan_inputs` + `FeatureSetJob(...)` + `run_all` into a fresh temp store (shard_size "
        f"{text['shard_size']}, i.e. {-(-text['n'] // text['shard_size'])} shards: sha256 of every text, one `encode` per shard, "
        "Parquet part writes with fsync, status re-read, sha256 checksums, manifest, atomic publish). "
        "Model load is excluded from both sides (the same `TextEmbedder.model` object is used); both were warmed up first. "
        "Runs alternated: round 1 pipeline then plain, round 2 plain then pipeline. "
        f"Per-run seconds: pipeline {', '.join(f'{x:.2f}' for x in text['pipe_s'])}; plain "
        f"{', '.join(f'{x:.2f}' for x in text['plain_s'])}.",
        "- Output agreement: the pipeline's matrix is read back with `read_matrix(item_ids=...)` and compared to the plain "
        "`encode` result row by row; a non-zero diff comes from the pipeline encoding per shard (different length-sorted "
        "batches, so different padding), not from a different model or normalization.",
        f"- Read: {read['n']:,} x {read['dim']} standard-normal float32 (seed 0), published via `build_rows` + "
        f"`store.writer(...).write_part` in shards of {read['shard_rows']:,} rows + `publish`; the same matrix saved with "
        "`np.save`. Each reader ran once to warm the page cache and verify, then "
        f"{read['reps']}x (order alternated). 'speed vs np.load' = np.load time / store time. "
        "Per-run ms: " + "; ".join(f"{k} " + ", ".join(f"{t * 1e3:.1f}" for t in v) for k, v in read["times"].items()) + ".",
        "- Peak memory: ru_maxrss of `resource.getrusage(RUSAGE_SELF)` printed inside the child (Linux: KiB -> MiB), "
        "cross-checked with /proc/self/status VmHWM. The child is started through `/bin/sh -c '...; exit $?'` (sh forks it): "
        "Linux carries ru_maxrss across fork+execve, so a child spawned directly from the benchmark process reported the "
        "*benchmark's* RSS (identical 877 / 1541 MiB for baseline and engine in earlier runs). "
        "wall = the parent's clock around the whole subprocess (interpreter start, imports, model load included).",
    ]
    if "flow" in mem:
        notes.append(
            "- Prefect flow: `" + mem["flow"]["cmd"].replace(str(Path(tempfile.gettempdir())), "<tmp>") + "`. "
            "GNU time's 'Maximum resident set size' is the rusage of the waited-for process tree, which is the *largest* "
            "single process's peak (not a sum). Prefect's temporary API server runs as a separate child process; its "
            "memory is not added to the flow process's (if it were the larger one it would be what is reported). "
            "The wall time includes starting and stopping that server."
        )
        if mem["flow"].get("error_tail"):
            notes.append("- Flow failed: ```" + mem["flow"]["error_tail"].replace("\n", " ") + "```")
    return table, "\n".join(notes)


def main() -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (500 texts, 5k x 384, no Prefect flow)")
    ap.add_argument("--texts", type=int, default=None, help="number of unique texts (default 10000; quick 500)")
    ap.add_argument("--text-reps", type=int, default=2, help="runs of each text path (alternated)")
    ap.add_argument("--rows", type=int, default=None, help="matrix rows for the read benchmark (default 100000)")
    ap.add_argument("--read-reps", type=int, default=5)
    ap.add_argument("--no-flow", action="store_true", help="skip the full Prefect flow memory run")
    ap.add_argument("--parts", default="read,memory,text", help="comma list of parts to run")
    ap.add_argument("--save-json", default="", help="write the measured parts' raw results here")
    ap.add_argument("--merge", default="", help="raw results JSON (from --save-json) of parts not run now")
    ap.add_argument("--out", default=str(Path(__file__).resolve().with_name("RESULTS_foundation.md")),
                    help="markdown file to write (default bench/features/RESULTS_foundation.md; '' = do not write)")
    args = ap.parse_args()
    n_texts = args.texts or (500 if args.quick else 10_000)
    n_rows = args.rows or (5_000 if args.quick else 100_000)
    shard_size = 128 if args.quick else 2048
    shard_rows = 1024 if args.quick else 16_384
    with_flow = not (args.no_flow or args.quick)
    cmdline = "HF_HUB_OFFLINE=1 python " + " ".join(shlex.quote(a) for a in sys.argv)

    t_start = time.perf_counter()
    info = machine_info()
    print("machine:", json.dumps(info), flush=True)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    merged = json.loads(Path(args.merge).read_text()) if args.merge else {}
    results: dict = {}

    def save() -> None:
        if args.save_json:
            Path(args.save_json).write_text(json.dumps({**merged, **results}))

    # cheap parts first, each dumped as JSON as soon as it is done (survives an interrupted run)
    if "read" in parts:
        print(f"[2/3] matrix read: {n_rows} x 384 ...", flush=True)
        results["read"] = bench_read(n_rows, 384, args.read_reps, shard_rows)
        print("  read:", json.dumps(results["read"]), flush=True)
        save()
    if "memory" in parts:
        print(f"[3/3] peak memory (engine{' + Prefect flow' if with_flow else ''}) ...", flush=True)
        results["memory"] = bench_memory(with_flow)
        print("  memory:", json.dumps(results["memory"]), flush=True)
        save()
    if "text" in parts:
        print(f"[1/3] text featurization: {n_texts} texts ...", flush=True)
        results["text"] = bench_text(n_texts, args.text_reps, shard_size)
        print("  text:", json.dumps(results["text"]), flush=True)
        save()
    allr = {**merged, **results}
    missing = {"read", "memory", "text"} - set(allr)
    if missing:
        print(f"parts not measured (and not merged): {sorted(missing)}; no table rendered")
        return 1
    text, read, mem = allr["text"], allr["read"], allr["memory"]
    if merged:
        cmdline += f"   (parts {sorted(set(merged) - set(results))} merged from an earlier run's JSON: {args.merge})"
    total = time.perf_counter() - t_start
    table, notes = render(args, info, text, read, mem, total)
    print()
    print(table)
    print()
    print(notes)
    if args.out:
        md = [
            "# Foundation benchmark: pipeline overhead vs plain library calls",
            "",
            f"Command (from the repo root): `{cmdline}`",
            "",
            f"Run at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, total {total:.0f} s"
            + (" (**--quick smoke run: sizes are not the benchmark's**)" if args.quick else "") + ".",
            "",
            "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
            "",
            table,
            "",
            "Notes:",
            "",
            notes,
            "",
        ]
        Path(args.out).write_text("\n".join(md))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
