"""Video frame sampling and audio extraction with PyAV.

:func:`sample_frames` takes N frames spread uniformly over a clip (or frames at a fixed rate) by
*seeking*; for each target time it returns the first frame shown at or after it. It jumps to the
keyframe before the target and decodes forward; a run whose first picture is already past the target
(an index that lists decode times, MPEG-TS landing where it can) is retried from further back. Where
the keyframe index says a seek would only re-decode the same frames, it keeps decoding forward.
Only the chosen frames are converted to RGB and scaled (``max_side``).

Timestamps: where the container stores presentation times (MP4, MKV, TS, ...) a frame's time is its
pts. Where it stores decode order (AVI, also XviD/DivX packed B-frames), decoders label pictures
with decode-order times that come out unsorted; those are re-sorted over a sliding window
(:data:`REORDER_WINDOW`). A file found unsorted while decoding is sampled again that way.

Damage is an error, never repeated frames: a decode error, a corrupt picture, or a stream that ends
short of its declared duration raises :class:`~featurizers.media.MediaError` saying how far it got
("video damaged (...): decoded 3 of 8 requested frames, stream ends at 0.84 s of 2.00 s declared").
An intact clip shorter than the targets gives its last frame for the targets past it; pixels are
never compared. :func:`extract_audio` applies the same rule to audio.

Display rotation (the display-matrix side data, or the legacy ``rotate`` tag) is applied to the
returned images. Every failure raises :class:`~featurizers.media.MediaError` with the file name.
"""

from __future__ import annotations

import bisect
import heapq
import math
from contextlib import closing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from featurizers.media import MediaError, PathLike, _check_file

try:  # PyAV is a base dependency; keep the import error readable if it is missing
    import av
except ImportError as _exc:  # pragma: no cover
    av = None
    _AV_IMPORT_ERROR = _exc


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


def _require_av() -> None:
    if av is None:  # pragma: no cover
        raise MediaError(f"PyAV is not installed ({_AV_IMPORT_ERROR}); `pip install av`")


def _open(path: PathLike, kind: str = "video"):
    _require_av()
    p = _check_file(path, kind)
    try:
        return p, av.open(str(p), mode="r")
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot open {kind} {p} (corrupt, truncated or not a media file): {exc}") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot open {kind} {p}: {type(exc).__name__}: {exc}") from None


def _video_stream(container, p: Path):
    streams = container.streams.video
    if not streams:
        others = ", ".join(f"{s.type}:{getattr(s.codec_context, 'name', '?')}" for s in container.streams) or "none"
        hint = " (audio-only file)" if container.streams.audio else ""
        raise MediaError(f"no video stream in {p}{hint}; streams: {others}")
    # prefer a real video stream over an attached picture (cover art)
    for s in streams:
        if not (s.disposition & getattr(av.stream.Disposition, "attached_pic", 0)):
            return s
    return streams[0]


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


def _duration(container, stream, p: Path) -> tuple[float, float]:
    """(start, duration) of the stream in seconds: stream header, then container, then a scan."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb and stream.duration > 0:
        return start, float(stream.duration * tb)
    if container.duration and container.duration > 0:
        cstart = container.start_time / av.time_base if container.start_time is not None else 0.0
        return start, float(container.duration / av.time_base - max(0.0, start - cstart))
    # unknown duration (raw streams, some live-captured files): scan a second handle so the
    # caller's container stays at the start (raw streams often cannot seek back)
    last_end, first = None, None
    with av.open(str(p), mode="r") as scan:
        s = next((x for x in scan.streams if x.index == stream.index), scan.streams.video[0])
        try:  # demux packets: no decoding
            for packet in scan.demux(s):
                if packet.pts is None:
                    continue
                t0 = float(packet.pts * tb)
                t1 = float((packet.pts + (packet.duration or 0)) * tb)
                first = t0 if first is None else min(first, t0)
                last_end = t1 if last_end is None else max(last_end, t1)
        except av.error.FFmpegError:
            pass
    if last_end is None:  # no timestamps on packets: a decode pass
        n, last = 0, None
        with av.open(str(p), mode="r") as scan:
            s = next((x for x in scan.streams if x.index == stream.index), scan.streams.video[0])
            try:
                for frame in scan.decode(s):
                    n += 1
                    if frame.time is not None:
                        last = frame.time
            except av.error.FFmpegError as exc:
                if n == 0:
                    raise MediaError(f"cannot decode video {p} while measuring its duration: {exc}") from None
        if n == 0:
            raise MediaError(f"video stream of {p} has no decodable frames")
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        last_end = (last + 1.0 / rate) if last is not None else n / rate
        first = 0.0
    return (first or 0.0), max(0.0, last_end - (first or 0.0))


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


#: Tolerance when comparing presentation times (seconds).
_EPS = 1e-6
#: Pictures a decoder may hold back before showing them (H.264's largest reorder depth is 16): the
#: sliding window over which decode-order timestamps are re-sorted into presentation order.
REORDER_WINDOW = 16
#: Packets read at the start of a stream to tell presentation timestamps from decode-order ones.
_PROBE_PACKETS = 48
#: Containers whose demuxer re-derives different timestamps after a seek (MPEG program streams,
#: measured): decoded forward from the start instead.
_NO_SEEK_FORMATS = frozenset({"mpeg"})
#: Containers that store each packet's presentation time (MP4 ctts, Matroska blocks, PES headers):
#: no probe; a decoder output that still comes out unsorted switches to re-sorting at run time.
_PTS_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "mpegts", "flv", "mpeg"})


class _UnsortedTimestamps(Exception):
    """Decoder output whose pts are not increasing: the container's timestamps are not presentation times."""


