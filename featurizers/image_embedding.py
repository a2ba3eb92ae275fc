"""CLIP-family image and video embeddings, and DGVAE-style image-to-words.

Three featurizers share one image path:

- :class:`ImageEmbedder` (``image_embedding``): a local image file -> the CLIP image embedding
  (the projection head's output, ``pooling="clip_projection"``),
- :class:`VideoEmbedder` (``video_embedding``): a video file -> frames sampled by seeking
  (:func:`mmfeat.featurizers.video.sample_frames`) -> the same image backbone -> mean of the L2-normalized
  frame embeddings (``pooling="mean"``); each result also carries its frame count,
- :class:`ImageToWords` (``image_words``): an image -> the ``top_k`` vocabulary words whose CLIP text
  embeddings (``"a photo of {word}"``) are closest to it, joined by spaces (the image-to-words
  step of DGVAE, which turns images into a bag of words in the item-text vocabulary).

Two backends: ``transformers`` (``AutoModel`` = ``CLIPModel`` / ``SiglipModel``, ``AutoImageProcessor``
which on a machine without torchvision is the PIL "slow" processor, ``AutoTokenizer``) and
``open_clip`` (the ``clip`` extra, imported lazily; ``open_clip.create_model_and_transforms(arch,
pretrained=<local weights file>)``).

Weights come from :func:`mmfeat.featurizers.registry.resolve_backbone` (a local folder, a registered name,
or a hub id that fails offline with :class:`~mmfeat.featurizers.registry.WeightsUnavailable`). Random weights
are never substituted in a real run: only :meth:`ImageEmbedder.from_model` (tests, benchmarks)
accepts an in-memory model, and its fingerprint then says ``"random_init": true``.

Throughput choices: identical files are embedded once (sha256 of the bytes); images are decoded by
a small thread pool that prefetches the next batch while the model runs the current one; a batch
that fails in the model is retried item by item (:func:`mmfeat.featurizers.base.call_isolated`), so one
bad image (or video frame) is its own error row and never sinks the batch, whatever its size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mmfeat.featurizers.base import OutputSpec, Result, as_float_array, call_isolated
from mmfeat.featurizers.media import MediaError, file_sha256, load_image
from mmfeat.featurizers.params import ImageEmbeddingParams, ImageWordsParams, VideoEmbeddingParams
from mmfeat.featurizers.registry import WeightsUnavailable, register_featurizer, require_extra, resolve_backbone, weights_hash

DEFAULT_BACKBONE = "openai/clip-vit-base-patch32"
DEFAULT_TEMPLATE = "a photo of {word}"

_MODELS: dict[tuple, Any] = {}
_MODELS_LOCK = threading.Lock()


def _default_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _model_failure(what: str, exc: Exception) -> str:
    """The error reason of an item the model failed on."""
    return f"model failed on {what}: {type(exc).__name__}: {exc}"


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _features(out: Any) -> Any:
    """``get_*_features`` returns a tensor in transformers 4.x and a ModelOutput in 5.x."""
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out


# ============================================================================ backends


class ClipBackend:
    """The interface the featurizers need: images -> [n, d] and texts -> [n, d] (float32, raw)."""

    backend: str
    dim: int
    image_size: Any
    preprocess: dict

    def encode_images(self, images: list) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class TransformersClip(ClipBackend):
    """``CLIPModel`` / ``SiglipModel`` (anything with ``get_image_features`` / ``get_text_features``)."""

    backend = "transformers"

    def __init__(self, model: Any, image_processor: Any, tokenizer: Any = None, device: str | None = None) -> None:
        import torch

        self.torch = torch
        self.device = _default_device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        cfg = model.config
        self.model_type = getattr(cfg, "model_type", "")
        self.dim = int(getattr(cfg, "projection_dim", 0) or getattr(getattr(cfg, "text_config", None), "hidden_size", 0))
        crop = getattr(image_processor, "crop_size", None) or getattr(image_processor, "size", None)
        self.image_size = _jsonable(crop)
        self.preprocess = {
            "processor": type(image_processor).__name__,
            "size": _jsonable(getattr(image_processor, "size", None)),
            "crop_size": _jsonable(getattr(image_processor, "crop_size", None)),
            "image_mean": _jsonable(getattr(image_processor, "image_mean", None)),
            "image_std": _jsonable(getattr(image_processor, "image_std", None)),
            "resample": _jsonable(getattr(image_processor, "resample", None)),
        }
        if not self.dim:  # probe once
            from PIL import Image

            self.dim = int(self.encode_images([Image.new("RGB", (8, 8))]).shape[1])

    @classmethod
    def from_folder(cls, folder: Path, device: str | None = None) -> "TransformersClip":
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        folder = Path(folder)
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
            try:
                processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, use_fast=False)
            except TypeError:
                processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except Exception:  # image-only use still works without a tokenizer
                tokenizer = None
        except OSError as exc:
            raise WeightsUnavailable(f"cannot load a CLIP-family model from {folder}: {exc}") from exc
        if not hasattr(model, "get_image_features"):
            raise ValueError(f"{folder} holds a {type(model).__name__}, not a CLIP-family model with get_image_features")
        return cls(model, processor, tokenizer, device)

    def encode_images(self, images: list) -> np.ndarray:
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with self.torch.inference_mode():
            feats = _features(self.model.get_image_features(pixel_values=pixels))
        return feats.float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if self.tokenizer is None:
            raise ValueError("this backbone has no tokenizer: text features (image_words) are unavailable")
        if "siglip" in self.model_type:  # SigLIP was trained on max-length padded text
            enc = self.tokenizer(texts, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        else:
            max_len = getattr(getattr(self.model.config, "text_config", None), "max_position_embeddings", 77)
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        if "siglip" in self.model_type:
            enc.pop("attention_mask", None)
        with self.torch.inference_mode():
            feats = _features(self.model.get_text_features(**enc))
        return feats.float().cpu().numpy()


class OpenClipBackend(ClipBackend):
    """open_clip (``pip install mmfeat[clip]``), imported lazily; weights from a local file."""

    backend = "open_clip"

    def __init__(self, arch: str, weights: Path | None, device: str | None = None) -> None:
        open_clip = require_extra("open_clip", "clip", "the open_clip backend")
        import torch

        self.torch = torch
        self.device = _default_device(device)
        self.arch = arch
        if weights is not None and weights.is_dir() and (weights / "open_clip_config.json").exists() and arch is None:
            model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{weights}", device=self.device)
            self.tokenizer = open_clip.get_tokenizer(f"local-dir:{weights}")
        else:
            if not arch:
                raise ValueError("the open_clip backend needs `arch` (e.g. ViT-B-32) unless the folder has open_clip_config.json")
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=str(weights) if weights is not None else None, device=self.device
            )
            self.tokenizer = open_clip.get_tokenizer(arch)
        self.model = model.eval()
        self.transform = preprocess
        size = getattr(getattr(model, "visual", None), "image_size", None)
        self.image_size = list(size) if isinstance(size, (tuple, list)) else size
        self.preprocess = {"transform": repr(preprocess)}
        self.dim = int(getattr(getattr(model, "text_projection", None), "shape", [0, 0])[-1] or 0) or int(
            self.encode_images([_blank()]).shape[1]
        )

    def encode_images(self, images: list) -> np.ndarray:
        x = self.torch.stack([self.transform(im) for im in images]).to(self.device)
        with self.torch.inference_mode():
            return self.model.encode_image(x).float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with self.torch.inference_mode():
            return self.model.encode_text(tokens).float().cpu().numpy()


def _blank():
    from PIL import Image

    return Image.new("RGB", (8, 8))


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if dataclasses.is_dataclass(v) and not isinstance(v, type):  # transformers' SizeDict
        return {k: _jsonable(x) for k, x in dataclasses.asdict(v).items() if x is not None}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def _weights_file(folder: Path) -> Path | None:
    for pattern in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "*.safetensors", "*.bin", "*.pt", "*.pth"):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def _model_digest(model: Any) -> str:
    """sha256 of an in-memory model's parameters (lineage for from_model)."""
    h = hashlib.sha256()
    try:
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
    except Exception:
        h.update(repr(model).encode())
    return h.hexdigest()


