"""MLLM captions of images and descriptions of videos (text features).

Two featurizer kinds share one class, :class:`Captioner`, and one generation core:

- ``caption`` (``input_kind="image"``): one image -> a description (default prompt
  ``product_image``),
- ``video_description`` (``input_kind="video"``): frames sampled from a clip -> a summary (default
  prompt ``video_summary``, MicroLens' "Describe What You See").

Backends (``backend:`` in the manifest params):

- ``transformers``: any ``AutoModelForImageTextToText`` + ``AutoProcessor`` (Qwen2-VL / Qwen2.5-VL,
  SmolVLM / Idefics3, LLaVA, BLIP-style). The processor's chat template builds the prompt, batches
  are left-padded, only the new tokens are decoded. bf16 on CUDA, float32 on CPU.
- ``vllm`` (:mod:`mmfeat.featurizers.vllm_backend`): GPU-only, imported lazily.
- ``auto`` (default): vllm when it is importable, CUDA is available and ``allow_vllm`` is true;
  transformers otherwise.

A video reaches the model as a real video input where the processor has a video processor
(Qwen2-VL family: ``videos=``), else as a grid image of the frames (``video_input: grid``) or as a
list of images (``video_input: frames``, for multi-image models).

Identical media files (same sha256) with the same rendered prompt are generated once. A file that
cannot be read is an error row; if a whole batch's ``generate`` fails, the batch is retried item by
item so only the bad item becomes an error row. Requests (image loading, frame sampling and tiling)
are built on ``num_workers`` threads (:class:`~mmfeat.featurizers.prefetch.Prefetch`), one batch
ahead, so batch n+1 decodes while batch n generates; ``last_pipeline_stats`` keeps the call's
decode/model time split.

Params (``from_spec``): ``backbone`` (registered name, local folder or hub id; required),
``backend``, ``allow_vllm``, ``prompt`` (registered name or full text), ``batch_size``,
``max_new_tokens``, ``temperature``, ``do_sample``, ``top_p``, ``seed``, ``image_max_side``,
``max_pixels``, ``num_workers`` (decode threads, 0 = in the calling thread; speed only, not in the
fingerprint), and for video ``num_frames``, ``fps``, ``max_side`` (frame side), ``video_input``
(``auto`` | ``video`` | ``frames`` | ``grid``), ``grid_max_side``; ``device``, ``dtype``; ``vllm``
(extra ``vllm.LLM`` keyword arguments).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal, Sequence

from PIL import Image

from mmfeat.featurizers.base import OutputSpec, Result, call_isolated
from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.generation import GenerationConfig, Request, chat_prompt, processor_supports_video
from mmfeat.featurizers.params import CaptionParams, VideoDescriptionParams
from mmfeat.featurizers.prefetch import Prefetch, chunked
from mmfeat.featurizers.item_progress import items_done
from mmfeat.featurizers.prompts import Prompt, resolve_prompt
from mmfeat.featurizers.registry import (
    WeightsUnavailable,
    register_featurizer,
    register_hub_backbones,
    require_extra,
    resolve_backbone,
    weights_hash,
)

log = logging.getLogger(__name__)

#: Bumped when this module changes outputs (prompt assembly, frame handling, decoding).

Mode = Literal["image", "video"]
VIDEO_INPUTS = ("auto", "video", "frames", "grid")

#: Sentence prepended to the prompt when a video is shown as one grid image.
GRID_NOTE = (
    "The image is a grid of {n} frames sampled in time order (left to right, top to bottom) "
    "from a {duration:.1f}-second video."
)
#: Sentence prepended when a video is shown as a list of frames.
FRAMES_NOTE = "These {n} images are frames sampled in time order from a {duration:.1f}-second video."


# --------------------------------------------------------------------------- backbones


register_hub_backbones(
    "vlm",
    (
        ("SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM-256M-Instruct"),
        ("SmolVLM-500M-Instruct", "HuggingFaceTB/SmolVLM-500M-Instruct"),
        ("SmolVLM2-2.2B-Instruct", "HuggingFaceTB/SmolVLM2-2.2B-Instruct"),
        ("Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"),
        ("Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-7B-Instruct"),
        ("Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
        ("llava-1.5-7b-hf", "llava-hf/llava-1.5-7b-hf"),
        ("llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"),
    ),
)


# --------------------------------------------------------------------------- helpers


def tile_frames(frames: Sequence[Image.Image], *, cols: int | None = None, max_side: int = 896) -> Image.Image:
    """Tile frames (time order, row-major) into one RGB image whose longer side is <= ``max_side``."""
    if not frames:
        raise ValueError("no frames to tile")
    n = len(frames)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    w0, h0 = frames[0].size
    scale = min(1.0, max_side / max(cols * w0, rows * h0))
    cw, ch = max(1, int(w0 * scale)), max(1, int(h0 * scale))
    grid = Image.new("RGB", (cols * cw, rows * ch), (0, 0, 0))
    for i, frame in enumerate(frames):
        tile = frame.convert("RGB")
        tile.thumbnail((cw, ch))
        x = (i % cols) * cw + (cw - tile.width) // 2
        y = (i // cols) * ch + (ch - tile.height) // 2
        grid.paste(tile, (x, y))
    return grid


def _shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


# --------------------------------------------------------------------------- transformers backend


class TransformersVLM:
    """Batched generation with a Hugging Face image-text-to-text model and its processor."""

    name = "transformers"

    def __init__(self, model: Any, processor: Any, *, device: str | None = None, dtype: str | None = None) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if str(self.device).startswith("cuda") else "float32"
        self.dtype_name = dtype
        self.torch_dtype = getattr(torch, dtype)
        self.model = model.to(device=self.device, dtype=self.torch_dtype).eval()
        self.processor = processor
        tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        self.supports_video = processor_supports_video(processor)

    @classmethod
    def load(cls, folder: Path, *, device: str | None = None, dtype: str | None = None) -> "TransformersVLM":
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
        try:
            processor = AutoProcessor.from_pretrained(str(folder))
        except OSError as exc:  # missing files in the folder
            raise WeightsUnavailable(f"cannot load the processor of {folder}: {exc}") from exc
        except (ImportError, AttributeError) as exc:
            from transformers.utils import is_torchvision_available

            if not is_torchvision_available():  # Qwen2-VL-style processors need a torchvision video processor
                raise RuntimeError(
                    f"the processor of {folder} needs torchvision (its video processor), which is not installed "
                    f"here ({type(exc).__name__}: {exc}); run it in a GPU environment with torchvision, or pick a "
                    "model whose processor works without it (SmolVLM/Idefics3, LLaVA)."
                ) from exc
            raise
        try:
            model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=getattr(torch, dtype))
        except OSError as exc:  # missing files in the folder
            raise WeightsUnavailable(f"cannot load a vision-language model from {folder}: {exc}") from exc
        return cls(model, processor, device=device, dtype=dtype)

    def prompt(self, request: Request) -> str:
        return chat_prompt(
            self.processor, request.text, n_images=len(request.images), n_videos=1 if request.video is not None else 0
        )

    def generate(self, requests: Sequence[Request], gen: GenerationConfig) -> list[str]:
        import torch

        texts = [self.prompt(r) for r in requests]
        kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
        if any(r.images for r in requests):
            kwargs["images"] = [r.images for r in requests]
        if any(r.video is not None for r in requests):
            kwargs["videos"] = [r.video for r in requests]
        enc = self.processor(**kwargs)
        enc = {
            k: (v.to(self.device, dtype=self.torch_dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in enc.items()
            if isinstance(v, torch.Tensor)
        }
        torch.manual_seed(gen.seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen.hf_kwargs(), pad_token_id=self.tokenizer.pad_token_id)
        ids = enc.get("input_ids")
        if ids is not None and out.shape[1] >= ids.shape[1] and torch.equal(out[:, : ids.shape[1]].cpu(), ids.cpu()):
            out = out[:, ids.shape[1]:]  # decoder-only models echo the prompt
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


# --------------------------------------------------------------------------- backend choice


def _vllm_importable() -> bool:
    if "vllm" in sys.modules:
        return sys.modules["vllm"] is not None
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def choose_backend(backend: str = "auto", *, allow_vllm: bool = True) -> str:
    """``auto`` -> ``vllm`` if importable, CUDA is available and allowed; else ``transformers``."""
    if backend not in ("auto", "transformers", "vllm"):
        raise ValueError(f"unknown backend {backend!r}: use auto, transformers or vllm")
    if backend != "auto":
        return backend
    import torch

    if allow_vllm and torch.cuda.is_available() and _vllm_importable():
        return "vllm"
    return "transformers"


def load_vlm(
    backend: str, folder: Path, *, device: str | None = None, dtype: str | None = None,
    vllm_kwargs: dict[str, Any] | None = None,
) -> Any:
    """A generation backend for a model folder, loaded once through the process-wide model cache.

    A caption and a video description on the same VLM share one loaded model (and for vLLM one
    engine: a second ``vllm.LLM`` in the process would ask for the same GPU memory again).

    Args:
        backend: ``transformers`` or ``vllm`` (already chosen, see :func:`choose_backend`).
        folder: the resolved model folder.
        device: transformers only; default cuda when available.
        dtype: the weights' dtype name; default bf16 on CUDA, float32 on CPU (vLLM: bf16).
        vllm_kwargs: extra ``vllm.LLM`` keyword arguments (part of the cache key).

    Returns:
        A :class:`TransformersVLM` or a :class:`~mmfeat.featurizers.vllm_backend.VLLMBackend`.

    Raises:
        WeightsUnavailable: the folder does not hold a loadable model.
        MissingDependency: ``vllm`` where the ``gpu`` extra is not importable.

    Example:
        >>> vlm = load_vlm("transformers", Path("models/SmolVLM-256M-Instruct"))  # doctest: +SKIP
    """
    vllm_kwargs = dict(vllm_kwargs or {})
    where = str(Path(folder).resolve())
    if backend == "vllm":
        def load_vllm() -> Any:
            from mmfeat.featurizers.vllm_backend import VLLMBackend

            return VLLMBackend.load(folder, dtype=dtype, **vllm_kwargs)

        key = ("vllm", where, dtype, json.dumps(vllm_kwargs, sort_keys=True, default=str))
        return MODELS.get_or_create(key, load_vllm)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return MODELS.get_or_create(("vlm", where, device, dtype),
                                lambda: TransformersVLM.load(folder, device=device, dtype=dtype))


# --------------------------------------------------------------------------- the featurizer


def _split_input(item: Any) -> tuple[Any, dict[str, Any]]:
    """An input is a path, or a dict with ``path`` (or a ``*_uri``) plus text fields for the prompt."""
    if isinstance(item, dict):
        path = item.get("path") or item.get("image_uri") or item.get("video_uri") or item.get("uri")
        return path, {k: v for k, v in item.items() if k not in ("path", "image_uri", "video_uri", "audio_uri", "uri")}
    return item, {}


class Captioner:
    """Image captions (``mode="image"``) or video descriptions (``mode="video"``) with an MLLM."""

    output = OutputSpec(kind="text")

    def __init__(
        self,
        backend: Any,
        *,
        mode: Mode = "image",
        prompt: str | Prompt | None = None,
        generation: GenerationConfig | None = None,
        batch_size: int = 8,
        backbone: str = "unknown",
        hub_id: str | None = None,
        weights_sha256: str | None = None,
        weights_source: str | None = None,
        random_init: bool = False,
        image_max_side: int | None = 1024,
        max_pixels: int = 50_000_000,
        num_frames: int = 8,
        fps: float | None = None,
        max_frames: int = 32,
        max_side: int = 448,
        video_input: str = "auto",
        grid_max_side: int = 896,
        memo_size: int = 4096,
        num_workers: int = 2,
        name: str | None = None,
    ) -> None:
        if mode not in ("image", "video"):
            raise ValueError(f"mode must be image or video, got {mode!r}")
        if video_input not in VIDEO_INPUTS:
            raise ValueError(f"video_input must be one of {VIDEO_INPUTS}, got {video_input!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: decode in the calling thread), got {num_workers}")
        self.backend = backend
        self.mode: Mode = mode
        self.input_kind = mode
        self.prompt = resolve_prompt(prompt, "product_image" if mode == "image" else "video_summary")
        self.generation = generation or GenerationConfig()
        self.batch_size = batch_size
        self.backbone, self.hub_id = backbone, hub_id or backbone
        self.weights_sha256, self.weights_source = weights_sha256, weights_source
        self.random_init = random_init
        self.image_max_side, self.max_pixels = image_max_side, max_pixels
        self.num_frames, self.fps, self.max_side, self.grid_max_side = num_frames, fps, max_side, grid_max_side
        self.max_frames = max_frames
        if video_input == "auto":
            video_input = "video" if getattr(backend, "supports_video", False) else "grid"
        if video_input == "video" and mode == "video" and not getattr(backend, "supports_video", False):
            raise ValueError(f"video_input=video but the {backbone} processor has no video processor; use grid or frames")
        self.video_input = video_input
        self.kind = "caption" if mode == "image" else "video_description"
        self.name = name or f"{self.kind}-{Path(str(backbone)).name}"
        self._memo: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._memo_size = memo_size
        self.stats = {"generate_calls": 0, "generated": 0, "deduplicated": 0, "retried_batches": 0}
        self.num_workers = int(num_workers)
        #: Decode/model time split of the last call (:class:`~mmfeat.featurizers.prefetch.PipelineStats`).
        self.last_pipeline_stats: dict[str, Any] | None = None

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_spec(
        cls, spec: dict[str, Any] | CaptionParams | VideoDescriptionParams, mode: Mode = "image"
    ) -> "Captioner":
        """Build from manifest params, validated by :class:`~mmfeat.featurizers.params.CaptionParams` (images)
        or :class:`~mmfeat.featurizers.params.VideoDescriptionParams` (videos); loads the model.

        Raises:
            mmfeat.featurizers.params.ParamsError: params that do not fit the schema.
            MissingDependency: ``backend: vllm`` where vllm (the ``gpu`` extra) is not importable.
            WeightsUnavailable: the backbone's weights are not here.
        """
        schema = CaptionParams if mode == "image" else VideoDescriptionParams
        p = schema.parse(spec, "caption" if mode == "image" else "video_description")
        backend = choose_backend(p.backend, allow_vllm=p.allow_vllm)
        if backend == "vllm":
            require_extra("vllm", "gpu", "the vllm captioning backend")
        folder, bspec = resolve_backbone(p.backbone, family="vlm")
        if not (Path(folder) / "config.json").exists():
            raise WeightsUnavailable(f"{p.backbone}: no config.json in {folder}; not a model folder")
        digest = weights_hash(folder)
        impl = load_vlm(backend, Path(folder), device=p.device, dtype=p.dtype, vllm_kwargs=p.vllm)
        return cls(
            impl, mode=mode, prompt=p.resolved_prompt(), generation=GenerationConfig(**p.generation()),
            backbone=bspec.name, hub_id=bspec.hub_id, weights_sha256=digest, weights_source=bspec.source,
            random_init=False, **p.captioner_kwargs(),
        )

    @classmethod
    def from_model(
        cls, model: Any, processor: Any, *, mode: Mode = "image", device: str | None = None, dtype: str | None = None,
        backbone: str | None = None, **kwargs: Any,
    ) -> "Captioner":
        """Wrap an in-memory model (tests, notebooks). Its fingerprint says ``random_init: true``."""
        gen_keys = GenerationConfig.__dataclass_fields__
        gen = kwargs.pop("generation", None) or GenerationConfig(**{k: kwargs.pop(k) for k in list(kwargs) if k in gen_keys})
        impl = TransformersVLM(model, processor, device=device, dtype=dtype)
        name = backbone or f"in-memory:{type(model).__name__}"
        return cls(impl, mode=mode, generation=gen, backbone=name, random_init=True, **kwargs)

    # ----------------------------------------------------------------- fingerprint

    def fingerprint(self) -> dict[str, Any]:
        fp: dict[str, Any] = {
            "kind": self.kind,
            "backbone": self.backbone,
            "hub_id": self.hub_id,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "random_init": self.random_init,
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
            "dtype": getattr(self.backend, "dtype_name", None),
            "prompt": self.prompt.fingerprint(),
            "generation": self.generation.as_dict(),
            "image_max_side": self.image_max_side,
            "saw_pixels": True,
        }
        if self.mode == "video":
            fp["video"] = {
                "num_frames": self.num_frames, "fps": self.fps, "max_side": self.max_side,
                "max_frames": self.max_frames if self.fps is not None else None,
                "video_input": self.video_input, "grid_max_side": self.grid_max_side,
                "note": GRID_NOTE if self.video_input == "grid" else FRAMES_NOTE if self.video_input == "frames" else None,
            }
        return fp

    # ----------------------------------------------------------------- media -> request

    def _request(self, path: Any, text: str) -> Request:
        if self.mode == "image":
            from mmfeat.featurizers.media import load_image

            return Request(text=text, images=[_shrink(load_image(path, max_pixels=self.max_pixels), self.image_max_side)])
        from mmfeat.featurizers.video import sample_frames

        frames = sample_frames(path, num_frames=self.num_frames, fps=self.fps, max_side=self.max_side,
                               max_frames=self.max_frames if self.fps is not None else None)
        if not frames.images:
            from mmfeat.featurizers.media import MediaError

            raise MediaError(f"no frames decoded from {path}")
        if self.video_input == "video":
            return Request(text=text, video=list(frames.images))
        if self.video_input == "frames":
            note = FRAMES_NOTE.format(n=len(frames.images), duration=frames.duration)
            return Request(text=f"{note}\n{text}", images=list(frames.images))
        note = GRID_NOTE.format(n=len(frames.images), duration=frames.duration)
        return Request(text=f"{note}\n{text}", images=[tile_frames(frames.images, max_side=self.grid_max_side)])

    # ----------------------------------------------------------------- generation with isolation

    def _backend_call(self, requests: list[Request]) -> list[str]:
        self.stats["generate_calls"] += 1
        texts = list(self.backend.generate(requests, self.generation))
        self.stats["generated"] += len(texts)
        return texts

    def _on_retry(self, n: int, exc: Exception) -> None:
        log.warning("%s: batch of %d failed (%s: %s); retrying item by item", self.name, n, type(exc).__name__, exc)
        self.stats["retried_batches"] += 1

    def _generate(self, requests: list[Request]) -> list[str | Exception]:
        return call_isolated(self._backend_call, requests, self._on_retry)

    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        from mmfeat.featurizers.media import MediaError, file_sha256

        results: list[Result | None] = [None] * len(inputs)
        groups: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        paths: dict[tuple[str, str], Any] = {}
        for i, item in enumerate(inputs):
            path, fields = _split_input(item)
            if path is None or (isinstance(path, str) and not path.strip()):
                results[i] = Result.failed(f"no {self.mode} path")
                continue
            try:
                key = (file_sha256(path), self.prompt.render(fields))
            except (MediaError, OSError) as exc:
                results[i] = Result.failed(str(exc))
                continue
            if key in self._memo:
                self._memo.move_to_end(key)
                results[i] = Result(value=self._memo[key])
                self.stats["deduplicated"] += 1
                continue
            if key in groups:
                self.stats["deduplicated"] += 1
            groups.setdefault(key, []).append(i)
            paths.setdefault(key, path)

        keys = list(groups)
        # the pool builds batch n+1's requests (decode, frame sampling, tiling) while batch n generates
        with Prefetch(lambda k: self._request(paths[k], k[1]), keys, num_workers=self.num_workers,
                      ahead=self.batch_size) as built:
            for chunk, requests in zip(chunked(keys, self.batch_size), chunked(built, self.batch_size)):
                ready: list[tuple[tuple[str, str], Request]] = []
                for key, req in zip(chunk, requests):
                    if isinstance(req, MediaError):
                        self._fail(results, groups[key], str(req))
                    elif isinstance(req, Exception):  # a decoder bug on one odd file must not sink the batch
                        why = f"cannot read {self.mode} {paths[key]}: {type(req).__name__}: {req}"
                        self._fail(results, groups[key], why)
                    else:
                        ready.append((key, req))
                if ready:
                    self._generate_into(results, groups, ready)
                items_done(sum(len(groups[key]) for key in chunk))  # progress inside a long call
        self.last_pipeline_stats = built.stats.as_dict()
        log.debug("%s: decode pipeline %s", self.name, self.last_pipeline_stats)
        return [r if r is not None else Result.failed("not processed") for r in results]

    def _generate_into(self, results: list[Result | None], groups: dict[tuple[str, str], list[int]],
                       ready: list[tuple[tuple[str, str], Request]]) -> None:
        """Generate one batch of built requests; store each text (memo, results) or its error row."""
        outputs = self._generate([r for _, r in ready])
        for (key, _), out in zip(ready, outputs):
            if isinstance(out, Exception):
                self._fail(results, groups[key], f"generation failed: {type(out).__name__}: {out}")
                continue
            self._memo[key] = out
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
            for i in groups[key]:
                results[i] = Result(value=out)

    @staticmethod
    def _fail(results: list[Result | None], indices: list[int], reason: str) -> None:
        for i in indices:
            results[i] = Result.failed(reason)


@register_featurizer("caption", CaptionParams, reads=("image",))
class ImageCaptioner(Captioner):
    """``caption``: one image -> a description (default prompt ``product_image``)."""

    @classmethod
    def from_spec(  # type: ignore[override]
        cls, spec: dict[str, Any] | CaptionParams, mode: Mode = "image"
    ) -> "Captioner":
        return Captioner.from_spec(spec, mode="image")


@register_featurizer("video_description", VideoDescriptionParams, reads=("video",))
class VideoDescriber(Captioner):
    """``video_description``: frames of a clip -> a summary (default prompt ``video_summary``)."""

    @classmethod
    def from_spec(  # type: ignore[override]
        cls, spec: dict[str, Any] | VideoDescriptionParams, mode: Mode = "video"
    ) -> "Captioner":
        return Captioner.from_spec(spec, mode="video")


__all__ = [
    "Captioner", "ImageCaptioner", "VideoDescriber", "TransformersVLM", "choose_backend", "load_vlm", "tile_frames",
    # re-exported from generation, where they moved (import them from there in new code)
    "GenerationConfig", "Request", "chat_prompt", "processor_supports_video",
]
