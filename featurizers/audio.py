"""Speech transcripts of audio tracks with a Whisper-family model (optional featurizer).

:class:`AudioTranscriber` (kind ``audio_transcript``, ``input_kind`` ``"video"`` or ``"audio"``)
decodes the first audio stream of each file to 16 kHz mono (:func:`mmfeat.featurizers.video.extract_audio`),
cuts it into 30-second windows (Whisper's context), transcribes all windows of a batch of files in
batched ``generate`` calls and joins each file's windows in order. A file without an audio stream
is an error row ``"no audio stream"``; any other unreadable file is an error row with the reason.
Identical files (same sha256) are transcribed once.

No Whisper weights ship on PyPI, so in a manifest this is an ``optional: true`` feature set: where
the weights are missing, building it raises :class:`WeightsUnavailable` naming the model and how
to provide it (a local folder, or a populated Hugging Face cache).

Params (``from_spec``): ``backbone`` (registered name such as ``whisper-small``, a local folder or
a hub id; default ``whisper-small``), ``input_kind`` (``video`` | ``audio``), ``language`` (e.g.
``"en"``; default: Whisper's own detection), ``task`` (``transcribe`` | ``translate``),
``max_new_tokens`` per window (default 200), ``batch_size`` (windows per generate call, 8),
``max_seconds`` (audio beyond this is ignored, default 600), ``device``, ``dtype``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmfeat.featurizers.base import OutputSpec, Result, call_isolated
from mmfeat.featurizers.cache import MODELS
from mmfeat.featurizers.params import AudioTranscriptParams
from mmfeat.featurizers.registry import (
    WeightsUnavailable,
    register_featurizer,
    register_hub_backbones,
    resolve_backbone,
    weights_hash,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0


register_hub_backbones(
    "whisper",
    (
        ("whisper-tiny", "openai/whisper-tiny"),
        ("whisper-base", "openai/whisper-base"),
        ("whisper-small", "openai/whisper-small"),
        ("whisper-large-v3-turbo", "openai/whisper-large-v3-turbo"),
        ("distil-whisper-large-v3", "distil-whisper/distil-large-v3"),
    ),
    hint="The audio_transcript feature set can be marked `optional: true` to skip it meanwhile.",
)


def split_windows(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, window_seconds: float = WINDOW_SECONDS) -> list[np.ndarray]:
    """Cut audio into consecutive windows of at most ``window_seconds`` (the last may be shorter)."""
    step = int(window_seconds * sample_rate)
    if audio.size == 0:
        return []
    return [audio[i : i + step] for i in range(0, audio.size, step)]


def load_whisper(folder: Path, device: str = "cpu", dtype: str = "float32") -> tuple[Any, Any]:
    """(model, processor) of a Whisper folder, loaded once through the process-wide model cache.

    Args:
        folder: the resolved model folder.
        device: where the model will run (part of the key: the transcriber moves the shared model
            there, and ``Module.to`` moves in place).
        dtype: the torch dtype name to load the weights in.

    Returns:
        ``(WhisperForConditionalGeneration, processor)``; shared, so do not mutate them.

    Raises:
        WeightsUnavailable: the folder does not hold a loadable Whisper model.

    Example:
        >>> model, processor = load_whisper(Path("models/whisper-small"))  # doctest: +SKIP
    """

    def load() -> tuple[Any, Any]:
        import torch
        from transformers import AutoProcessor, WhisperForConditionalGeneration

        try:
            processor = AutoProcessor.from_pretrained(str(folder))
            model = WhisperForConditionalGeneration.from_pretrained(str(folder), dtype=getattr(torch, dtype))
        except OSError as exc:
            raise WeightsUnavailable(f"cannot load a Whisper model from {folder}: {exc}") from exc
        return model, processor

    return MODELS.get_or_create(("whisper", str(Path(folder).resolve()), device, dtype), load)


@register_featurizer("audio_transcript", AudioTranscriptParams)
class AudioTranscriber:
    """Audio track of a video (or an audio file) -> its speech transcript."""

    output = OutputSpec(kind="text")
    #: The pipeline checks a manifest's input against this: a video's or an audio file's track.
    accepts = ("video", "audio")

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        input_kind: str = "video",
        language: str | None = None,
        task: str = "transcribe",
        max_new_tokens: int = 200,
        batch_size: int = 8,
        max_seconds: float = 600.0,
        backbone: str = "unknown",
        hub_id: str | None = None,
        weights_sha256: str | None = None,
        weights_source: str | None = None,
        random_init: bool = False,
        device: str | None = None,
        dtype: str | None = None,
        name: str | None = None,
    ) -> None:
        import torch

        if input_kind not in ("video", "audio"):
            raise ValueError(f"input_kind must be video or audio, got {input_kind!r}")
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be transcribe or translate, got {task!r}")
        self.input_kind = input_kind
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype_name = dtype or ("float16" if str(self.device).startswith("cuda") else "float32")
        self.torch_dtype = getattr(torch, self.dtype_name)
        self.model = model.to(device=self.device, dtype=self.torch_dtype).eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.language, self.task = language, task
        self.max_new_tokens, self.batch_size, self.max_seconds = max_new_tokens, batch_size, max_seconds
        self.backbone, self.hub_id = backbone, hub_id or backbone
        self.weights_sha256, self.weights_source, self.random_init = weights_sha256, weights_source, random_init
        self.name = name or f"transcript-{Path(str(backbone)).name}"
        self.stats = {"generate_calls": 0, "windows": 0}

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | AudioTranscriptParams) -> "AudioTranscriber":
        """Build from manifest params (:class:`~mmfeat.featurizers.params.AudioTranscriptParams`); loads Whisper."""
        p = AudioTranscriptParams.parse(spec, "audio_transcript")
        import torch

        folder, bspec = resolve_backbone(p.backbone, family="whisper")
        device = p.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = p.dtype or ("float16" if str(device).startswith("cuda") else "float32")
        model, processor = load_whisper(Path(folder), device, dtype)
        return cls(model, processor, backbone=bspec.name, hub_id=bspec.hub_id, weights_sha256=weights_hash(folder),
                   weights_source=bspec.source, device=device, dtype=dtype,
                   **p.model_dump(exclude={"backbone", "device", "dtype"}))

    @classmethod
    def from_model(cls, model: Any, processor: Any, **kwargs: Any) -> "AudioTranscriber":
        """Wrap an in-memory model (tests); the fingerprint says ``random_init: true``."""
        kwargs.setdefault("backbone", f"in-memory:{type(model).__name__}")
        return cls(model, processor, random_init=True, **kwargs)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "kind": "audio_transcript",
            "backbone": self.backbone,
            "hub_id": self.hub_id,
            "weights_source": self.weights_source,
            "weights_sha256": self.weights_sha256,
            "random_init": self.random_init,
            "dtype": self.dtype_name,
            "generation": {"language": self.language, "task": self.task, "max_new_tokens": self.max_new_tokens,
                           "do_sample": False, "window_seconds": WINDOW_SECONDS, "max_seconds": self.max_seconds,
                           "sample_rate": SAMPLE_RATE},
        }

    # ----------------------------------------------------------------- generation

    def _generate(self, windows: list[np.ndarray]) -> list[str]:
        import torch

        feats = self.processor.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        x = feats["input_features"].to(self.device, dtype=self.torch_dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.language or self.task != "transcribe":
            kwargs.update(language=self.language, task=self.task)
        self.stats["generate_calls"] += 1
        self.stats["windows"] += len(windows)
        with torch.inference_mode():
            out = self.model.generate(x, **kwargs)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


    def __call__(self, inputs: Sequence[Any]) -> list[Result]:
        from mmfeat.featurizers.media import MediaError, file_sha256
        from mmfeat.featurizers.video import extract_audio

        results: list[Result | None] = [None] * len(inputs)
        groups: OrderedDict[str, list[int]] = OrderedDict()
        paths: dict[str, Any] = {}
        for i, path in enumerate(inputs):
            if isinstance(path, dict):
                path = path.get("path") or path.get("audio_uri") or path.get("video_uri")
            if not path:
                results[i] = Result.failed(f"no {self.input_kind} path")
                continue
            try:
                key = file_sha256(path)
            except (MediaError, OSError) as exc:
                results[i] = Result.failed(str(exc))
                continue
            groups.setdefault(key, []).append(i)
            paths.setdefault(key, path)

        # decode every unique file's audio, cut into windows; windows of several files share a batch
        windows: list[tuple[str, np.ndarray]] = []
        for key, path in paths.items():
            try:
                audio = extract_audio(path, sample_rate=SAMPLE_RATE, max_seconds=self.max_seconds)
            except MediaError as exc:
                msg = str(exc)
                self._fail(results, groups[key], "no audio stream" if msg.startswith("no audio stream") else msg)
                continue
            except Exception as exc:
                self._fail(results, groups[key], f"cannot decode audio of {path}: {type(exc).__name__}: {exc}")
                continue
            parts = split_windows(np.asarray(audio, dtype=np.float32))
            if not parts:
                self._fail(results, groups[key], "no audio stream (no samples decoded)")
                continue
            windows += [(key, w) for w in parts]

        texts: dict[str, list[str]] = {}
        failed: dict[str, str] = {}
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            for (key, _), out in zip(chunk, call_isolated(self._generate, [w for _, w in chunk])):
                if isinstance(out, Exception):
                    failed.setdefault(key, f"transcription failed: {type(out).__name__}: {out}")
                else:
                    texts.setdefault(key, []).append(out)
        for key, idx in groups.items():
            if key in failed:
                self._fail(results, idx, failed[key])
            elif key in texts:
                value = " ".join(t for t in texts[key] if t)
                for i in idx:
                    results[i] = Result(value=value)
        return [r if r is not None else Result.failed("not processed") for r in results]

    @staticmethod
    def _fail(results: list[Result | None], indices: list[int], reason: str) -> None:
        for i in indices:
            results[i] = Result.failed(reason)


__all__ = ["AudioTranscriber", "load_whisper", "split_windows"]
