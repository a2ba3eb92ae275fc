"""A thin vLLM backend for :class:`mmfeat.featurizers.captioning.Captioner` (GPU machines only).

vLLM pins its own torch and fastapi, so it never lives in the base environment: ``import vllm``
happens inside :meth:`VLLMBackend.load`, and this module imports nothing heavy at import time.

Requests are built as vLLM's offline multimodal inputs::

    llm.generate([{"prompt": <chat-formatted text>, "multi_modal_data": {"image": img}}, ...],
                 SamplingParams(max_tokens=..., temperature=..., top_p=..., seed=...))

and the text of ``outputs[i].outputs[0].text`` is returned, stripped, in request order. The
prompt string comes from the model's own processor chat template (loaded with
``AutoProcessor``), the same formatting the transformers backend uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mmfeat.featurizers.generation import GenerationConfig, Request, chat_prompt, processor_supports_video
from mmfeat.featurizers.registry import require_extra


class VLLMBackend:
    """Batched generation through ``vllm.LLM`` (one instance per process; construct once)."""

    name = "vllm"

    def __init__(self, llm: Any, processor: Any, *, vllm_module: Any = None, dtype: str = "auto") -> None:
        if vllm_module is None:
            vllm_module = require_extra("vllm", "gpu", "the vllm backend")
        self.vllm = vllm_module
        self.llm = llm
        self.processor = processor
        self.dtype_name = dtype
        self.supports_video = processor_supports_video(processor)

    @classmethod
    def load(
        cls,
        folder: Path | str,
        *,
        dtype: str | None = None,
        max_model_len: int | None = 8192,
        gpu_memory_utilization: float = 0.85,
        max_images: int = 8,
        **llm_kwargs: Any,
    ) -> "VLLMBackend":
        vllm = require_extra("vllm", "gpu", "the vllm backend")
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(folder))
        dtype = dtype or "bfloat16"
        kwargs: dict[str, Any] = {
            "model": str(folder),
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "limit_mm_per_prompt": {"image": max_images, "video": 1},
        }
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(llm_kwargs)
        llm = vllm.LLM(**kwargs)
        return cls(llm, processor, vllm_module=vllm, dtype=dtype)

    def sampling_params(self, gen: GenerationConfig) -> Any:
        return self.vllm.SamplingParams(
            max_tokens=gen.max_new_tokens,
            temperature=gen.temperature if gen.do_sample else 0.0,
            top_p=gen.top_p if gen.do_sample else 1.0,
            seed=gen.seed,
        )

    def build_request(self, request: Request) -> dict[str, Any]:
        n_images = len(request.images)
        prompt = chat_prompt(self.processor, request.text, n_images=n_images, n_videos=1 if request.video is not None else 0)
        mm: dict[str, Any] = {}
        if n_images == 1:
            mm["image"] = request.images[0]
        elif n_images > 1:
            mm["image"] = list(request.images)
        if request.video is not None:
            import numpy as np

            mm["video"] = np.stack([np.asarray(f.convert("RGB")) for f in request.video])
        return {"prompt": prompt, "multi_modal_data": mm} if mm else {"prompt": prompt}

    def generate(self, requests: Sequence[Request], gen: GenerationConfig) -> list[str]:
        batch = [self.build_request(r) for r in requests]
        outputs = self.llm.generate(batch, self.sampling_params(gen), use_tqdm=False)
        if len(outputs) != len(batch):
            raise RuntimeError(f"vllm returned {len(outputs)} outputs for {len(batch)} prompts")
        return [o.outputs[0].text.strip() for o in outputs]


__all__ = ["VLLMBackend"]
