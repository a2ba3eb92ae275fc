from __future__ import annotations

import numpy as np
import pytest

from mmfeat.featurizers.base import fingerprint_hash
from mmfeat.featurizers.registry import WeightsUnavailable, resolve_backbone
from mmfeat.featurizers.text_embedding import TextEmbedder


def test_real_minilm_semantics_and_parity_with_plain_encode(minilm: TextEmbedder) -> None:
    texts = ["a cat sleeping on a sofa", "a kitten napping on the couch", "a red sports car on the highway"]
    res = minilm(texts)
    assert all(r.ok for r in res)
    emb = np.stack([r.value for r in res])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
    plain = minilm.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(emb, plain, atol=1e-5)


def test_bad_texts_become_error_rows_and_duplicates_embed_once(minilm: TextEmbedder, monkeypatch) -> None:
    calls: list[list[str]] = []
    real = minilm.model.encode

    def spy(texts, **kw):
        calls.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(minilm.model, "encode", spy)
    res = minilm(["hello world", None, "   ", "hello world"])
    assert [r.ok for r in res] == [True, False, False, True]
    assert "empty" in res[2].error and "no text" in res[1].error
    assert calls == [["hello world"]]
    np.testing.assert_array_equal(res[0].value, res[3].value)


def test_matryoshka_truncation_and_float16() -> None:
    emb = TextEmbedder("all-MiniLM-L6-v2", truncate_dim=64, dtype="float16")
    assert emb.output.dim == 64 and emb.output.dtype == "float16"
    v = emb(["matryoshka dolls"])[0].value
    assert v.shape == (64,) and v.dtype == np.float16
    assert abs(float(np.linalg.norm(v.astype(np.float32))) - 1.0) < 1e-2
    full = TextEmbedder("all-MiniLM-L6-v2")(["matryoshka dolls"])[0].value
    head = full[:64] / np.linalg.norm(full[:64])
    np.testing.assert_allclose(v.astype(np.float32), head, atol=2e-3)
    with pytest.raises(ValueError, match="truncate_dim"):
        TextEmbedder("all-MiniLM-L6-v2", truncate_dim=1000)


def test_fingerprint_tracks_what_changes_output(minilm: TextEmbedder) -> None:
    fp = minilm.fingerprint()
    assert fp["backbone"] == "all-MiniLM-L6-v2" and len(fp["weights_sha256"]) == 64
    other = TextEmbedder("all-MiniLM-L6-v2", truncate_dim=128)
    assert fingerprint_hash(fp) != fingerprint_hash(other.fingerprint())
    assert fingerprint_hash(fp) == fingerprint_hash(TextEmbedder("all-MiniLM-L6-v2", batch_size=7).fingerprint())


def test_unknown_or_unavailable_backbones_fail_clearly(monkeypatch) -> None:
    with pytest.raises(WeightsUnavailable, match="unknown backbone"):
        resolve_backbone("not-a-model")
    with pytest.raises(WeightsUnavailable, match="sentence-transformers/does-not-exist"):
        resolve_backbone("sentence-transformers/does-not-exist")


def test_max_seq_length_of_one_embedder_does_not_leak_into_another() -> None:
    """The loaded model is shared through the model cache, so a per-featurizer setting must not be
    set on it afterwards (it used to be: the second embedder silently truncated at 32 tokens too)."""
    short = TextEmbedder("all-MiniLM-L6-v2", max_seq_length=32)
    default = TextEmbedder("all-MiniLM-L6-v2")
    assert short.fingerprint()["max_seq_length"] == 32
    assert default.fingerprint()["max_seq_length"] == 256  # MiniLM's own limit
    assert default.model is not short.model
    assert TextEmbedder("all-MiniLM-L6-v2", batch_size=3).model is default.model  # cached: loaded once