def load_clip_backend(
    backbone: str, backend: str = "transformers", *, arch: str | None = None, device: str | None = None
) -> tuple[ClipBackend, dict[str, Any]]:
    """Resolve ``backbone`` offline and load it once per process; returns (backend, lineage)."""
    if backend not in ("transformers", "open_clip"):
        raise ValueError(f"backend must be 'transformers' or 'open_clip', got {backend!r}")
    if backend == "open_clip" and os.path.isfile(backbone):
        path, spec_name, hub_id, source = Path(backbone), Path(backbone).name, str(Path(backbone).resolve()), f"local file {backbone}"
        digest = file_sha256(path)
    else:
        path, spec = resolve_backbone(backbone, family="clip")
        spec_name, hub_id, source = spec.name, spec.hub_id, spec.source
        digest = weights_hash(path)
    key = (str(Path(path).resolve()), backend, arch, _default_device(device))
    with _MODELS_LOCK:
        if key not in _MODELS:
            if backend == "transformers":
                _MODELS[key] = TransformersClip.from_folder(Path(path), device)
            else:
                weights = path if path.is_file() else (
                    path if (path / "open_clip_config.json").exists() and arch is None else _weights_file(path)
                )
                if weights is None:
                    raise WeightsUnavailable(f"no open_clip weights file (*.safetensors, *.bin, *.pt) in {path}")
                _MODELS[key] = OpenClipBackend(arch, weights, device)
        clip = _MODELS[key]
    lineage = {"backbone": spec_name, "hub_id": hub_id, "weights_source": source, "weights_sha256": digest}
    if arch:
        lineage["arch"] = arch
    return clip, lineage


