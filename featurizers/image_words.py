"""DGVAE's image-to-words (``image_words``): an image -> its closest words of the item-text vocabulary.

:class:`ImageToWords` scores each image's CLIP embedding against the CLIP text embeddings of
``"a photo of {word}"`` for every vocabulary word and keeps the ``top_k`` best, joined by spaces:
the step of DGVAE that turns images into a bag of words. :func:`build_vocabulary` makes that
vocabulary from item texts (titles, categories).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mmfeat.featurizers.base import OutputSpec, Result
from mmfeat.featurizers.image_embedding import DEFAULT_BACKBONE, ImageEmbedder, l2_normalize
from mmfeat.featurizers.params import ImageWordsParams
from mmfeat.featurizers.registry import register_featurizer

DEFAULT_TEMPLATE = "a photo of {word}"

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
                self._text_emb = l2_normalize(np.concatenate(parts).astype(np.float32))
            return self._text_emb

    def scores(self, image_features: np.ndarray) -> np.ndarray:
        return l2_normalize(image_features.astype(np.float32)) @ self.text_embeddings().T

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


__all__ = ["ImageToWords", "build_vocabulary", "DEFAULT_STOPWORDS", "DEFAULT_TEMPLATE"]
