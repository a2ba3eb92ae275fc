"""Captioning / video description with a tiny LLaVA built from configs (no download), and the vLLM
backend against a fake ``vllm`` module."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmfeat.featurizers.captioning import (
    Captioner,
    GenerationConfig,
    Request,
    choose_backend,
    tile_frames,
)
from mmfeat.featurizers.registry import WeightsUnavailable, build_featurizer

# The builder lives in the package so bench/ never imports tests/; re-exported under the old names.
from mmfeat.featurizers.tiny_models import LLAVA_CHAT_TEMPLATE as CHAT_TEMPLATE  # noqa: E402,F401
from mmfeat.featurizers.tiny_models import LLAVA_WORDS as WORDS  # noqa: E402,F401
from mmfeat.featurizers.tiny_models import tiny_llava  # noqa: E402,F401


@pytest.fixture(scope="module")
def llava():
    return tiny_llava()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    from skimage import data

    d = tmp_path_factory.mktemp("imgs")
    out = {}
    for name in ("astronaut", "coffee", "chelsea"):
        arr = getattr(data, name)()
        out[name] = d / f"{name}.jpg"
        Image.fromarray(arr).resize((96, 64)).save(out[name], quality=90)
    out["copy"] = d / "astronaut_copy.jpg"  # same bytes, other name
    shutil.copy(out["astronaut"], out["copy"])
    out["corrupt"] = d / "corrupt.jpg"
    out["corrupt"].write_bytes(out["coffee"].read_bytes()[:300])  # truncated JPEG
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2-second 64x48 H.264 clip with moving colour bars, encoded here with PyAV."""
    import av

    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(20):
            arr = np.zeros((48, 64, 3), np.uint8)
            arr[:, (i * 3) % 64 :, 0] = 255
            arr[: (i * 2) % 48, :, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _count_generate(monkeypatch, captioner) -> list[int]:
    sizes: list[int] = []
    real = captioner.backend.model.generate

    def spy(*args, **kwargs):
        sizes.append(int(kwargs["input_ids"].shape[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(captioner.backend.model, "generate", spy)
    return sizes


def test_batched_captions_error_row_and_dedup(llava, images, monkeypatch):
    model, processor = llava
    cap = Captioner.from_model(model, processor, max_new_tokens=6, batch_size=8)
    sizes = _count_generate(monkeypatch, cap)
    inputs = [str(images["astronaut"]), str(images["corrupt"]), str(images["coffee"]), str(images["copy"]),
              str(images["chelsea"]), "/no/such/file.jpg"]
    results = cap(inputs)
    assert len(results) == 6
    assert [r.ok for r in results] == [True, False, True, True, True, False]
    assert "corrupt" in results[1].error or "truncated" in results[1].error
    assert "not found" in results[5].error
    for r in (results[0], results[2], results[4]):
        assert isinstance(r.value, str) and r.value and all(t.startswith("w") or t in ("USER:", "ASSISTANT:", "<unk>") for t in r.value.split())
    # identical files -> generated once, the copy gets the same text
    assert results[3].value == results[0].value
    assert sizes == [3]  # one batched generate: astronaut, coffee, chelsea (copy deduplicated)
    assert cap.stats["deduplicated"] == 1
    # batch of 1 gives the same greedy text as the padded batch (left padding works)
    single = Captioner.from_model(model, processor, max_new_tokens=6, batch_size=1)
    assert [r.value for r in single([str(images["coffee"]), str(images["chelsea"])])] == [results[2].value, results[4].value]


def test_batch_failure_is_isolated(llava, images, monkeypatch):
    model, processor = llava
    cap = Captioner.from_model(model, processor, max_new_tokens=4, batch_size=4)
    real = cap.backend.generate

    def flaky(requests, gen):
        if any(r.images[0].size == (96, 64) and np.asarray(r.images[0])[0, 0].tolist() == bad_pixel for r in requests):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(requests, gen)

    bad_pixel = np.asarray(Image.open(images["coffee"]).convert("RGB"))[0, 0].tolist()
    monkeypatch.setattr(cap.backend, "generate", flaky)
    results = cap([str(images["astronaut"]), str(images["coffee"]), str(images["chelsea"])])
    assert [r.ok for r in results] == [True, False, True]
    assert "generation failed" in results[1].error and "simulated" in results[1].error
    assert cap.stats["retried_batches"] == 1


def test_fingerprint(llava):
    model, processor = llava
    base = Captioner.from_model(model, processor, max_new_tokens=8)
    fp = base.fingerprint()
    assert fp["random_init"] is True and fp["kind"] == "caption" and fp["saw_pixels"] is True
    assert "Describe the product" in fp["prompt"]["text"] and fp["prompt"]["name"] == "product_image"
    assert fp["generation"]["max_new_tokens"] == 8 and fp["dtype"] == "float32"
    other_tokens = Captioner.from_model(model, processor, max_new_tokens=9).fingerprint()
    other_prompt = Captioner.from_model(model, processor, max_new_tokens=8, prompt="What is this w1?").fingerprint()
    assert other_tokens != fp and other_prompt != fp
    assert other_prompt["prompt"] == {"name": "custom", "version": 1, "text": "What is this w1?"}
    from mmfeat.featurizers.base import fingerprint_hash

    assert len({fingerprint_hash(fp), fingerprint_hash(other_tokens), fingerprint_hash(other_prompt)}) == 3


@pytest.mark.parametrize("video_input", ["grid", "frames"])
def test_video_description(llava, clip, tmp_path, video_input):
    model, processor = llava
    desc = Captioner.from_model(model, processor, mode="video", num_frames=4, max_side=32, video_input=video_input,
                                max_new_tokens=5)
    assert desc.input_kind == "video" and desc.kind == "video_description"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    results = desc([str(clip), str(bad)])
    assert results[0].ok and results[0].value, results[0].error
    assert not results[1].ok
    fp = desc.fingerprint()
    assert fp["video"]["num_frames"] == 4 and fp["video"]["video_input"] == video_input
    assert "Describe what you see" in fp["prompt"]["text"]


def test_tile_frames():
    frames = [Image.new("RGB", (40, 30), (i * 30, 0, 0)) for i in range(5)]
    grid = tile_frames(frames, max_side=120)
    assert grid.size == (120, 60)  # 3 cols x 2 rows of 40x30
    assert grid.getpixel((45, 5)) == (30, 0, 0)


def test_from_spec_local_folder_and_missing_weights(llava, images, tmp_path):
    model, processor = llava
    folder = tmp_path / "tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    cap = build_featurizer("caption", {"backbone": str(folder), "backend": "auto", "max_new_tokens": 3,
                                       "batch_size": 2})
    fp = cap.fingerprint()
    assert fp["random_init"] is False and fp["backend"] == "transformers" and len(fp["weights_sha256"]) == 64
    assert cap([str(images["coffee"])])[0].ok
    vid = build_featurizer("video_description", {"backbone": str(folder), "backend": "transformers", "num_frames": 2})
    assert vid.input_kind == "video" and vid.fingerprint()["video"]["video_input"] == "grid"
    with pytest.raises(WeightsUnavailable, match="Qwen2-VL-2B-Instruct"):
        build_featurizer("caption", {"backbone": "Qwen2-VL-2B-Instruct"})
    with pytest.raises(WeightsUnavailable):
        build_featurizer("caption", {"backbone": "no-such-vlm"})


# --------------------------------------------------------------------------- vLLM with a fake module


class _FakeLLM:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple[list, object]] = []

    def generate(self, requests, sampling_params, use_tqdm=True):
        self.calls.append((requests, sampling_params))
        outs = []
        for i, _ in enumerate(requests):
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"  caption {i} \n")]))
        return outs


