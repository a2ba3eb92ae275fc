"""The generation types both MLLM backends share (transformers in :mod:`~mmfeat.featurizers.captioning`,
vLLM in :mod:`~mmfeat.featurizers.vllm_backend`).

They live here, not in either backend's module, so neither backend imports the other: the
captioner picks a backend, and each backend only needs what a request is (:class:`Request`), how
to decode (:class:`GenerationConfig`) and how to format the prompt (:func:`chat_prompt`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class GenerationConfig:
    """What decides the generated text besides the model and the prompt (all in the fingerprint)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.do_sample and self.temperature <= 0:
            raise ValueError("do_sample needs temperature > 0")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hf_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p)
        else:  # silence "temperature is set but do_sample=False" from model generation configs
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw


@dataclass
class Request:
    """One unique generation: the user prompt text and the media it shows the model."""

    text: str
    images: list[Image.Image] = field(default_factory=list)
    video: list[Image.Image] | None = None


def chat_prompt(processor: Any, text: str, *, n_images: int = 0, n_videos: int = 0) -> str:
    """The full prompt string for one request, through the processor's chat template if it has one.

    Without a chat template (BLIP-style models), the image tokens (if the processor names one) are
    put before the text.
    """
    content: list[dict[str, Any]] = [{"type": "video"} for _ in range(n_videos)]
    content += [{"type": "image"} for _ in range(n_images)]
    content.append({"type": "text", "text": text})
    messages = [{"role": "user", "content": content}]
    tokenizer = getattr(processor, "tokenizer", processor)
    template = getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    if template and hasattr(processor, "apply_chat_template"):
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image_token = getattr(processor, "image_token", None)
    video_token = getattr(processor, "video_token", None)
    prefix = ""
    if image_token:
        prefix += (image_token + "\n") * n_images
    if video_token:
        prefix += (video_token + "\n") * n_videos
    return prefix + text


def processor_supports_video(processor: Any) -> bool:
    """True when the processor accepts ``videos=`` (it has a working video processor)."""
    return getattr(processor, "video_processor", None) is not None and bool(getattr(processor, "video_token", None))


__all__ = ["GenerationConfig", "Request", "chat_prompt", "processor_supports_video"]
