"""Low-level video decoding for :mod:`mmfeat.featurizers.video`: opening a file, reading its pictures in
presentation order with their times, and telling an intact stream from a damaged one.

Why a module of its own: :mod:`mmfeat.featurizers.video` decides *which* frames to return (targets, when to
seek, conversion to images); this module owns *how* pictures come out of the container and when the
file counts as broken, so the sampling strategy can change without touching the timestamp rules.

Timestamps: where the container stores presentation times (MP4, MKV, TS, ...) a frame's time is its
pts. Where it stores decode order (AVI, also XviD/DivX packed B-frames), decoders label pictures
with decode-order times that come out unsorted; those are re-sorted over a sliding window
(:data:`REORDER_WINDOW`). The order is probed up front (:func:`_pts_are_presentation_times`), and a
file found unsorted while decoding is read again that way (:func:`_with_timestamp_fallback`).

Damage: :class:`_Declared` is the end of the stream as its headers declare it; :class:`_Progress`
builds the "video damaged (...)" :class:`~mmfeat.featurizers.media.MediaError`, and
:func:`_check_intact_end` raises it where the stream stops short of its declared end.
"""

from __future__ import annotations

import heapq
import math
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

from mmfeat.featurizers.media import MediaError, PathLike, _check_file

try:  # PyAV is a base dependency; keep the import error readable if it is missing
    import av
except ImportError as _exc:  # pragma: no cover
    av = None
    _AV_IMPORT_ERROR = _exc


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


def _check_intact_end(held: tuple[Any, float], reader: _Reader, progress: _Progress) -> None:
    """The stream ran out before a target: fine where it ends where its headers say (a target in
    the last frame's display time, a short clip), damage where it stops short (a truncated file)."""
    frame, t = held
    step = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else reader.frame_step
    declared = progress.declared
    if declared.end is not None and t + step < declared.end - declared.tolerance:
        raise progress.damaged(f"the stream stops early ({declared.source} duration)")
