"""What a featurizer's code and libraries are, as part of every fingerprint.

A store version is reused only when everything that computes its values is unchanged. Weights,
prompts and parameters are in each featurizer's own ``fingerprint()``; this module adds the rest,
by itself, so nobody has to remember to bump a version number:

- ``mmfeat``: the installed mmfeat version;
- ``source_sha256``: a hash of the source files of the featurizer's module and of every
  ``featurizers.*`` module it imports, directly or lazily inside functions (found by parsing the
  imports, so a change in ``featurizers/video.py`` invalidates video embeddings but not text ones),
  except the two that cannot change a value (the model cache, the input hashing);
- ``libraries``: the installed versions of the numerical libraries (:data:`COMPUTE_LIBRARIES`)
  among the distributions those modules import and their direct requirements
  (``sentence-transformers`` computes through ``transformers``, ``tokenizers`` and ``torch``).
  Utilities that cannot change a value (``tqdm``, ``huggingface_hub``, ``click``) are left out, so
  upgrading them does not invalidate every version.

This is the rule Hugging Face ``datasets`` applies to ``map`` (hash the function's code, reuse the
cache only on an exact match), extended to library versions because an upgrade of torch or
transformers can change float results. A comment-only edit of a featurizer module is a new
version too: hashing the bytes is the only rule that cannot miss a real change.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as metadata
import importlib.util
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

_PACKAGE = "mmfeat.featurizers"

#: Modules whose code cannot change a computed value: the model cache (which object is reused) and
#: the input hashing (hashes are keys, not values). Left out so editing them keeps every version.
_NEUTRAL = frozenset({"mmfeat.featurizers.cache", "mmfeat.featurizers.hashing"})

#: Distributions whose version can change a computed value (decoding, tokenizing, float math).
COMPUTE_LIBRARIES = frozenset({
    "torch", "numpy", "scipy", "scikit-learn", "transformers", "tokenizers", "safetensors",
    "sentence-transformers", "open-clip-torch", "timm", "accelerate", "av", "pillow", "torchvision",
    "torchaudio", "torchcodec", "vllm", "gguf", "onnxruntime", "optimum", "openvino",
})
_STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__future__"}


def mmfeat_version() -> str:
    """The installed mmfeat distribution's version (``0+unknown`` when run from a bare checkout)."""
    try:
        return metadata.version("mmfeat")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _module_file(name: str) -> Path | None:
    """The source file of a module; None for modules without one (``__main__`` of ``python -c``)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ValueError, ImportError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in a file (top level and inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if node.module == _PACKAGE:  # from mmfeat.featurizers import media
                names.update(f"{_PACKAGE}.{alias.name}" for alias in node.names)
    return names


@lru_cache(maxsize=64)
def _closure(module: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """(own modules with their sha256, third-party top-level import names) reachable from ``module``."""
    own: dict[str, str] = {}
    third: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in own:
            continue
        path = _module_file(name)
        if path is None:
            continue
        own[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        for imported in _imports(path):
            top = imported.split(".")[0]
            if imported == _PACKAGE or imported.startswith(_PACKAGE + "."):
                if imported not in _NEUTRAL and _module_file(imported) is not None:
                    todo.append(imported)
            elif top not in _STDLIB and top != "mmfeat":
                third.add(top)
    return tuple(sorted(own.items())), tuple(sorted(third))


def _requirement_names(dist: str) -> list[str]:
    reqs = metadata.requires(dist) or []
    return [re.split(r"[\s;<>=!~\[(]", r, maxsplit=1)[0] for r in reqs if "extra ==" not in r]


@lru_cache(maxsize=64)
def library_versions(import_names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the distributions providing ``import_names`` and of their direct
    requirements, restricted to :data:`COMPUTE_LIBRARIES`. Import names that no installed
    distribution provides are skipped (an optional backend that is not installed cannot have
    computed anything)."""
    providers = metadata.packages_distributions()
    dists: set[str] = set()
    for name in import_names:
        dists.update(providers.get(name, []))
    for dist in list(dists):
        dists.update(_requirement_names(dist))
    out: dict[str, str] = {}
    for dist in sorted(dists):
        name = re.sub(r"[-_.]+", "-", dist).lower()
        if name not in COMPUTE_LIBRARIES:
            continue
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def code_fingerprint(cls: type) -> dict[str, Any]:
    """The code part of a featurizer's fingerprint (see the module docstring).

    Args:
        cls: the featurizer class (its defining module is the root of the scan).

    Returns:
        ``{"mmfeat": version, "source_sha256": hex, "modules": [...], "libraries": {dist: version}}``.

    Example:
        >>> from mmfeat.featurizers.text_embedding import TextEmbedder
        >>> sorted(code_fingerprint(TextEmbedder))
        ['libraries', 'mmfeat', 'modules', 'source_sha256']
    """
    own, third = _closure(cls.__module__)
    digest = hashlib.sha256()
    for name, sha in own:
        digest.update(f"{name}\0{sha}\n".encode())
    return {
        "mmfeat": mmfeat_version(),
        "source_sha256": digest.hexdigest(),
        "modules": [name for name, _ in own],
        "libraries": library_versions(third),
    }
