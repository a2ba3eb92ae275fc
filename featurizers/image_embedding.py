"""CLIP-family image embeddings (``image_embedding``), and the image path the other CLIP featurizers share.

:class:`ImageEmbedder`: a local image file -> the CLIP image embedding (the projection head's
output, ``pooling="clip_projection"``). Its :meth:`~ImageEmbedder.embed_paths` is also the image
path of :class:`~mmfeat.featurizers.image_words.ImageToWords`, and its backend embeds the frames of
:class:`~mmfeat.featurizers.video_embedding.VideoEmbedder`. The backends live in
:mod:`mmfeat.featurizers.clip_backends`.

Random weights are never substituted in a real run: only :meth:`ImageEmbedder.from_model` (tests,
benchmarks) accepts an in-memory model, and its fingerprint then says ``"random_init": true``.

Throughput choices: identical files are embedded once (sha256 of the bytes); images are decoded by
a small thread pool (:class:`~mmfeat.featurizers.prefetch.Prefetch`) that decodes the next batch
while the model runs the current one, and the split of the call's time between model and waiting
is kept in ``last_pipeline_stats``; a batch that fails in the model is retried item by item
(:func:`mmfeat.featurizers.base.call_isolated`), so one bad image is its own error row and never
sinks the batch, whatever its size.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from mmfeat.featurizers.base import OutputSpec, Result, as_float_array, call_isolated
from mmfeat.featurizers.clip_backends import (
    ClipBackend,
    OpenClipBackend,
    TransformersClip,
    jsonable,
    load_clip_backend,
    model_digest,
    transformers_from_parts,
)
from mmfeat.featurizers.media import MediaError, file_sha256, load_image
from mmfeat.featurizers.params import ImageEmbeddingParams
from mmfeat.featurizers.prefetch import Prefetch, chunked
from mmfeat.featurizers.registry import register_featurizer

DEFAULT_BACKBONE = "openai/clip-vit-base-patch32"

log = logging.getLogger(__name__)


def model_failure(what: str, exc: Exception) -> str:
    """The error reason of an item the model failed on (shared by the image, video and words featurizers)."""
    return f"model failed on {what}: {type(exc).__name__}: {exc}"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero instead of becoming NaN)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@register_featurizer("image_embedding", ImageEmbeddingParams, produces="embedding")
class ImageEmbedder:
    """Embed one image file per item with a CLIP-family backbone.

    Spec keys (manifest ``params``):

    - ``backbone``: registered name, local model folder, or hub id (default
      ``openai/clip-vit-base-patch32``; offline, a hub id raises ``WeightsUnavailable``),
    - ``backend``: ``transformers`` (default) or ``open_clip`` (needs ``arch``, e.g. ``ViT-B-32``,
      unless the folder has ``open_clip_config.json``; ``backbone`` may be a weights file),
    - ``batch_size`` (32), ``normalize`` (true: L2-normalize), ``dtype`` (``float32`` | ``float16``),
    - ``max_pixels`` (50e6: larger images are error rows, not decoded), ``num_workers`` (2 decode
      threads; 0 decodes in the calling thread), ``device`` (default cuda if available).
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
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: decode in the calling thread), got {num_workers}")
        self.clip = clip
        self.lineage = lineage
        self.backend = clip.backend
        self.batch_size = int(batch_size)
        self.normalize = bool(normalize)
        self.dtype = dtype
        self.max_pixels = int(max_pixels)
        self.num_workers = int(num_workers)
        #: Decode/model time split of the last :meth:`embed_paths` call
        #: (:class:`~mmfeat.featurizers.prefetch.PipelineStats`).
        self.last_pipeline_stats: dict[str, Any] | None = None
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
        clip = backend or transformers_from_parts(model, processor, tokenizer, device)
        lineage = {
            "backbone": name,
            "hub_id": None,
            "weights_source": "in-memory model (test/benchmark only)",
            "weights_sha256": model_digest(model),
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
            "image_size": jsonable(self.clip.image_size),
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

        with Prefetch(load, digests, num_workers=self.num_workers, ahead=self.batch_size) as decoded:
            # the pool decodes the next batch while the model runs this one
            for chunk, loaded in zip(chunked(digests, self.batch_size), chunked(decoded, self.batch_size)):
                good = [(d, im) for d, im in zip(chunk, loaded) if not isinstance(im, Exception)]
                for d, im in zip(chunk, loaded):
                    if isinstance(im, Exception):
                        for i in groups[d]:
                            results[i] = str(im)
                for d, vec in zip((d for d, _ in good), self._encode_robust([im for _, im in good])):
                    for i in groups[d]:
                        results[i] = vec
        self.last_pipeline_stats = decoded.stats.as_dict()
        log.debug("%s: decode pipeline %s", self.name, self.last_pipeline_stats)
        return results  # type: ignore[return-value]

    def _encode_robust(self, images: list) -> list[np.ndarray | str]:
        """One model call for the batch; where it fails, :func:`call_isolated` retries item by item,
        so each image the model cannot take becomes its own error reason (also in a batch of one)."""
        if not images:
            return []
        outputs = call_isolated(lambda batch: list(self.clip.encode_images(batch)), images)
        return [model_failure("this image", out) if isinstance(out, Exception) else out for out in outputs]

    def finish(self, vectors: np.ndarray) -> np.ndarray:
        """Normalize (if asked) and cast to the stored dtype."""
        if self.normalize:
            vectors = l2_normalize(vectors)
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


__all__ = [
    "ImageEmbedder", "DEFAULT_BACKBONE", "l2_normalize", "model_failure",
    # re-exported from clip_backends, where they moved (import them from there in new code)
    "ClipBackend", "TransformersClip", "OpenClipBackend", "load_clip_backend",
]
