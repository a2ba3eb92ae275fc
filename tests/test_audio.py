"""Audio transcripts with a tiny random Whisper built offline, on tracks encoded in the test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mmfeat.featurizers.audio import AudioTranscriber, split_windows
from mmfeat.featurizers.registry import WeightsUnavailable, build_featurizer

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
            "<|notimestamps|>", "<|startofprev|>", "<|nocaptions|>"]


def tiny_whisper(tmp_path):
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab = {t: i for i, t in enumerate([chr(c) for c in range(97, 123)] + ["Ġ"])}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tok = WhisperTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), unk_token="<|endoftext|>",
                           bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tok)
    eot = vocab["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=vocab["<|startoftranscript|>"], begin_suppress_tokens=None, suppress_tokens=None,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = None  # random weights: always emit max_new_tokens
    model.generation_config.begin_suppress_tokens = None
    model.generation_config.suppress_tokens = None
    return model, processor


def _encode(path, *, video: bool, audio_seconds: float | None):
    """Write an mp4 with a 64x48 video stream and/or a 440 Hz sine AAC track."""
    import av

    with av.open(str(path), "w") as c:
        vs = None
        if video:
            vs = c.add_stream("libx264", rate=10)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = c.add_stream("aac", rate=16000) if audio_seconds else None
        if aus is not None:
            aus.layout = "mono"
        if vs is not None:
            for i in range(10):
                arr = np.full((48, 64, 3), i * 20, np.uint8)
                for p in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    c.mux(p)
            for p in vs.encode():
                c.mux(p)
        if aus is not None:
            n = int(audio_seconds * 16000)
            t = np.arange(n) / 16000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, n, 1024):
                fr = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="fltp", layout="mono")
                fr.sample_rate = 16000
                fr.pts = start
                for p in aus.encode(fr):
                    c.mux(p)
            for p in aus.encode():
                c.mux(p)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("av")
    out = {"talk": d / "talk.mp4", "silent": d / "silent.mp4", "long": d / "long.m4a"}
    _encode(out["talk"], video=True, audio_seconds=1.0)
    _encode(out["silent"], video=True, audio_seconds=None)
    _encode(out["long"], video=False, audio_seconds=35.0)  # two 30 s windows
    out["copy"] = d / "talk_copy.mp4"
    shutil.copy(out["talk"], out["copy"])
    return out


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("whisper"))


def test_transcripts_error_rows_and_windows(whisper, media):
    model, processor = whisper
    tr = AudioTranscriber.from_model(model, processor, max_new_tokens=4, batch_size=8)
    results = tr([str(media["talk"]), str(media["silent"]), str(media["copy"]), str(media["long"]), "/nope.mp4"])
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert results[1].error == "no audio stream"
    assert isinstance(results[0].value, str) and results[0].value
    assert results[2].value == results[0].value  # same bytes: transcribed once
    # talk (1 window) + long (2 windows) in one batched generate call
    assert tr.stats == {"generate_calls": 1, "windows": 3}
    assert len(results[3].value.split()) >= 1
    fp = tr.fingerprint()
    assert fp["random_init"] is True and fp["kind"] == "audio_transcript" and fp["generation"]["max_new_tokens"] == 4


def test_split_windows():
    a = np.zeros(16000 * 65, np.float32)
    assert [w.size for w in split_windows(a)] == [480000, 480000, 80000]
    assert split_windows(np.zeros(0, np.float32)) == []


def test_missing_weights_fail_clearly():
    with pytest.raises(WeightsUnavailable, match="whisper-small"):
        build_featurizer("audio_transcript", {"backbone": "whisper-small"})


def test_a_whisper_folder_loads_once_through_the_model_cache(whisper, tmp_path):
    model, processor = whisper
    folder = tmp_path / "tiny-whisper"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    a = build_featurizer("audio_transcript", {"backbone": str(folder), "device": "cpu", "max_new_tokens": 2})
    b = build_featurizer("audio_transcript", {"backbone": str(folder), "device": "cpu", "language": "en"})
    assert a.model is b.model and a.fingerprint()["weights_sha256"] == b.fingerprint()["weights_sha256"]
