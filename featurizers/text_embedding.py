"""Sentence-transformers text embeddings (the first featurizer, and the one every chain ends in).

Why it is shaped this way:
- identical texts are embedded once (item catalogues repeat titles and empty descriptions a lot);
- the unique texts go to ``SentenceTransformer.encode`` in one call, which already orders them by
  length so padding stays small; we do not re-batch in Python, so the pipeline costs nothing over
  a plain ``encode`` call;
- Matryoshka truncation (``truncate_dim``) slices the leading dimensions and re-normalizes, as the
  Matryoshka papers (and fMRLRec) do; ``dtype: float16`` halves the store;
- ``runtime: onnx | openvino`` (and ``quantize: int8``) swap only the forward pass
  (:mod:`mmfeat.featurizers.text_runtimes`); the tokenizer, truncation, dedup and normalization stay
  here. They are in the fingerprint; ``runtime: torch`` adds nothing to it, so versions made before
  runtimes existed keep their fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmfeat.featurizers.base import OutputSpec, Result, as_float_array
from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.params import TextEmbeddingParams
from mmfeat.featurizers.registry import register_featurizer, resolve_backbone, weights_hash
from mmfeat.featurizers.text_runtimes import build_runtime, runtime_fingerprint


def load_sentence_transformer(path: Path, device: str | None = None, max_seq_length: int | None = None) -> Any:
    """A sentence-transformers model from a local folder, offline, through the process-wide model cache.

    ``max_seq_length`` is part of the cache key and is set on the model when it loads: the model
    object is shared by every featurizer that gets it, so setting it afterwards would change the
    truncation (and the fingerprint) of every other featurizer on the same weights.

    Args:
        path: the model folder.
        device: ``cuda`` / ``cpu``; default cuda when available.
        max_seq_length: tokens kept per text; None keeps the model's own limit.

    Returns:
        The ``SentenceTransformer`` (shared: do not mutate it).

    Raises:
        OSError: the folder is not a loadable model.

    Example:
        >>> from mmfeat.featurizers.registry import resolve_backbone
        >>> model = load_sentence_transformer(resolve_backbone("all-MiniLM-L6-v2")[0])  # doctest: +SKIP
    """
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"

    def load() -> Any:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device=device, local_files_only=True)
        if max_seq_length is not None:
            model.max_seq_length = max_seq_length
        return model

    return MODELS.get_or_create(("sentence-transformers", str(Path(path).resolve()), device, max_seq_length), load)


@register_featurizer("text_embedding", TextEmbeddingParams, produces="embedding")
class TextEmbedder:
    """Embed one text per item with a sentence-transformers backbone.

    Spec keys (manifest ``params``): ``backbone`` (registered name, local folder or hub id;
    default ``all-MiniLM-L6-v2``), ``batch_size`` (64), ``normalize`` (true), ``truncate_dim``
    (null = full), ``dtype`` (``float32`` | ``float16``), ``max_seq_length`` (null = model's),
    ``runtime`` (``torch`` | ``onnx`` | ``openvino``; onnx/openvino run on CPU, onnx on CUDA too when
    onnxruntime has its CUDA provider), ``quantize`` (``none`` | ``int8``, int8 only with onnx/openvino).
    """

    input_kind = "text"

    def __init__(
        self,
        backbone: str = "all-MiniLM-L6-v2",
        *,
        batch_size: int = 64,
        normalize: bool = True,
        truncate_dim: int | None = None,
        dtype: str = "float32",
        max_seq_length: int | None = None,
        device: str | None = None,
        runtime: str = "torch",
        quantize: str = "none",
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        self.backbone = backbone
        self.path, self.spec = resolve_backbone(backbone, family="sentence-transformers")
        # onnx / openvino use the torch model only to tokenize (and, once, to export): keep it on CPU.
        self.model = load_sentence_transformer(self.path, device if runtime == "torch" else "cpu", max_seq_length)
        full_dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())
        if truncate_dim is not None and not 0 < truncate_dim <= full_dim:
            raise ValueError(f"truncate_dim must be in 1..{full_dim} for {backbone}, got {truncate_dim}")
        self.batch_size = batch_size
        self.normalize = normalize
        self.truncate_dim = truncate_dim
        self.dtype = dtype
        self.name = f"text-{self.spec.name}"
        self.output = OutputSpec("embedding", truncate_dim or full_dim, dtype)  # type: ignore[arg-type]
        self._weights_hash = weights_hash(self.path)
        self.runtime = runtime
        self.quantize = quantize
        self._runtime = build_runtime(self.model, runtime, quantize, name=self.spec.name,
                                      weights_sha256=self._weights_hash, device=device)

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | TextEmbeddingParams) -> "TextEmbedder":
        """Build from manifest params, validated by :class:`~mmfeat.featurizers.params.TextEmbeddingParams`."""
        return cls(**TextEmbeddingParams.parse(spec, "text_embedding").model_dump())

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "text_embedding",
            "backbone": self.spec.name,
            "hub_id": self.spec.hub_id,
            "weights_source": self.spec.source,
            "weights_sha256": self._weights_hash,
            "normalize": self.normalize,
            "truncate_dim": self.truncate_dim,
            "dtype": self.dtype,
            "max_seq_length": int(self.model.max_seq_length),
            **runtime_fingerprint(self.runtime, self.quantize),
        }

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (no validation): [len(texts), dim] in the stored dtype."""
        emb = self._runtime.encode(list(texts), self.batch_size, normalize=self.normalize and self.truncate_dim is None)
        if self.truncate_dim is not None:
            emb = emb[:, : self.truncate_dim]
            if self.normalize:
                emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return as_float_array(emb, self.dtype)

    def __call__(self, inputs: Sequence[str | None]) -> list[Result]:
        results: list[Result | None] = [None] * len(inputs)
        unique: dict[str, list[int]] = {}
        for i, text in enumerate(inputs):
            if not isinstance(text, str):
                results[i] = Result.failed(f"no text (got {type(text).__name__})")
            elif not text.strip():
                results[i] = Result.failed("empty text")
            else:
                unique.setdefault(text, []).append(i)
        if unique:
            texts = list(unique)
            emb = self.embed(texts)
            for row, text in zip(emb, texts):
                for i in unique[text]:
                    results[i] = Result(value=row)
        return results  # type: ignore[return-value]