# ============================================================================ image embeddings


@register_featurizer("image_embedding", ImageEmbeddingParams)
class ImageEmbedder:
    """Embed one image file per item with a CLIP-family backbone.

    Spec keys (manifest ``params``):

    - ``backbone``: registered name, local model folder, or hub id (default
      ``openai/clip-vit-base-patch32``; offline, a hub id raises ``WeightsUnavailable``),
    - ``backend``: ``transformers`` (default) or ``open_clip`` (needs ``arch``, e.g. ``ViT-B-32``,
      unless the folder has ``open_clip_config.json``; ``backbone`` may be a weights file),
    - ``batch_size`` (32), ``normalize`` (true: L2-normalize), ``dtype`` (``float32`` | ``float16``),
    - ``max_pixels`` (50e6: larger images are error rows, not decoded), ``num_workers`` (2 decode
      threads), ``device`` (default cuda if available).
    """

    input_kind = "image"
    pooling = "clip_projection"

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        backend: str = "transformers",
        batch_size: int = 32,
        normalize: bool = True,
        dtype: str = "float32",
        device: str | None = None,
        arch: str | None = None,
        max_pixels: int = 50_000_000,
        num_workers: int = 2,
    ) -> None:
        clip, lineage = load_clip_backend(backbone, backend, arch=arch, device=device)
        self._setup(clip, lineage, batch_size=batch_size, normalize=normalize, dtype=dtype,
                    max_pixels=max_pixels, num_workers=num_workers)

    def _setup(self, clip: ClipBackend, lineage: dict[str, Any], *, batch_size: int, normalize: bool, dtype: str,
               max_pixels: int, num_workers: int) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.clip = clip
        self.lineage = lineage
        self.backend = clip.backend
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.dtype = dtype
        self.max_pixels = int(max_pixels)
        self.num_workers = max(1, int(num_workers))
        self.name = f"image-{lineage['backbone']}"
        self.output = OutputSpec("embedding", clip.dim, dtype)  # type: ignore[arg-type]

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | ImageEmbeddingParams) -> "ImageEmbedder":
        """Build from manifest params (:class:`~mmfeat.featurizers.params.ImageEmbeddingParams`); loads the model.

        Raises:
            mmfeat.featurizers.params.ParamsError: params that do not fit the schema.
            MissingDependency: ``backend: open_clip`` without the ``clip`` extra.
            WeightsUnavailable: the backbone's weights are not here.
        """
        p = ImageEmbeddingParams.parse(spec, "image_embedding")
        p.require_backend()
        return cls(**p.model_dump())

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        tokenizer: Any = None,
        *,
        name: str = "in-memory-clip",
        random_init: bool = True,
        backend: ClipBackend | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        dtype: str = "float32",
        device: str | None = None,
        max_pixels: int = 50_000_000,
        num_workers: int = 2,
    ) -> "ImageEmbedder":
        """Tests / benchmarks only: wrap an in-memory model (e.g. a tiny random-init ``CLIPModel``).

        ``processor`` is an image processor (or a ``CLIPProcessor``, whose parts are used). Pass a
        ready :class:`ClipBackend` as ``backend`` to wrap something else (a fake open_clip). The
        fingerprint records ``random_init`` and a hash of the parameters.
        """
        self = cls.__new__(cls)
        clip = backend or _transformers_from_parts(model, processor, tokenizer, device)
        lineage = {
            "backbone": name,
            "hub_id": None,
            "weights_source": "in-memory model (test/benchmark only)",
            "weights_sha256": _model_digest(model),
            "random_init": bool(random_init),
        }
        self._setup(clip, lineage, batch_size=batch_size, normalize=normalize, dtype=dtype,
                    max_pixels=max_pixels, num_workers=num_workers)
        return self

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "image_embedding",
            **self.lineage,
            "backend": self.backend,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dtype": self.dtype,
            "dim": self.output.dim,
            "image_size": _jsonable(self.clip.image_size),
            "preprocess": self.clip.preprocess,
            "max_pixels": self.max_pixels,
        }

    # -------------------------------------------------------------- the shared image path

    def encode_images(self, images: list) -> np.ndarray:
        """Raw (unnormalized) float32 features of PIL images, in batches of ``batch_size``."""
        out = [self.clip.encode_images(images[i : i + self.batch_size]) for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.output.dim), np.float32)

    def embed_paths(self, inputs: Sequence[Any]) -> list[np.ndarray | str]:
        """Per input: a raw float32 feature vector, or an error reason (str). Deduplicated by sha256."""
        results: list[np.ndarray | str | None] = [None] * len(inputs)
        groups: dict[str, list[int]] = {}
        first_path: dict[str, Any] = {}
        for i, item in enumerate(inputs):
            if not isinstance(item, (str, os.PathLike)) or not str(item):
                results[i] = f"no image path (got {type(item).__name__})"
                continue
            try:
                digest = file_sha256(item)
            except MediaError as exc:
                results[i] = str(exc)
                continue
            groups.setdefault(digest, []).append(i)
            first_path.setdefault(digest, item)
        digests = list(groups)

        def load(digest: str):
            try:
                return load_image(first_path[digest], max_pixels=self.max_pixels)
            except MediaError as exc:
                return exc
            except Exception as exc:  # anything PIL throws that we did not foresee
                return MediaError(f"cannot load image {first_path[digest]}: {type(exc).__name__}: {exc}")

        chunks = [digests[i : i + self.batch_size] for i in range(0, len(digests), self.batch_size)]
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            pending = pool.map(load, chunks[0]) if chunks else None
            for n, chunk in enumerate(chunks):
                loaded = list(pending)  # type: ignore[arg-type]
                pending = pool.map(load, chunks[n + 1]) if n + 1 < len(chunks) else None  # prefetch
                good = [(d, im) for d, im in zip(chunk, loaded) if not isinstance(im, Exception)]
                for d, im in zip(chunk, loaded):
                    if isinstance(im, Exception):
                        for i in groups[d]:
                            results[i] = str(im)
                for d, vec in zip((d for d, _ in good), self._encode_robust([im for _, im in good])):
                    for i in groups[d]:
                        results[i] = vec
        return results  # type: ignore[return-value]

    def _encode_robust(self, images: list) -> list[np.ndarray | str]:
        """One model call for the batch; where it fails, :func:`call_isolated` retries item by item,
        so each image the model cannot take becomes its own error reason (also in a batch of one)."""
        if not images:
            return []
        outputs = call_isolated(lambda batch: list(self.clip.encode_images(batch)), images)
        return [_model_failure("this image", out) if isinstance(out, Exception) else out for out in outputs]

    def finish(self, vectors: np.ndarray) -> np.ndarray:
        """Normalize (if asked) and cast to the stored dtype."""
        if self.normalize:
            vectors = _l2(vectors)
        return as_float_array(vectors, self.dtype)

    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        raw = self.embed_paths(inputs)
        ok = [i for i, r in enumerate(raw) if not isinstance(r, str)]
        results: list[Result] = [Result.failed(r) if isinstance(r, str) else None for r in raw]  # type: ignore[misc]
        if ok:
            mat = self.finish(np.stack([raw[i] for i in ok]).astype(np.float32))
            for row, i in zip(mat, ok):
                results[i] = Result(value=row)
        return results


