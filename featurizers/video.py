"""Video frame sampling and audio extraction with PyAV.

:func:`sample_frames` takes N frames spread uniformly over a clip (or frames at a fixed rate) by
*seeking*; for each target time it returns the first frame shown at or after it. It jumps to the
keyframe before the target and decodes forward; a run whose first picture is already past the target
(an index that lists decode times, MPEG-TS landing where it can) is retried from further back. Where
the keyframe index says a seek would only re-decode the same frames, it keeps decoding forward.
Only the chosen frames are converted to RGB and scaled (``max_side``).

This module is the public API (choosing targets, seeking strategy, conversion to images, audio);
reading pictures in presentation order, the timestamp rules (pts, or decode-order times re-sorted
over :data:`REORDER_WINDOW`) and damage detection live in :mod:`mmfeat.featurizers.video_decode`.

Damage is an error, never repeated frames: a decode error, a corrupt picture, or a stream that ends
short of its declared duration raises :class:`~mmfeat.featurizers.media.MediaError` saying how far it got
("video damaged (...): decoded 3 of 8 requested frames, stream ends at 0.84 s of 2.00 s declared").
An intact clip shorter than the targets gives its last frame for the targets past it; pixels are
never compared. :func:`extract_audio` applies the same rule to audio.

Display rotation (the display-matrix side data, or the legacy ``rotate`` tag) is applied to the
returned images. Every failure raises :class:`~mmfeat.featurizers.media.MediaError` with the file name.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from mmfeat.featurizers.media import MediaError, PathLike
from mmfeat.featurizers.video_decode import (  # av: PyAV as imported there (None if missing)
    _EPS,
    REORDER_WINDOW,
    _Progress,
    _Reader,
    _check_intact_end,
    _declared_end,
    _duration,
    _open,
    _with_timestamp_fallback,
    av,
)


@dataclass
class Frames:
    """Frames sampled from one video.

    ``timestamps`` are the *actual* presentation times of the returned frames, in seconds from the
    start of the video stream; ``duration`` is the stream duration in seconds; ``fps`` the average
    frame rate if known; ``rotation`` the counter-clockwise rotation (0/90/180/270) that was applied
    to the decoded pictures to get them upright, as in PyAV's ``VideoFrame.rotation``.
    """

    images: list[Image.Image]
    timestamps: list[float]
    duration: float
    fps: float | None
    rotation: int = 0
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)


def normalize_rotation(degrees: float | int | None) -> int:
    """Round any angle to the nearest multiple of 90 in [0, 360)."""
    if degrees is None or (isinstance(degrees, float) and math.isnan(degrees)):
        return 0
    return int(round(float(degrees) / 90.0)) * 90 % 360


def rotate_image(image: Image.Image, ccw_degrees: int) -> Image.Image:
    """Rotate a picture counter-clockwise by a multiple of 90 degrees (exact, lossless transpose)."""
    r = normalize_rotation(ccw_degrees)
    if r == 90:
        return image.transpose(Image.Transpose.ROTATE_90)
    if r == 180:
        return image.transpose(Image.Transpose.ROTATE_180)
    if r == 270:
        return image.transpose(Image.Transpose.ROTATE_270)
    return image


def _stream_rotation(stream) -> int | None:
    """Counter-clockwise rotation from the legacy ``rotate`` tag (which is clockwise), or None."""
    tag = (stream.metadata or {}).get("rotate")
    if tag is None:
        return None
    try:
        return normalize_rotation(-float(tag))
    except ValueError:
        return None


def _frame_rotation(frame) -> int | None:
    try:
        r = frame.rotation
    except Exception:  # older PyAV, or no side data
        return None
    return normalize_rotation(r) if r is not None else None


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_image(frame, max_side: int | None) -> Image.Image:
    w, h = _scaled_size(frame.width, frame.height, max_side)
    if (w, h) != (frame.width, frame.height):
        return frame.to_image(width=w, height=h)
    return frame.to_image()


def _targets(start: float, duration: float, num_frames: int | None, fps: float | None, max_frames: int | None) -> list[float]:
    if fps is not None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        n = max(1, int(math.floor(duration * fps + 1e-9)))
        times = [start + k / fps for k in range(n)]
        if max_frames is not None and len(times) > max_frames:
            idx = np.linspace(0, len(times) - 1, max_frames).round().astype(int)
            times = [times[i] for i in idx]
        return times
    if not num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (or pass fps), got {num_frames}")
    # centre of each of N equal segments: spread over the whole clip, never past the last frame
    return [start + (i + 0.5) * duration / num_frames for i in range(num_frames)]


def sample_frames(
    path: PathLike,
    *,
    num_frames: int | None = 8,
    fps: float | None = None,
    max_side: int | None = 448,
    max_frames: int | None = None,
    skip_nonref: bool = True,
) -> Frames:
    """Sample frames from a video by seeking: for each target time, the first frame shown at or after it.

    Args:
        path: a local video file.
        num_frames: ``N`` frames at the centres of N equal segments of the duration.
        fps: frames at ``0, 1/F, 2/F, ...`` seconds (takes precedence over ``num_frames``).
        max_side: scale frames down so the longer side is at most this (None keeps full size).
        max_frames: with ``fps``, cap the number of frames (uniform subsample).
        skip_nonref: while decoding towards a target, do not decode non-reference frames that
            precede it (they cannot be the answer and nothing depends on them).

    Returns:
        :class:`Frames`. A target past the last frame of an intact stream gets the last frame, so
        a short clip yields fewer distinct pictures than targets; that is not an error.

    Raises:
        MediaError: an unusable file (missing, empty, not a video, undecodable codec), or a damaged
            one: a decode error, a corrupt picture, or a stream that ends before the duration its
            headers declare (truncated file). The message says how far decoding got.
        ValueError: bad ``num_frames`` / ``fps``.
    """
    return _with_timestamp_fallback(path, lambda reader: _sample(reader, num_frames, fps, max_side, max_frames),
                                    skip_nonref)


def _sample(reader: _Reader, num_frames, fps, max_side, max_frames) -> Frames:
    p, stream = reader.p, reader.stream
    try:
        codec_name = stream.codec_context.name
    except Exception as exc:
        raise MediaError(f"unsupported video codec in {p}: {exc}") from None
    avg_rate = float(stream.average_rate) if stream.average_rate else None
    start, duration = _duration(reader.handles[0], stream, p)
    targets = _targets(start, duration, num_frames, fps, max_frames)
    keyframes = _keyframe_times(stream)
    progress = _Progress(p, start, len(targets), _declared_end(reader.handles[0], stream, start, avg_rate))
    try:
        chosen = _choose(reader, targets, keyframes, start, progress)
    except av.error.FFmpegError as exc:
        if progress.last_t is None:
            raise MediaError(f"cannot decode video {p} (codec {codec_name}; corrupt or unsupported data): {exc}") from None
        raise progress.damaged(f"decode error: {exc}") from None
    rotation = _stream_rotation(stream)
    if rotation is None:
        rotation = _frame_rotation(chosen[0][0])
    images, cache = [], {}
    for frame, _ in chosen:  # a frame serving several targets is converted once
        if id(frame) not in cache:
            cache[id(frame)] = rotate_image(_to_image(frame, max_side), rotation or 0)
        images.append(cache[id(frame)])
    return Frames(
        images, [max(0.0, t - start) for _, t in chosen], duration, avg_rate, rotation or 0,
        info={"codec": codec_name, "seeks": reader.seeks, "decoded_frames": reader.decoded,
              "targets": [t - start for t in targets], "distinct_frames": len(cache),
              "timestamps": "re-sorted decode order" if reader.reordered else "pts"},
    )


def _keyframe_times(stream) -> list[float]:
    """Times of the container's keyframe index (decode times: a hint for when a seek helps, no more)."""
    try:
        return sorted(float(e.timestamp * stream.time_base) for e in stream.index_entries if e.is_keyframe)
    except Exception:
        return []


