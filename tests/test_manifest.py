from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from mmfeat.pipelines.manifest import ManifestError, load_manifest

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, body: dict, name: str = "m.yaml") -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(body))
    return p


BASE = {
    "name": "t",
    "data_root": "data",
    "source": {"kind": "generic", "root": "."},
    "feature_sets": [{"name": "a", "kind": "text_embedding", "input": {"text_fields": ["title"]}}],
}


@pytest.mark.parametrize("name", ["microlens", "movielens-100k"])
def test_shipped_manifests_validate(name: str) -> None:
    m = load_manifest(name)
    assert m.feature_sets and m.name == name


def test_amazon_manifest_validates_with_data_root(tmp_path: Path) -> None:
    (tmp_path / "baby" / "images").mkdir(parents=True)
    (tmp_path / "baby" / "baby_meta.csv").write_text("itemID,title\n0,x\n")
    m = load_manifest(REPO / "manifests" / "amazon-baby.yaml", data_root=str(tmp_path))
    assert m.source_root() == (tmp_path / "baby").resolve()


def test_unknown_key_names_the_field(tmp_path: Path) -> None:
    body = {**BASE, "feature_sets": [{**BASE["feature_sets"][0], "batchsize": 3}]}
    with pytest.raises(ManifestError, match=r"feature_sets\.0\.batchsize"):
        load_manifest(_write(tmp_path, body))


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"failure_threshold"):
        load_manifest(_write(tmp_path, {**BASE, "failure_threshold": "lots"}))


def test_missing_source_kind(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"source\.kind"):
        load_manifest(_write(tmp_path, {**BASE, "source": {"root": "."}}))


def test_path_escaping_data_root_rejected(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="escapes the data root"):
        load_manifest(_write(tmp_path, {**BASE, "source": {"kind": "generic", "root": "../.."}}))