def _transformers_from_parts(model: Any, processor: Any, tokenizer: Any, device: str | None) -> TransformersClip:
    image_processor = getattr(processor, "image_processor", None) or processor
    tokenizer = tokenizer or getattr(processor, "tokenizer", None)
    return TransformersClip(model, image_processor, tokenizer, device)


# ============================================================================ video embeddings


@dataclass(frozen=True)
class VideoResult(Result):
    """A :class:`Result` that also says how many frames were pooled, and at which times."""

    num_frames: int = 0
    timestamps: tuple[float, ...] = field(default_factory=tuple)


@register_featurizer("video_embedding", VideoEmbeddingParams)
class VideoEmbedder:
    """Embed a video file: sample frames by seeking, embed them with a CLIP image backbone, mean-pool.

    Spec keys: everything :class:`ImageEmbedder` takes (``backbone``, ``backend``, ``arch``,
    ``batch_size`` — frames per model call —, ``normalize``, ``dtype``, ``device``), plus
    ``num_frames`` (8, uniform over the duration), ``fps`` (null; if set, frames at this rate,
    capped by ``max_frames``, default 64) and ``max_side`` (448, frame downscale before the processor).

    Pooling (``"mean"``): frame embeddings are L2-normalized, averaged, and the mean re-normalized
    when ``normalize`` is true. Results are :class:`VideoResult` (``num_frames``, ``timestamps``).
    """

    input_kind = "video"
    pooling = "mean"

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        num_frames: int | None = 8,
        fps: float | None = None,
        max_frames: int | None = 64,
        max_side: int | None = 448,
        image_embedder: ImageEmbedder | None = None,
        **image_kwargs: Any,
    ) -> None:
        self.images = image_embedder or ImageEmbedder(backbone, **image_kwargs)
        if fps is None and (not num_frames or num_frames < 1):
            raise ValueError("set num_frames >= 1 or fps")
        self.num_frames = num_frames
        self.fps = fps
        self.max_frames = max_frames
        self.max_side = max_side
        self.name = self.images.name.replace("image-", "video-", 1)
        self.output = self.images.output

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | VideoEmbeddingParams) -> "VideoEmbedder":
        """Build from manifest params (:class:`~mmfeat.featurizers.params.VideoEmbeddingParams`); loads the model."""
        p = VideoEmbeddingParams.parse(spec, "video_embedding")
        p.require_backend()
        return cls(**p.model_dump())

    def fingerprint(self) -> dict[str, Any]:
        fp = self.images.fingerprint()
        fp.update(
            kind="video_embedding",
            pooling=self.pooling,
            frame_pooling_input="l2_normalized_frames",
            sampling={"num_frames": self.num_frames, "fps": self.fps, "max_frames": self.max_frames,
                      "max_side": self.max_side, "method": "seek", "position": "segment_centre"},
        )
        return fp

    def __call__(self, inputs: Sequence[Any]) -> list[VideoResult]:
        from mmfeat.featurizers.video import sample_frames

        results: list[VideoResult | None] = [None] * len(inputs)
        groups: dict[str, list[int]] = {}
        paths: dict[str, Any] = {}
        for i, item in enumerate(inputs):
            if not isinstance(item, (str, os.PathLike)) or not str(item):
                results[i] = VideoResult(error=f"no video path (got {type(item).__name__})")
                continue
            try:
                digest = file_sha256(item)
            except MediaError as exc:
                results[i] = VideoResult(error=str(exc))
                continue
            groups.setdefault(digest, []).append(i)
            paths.setdefault(digest, item)

        emb = self.images
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        stamps: dict[str, tuple[float, ...]] = {}
        pending_frames: list = []
        pending_owner: list[str] = []
        failed: dict[str, str] = {}

        def flush(force: bool) -> None:
            while pending_frames and (force or len(pending_frames) >= emb.batch_size):
                take = min(emb.batch_size, len(pending_frames))
                batch, owners = pending_frames[:take], pending_owner[:take]
                del pending_frames[:take], pending_owner[:take]
                # a frame the model fails on fails its own video only, not the others in the batch
                outputs = call_isolated(lambda ims: list(emb.clip.encode_images(ims)), batch)
                for owner, out in zip(owners, outputs):
                    if isinstance(out, Exception):
                        failed.setdefault(owner, _model_failure("a frame of this video", out))
                    else:
                        vec = _l2(np.asarray(out, np.float64))
                        sums[owner] = sums.get(owner, 0.0) + vec

        for digest in groups:
            try:
                frames = sample_frames(paths[digest], num_frames=self.num_frames, fps=self.fps,
                                       max_side=self.max_side, max_frames=self.max_frames)
            except MediaError as exc:
                for i in groups[digest]:
                    results[i] = VideoResult(error=str(exc))
                continue
            except Exception as exc:  # an unforeseen decoder failure stays this item's problem
                for i in groups[digest]:
                    results[i] = VideoResult(error=f"cannot sample frames from {paths[digest]}: {type(exc).__name__}: {exc}")
                continue
            counts[digest] = len(frames.images)
            stamps[digest] = tuple(frames.timestamps)
            pending_frames.extend(frames.images)
            pending_owner.extend([digest] * len(frames.images))
            flush(False)
        flush(True)

        for digest, reason in failed.items():
            sums.pop(digest, None)
            for i in groups[digest]:
                results[i] = VideoResult(error=reason)
        for digest, total in sums.items():
            mean = (total / counts[digest]).astype(np.float32)[None, :]
            vec = as_float_array(_l2(mean) if emb.normalize else mean, emb.dtype)[0]
            for i in groups[digest]:
                results[i] = VideoResult(value=vec, num_frames=counts[digest], timestamps=stamps[digest])
        return results  # type: ignore[return-value]


