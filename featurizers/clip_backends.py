"""CLIP-family backends: images -> vectors and texts -> vectors, for the image featurizers.

:class:`ClipBackend` is the small interface :mod:`mmfeat.featurizers.image_embedding`,
:mod:`~mmfeat.featurizers.video_embedding` and :mod:`~mmfeat.featurizers.image_words` need. Two
implementations:

- :class:`TransformersClip`: ``AutoModel`` (``CLIPModel`` / ``SiglipModel``), ``AutoImageProcessor``
  (on a machine without torchvision, the PIL "slow" processor) and ``AutoTokenizer``;
- :class:`OpenClipBackend`: open_clip (the ``clip`` extra, imported lazily;
  ``open_clip.create_model_and_transforms(arch, pretrained=<local weights file>)``).

:func:`load_clip_backend` resolves weights offline through
:func:`mmfeat.featurizers.registry.resolve_backbone` (a local folder, a registered name, or a hub
id that fails offline with :class:`~mmfeat.featurizers.registry.WeightsUnavailable`) and keeps the
loaded backend in the process-wide :data:`mmfeat.featurizers.cache.MODELS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.media import file_sha256
from mmfeat.featurizers.registry import WeightsUnavailable, require_extra, resolve_backbone, weights_hash


def _default_device(device: str | None) -> str:
    """``device``, or cuda when available (part of the cache key, so resolved before the lookup)."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"



def _features(out: Any) -> Any:
    """``get_*_features`` returns a tensor in transformers 4.x and a ModelOutput in 5.x."""
    if hasattr(out, "pooler_output") and out.pooler_output is not None:
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out



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
        self.image_size = jsonable(crop)
        self.preprocess = {
            "processor": type(image_processor).__name__,
            "size": jsonable(getattr(image_processor, "size", None)),
            "crop_size": jsonable(getattr(image_processor, "crop_size", None)),
            "image_mean": jsonable(getattr(image_processor, "image_mean", None)),
            "image_std": jsonable(getattr(image_processor, "image_std", None)),
            "resample": jsonable(getattr(image_processor, "resample", None)),
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


def jsonable(v: Any) -> Any:
    """``v`` as JSON-able values (processor sizes are dataclasses or enums), for fingerprints."""
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if dataclasses.is_dataclass(v) and not isinstance(v, type):  # transformers' SizeDict
        return {k: jsonable(x) for k, x in dataclasses.asdict(v).items() if x is not None}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return str(v)


def _weights_file(folder: Path) -> Path | None:
    for pattern in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "*.safetensors", "*.bin", "*.pt", "*.pth"):
        hits = sorted(folder.glob(pattern))
        if hits:
            return hits[0]
    return None


def model_digest(model: Any) -> str:
    """sha256 of an in-memory model's parameters (lineage for ``ImageEmbedder.from_model``)."""
    h = hashlib.sha256()
    try:
        for name, tensor in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
    except Exception:
        h.update(repr(model).encode())
    return h.hexdigest()



def transformers_from_parts(model: Any, processor: Any, tokenizer: Any, device: str | None) -> TransformersClip:
    """A :class:`TransformersClip` from in-memory parts; ``processor`` may be a ``CLIPProcessor`` (its parts are used)."""
    image_processor = getattr(processor, "image_processor", None) or processor
    tokenizer = tokenizer or getattr(processor, "tokenizer", None)
    return TransformersClip(model, image_processor, tokenizer, device)



def load_clip_backend(
    backbone: str, backend: str = "transformers", *, arch: str | None = None, device: str | None = None
) -> tuple[ClipBackend, dict[str, Any]]:
    """Resolve ``backbone`` offline and load it through the process-wide model cache.

    Args:
        backbone: a registered name, a local model folder, a hub id (offline: only with a hub
            cache), or for ``open_clip`` a weights file.
        backend: ``transformers`` or ``open_clip``.
        arch: the open_clip architecture (``ViT-B-32``); unused by ``transformers``.
        device: ``cuda`` / ``cpu``; default cuda when available.

    Returns:
        ``(backend, lineage)``: the loaded :class:`ClipBackend` and the weights' lineage
        (``backbone``, ``hub_id``, ``weights_source``, ``weights_sha256`` and ``arch`` if given).

    Raises:
        ValueError: an unknown ``backend``, or a folder that holds no CLIP-family model.
        WeightsUnavailable: the weights are not here.
        MissingDependency: ``open_clip`` without the ``clip`` extra.

    Example:
        >>> clip, lineage = load_clip_backend("openai/clip-vit-base-patch32")  # doctest: +SKIP
        >>> clip.encode_images([image]).shape  # doctest: +SKIP
        (1, 512)
    """
    if backend not in ("transformers", "open_clip"):
        raise ValueError(f"backend must be 'transformers' or 'open_clip', got {backend!r}")
    if backend == "open_clip" and os.path.isfile(backbone):
        path, spec_name, hub_id, source = Path(backbone), Path(backbone).name, str(Path(backbone).resolve()), f"local file {backbone}"
        digest = file_sha256(path)
    else:
        path, spec = resolve_backbone(backbone, family="clip")
        spec_name, hub_id, source = spec.name, spec.hub_id, spec.source
        digest = weights_hash(path)
    key = ("clip", str(Path(path).resolve()), backend, arch, _default_device(device))
    clip = MODELS.get_or_create(key, lambda: _load(Path(path), backend, arch, device))
    lineage = {"backbone": spec_name, "hub_id": hub_id, "weights_source": source, "weights_sha256": digest}
    if arch:
        lineage["arch"] = arch
    return clip, lineage



def _load(path: Path, backend: str, arch: str | None, device: str | None) -> ClipBackend:
    """Load one backend from a resolved path (uncached; :func:`load_clip_backend` caches it)."""
    if backend == "transformers":
        return TransformersClip.from_folder(path, device)
    weights = path if path.is_file() else (
        path if (path / "open_clip_config.json").exists() and arch is None else _weights_file(path)
    )
    if weights is None:
        raise WeightsUnavailable(f"no open_clip weights file (*.safetensors, *.bin, *.pt) in {path}")
    return OpenClipBackend(arch, weights, device)


__all__ = ["ClipBackend", "TransformersClip", "OpenClipBackend", "load_clip_backend", "transformers_from_parts"]