def test_missing_path_rejected(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(_write(tmp_path, {**BASE, "source": {"kind": "generic", "root": "nope"}}))


def test_file_option_escaping_root_rejected(tmp_path: Path) -> None:
    body = {**BASE, "source": {"kind": "generic", "root": ".", "options": {"items_file": "../m.yaml"}}}
    with pytest.raises(ManifestError, match=r"source\.options\.items_file.*escapes"):
        load_manifest(_write(tmp_path, body))


def test_input_needs_exactly_one_kind(tmp_path: Path) -> None:
    body = {**BASE, "feature_sets": [{"name": "a", "kind": "x", "input": {"text_fields": ["t"], "media": "image_uri"}}]}
    with pytest.raises(ManifestError, match="exactly one"):
        load_manifest(_write(tmp_path, body))


def test_chain_must_reference_earlier_set(tmp_path: Path) -> None:
    body = {**BASE, "feature_sets": [{"name": "b", "kind": "text_embedding", "input": {"from": "a"}},
                                     BASE["feature_sets"][0]]}
    with pytest.raises(ManifestError, match="defined above"):
        load_manifest(_write(tmp_path, body))


def test_bad_yaml_and_unknown_name(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(p)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest("no-such-manifest")


def test_cli_check_reports_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    from mmfeat.pipelines.cli import main

    p = _write(tmp_path, {**BASE, "shard_size": 0})
    store = tmp_path / "store"
    assert main(["--store", str(store), "extract", str(p)]) == 2
    assert "shard_size" in capsys.readouterr().err
    assert not store.exists()


# ----------------------------------------------------------------------------- featurizer configs
# Kinds, params (primary and fallback) and inputs are checked at load time, before any weights.


def _with_sets(*sets: dict) -> dict:
    return {**BASE, "feature_sets": list(sets)}


_names = itertools.count()


def _set(kind: str = "text_embedding", params: dict | None = None, input: dict | None = None, **extra) -> dict:
    return {"name": f"set{next(_names)}", "kind": kind, "input": input or {"text_fields": ["title"]},
            "params": params or {}, **extra}


def _problems(tmp_path: Path, body: dict) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest(_write(tmp_path, body))
    return [line.strip() for line in str(info.value).splitlines()[1:]]


def test_unknown_param_names_field_path_and_closest_name(tmp_path: Path) -> None:
    lines = _problems(tmp_path, _with_sets(_set(params={"batchsize": 3})))
    assert lines == ["feature_sets.0.params.batchsize: unknown parameter; did you mean batch_size?"]


def test_unknown_kind_names_closest_kind(tmp_path: Path) -> None:
    lines = _problems(tmp_path, _with_sets(_set(kind="text_embeding")))
    assert lines == ["feature_sets.0.kind: unknown featurizer kind 'text_embeding'; did you mean text_embedding?"]


def test_fallback_kind_and_params_are_checked(tmp_path: Path) -> None:
    fallback = {"kind": "text_description", "params": {"max_new_token": 8}}
    body = _with_sets(_set(kind="video_description", params={"backbone": "x"}, input={"media": "video_uri"},
                           fallback={**fallback, "input": {"text_fields": ["title"]}}))
    assert _problems(tmp_path, body) == [
        "feature_sets.0.fallback.params.max_new_token: unknown parameter; did you mean max_new_tokens?"]
    body["feature_sets"][0]["fallback"] = {"kind": "text_describer"}
    assert _problems(tmp_path, body) == [
        "feature_sets.0.fallback.kind: unknown featurizer kind 'text_describer'; did you mean text_description?"]


def test_param_types_are_strict_and_required_params_named(tmp_path: Path) -> None:
    lines = _problems(tmp_path, _with_sets(_set(params={"normalize": 1, "dtype": "float64", "batch_size": "64"}),
                                           _set(kind="caption", input={"media": "image_uri"})))
    assert any(line.startswith("feature_sets.0.params.normalize: Input should be a valid boolean") for line in lines)
    assert any(line.startswith("feature_sets.0.params.dtype: Input should be 'float32' or 'float16'") for line in lines)
    assert any(line.startswith("feature_sets.0.params.batch_size: Input should be a valid integer") for line in lines)
    assert "feature_sets.1.params.backbone: required parameter is missing" in lines


def test_every_problem_is_one_line_in_manifest_order(tmp_path: Path) -> None:
    body = _with_sets(_set(params={"batchsize": 3}), _set(kind="text_embeding"))
    body["shard_size"] = 0
    lines = _problems(tmp_path, body)
    assert [line.split(":")[0] for line in lines] == [
        "feature_sets.0.params.batchsize", "feature_sets.1.kind", "shard_size"]


def test_param_given_one_level_too_high_points_into_params(tmp_path: Path) -> None:
    lines = _problems(tmp_path, _with_sets(_set(batch_size=8)))
    assert lines == ["feature_sets.0.batch_size: unknown key; did you mean params.batch_size?"]


def test_manifest_level_typo_names_closest_key(tmp_path: Path) -> None:
    assert _problems(tmp_path, {**BASE, "shard_sise": 8}) == ["shard_sise: unknown key; did you mean shard_size?"]


def test_path_is_not_a_manifest_key(tmp_path: Path) -> None:
    """``path`` used to be accepted and silently overwritten with the file's location."""
    lines = _problems(tmp_path, {**BASE, "path": "/etc"})
    assert len(lines) == 1 and lines[0].startswith("path: unknown key")
    m = load_manifest(_write(tmp_path, BASE))
    assert m.path == (tmp_path / "m.yaml").resolve()


def test_input_the_kind_cannot_read_is_an_error_at_load(tmp_path: Path) -> None:
    body = _with_sets(_set(kind="caption", params={"backbone": "x"}),
                      _set(kind="video_description", params={"backbone": "x"}, input={"media": "video_uri"},
                           fallback={"kind": "text_description"}))
    assert _problems(tmp_path, body) == [
        "feature_sets.0.input: caption reads image input, but it is given text",
        "feature_sets.1.fallback.input: text_description reads text input, but it is given video "
        "(the feature set's input; give the fallback its own input)",
    ]


@pytest.mark.parametrize("kind, params, field", [
    ("image_embedding", {"arch": "ViT-B-32"}, "arch"),  # arch only means something to open_clip
    ("caption", {"backbone": "x", "temperature": 0.7}, "temperature"),  # greedy decoding ignores it
    ("caption", {"backbone": "x", "backend": "transformers", "vllm": {"max_model_len": 8}}, "vllm"),
    ("caption", {"backbone": "x", "backend": "vllm", "allow_vllm": False}, "allow_vllm"),
    ("video_description", {"backbone": "x", "fps": 1.0, "num_frames": 4}, "num_frames"),
    ("video_embedding", {"max_frames": 16}, "max_frames"),  # only caps fps sampling
    ("video_description", {"backbone": "x", "max_frames": 16}, "max_frames"),  # only caps fps sampling
    ("image_words", {"vocabulary": ["cat"], "min_count": 3}, "min_count"),  # only for vocabulary_from
])
def test_params_that_would_be_ignored_are_errors(tmp_path: Path, kind: str, params: dict, field: str) -> None:
    media = {"caption": "image_uri", "video_description": "video_uri", "video_embedding": "video_uri"}
    body = _with_sets(_set(kind=kind, params=params, input={"media": media.get(kind, "image_uri")}))
    (line,) = _problems(tmp_path, body)
    assert line.startswith(f"feature_sets.0.params: {field} ")


def test_keys_that_used_to_be_dropped_silently_are_errors(tmp_path: Path) -> None:
    """image_embedding dropped ``kind``/``name``; captioning let ``mode`` override the kind."""
    body = _with_sets(_set(kind="image_embedding", params={"name": "x"}, input={"media": "image_uri"}),
                      _set(kind="caption", params={"backbone": "x", "mode": "video"}, input={"media": "image_uri"}))
    lines = _problems(tmp_path, body)
    assert [line.split(":")[0] for line in lines] == ["feature_sets.0.params.name", "feature_sets.1.params.mode"]


# ----------------------------------------------------------------------------- prompts


def test_prompt_typo_names_the_closest_registered_prompt(tmp_path: Path) -> None:
    body = _with_sets(_set(kind="caption", params={"backbone": "x", "prompt": "product_imgae"},
                           input={"media": "image_uri"}))
    (line,) = _problems(tmp_path, body)
    assert line.startswith("feature_sets.0.params.prompt: unknown prompt 'product_imgae'; did you mean product_image?")


def test_custom_prompt_text_has_its_own_key(tmp_path: Path) -> None:
    def body(params: dict) -> dict:
        return _with_sets(_set(kind="text_description", params=params))

    (line,) = _problems(tmp_path, body({"prompt": "Describe {title} briefly"}))
    assert "not a registered prompt name" in line and "prompt_text" in line
    (line,) = _problems(tmp_path, body({"prompt": "text_only_item", "prompt_text": "Describe {title}"}))
    assert line == "feature_sets.0.params: give prompt (a registered name) or prompt_text (custom text), not both"
    (line,) = _problems(tmp_path, body({"prompt_text": "  "}))
    assert line.startswith("feature_sets.0.params.prompt_text: empty prompt text")
    assert load_manifest(_write(tmp_path, body({"prompt_text": "Describe {title}"}))).feature_sets[0].params


def test_fingerprint_records_full_prompt_text() -> None:
    from mmfeat.featurizers.params import CaptionParams, TextDescriptionParams, VideoDescriptionParams
    from mmfeat.featurizers.prompts import PROMPTS

    custom = CaptionParams.parse({"backbone": "x", "prompt_text": " Describe {title}. "}, "caption")
    assert custom.resolved_prompt().fingerprint() == {"name": "custom", "version": 1, "text": "Describe {title}."}
    named = VideoDescriptionParams.parse({"backbone": "x", "prompt": "product_image"}, "video_description")
    assert named.resolved_prompt().fingerprint()["text"] == PROMPTS["product_image"].text
    assert VideoDescriptionParams.parse({"backbone": "x"}, "x").resolved_prompt().name == "video_summary"
    assert TextDescriptionParams.parse({}, "x").resolved_prompt().name == "text_only_item"


def test_python_api_prompt_typo_is_an_error_not_a_one_word_prompt() -> None:
    from mmfeat.featurizers.prompts import resolve_prompt

    with pytest.raises(ValueError, match="did you mean video_summary"):
        resolve_prompt("video_sumary", "product_image")
    assert resolve_prompt("What is this? {title}", "product_image").name == "custom"


# ----------------------------------------------------------------------------- registry


def test_build_featurizer_rejects_bad_params_before_loading_weights() -> None:
    from mmfeat.featurizers.params import ParamsError
    from mmfeat.featurizers.registry import build_featurizer

    with pytest.raises(ParamsError,
                       match=r"text_embedding params\.batchsize: unknown parameter; did you mean batch_size"):
        build_featurizer("text_embedding", {"backbone": "no-such-model", "batchsize": 3})
    with pytest.raises(ValueError, match="did you mean text_embedding"):
        build_featurizer("text_embeding", {})


def test_missing_extra_is_missing_dependency_naming_the_pip_extra(monkeypatch) -> None:
    import sys

    from mmfeat.featurizers.image_embedding import ImageEmbedder
    from mmfeat.featurizers.registry import (
        MissingDependency, Unavailable, WeightsUnavailable, build_featurizer, require_extra,
    )

    assert issubclass(WeightsUnavailable, Unavailable) and issubclass(MissingDependency, Unavailable)
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip -> ImportError
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(MissingDependency, match=r"pip install 'mmfeat\[clip\]'"):
        ImageEmbedder.from_spec({"backbone": "/no/such/weights", "backend": "open_clip", "arch": "ViT-B-32"})
    with pytest.raises(MissingDependency, match=r"pip install 'mmfeat\[gpu\]'"):
        build_featurizer("caption", {"backbone": "/no/such/vlm", "backend": "vllm"})
    with pytest.raises(MissingDependency) as info:
        require_extra("open_clip", "clip", "the open_clip backend")
    assert isinstance(info.value, ImportError) and "the open_clip backend" in str(info.value)


def test_schema_defaults_are_the_constructor_defaults() -> None:
    """The params schema is where manifest defaults live; the Python constructors must agree with it."""
    import dataclasses
    import inspect

    from mmfeat.featurizers.captioning import Captioner, GenerationConfig
    from mmfeat.featurizers.image_embedding import ImageEmbedder
    from mmfeat.featurizers.registry import FEATURIZER_KINDS, featurizer_kind

    featurizer_kind("text_embedding")  # registers the built-in kinds
    gen = {f.name: f.default for f in dataclasses.fields(GenerationConfig)}
    extra = {"caption": [Captioner.__init__], "video_description": [Captioner.__init__],
             "video_embedding": [ImageEmbedder.__init__], "image_words": [ImageEmbedder.__init__]}
    wraps_a_model = {("audio_transcript", "backbone")}  # its __init__'s backbone is a lineage label
    checked = 0
    for kind, entry in FEATURIZER_KINDS.items():
        defaults = dict(gen) if kind in ("caption", "video_description") else {}
        for fn in [entry.cls.__init__, *extra.get(kind, [])]:
            for name, p in inspect.signature(fn).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    defaults.setdefault(name, p.default)
        for name, field in entry.params.model_fields.items():
            if name in defaults and not field.is_required() and (kind, name) not in wraps_a_model:
                assert field.get_default(call_default_factory=True) == defaults[name], (kind, name)
                checked += 1
    assert checked > 40


def test_manifest_check_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = ("import sys; from mmfeat.pipelines.manifest import load_manifest; load_manifest('microlens'); "
            "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_cli_manifest_check_prints_one_line_per_problem(tmp_path: Path, capsys) -> None:
    from mmfeat.pipelines.cli import main

    p = _write(tmp_path, _with_sets(_set(params={"batchsize": 3})))
    assert main(["manifest", "check", str(p)]) == 2
    assert "feature_sets.0.params.batchsize: unknown parameter; did you mean batch_size?" in capsys.readouterr().err


def test_video_description_at_a_fixed_rate_is_capped(monkeypatch) -> None:
    """fps sampling of a long clip must not send an unbounded number of frames into a VLM."""
    from mmfeat.featurizers import video
    from mmfeat.featurizers.captioning import Captioner
    from mmfeat.featurizers.params import VideoDescriptionParams

    assert VideoDescriptionParams.parse({"backbone": "x", "fps": 2.0}, "video_description").max_frames == 32
    seen = {}

    def fake_sample(path, **kw):
        seen.update(kw)
        raise video.MediaError("stop here")

    monkeypatch.setattr(video, "sample_frames", fake_sample)
    cap = Captioner.__new__(Captioner)
    cap.mode, cap.num_frames, cap.fps, cap.max_side, cap.max_frames = "video", 8, 2.0, 448, 32
    with pytest.raises(video.MediaError):
        cap._request("clip.mp4", "describe")
    assert seen["max_frames"] == 32 and seen["fps"] == 2.0


# ----------------------------------------------------------------------------- backbones (checked before a run)


def _backbone_lines(tmp_path: Path, *sets: dict, feature_sets: list[str] | None = None) -> list[str]:
    from mmfeat.pipelines.manifest import backbone_problems

    return backbone_problems(load_manifest(_write(tmp_path, _with_sets(*sets))), feature_sets)


def test_a_mistyped_backbone_names_the_closest_registered_one_even_when_optional(tmp_path: Path) -> None:
    lines = _backbone_lines(tmp_path, _set(params={"backbone": "all-MiniLM-L6-v3"}),
                            _set(params={"backbone": "all-mpnet-base-v3"}, optional=True))
    assert [line.split(";")[0] for line in lines] == [
        "feature_sets.0.params.backbone: unknown backbone 'all-MiniLM-L6-v3'",
        "feature_sets.1.params.backbone: unknown backbone 'all-mpnet-base-v3'"]
    assert "did you mean all-MiniLM-L6-v2?" in lines[0] and "did you mean all-mpnet-base-v2?" in lines[1]


def test_registered_names_and_existing_paths_are_fine(tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    assert _backbone_lines(tmp_path, _set(), _set(params={"backbone": "all-mpnet-base-v2"}),
                           _set(params={"backbone": str(folder)}),
                           _set(kind="caption", params={"backbone": "Qwen2-VL-2B-Instruct"},
                                input={"media": "image_uri"})) == []


def test_weights_missing_here_are_a_problem_only_where_the_run_needs_them(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub = {"kind": "image_embedding", "input": {"media": "image_uri"}}
    fallback = {"kind": "text_embedding", "input": {"text_fields": ["title"]}}
    sets = [_set(**hub, params={"backbone": "org/clip-model"}),                             # required: a problem
            _set(**hub, params={"backbone": "org/clip-model"}, optional=True),              # skipped when missing
            _set(**hub, params={"backbone": "org/clip-model"}, fallback=fallback),          # the fallback runs
            _set(params={"backbone": str(tmp_path / "nowhere")}),                           # required: a problem
            _set(params={"backbone": str(tmp_path / "nowhere")}, optional=True)]
    lines = _backbone_lines(tmp_path, *sets)
    assert [line.split(":")[0] for line in lines] == ["feature_sets.0.params.backbone", "feature_sets.3.params.backbone"]
    assert "org/clip-model is not in the Hugging Face cache" in lines[0] and "does not exist" in lines[1]
    assert _backbone_lines(tmp_path, *sets[1:3], feature_sets=None) == []
    assert _backbone_lines(tmp_path, *sets, feature_sets=[sets[1]["name"]]) == []  # only the sets that run
    (tmp_path / "hf" / "models--org--clip-model" / "snapshots" / "abc").mkdir(parents=True)  # now in the cache
    assert [line.split(":")[0] for line in _backbone_lines(tmp_path, *sets)] == ["feature_sets.3.params.backbone"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: a hub id may be downloaded by the run
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    assert [line.split(":")[0] for line in _backbone_lines(tmp_path, *sets)] == ["feature_sets.3.params.backbone"]


def test_the_runtime_error_for_an_unknown_backbone_suggests_the_closest_name() -> None:
    from mmfeat.featurizers.registry import WeightsUnavailable, resolve_backbone

    with pytest.raises(WeightsUnavailable, match="unknown backbone 'all-MiniLM-L6-v3'; did you mean all-MiniLM-L6-v2"):
        resolve_backbone("all-MiniLM-L6-v3")


def test_a_feature_set_typo_suggests_the_real_name() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest("microlens").feature_set("title_minlm")
    assert str(info.value) == "manifest 'microlens' has no feature set 'title_minlm'; did you mean title_minilm?"