class _FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM
    mod.SamplingParams = _FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_vllm_backend_requests_and_parsing(fake_vllm, llava, images, tmp_path, monkeypatch):
    model, processor = llava
    folder = tmp_path / "tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    cap = build_featurizer("caption", {"backbone": str(folder), "backend": "vllm", "max_new_tokens": 33,
                                       "seed": 7, "batch_size": 8, "vllm": {"max_model_len": 1024}})
    llm = cap.backend.llm
    assert isinstance(llm, _FakeLLM) and llm.kwargs["model"] == str(folder) and llm.kwargs["max_model_len"] == 1024
    results = cap([str(images["astronaut"]), str(images["corrupt"]), str(images["coffee"])])
    assert [r.value for r in results] == ["caption 0", None, "caption 1"]
    assert not results[1].ok
    (requests, sp), = llm.calls
    assert len(requests) == 2
    assert requests[0]["prompt"].startswith("USER: <image> You are looking at the product image")
    assert requests[0]["prompt"].endswith("ASSISTANT:")
    img = requests[0]["multi_modal_data"]["image"]
    assert isinstance(img, Image.Image) and img.size == (96, 64)
    assert sp.kwargs == {"max_tokens": 33, "temperature": 0.0, "top_p": 1.0, "seed": 7}
    assert cap.fingerprint()["backend"] == "vllm"


def test_backend_auto_choice(fake_vllm, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("auto") == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_backend("auto") == "vllm"
    assert choose_backend("auto", allow_vllm=False) == "transformers"
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable
    assert choose_backend("auto") == "transformers"
    with pytest.raises(ValueError):
        choose_backend("onnx")


def test_generation_config_validation():
    with pytest.raises(ValueError):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError):
        GenerationConfig(do_sample=True, temperature=0.0)
    assert Request(text="x").images == []


# --------------------------------------------------------------------------- package shape


def test_vllm_backend_and_captioning_do_not_import_each_other():
    """The shared generation types live in generation.py: neither backend module imports the other
    (checked on the source, lazy imports inside functions included)."""
    from pathlib import Path

    import mmfeat.featurizers.captioning as captioning
    import mmfeat.featurizers.vllm_backend as vllm_backend
    from mmfeat.featurizers.fingerprinting import _imports

    assert "mmfeat.featurizers.captioning" not in _imports(Path(vllm_backend.__file__))
    assert "mmfeat.featurizers.generation" in _imports(Path(vllm_backend.__file__))
    assert "mmfeat.featurizers.generation" in _imports(Path(captioning.__file__))
    from mmfeat.featurizers import generation

    assert captioning.GenerationConfig is generation.GenerationConfig  # old import path still works


def test_caption_and_video_description_share_one_loaded_model(llava, tmp_path):
    model, processor = llava
    folder = tmp_path / "shared-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    cap = build_featurizer("caption", {"backbone": str(folder), "backend": "transformers", "device": "cpu"})
    vid = build_featurizer("video_description", {"backbone": str(folder), "backend": "transformers", "device": "cpu"})
    assert vid.backend is cap.backend
    other_dtype = build_featurizer("caption", {"backbone": str(folder), "backend": "transformers", "device": "cpu",
                                               "dtype": "bfloat16"})
    assert other_dtype.backend is not cap.backend and other_dtype.fingerprint()["dtype"] == "bfloat16"