# ============================================================================ image -> words (DGVAE)


DEFAULT_STOPWORDS = frozenset(
    """a an and are as at be but by for from has have in into is it its of on or that the their this to
    with without was were will your you our we he she they them his her not no new set pack x vs via
    one two three all any each more most other some such than too very can just only own same so""".split()
)

_WORD = re.compile(r"[^\W\d_][\w'-]*[^\W_]|[^\W\d_]", re.UNICODE)


def build_vocabulary(
    texts: Iterable[str | None],
    min_count: int = 2,
    max_size: int = 5000,
    stopwords: Iterable[str] | None = None,
) -> list[str]:
    """Words for image-to-words: lower-cased tokens of the texts (e.g. item titles and categories),
    without stopwords / numbers / one-letter tokens, seen at least ``min_count`` times, the
    ``max_size`` most frequent (ties broken alphabetically, so the result is deterministic)."""
    stop = DEFAULT_STOPWORDS if stopwords is None else frozenset(w.lower() for w in stopwords)
    counts: Counter[str] = Counter()
    for text in texts:
        if not isinstance(text, str):
            continue
        for word in _WORD.findall(text.lower()):
            word = word.strip("'-")
            if len(word) >= 2 and word not in stop:
                counts[word] += 1
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked[:max_size]