def _should_seek(target: float, held: float | None, keyframes: list[float], start: float) -> bool:
    """Seek only where it skips decoding: the keyframe before the target lies past what we hold."""
    position = held if held is not None else start
    if keyframes:
        k = bisect.bisect_right(keyframes, target) - 1
        return k >= 0 and keyframes[k] > position + _EPS
    return target - position > 1.0


def _choose(reader: _Reader, targets: list[float], keyframes: list[float], start: float,
            progress: _Progress) -> list[tuple[Any, float]]:
    """For each target, the (picture, time) of the first picture at or after it."""
    chosen: list[tuple[Any, float]] = []
    run: Iterator | None = None
    held: tuple[Any, float] | None = None  # the latest picture of the current run
    ended = False
    for target in targets:
        reader.goal = target
        if held is not None and held[1] >= target - _EPS:
            chosen.append(held)
            progress.done = len(chosen)
            continue
        if run is None or (not ended and _should_seek(target, held[1] if held else None, keyframes, start)):
            run, held = _run_covering(reader, target, start, fresh=run is None and not _should_seek(target, None, keyframes, start))
            ended = False
            progress.last_t = held[1]
        while not ended and held[1] < target - _EPS:
            nxt = next(run, None)
            if nxt is None:
                ended = True
            else:
                held = nxt
                progress.last_t = held[1]
        if ended and held[1] < target - _EPS:
            _check_intact_end(held, reader, progress)
        if held[0].is_corrupt:
            raise progress.damaged(f"the frame at {held[1] - start:.2f} s decoded with errors")
        chosen.append(held)
        progress.done = len(chosen)
    return chosen


