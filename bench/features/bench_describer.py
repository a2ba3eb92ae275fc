"""Throughput of the SmolLM2 describer on the demo's own work: the 40 ``microlens-mini`` items.

The inputs are exactly what ``extract-features/microlens`` feeds the ``item_description`` fallback:
the manifest's ``text_fields`` + ``template`` (``"Title: {title}\\nViewer comments: {comments}"``)
and its params (``max_new_tokens: 48, batch_size: 16``), built through the manifest and the
planner, so a change to either is measured too. Prints items/s, new tokens/s and the mean number
of new tokens per item (tokens of the returned text, so wasted tokens past a stop are not
counted as work), plus a few sample descriptions.

    HF_HUB_OFFLINE=1 python bench/features/bench_describer.py               # 1 timed pass after a warm-up
    HF_HUB_OFFLINE=1 python bench/features/bench_describer.py --repeats 3   # best of 3
    HF_HUB_OFFLINE=1 python bench/features/bench_describer.py --param max_new_tokens=64   # override a param
    HF_HUB_OFFLINE=1 python bench/features/bench_describer.py --ab 2   # old decoding vs new, alternated, 2 rounds

``--ab`` compares the earlier decoding (no sentence stop, no repetition controls:
``sentence_stop_after=0, no_repeat_ngram_size=0, repetition_penalty=1.0``) with the defaults, on
the same loaded model, alternating A/B so machine load hits both alike.

The model is loaded (and its GGUF de-quantized, first time only) before timing starts. Report the
machine load (``uptime``) with the numbers: on a shared 2-core machine they vary by 2-3x.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def demo_inputs() -> tuple[list[str], dict[str, Any]]:
    """The describer's inputs and params for the ``microlens`` manifest's ``item_description`` fallback."""
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.pipelines.engine.plan import plan_inputs
    from mmfeat.pipelines.sources import load_source

    manifest = load_manifest("microlens")
    primary = manifest.feature_set("item_description")
    fallback = primary.fallback
    assert fallback is not None and fallback.kind == "text_description", "the manifest has no text fallback"
    spec = primary.model_copy(update={"kind": fallback.kind, "input": fallback.input or primary.input,
                                      "params": fallback.params})
    tables = load_source(manifest.source.kind, manifest.source_root(), **manifest.source.options)
    planned = plan_inputs(tables.items, spec, data_root=manifest.resolved_data_root)
    texts = [t for t in planned.inputs if isinstance(t, str)]
    return texts, dict(fallback.params)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings -> params (values parsed as YAML, so ``48`` is an int and ``null`` is None)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def timed_pass(describer: Any, texts: list[str]) -> tuple[float, list[str]]:
    """Seconds for one pass over ``texts`` and the descriptions (failed items as ``ERROR: ...``)."""
    t = time.perf_counter()
    results = describer(texts)
    seconds = time.perf_counter() - t
    return seconds, [r.value if r.ok else f"ERROR: {r.error}" for r in results]


#: The earlier decoding, before the sentence stop (generate to max_new_tokens/EOS, no repetition controls).
OLD_DECODING = {"sentence_stop_after": 0, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0}


def report(label: str, describer: Any, texts: list[str], seconds: float, outs: list[str]) -> None:
    """One line of items/s, new tokens/s, mean new tokens per item and sentence-end count."""
    ok = [o for o in outs if not o.startswith("ERROR:")]
    tokens = sum(len(describer.tokenizer(o, add_special_tokens=False)["input_ids"]) for o in ok)
    ends = sum(o.rstrip().endswith((".", "!", "?")) for o in ok)
    print(f"{label}: items {len(texts)} ok {len(ok)}  seconds {seconds:.1f}  items/s {len(texts) / seconds:.2f}  "
          f"new tokens/s {tokens / seconds:.1f}  mean new tokens/item {tokens / max(len(ok), 1):.1f}  "
          f"end on .!? {ends}/{len(ok)}")


def ab(texts: list[str], params: dict[str, Any], rounds: int) -> None:
    """Alternate the old and the new decoding ``rounds`` times on one loaded model."""
    from mmfeat.featurizers.registry import build_featurizer

    old = build_featurizer("text_description", {**params, **OLD_DECODING})
    new = build_featurizer("text_description", params)
    new(texts[:2])
    for r in range(rounds):
        for label, d in (("old", old), ("new", new)):
            print(f"uptime: {os.popen('uptime').read().strip()}")
            report(f"round {r + 1} {label}", d, texts, *timed_pass(d, texts))


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="timed passes (the best is reported)")
    ap.add_argument("--param", action="append", default=[], help="override a describer param, key=value")
    ap.add_argument("--samples", type=int, default=4, help="descriptions to print")
    ap.add_argument("--ab", type=int, default=0, metavar="ROUNDS", help="alternate old/new decoding ROUNDS times")
    args = ap.parse_args()

    from mmfeat.featurizers.registry import build_featurizer

    texts, params = demo_inputs()
    params.update(parse_overrides(args.param))
    if args.ab:
        ab(texts, params, args.ab)
        return
    t = time.perf_counter()
    describer = build_featurizer("text_description", params)
    load_s = time.perf_counter() - t
    describer(texts[:2])  # warm-up: first-call allocations, thread pools
    best, outs = min((timed_pass(describer, texts) for _ in range(args.repeats)), key=lambda p: p[0])
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"params: {params}  load: {load_s:.1f} s")
    report("describer", describer, texts, best, outs)
    for text, out in list(zip(texts, outs))[: args.samples]:
        print(f"--- {text.splitlines()[0][:70]}\n    {out}")


if __name__ == "__main__":
    main()
