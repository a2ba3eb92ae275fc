"""CLIP video embeddings (``video_embedding``): frames sampled by seeking, one image backbone, mean-pooled.

:class:`VideoEmbedder`: a video file -> frames (:func:`mmfeat.featurizers.video.sample_frames`) ->
the image backbone of an :class:`~mmfeat.featurizers.image_embedding.ImageEmbedder` -> the mean of
the L2-normalized frame embeddings (``pooling="mean"``); each result also carries its frame count
and timestamps. Identical files (sha256) are embedded once; frames of several videos share model
batches, and a frame the model fails on fails its own video only.

Frames are sampled on ``num_workers`` threads (:class:`~mmfeat.featurizers.prefetch.Prefetch`) a
few videos ahead of the model, so the model embeds video n while videos n+1.. decode; the look-ahead
is bounded (:meth:`VideoEmbedder.lookahead` videos) because decoded frames are big. The call's
decode/model time split is kept in ``last_pipeline_stats``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mmfeat.featurizers.base import Result, as_float_array, call_isolated
from mmfeat.featurizers.image_embedding import DEFAULT_BACKBONE, ImageEmbedder, l2_normalize, model_failure
from mmfeat.featurizers.media import MediaError, file_sha256
from mmfeat.featurizers.params import VideoEmbeddingParams
from mmfeat.featurizers.prefetch import Prefetch
from mmfeat.featurizers.registry import register_featurizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoResult(Result):
    """A :class:`Result` that also says how many frames were pooled, and at which times."""

    num_frames: int = 0
    timestamps: tuple[float, ...] = field(default_factory=tuple)


@register_featurizer("video_embedding", VideoEmbeddingParams, produces="embedding")
class VideoEmbedder:
    """Embed a video file: sample frames by seeking, embed them with a CLIP image backbone, mean-pool.

    Spec keys: everything :class:`ImageEmbedder` takes (``backbone``, ``backend``, ``arch``,
    ``batch_size`` — frames per model call —, ``normalize``, ``dtype``, ``device``), plus
    ``num_frames`` (8, uniform over the duration), ``fps`` (null; if set, frames at this rate,
    capped by ``max_frames``, default 64), ``max_side`` (448, frame downscale before the processor)
    and ``num_workers`` (2 decode threads; 0 decodes in the calling thread; speed only, not in the
    fingerprint).

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
        num_workers: int = 2,
        image_embedder: ImageEmbedder | None = None,
        **image_kwargs: Any,
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: decode in the calling thread), got {num_workers}")
        self.images = image_embedder or ImageEmbedder(backbone, **image_kwargs)
        if fps is None and (not num_frames or num_frames < 1):
            raise ValueError("set num_frames >= 1 or fps")
        self.num_workers = int(num_workers)
        #: Decode/model time split of the last call (:class:`~mmfeat.featurizers.prefetch.PipelineStats`).
        self.last_pipeline_stats: dict[str, Any] | None = None
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

    def lookahead(self) -> int:
        """Videos decoded ahead of the model: enough to fill the next frame batch, at least one per
        worker and two in all. Memory bound: this many videos' frames (``max_side``-scaled RGB)."""
        per_video = (self.num_frames if self.fps is None else self.max_frames) or 1
        return max(2, self.num_workers, math.ceil(self.images.batch_size / per_video))

    def _sample(self, path: Any) -> Any:
        from mmfeat.featurizers.video import sample_frames

        try:
            return sample_frames(path, num_frames=self.num_frames, fps=self.fps,
                                 max_side=self.max_side, max_frames=self.max_frames)
        except MediaError:
            raise
        except Exception as exc:  # an unforeseen decoder failure stays this item's problem
            raise MediaError(f"cannot sample frames from {path}: {type(exc).__name__}: {exc}") from exc

    def __call__(self, inputs: Sequence[Any]) -> list[VideoResult]:
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
                        failed.setdefault(owner, model_failure("a frame of this video", out))
                    else:
                        vec = l2_normalize(np.asarray(out, np.float64))
                        sums[owner] = sums.get(owner, 0.0) + vec

        digests = list(groups)
        # the pool samples the next videos' frames while the model embeds the frames already queued
        with Prefetch(lambda d: self._sample(paths[d]), digests, num_workers=self.num_workers,
                      ahead=self.lookahead()) as decoded:
            for digest, frames in zip(digests, decoded):
                if isinstance(frames, Exception):
                    for i in groups[digest]:
                        results[i] = VideoResult(error=str(frames))
                    continue
                counts[digest] = len(frames.images)
                stamps[digest] = tuple(frames.timestamps)
                pending_frames.extend(frames.images)
                pending_owner.extend([digest] * len(frames.images))
                flush(False)
            flush(True)
        self.last_pipeline_stats = decoded.stats.as_dict()
        log.debug("%s: decode pipeline %s", self.name, self.last_pipeline_stats)

        for digest, reason in failed.items():
            sums.pop(digest, None)
            for i in groups[digest]:
                results[i] = VideoResult(error=reason)
        for digest, total in sums.items():
            mean = (total / counts[digest]).astype(np.float32)[None, :]
            vec = as_float_array(l2_normalize(mean) if emb.normalize else mean, emb.dtype)[0]
            for i in groups[digest]:
                results[i] = VideoResult(value=vec, num_frames=counts[digest], timestamps=stamps[digest])
        return results  # type: ignore[return-value]


__all__ = ["VideoEmbedder", "VideoResult"]
