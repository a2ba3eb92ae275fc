"""The onnx / openvino text runtimes (featurizers/text_runtimes.py) against plain torch, with the real MiniLM.

One export and one int8 quantization for the whole module, into a temporary ``$MMFEAT_CACHE``.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pytest

from mmfeat.featurizers import text_runtimes
from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.featurizers.fingerprinting import code_fingerprint
from mmfeat.featurizers.params import ParamsError, TextEmbeddingParams
from mmfeat.featurizers.registry import MissingDependency, Unavailable
from mmfeat.featurizers.text_embedding import TextEmbedder

# Made-up catalogue texts (no dataset rows): titles, genres, product blurbs, one-word and long ones.
TEXTS = [
    "The Long Voyage Home (1940). Genres: Drama, War",
    "Midnight Garden: a Comedy, Romance film from 1997",
    "Animation, Children's movie: Paper Boats (2003)",
    "Space Harbor 9 (1989). Genres: Action, Sci-Fi, Thriller",
    "a stainless steel water bottle that keeps drinks cold for 24 hours",
    "wireless noise-cancelling headphones with a 30 hour battery",
    "hand-knitted wool scarf, dark green",
    "jazz", "documentary", "Horror", "cooking", "a",
    "A detective returns to the coastal town where her brother disappeared twenty years ago, and finds "
    "that everyone she once trusted is hiding something about the night of the storm.",
    "Top 10 street food spots in Bangkok you cannot miss, from mango sticky rice to boat noodles",
    "How to repot a monstera without hurting the roots",
    "Film-Noir, Mystery movie: The Ninth Lantern (1951)",
    "The Quiet Orchard: a Drama film from 2011",
    "Western (1966). Genres: Western",
    "kids learning piano in 5 minutes a day",
    "unboxing the new phone, first impressions and camera test",
    "Musical, Romance movie: Songs for Sunday (1958)",
    "puppy meets a kitten for the first time",
    "a timelapse of the northern lights over a frozen lake",
    "Adventure, Fantasy movie: The Glass Mountain (1986)",
    "ergonomic office chair with lumbar support and breathable mesh",
    "The Last Train to Vienna (1972). Genres: Thriller, War",
    "Comedy", "sci-fi short film made on a phone",
    "Crime, Drama movie: Eleven Days in July (1999)",
    "grandma's apple pie recipe, step by step",
    "marathon training week 3: long runs and recovery",
    "Documentary (2005). Genres: Documentary",
]
RUNTIMES = [("onnx", "none"), ("openvino", "none"), ("onnx", "int8"), ("openvino", "int8")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """torch + the four exported runtimes, exported into a fresh cache; counts the exports it did."""
    old = os.environ.get("MMFEAT_CACHE")
    os.environ["MMFEAT_CACHE"] = str(tmp_path_factory.mktemp("mmfeat-cache"))
    calls: list[str] = []
    real_export, real_quantize = text_runtimes._export_fp32, text_runtimes._quantize_int8

    def export(model, target):
        calls.append("export")
        real_export(model, target)

    def quantize(source, target):
        calls.append("quantize")
        real_quantize(source, target)

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # what the CLI runs at
    text_runtimes._export_fp32, text_runtimes._quantize_int8 = export, quantize
    try:
        torch_embedder = TextEmbedder("all-MiniLM-L6-v2")
        embedders = {rq: TextEmbedder("all-MiniLM-L6-v2", runtime=rq[0], quantize=rq[1]) for rq in RUNTIMES}
        yield {"torch": torch_embedder, **embedders, "calls": calls, "records": records}
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        text_runtimes._export_fp32, text_runtimes._quantize_int8 = real_export, real_quantize
        if old is None:
            os.environ.pop("MMFEAT_CACHE", None)
        else:
            os.environ["MMFEAT_CACHE"] = old


def _vectors(embedder: TextEmbedder, texts=TEXTS) -> np.ndarray:
    results = embedder(texts)
    assert all(r.ok for r in results)
    return np.stack([r.value for r in results]).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_float32_runtimes_match_torch(built) -> None:
    ref = _vectors(built["torch"])
    for runtime in ("onnx", "openvino"):
        got = _vectors(built[(runtime, "none")])
        assert got.shape == ref.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert _cosines(got, ref).min() >= 0.999, runtime
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_int8_stays_close_to_float32(built) -> None:
    ref = _vectors(built["torch"])
    for runtime in ("onnx", "openvino"):
        cos = _cosines(_vectors(built[(runtime, "int8")]), ref)
        # bench/features/RESULTS_text_runtimes.md: min 0.991 over 10,000 MovieLens texts; one-word texts are the
        # hardest (per-batch activation ranges), so the assertion keeps a margin below that.
        assert cos.min() >= 0.975 and cos.mean() >= 0.99, (runtime, cos.min(), cos.mean())


def test_truncation_and_float16_work_the_same_on_onnx(built) -> None:
    plain = TextEmbedder("all-MiniLM-L6-v2", truncate_dim=64, dtype="float16")
    onnx = TextEmbedder("all-MiniLM-L6-v2", truncate_dim=64, dtype="float16", runtime="onnx")
    a, b = _vectors(plain, TEXTS[:8]), _vectors(onnx, TEXTS[:8])
    assert b.shape == (8, 64)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(a, b, atol=3e-3)


def test_each_runtime_and_quantization_is_its_own_version(built) -> None:
    fps = [built["torch"].fingerprint()] + [built[rq].fingerprint() for rq in RUNTIMES]
    assert len({fingerprint_hash(fp) for fp in fps}) == len(fps)
    onnx = built[("onnx", "none")].fingerprint()
    assert onnx["runtime"] == "onnx" and onnx["quantize"] == "none"
    assert set(onnx["runtime_libraries"]) == {"onnx", "onnxruntime"}
    assert "openvino" in built[("openvino", "int8")].fingerprint()["runtime_libraries"]


def test_torch_fingerprint_has_no_new_keys(built) -> None:
    """Versions made before runtimes existed must keep their featurizer fingerprint."""
    fp = built["torch"].fingerprint()
    assert list(fp) == ["kind", "backbone", "hub_id", "weights_source", "weights_sha256", "normalize",
                        "truncate_dim", "dtype", "max_seq_length"]
    explicit = TextEmbedder.from_spec({"runtime": "torch", "quantize": "none"}).fingerprint()
    assert explicit == fp
    # onnxruntime / openvino are imported by name, so they are not libraries of the torch runtime's code.
    assert not {"onnxruntime", "openvino", "onnx"} & set(code_fingerprint(TextEmbedder)["libraries"])


def test_params_refuse_options_that_would_be_ignored() -> None:
    with pytest.raises(ParamsError, match="quantize: int8 needs runtime"):
        TextEmbeddingParams.parse({"quantize": "int8"}, "text_embedding")
    with pytest.raises(ParamsError, match="openvino runs on cpu"):
        TextEmbeddingParams.parse({"runtime": "openvino", "device": "cuda"}, "text_embedding")
    with pytest.raises(ParamsError, match="runtime"):
        TextEmbeddingParams.parse({"runtime": "tensorrt"}, "text_embedding")
    ok = TextEmbeddingParams.parse({"runtime": "openvino", "quantize": "int8"}, "text_embedding")
    assert (ok.runtime, ok.quantize) == ("openvino", "int8")
    with pytest.raises(ValueError, match="quantize: int8 needs runtime"):
        TextEmbedder("all-MiniLM-L6-v2", quantize="int8")


def test_export_cache_is_reused(built, monkeypatch) -> None:
    assert built["calls"] == ["export", "quantize"]  # four runtimes, one export, one quantization
    said = [r.getMessage() for r in built["records"] if r.name == text_runtimes.__name__]
    assert len([m for m in said if m.startswith("exporting all-MiniLM-L6-v2 to ONNX (one-time, cached at")]) == 1
    assert not [r for r in built["records"] if r.name == "root"]  # quantize_dynamic's per-tensor chatter

    def boom(*_):
        raise AssertionError("exported again")

    monkeypatch.setattr(text_runtimes, "_export_fp32", boom)
    monkeypatch.setattr(text_runtimes, "_quantize_int8", boom)
    model, sha = built["torch"].model, built["torch"]._weights_hash
    fp32 = text_runtimes.onnx_file(model, "all-MiniLM-L6-v2", sha)
    int8 = text_runtimes.onnx_file(model, "all-MiniLM-L6-v2", sha, "int8")
    assert fp32.is_file() and int8.is_file() and fp32.parent == int8.parent
    assert fp32.parent.parent == text_runtimes.export_dir("all-MiniLM-L6-v2", sha).parent
    assert not [p for p in fp32.parent.iterdir() if p.name.startswith(".tmp-")]


def test_atomic_write_leaves_nothing_when_it_fails(tmp_path) -> None:
    def half(tmp):
        tmp.write_bytes(b"half a model")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        text_runtimes._atomic(tmp_path / "model.onnx", half)
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_package_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingDependency, match=r"mmfeat\[onnx\]"):
        TextEmbedder("all-MiniLM-L6-v2", runtime="onnx")
    monkeypatch.delitem(sys.modules, "onnxruntime")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependency, match=r"mmfeat\[openvino\]"):
        TextEmbedder("all-MiniLM-L6-v2", runtime="openvino")


def test_onnx_on_cuda_without_the_cuda_provider_is_unavailable(built) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(Unavailable, match="CUDAExecutionProvider"):
        TextEmbedder("all-MiniLM-L6-v2", runtime="onnx", device="cuda")
