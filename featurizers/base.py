"""The featurizer contract.

A featurizer is a plain object with a batch call. It knows nothing about Prefect or the store,
so it runs the same from a flow, a notebook or a Dask worker:

- ``name``: a short human name (``text-minilm``),
- ``input_kind``: what one input is (``"text"`` -> a string, ``"image"`` / ``"video"`` /
  ``"audio"`` -> a local file path),
- ``output``: an :class:`OutputSpec` (an embedding of dimension ``dim`` or free text),
- ``fingerprint()``: a JSON-able dict naming everything that determines the output (backbone id,
  weights hash, prompt, parameters). The engine adds the code and library versions itself
  (:mod:`mmfeat.featurizers.fingerprinting`), so no version number is bumped by hand. The store hashes
  it into run keys and version ids, so a changed backbone or prompt is a new version and an
  unchanged one is a cache hit,
- ``__call__(inputs) -> list[Result]``: one :class:`Result` per input, in order. One bad item is
  an error result with a reason; it never sinks the batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

InputKind = Literal["text", "image", "video", "audio", "embedding"]


@dataclass(frozen=True)
class OutputSpec:
    """What a featurizer produces: ``kind="embedding"`` with ``dim`` and ``dtype``, ``kind="text"``, or
    ``kind="codes"`` (semantic IDs: ``dim`` integers per item)."""

    kind: Literal["embedding", "text", "codes"]
    dim: int | None = None
    dtype: Literal["float32", "float16"] | None = None

    def __post_init__(self) -> None:
        if self.kind == "embedding" and (self.dim is None or self.dtype is None):
            raise ValueError("an embedding output needs dim and dtype")
        if self.kind == "codes" and self.dim is None:
            raise ValueError("a codes output needs dim (levels per item)")


@dataclass(frozen=True)
class Result:
    """One item's outcome: a value (np.ndarray for embeddings, str for text) or an error reason."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, reason: str) -> "Result":
        return cls(value=None, error=reason)


@runtime_checkable
class Featurizer(Protocol):
    name: str
    input_kind: InputKind
    output: OutputSpec

    def fingerprint(self) -> dict[str, Any]: ...

    def __call__(self, inputs: Sequence[Any]) -> list[Result]: ...


T = TypeVar("T")
R = TypeVar("R")


def call_isolated(batch_fn: Callable[[list[T]], Sequence[R]], items: list[T],
                  on_retry: Callable[[int, Exception], None] | None = None) -> list[R | Exception]:
    """Run a batched model call; if the batch fails, retry item by item so one bad item (an odd
    image, an over-long prompt) costs only its own row. Returns outputs or per-item exceptions."""
    try:
        out = list(batch_fn(items))
        if len(out) != len(items):
            raise RuntimeError(f"batch call returned {len(out)} outputs for {len(items)} inputs")
        return out
    except Exception as exc:
        if len(items) == 1:
            return [exc]
        if on_retry is not None:
            on_retry(len(items), exc)
        results: list[R | Exception] = []
        for item in items:
            results += call_isolated(batch_fn, [item])
        return results


def fingerprint_hash(fp: dict[str, Any]) -> str:
    """A stable hex digest of a fingerprint dict (keys sorted, compact JSON)."""
    blob = json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()



def as_float_array(values: np.ndarray, dtype: str) -> np.ndarray:
    """Cast a 2-D embedding matrix to the stored dtype (float32 or float16), C-contiguous."""
    return np.ascontiguousarray(values, dtype=np.float16 if dtype == "float16" else np.float32)