def _read_texts(source: Any) -> list[str]:
    if isinstance(source, (list, tuple)):
        return [str(t) for t in source if t is not None]
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"vocabulary_from must be a list of texts or a text/JSON file, got {source!r}")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ValueError(f"{path} must hold a JSON list of texts")
        return [str(t) for t in data if t is not None]
    return path.read_text().splitlines()


@register_featurizer("image_words", ImageWordsParams)
class ImageToWords:
    """DGVAE's image-to-words: an image -> its ``top_k`` closest vocabulary words (text output).

    Every image is scored against every vocabulary word by the cosine between its CLIP image
    embedding and the CLIP text embedding of ``template.format(word=word)``; the best ``top_k``
    words, best first, are joined by spaces. The vocabulary's text embeddings are computed once
    (batched) and reused for every call.

    Spec keys: the backbone keys of :class:`ImageEmbedder` (``backbone``, ``backend``, ``arch``,
    ``batch_size``, ``device``), ``vocabulary`` (a list of words) **or** ``vocabulary_from`` (a
    list of texts, or a ``.txt`` (one text per line) / ``.json`` file of texts — e.g. item titles and
    categories — turned into words by :func:`build_vocabulary` with ``min_count`` (2) and
    ``max_vocab`` (5000)), ``top_k`` (10), ``template`` (``"a photo of {word}"``).
    """

    input_kind = "image"

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        vocabulary: Sequence[str] | None = None,
        vocabulary_from: Any = None,
        min_count: int = 2,
        max_vocab: int = 5000,
        top_k: int = 10,
        template: str = DEFAULT_TEMPLATE,
        image_embedder: ImageEmbedder | None = None,
        **image_kwargs: Any,
    ) -> None:
        if (vocabulary is None) == (vocabulary_from is None):
            raise ValueError("image_words needs exactly one of `vocabulary` (words) or `vocabulary_from` (texts)")
        if vocabulary is None:
            vocabulary = build_vocabulary(_read_texts(vocabulary_from), min_count=min_count, max_size=max_vocab)
        words = list(dict.fromkeys(w.strip() for w in vocabulary if isinstance(w, str) and w.strip()))
        if not words:
            raise ValueError("the image_words vocabulary is empty")
        if "{word}" not in template:
            raise ValueError(f"template must contain {{word}}, got {template!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.images = image_embedder or ImageEmbedder(backbone, **image_kwargs)
        self.vocabulary = words
        self.top_k = min(int(top_k), len(words))
        self.template = template
        self.name = self.images.name.replace("image-", "image-words-", 1)
        self.output = OutputSpec("text")
        self._text_emb: np.ndarray | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | ImageWordsParams) -> "ImageToWords":
        """Build from manifest params (:class:`~mmfeat.featurizers.params.ImageWordsParams`); loads the model."""
        p = ImageWordsParams.parse(spec, "image_words")
        p.require_backend()
        return cls(**p.model_dump())

    def fingerprint(self) -> dict[str, Any]:
        fp = self.images.fingerprint()
        for k in ("normalize", "dtype"):
            fp.pop(k, None)
        vocab_hash = hashlib.sha256("\n".join(self.vocabulary).encode()).hexdigest()
        fp.update(kind="image_words", template=self.template, top_k=self.top_k,
                  vocabulary_size=len(self.vocabulary), vocabulary_sha256=vocab_hash, scoring="cosine")
        return fp

    def text_embeddings(self) -> np.ndarray:
        """L2-normalized text embeddings of the vocabulary (computed once, batched)."""
        with self._lock:
            if self._text_emb is None:
                prompts = [self.template.format(word=w) for w in self.vocabulary]
                bs = self.images.batch_size
                parts = [self.images.clip.encode_texts(prompts[i : i + bs]) for i in range(0, len(prompts), bs)]
                self._text_emb = _l2(np.concatenate(parts).astype(np.float32))
            return self._text_emb

    def scores(self, image_features: np.ndarray) -> np.ndarray:
        return _l2(image_features.astype(np.float32)) @ self.text_embeddings().T

    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        raw = self.images.embed_paths(inputs)
        ok = [i for i, r in enumerate(raw) if not isinstance(r, str)]
        results: list[Result] = [Result.failed(r) if isinstance(r, str) else None for r in raw]  # type: ignore[misc]
        if ok:
            sims = self.scores(np.stack([raw[i] for i in ok]))
            k = self.top_k
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            for row, i in enumerate(ok):
                order = top[row][np.argsort(-sims[row, top[row]], kind="stable")]
                results[i] = Result(value=" ".join(self.vocabulary[j] for j in order))
        return results


__all__ = [
    "ImageEmbedder",
    "VideoEmbedder",
    "VideoResult",
    "ImageToWords",
    "build_vocabulary",
    "ClipBackend",
    "TransformersClip",
    "OpenClipBackend",
    "load_clip_backend",
    "DEFAULT_STOPWORDS",
]