@dataclass
class _Declared:
    """The end of the video stream as its headers declare it (None: not declared) and how far the
    decoded stream may stop short of it before the file counts as damaged."""

    end: float | None
    tolerance: float
    source: str


def _declared_end(container, stream, start: float, rate: float | None) -> _Declared:
    """The stream's own duration (tight tolerance); else the container's, which also covers other
    streams that may legitimately outlast the video (loose tolerance); else nothing."""
    frame = 1.0 / rate if rate else 0.04
    if stream.duration and stream.time_base and stream.duration > 0:
        return _Declared(start + float(stream.duration * stream.time_base), max(0.1, 2.5 * frame), "stream header")
    if container.duration and container.duration > 0:
        cstart = container.start_time / av.time_base if container.start_time is not None else start
        end = cstart + container.duration / av.time_base
        return _Declared(end, max(0.5, 2.5 * frame, 0.1 * (end - start)), "container header")
    return _Declared(None, 0.0, "none")


def _pts_are_presentation_times(p: Path, container, stream_index: int) -> bool:
    """Whether the container stores presentation times on the packets of this stream.

    A decoder that reorders pictures (B-frames) meets them out of presentation order, so their
    packet pts go down somewhere in the first GOPs. Containers that only know decode order (AVI,
    also raw streams without timestamps) give increasing or missing pts instead; the decoder then
    labels each picture with its packet's decode-order time. Demuxes a few packets, decodes nothing.
    """
    if container.format.name in _PTS_FORMATS:
        return True
    with av.open(str(p), mode="r") as probe:
        s = next(x for x in probe.streams if x.index == stream_index)
        if not s.codec_context.has_b_frames:
            return True  # no reordering: decode order is presentation order
        prev, seen = None, 0
        try:
            for packet in probe.demux(s):
                if not packet.size:
                    continue
                if packet.pts is None:
                    return False
                if prev is not None and packet.pts < prev:
                    return True
                prev, seen = packet.pts, seen + 1
                if seen >= _PROBE_PACKETS:
                    break
        except av.error.FFmpegError:
            pass  # a damaged head: the decode that follows reports it
    return False


