"""Path rules of the adapters: options stay inside ``root``; media paths are contained by real path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from mmfeat.featurizers.hashing import contained_path

from .base import SourceError

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _root(root: Path | str | None, kind: str) -> Path:
    if root is None:
        raise SourceError(f"source kind {kind!r} needs a root folder")
    root = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not root.is_dir():
        raise SourceError(f"{kind}: root folder {root} does not exist or is not a folder")
    return root


def _inside(root: Path, path: Path | str, what: str) -> Path:
    """Resolve an option ``path`` against ``root`` (lexically) and refuse anything outside it.

    Options are the user's own configuration, so an escaping one stops the source (structural);
    paths read from data files go through :func:`media_path` instead.
    """
    raw = os.path.expanduser(str(path))
    full = os.path.normpath(os.path.join(str(root), raw))
    base = os.path.normpath(str(root))
    if full != base and not full.startswith(base.rstrip(os.sep) + os.sep):
        raise SourceError(f"{what}={str(path)!r} resolves to {full}, outside the source root {base}")
    return Path(full)


def _option_path(root: Path, value: Path | str, option: str) -> Path:
    return _inside(root, value, f"option {option}")


def _check_path_options(root: Path, **options: Any) -> None:
    """Refuse path options that leave ``root`` before anything is read."""
    for name, value in options.items():
        if value is not None:
            _option_path(root, value, name)


def _required_file(root: Path, value: Path | str, option: str) -> Path:
    p = _option_path(root, value, option)
    if not p.is_file():
        raise SourceError(f"required file {p} (option {option}) does not exist")
    return p


def _first_existing(root: Path, names: Iterable[str]) -> Path | None:
    for n in names:
        p = root / n
        if p.exists():
            return p
    return None


def media_path(root: Path, value: str | None) -> tuple[str | None, str | None]:
    """One media value from a data file as ``(absolute path, problem)``; never raises.

    The path is joined to ``root`` (absolute paths kept) and checked by its real path, symlinks
    resolved, against the real root (:func:`mmfeat.featurizers.hashing.contained_path`). An escaping path
    or a remote URL gives ``(None, reason)``: the caller charges the reason to the media column
    (the item's ``<column>__error``), the file is never opened. A missing file is kept: the
    planner reports it for that one item, in the feature sets that read the column.
    """
    if value is None:
        return None, None
    t = value[len("file://"):] if value.startswith("file://") else value
    if _URL.match(t):
        return None, (f"{value!r} is a remote URL; mmfeat works offline: download the media "
                      "under the source root and store relative paths")
    full = os.path.normpath(os.path.join(str(root), os.path.expanduser(t)))
    try:
        contained_path(full, root)
    except PermissionError:
        return None, (f"{value!r} resolves to {os.path.realpath(full)}, outside the data root "
                      f"{os.path.realpath(root)}")
    return full, None


def media_dir_paths(
    root: Path, ids: Sequence[str], folder: Path | None, ext: str
) -> tuple[list[str | None], dict[str, str]]:
    """``<folder>/<id><ext>`` for every item, and ``{id: reason}`` for those whose path escapes
    the data root (a cover symlinked elsewhere, or an id like ``../x``: ids are data).

    The reasons belong to the media column the caller fills, not to the whole row.
    """
    if folder is None or not folder.is_dir():
        return [None] * len(ids), {}
    paths: list[str | None] = []
    problems: dict[str, str] = {}
    for i in ids:
        p, problem = media_path(root, os.path.relpath(folder / f"{i}{ext}", root))
        paths.append(p)
        if problem:
            problems[i] = f"item id {i!r}: {problem}"
    return paths, problems