def _run_covering(reader: _Reader, target: float, start: float, fresh: bool) -> tuple[Iterator, tuple[Any, float]]:
    """A run of pictures whose first picture is at or before ``target`` (or is the stream's first).

    A seek lands on a keyframe whose *decode* time is before the target, but its presentation time
    may be after it, and containers without an index (MPEG-TS/PS) land where they can: a run that
    starts late is discarded and the seek retried further back, down to the start of the file.
    """
    back = 0.0
    while True:
        from_start = fresh or target - back <= start or not reader.can_seek
        run = reader.run(None if from_start else target - back)
        first = next(run, None)
        if from_start or not reader.can_seek:
            if first is None:
                raise MediaError(f"no decodable frames in video {reader.p}")
            return run, first
        if first is not None and first[1] <= target + _EPS:
            return run, first
        back = 0.5 if back == 0.0 else back * 2


def decode_all_frames(path: PathLike, *, max_side: int | None = 448) -> Frames:
    """Baseline for the benchmark: decode *every* frame and convert each to a PIL image.

    Timestamps follow :func:`sample_frames` (pts, or decode-order times re-sorted); a decode error
    or a stream that stops short of its declared duration raises :class:`MediaError`.
    """
    return _with_timestamp_fallback(path, lambda reader: _decode_all(reader, max_side), skip_nonref=False)


def _decode_all(reader: "_Reader", max_side: int | None) -> Frames:
    p, container, stream = reader.p, reader.handles[0], reader.stream
    avg_rate = float(stream.average_rate) if stream.average_rate else None
    start, duration = _duration(container, stream, p)
    rotation = _stream_rotation(stream)
    images, stamps, held = [], [], None
    for held in reader.run(None):
        if rotation is None:
            rotation = _frame_rotation(held[0])
        images.append(rotate_image(_to_image(held[0], max_side), rotation or 0))
        stamps.append(held[1] - start)
    if held is None:
        raise MediaError(f"no decodable frames in video {p}")
    declared = _declared_end(container, stream, start, avg_rate)
    _check_intact_end(held, reader, _Progress(p, start, len(images), declared, len(images), held[1]))
    return Frames(images, stamps, duration, avg_rate, rotation or 0)


def extract_audio(path: PathLike, *, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at ``sample_rate`` (``av.AudioResampler``).

    Args:
        path: a local media file with an audio stream.
        sample_rate: output rate in Hz.
        max_seconds: stop after this much audio (None: all of it).

    Returns:
        A 1-D float32 array.

    Raises:
        MediaError: no audio stream, nothing decodable, or a damaged stream (a decode error, or
            audio that stops short of the duration its headers declare, as in a truncated file).
    """
    p, container = _open(path, "media file")
    try:
        if not container.streams.audio:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise MediaError(f"no audio stream in {p}; streams: {kinds}")
        stream = container.streams.audio[0]
        limit = int(max_seconds * sample_rate) if max_seconds else None
        try:
            audio = _decode_audio(container, stream, sample_rate, limit)
        except av.error.FFmpegError as exc:
            raise MediaError(f"audio damaged (decode error: {exc}) in {p}") from None
        if audio.size == 0:
            raise MediaError(f"audio stream of {p} has no decodable samples")
        if limit is None or audio.size < limit:
            _check_audio_end(container, stream, audio.size / sample_rate, p)
        return audio[:limit] if limit is not None else audio
    finally:
        container.close()


def _decode_audio(container, stream, sample_rate: int, limit: int | None) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
            total += chunks[-1].size
        if limit is not None and total >= limit:
            break
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def _check_audio_end(container, stream, decoded_s: float, p: Path) -> None:
    """Decoded audio that stops well short of the declared duration is a truncated file."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    declared = _declared_end(container, stream, start, None)
    if declared.end is None:
        return
    expected = declared.end - start
    if decoded_s < expected - max(declared.tolerance, 0.05 * expected):
        raise MediaError(
            f"audio damaged (the stream stops early): decoded {decoded_s:.2f} s of {expected:.2f} s declared "
            f"({declared.source}): {p}"
        )


__all__ = ["Frames", "sample_frames", "extract_audio", "decode_all_frames", "rotate_image", "normalize_rotation",
           "MediaError", "REORDER_WINDOW"]