class _Reader:
    """Decoded pictures of one video stream, in presentation order, with their presentation times.

    ``reordered=False``: a picture's time is its pts, and pts must increase (else
    :class:`_UnsortedTimestamps`, and the caller starts over with ``reordered=True``).
    ``reordered=True``: decoders emit pictures in display order but label them with the time of the
    packet they came from; where those are decode-order times, the k-th picture shown gets the k-th
    smallest time of a sliding window of :data:`REORDER_WINDOW` pictures. Every picture is then
    decoded, since skipping one would drop its time from the window.
    """

    def __init__(self, p: Path, container, stream, reordered: bool, skip_nonref: bool) -> None:
        self.p, self.handles, self.reordered = p, [container], reordered
        self.skip_nonref = skip_nonref and not reordered
        self.index = stream.index
        self.tb: Fraction = stream.time_base
        rate = float(stream.average_rate) if stream.average_rate else None
        self.frame_step = 1.0 / rate if rate else 0.04
        self.stream = stream
        self.goal = -math.inf  # the target being decoded towards (non-reference pictures before it are skipped)
        self.can_seek = container.format.name not in _NO_SEEK_FORMATS
        self.seeks = self.decoded = 0
        self.started = False
        stream.thread_type = "AUTO"  # frame + slice threads (measured: faster than slice-only, even with seeks)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()

    def run(self, seek_to: float | None) -> Iterator[tuple[Any, float]]:
        """Pictures from the keyframe at or before ``seek_to`` (None: from the start of the file,
        on a fresh handle unless nothing was read yet)."""
        if seek_to is not None and self.can_seek:
            try:
                self.handles[-1].seek(max(0, int(seek_to / self.tb)), stream=self.stream, backward=True, any_frame=False)
                self.seeks += 1
                self.started = True
                return self._timed(self._pictures())
            except av.error.FFmpegError:
                self.can_seek = False  # unseekable input (raw stream, pipe): decode forward from the start
        if self.started:
            self.handles.append(av.open(str(self.p), mode="r"))
            self.stream = next(x for x in self.handles[-1].streams if x.index == self.index)
            self.stream.thread_type = "AUTO"
        self.started = True
        return self._timed(self._pictures())

    def _pictures(self) -> Iterator[Any]:
        """Demux + decode. Pictures that precede the goal and that no other picture references
        (``skip_frame=NONREF``, most B-frames) are not decoded at all; the choice is made per packet
        from its own pts, so every picture at or after the goal is decoded."""
        cc = self.stream.codec_context
        for packet in self.handles[-1].demux(self.stream):
            if self.skip_nonref:
                ahead = packet.pts is not None and float(packet.pts * self.tb) < self.goal - _EPS
                mode = "NONREF" if ahead else "DEFAULT"
                if cc.skip_frame != mode:
                    cc.skip_frame = mode
            for frame in packet.decode():
                self.decoded += 1
                yield frame

    def _timed(self, pictures: Iterator[Any]) -> Iterator[tuple[Any, float]]:
        return self._reordered(pictures) if self.reordered else self._trusted(pictures)

    def _trusted(self, pictures: Iterator[Any]) -> Iterator[tuple[Any, float]]:
        prev = -math.inf
        for frame in pictures:
            if frame.pts is None:
                raise _UnsortedTimestamps("a picture without pts")
            t = float(frame.pts * self.tb)
            if t <= prev:
                raise _UnsortedTimestamps(f"pts {t:.3f} s after {prev:.3f} s")
            prev = t
            yield frame, t

    def _reordered(self, pictures: Iterator[Any]) -> Iterator[tuple[Any, float]]:
        waiting: list[Any] = []  # pictures in display order, not yet given a time
        times: list[float] = []  # min-heap of the times they brought
        last = None
        for frame in pictures:
            t = float(frame.pts * self.tb) if frame.pts is not None else None
            if t is None:  # no timestamp at all: one frame after the latest one seen
                t = (max(times) if times else (last if last is not None else 0.0)) + self.frame_step
            waiting.append(frame)
            heapq.heappush(times, t)
            if len(waiting) > REORDER_WINDOW:
                last = heapq.heappop(times)
                yield waiting.pop(0), last
        while waiting:
            yield waiting.pop(0), heapq.heappop(times)


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


def _with_timestamp_fallback(path: PathLike, work: Callable[["_Reader"], Any], skip_nonref: bool) -> Any:
    """Run ``work`` on a reader of the file's video stream; where the decoder's timestamps turn out
    unsorted, run it again on a fresh handle with re-sorted timestamps. FFmpeg errors become
    :class:`MediaError`."""
    p, container = _open(path)
    try:
        stream = _video_stream(container, p)
        reordered = not _pts_are_presentation_times(p, container, stream.index)
        try:
            with closing(_Reader(p, container, stream, reordered, skip_nonref)) as reader:
                return work(reader)
        except _UnsortedTimestamps:  # decode-order timestamps met while decoding: start over, re-sorted
            fresh = av.open(str(p), mode="r")
            with closing(_Reader(p, fresh, _video_stream(fresh, p), True, skip_nonref)) as reader:
                return work(reader)
    except av.error.FFmpegError as exc:
        raise MediaError(f"cannot decode video {p}: {exc}") from None
    finally:
        container.close()


@dataclass
class _Progress:
    """Where sampling got to, for the damage message."""

    p: Path
    start: float
    requested: int
    declared: _Declared
    done: int = 0
    last_t: float | None = None

    def damaged(self, why: str) -> MediaError:
        reached = f"{self.last_t - self.start:.2f} s" if self.last_t is not None else "its start"
        of = f" of {self.declared.end - self.start:.2f} s declared" if self.declared.end is not None else ""
        return MediaError(
            f"video damaged ({why}): decoded {self.done} of {self.requested} requested frames, "
            f"stream ends at {reached}{of}: {self.p}"
        )


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


def _check_intact_end(held: tuple[Any, float], reader: _Reader, progress: _Progress) -> None:
    """The stream ran out before a target: fine where it ends where its headers say (a target in
    the last frame's display time, a short clip), damage where it stops short (a truncated file)."""
    frame, t = held
    step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else reader.frame_step
    declared = progress.declared
    if declared.end is not None and t + step < declared.end - declared.tolerance:
        raise progress.damaged(f"the stream stops early ({declared.source} duration)")


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
