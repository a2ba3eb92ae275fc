"""The normalized tables every adapter returns, and their content fingerprint."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

MEDIA_COLUMNS = ("image_uri", "video_uri", "audio_uri")
NUMERIC_ITEM_COLUMNS = ("likes", "views")
#: Nullable string column of whole-row problems on the items table (null = the row is fine): only
#: problems that make every field of the row untrustworthy (a repeated item id: which row is the
#: item?). The extraction engine fails such an item in every feature set (error row, stage ``read``).
ROW_ERROR = "row_error"
#: Suffix of the per-column problem columns: ``<column>__error`` (nullable string) says why that one
#: field of an item could not be read (undecodable bytes in ``title``, an ``image_uri`` leaving the
#: data root, a non-numeric ``likes``). Only feature sets that read ``<column>`` fail the item, with
#: a reason naming the column; the others keep it. Added only when some row has such a problem, so
#: a clean source keeps its columns and its fingerprint.
ERROR_SUFFIX = "__error"


def error_column(column: str) -> str:
    """The name of ``column``'s problem column (``title`` -> ``title__error``)."""
    return column + ERROR_SUFFIX


def error_columns(table: pa.Table) -> dict[str, str]:
    """``{column: its problem column}`` for every ``<column>__error`` column of ``table``."""
    return {c[: -len(ERROR_SUFFIX)]: c for c in table.column_names if c.endswith(ERROR_SUFFIX)}


class SourceError(ValueError):
    """A required source file is missing, malformed as a whole, or a path option escapes ``root``."""


@dataclass(frozen=True)
class SourceTables:
    """Normalized ``items`` and ``interactions`` tables of one source.

    ``root`` is the dataset folder; media URIs under it are hashed relative to it, so moving a
    dataset folder does not change :meth:`fingerprint`. ``files`` records which files were read.
    ``items`` may carry problem columns (strings, null = fine): ``<column>__error``, why that
    field of an item could not be read, and ``row_error``, a problem that invalidates the whole row.
    """

    items: pa.Table
    interactions: pa.Table
    kind: str = ""
    root: Path | None = None
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        required = {"item_id": pa.string()}
        if ROW_ERROR in self.items.column_names:
            required[ROW_ERROR] = pa.string()
        for column, err in error_columns(self.items).items():
            if column not in self.items.column_names:
                raise SourceError(f"items table has {err!r} but no {column!r} column for it to describe")
            required[err] = pa.string()
        _check_schema(self.items, required, "items")
        _check_schema(
            self.interactions,
            {"user_id": pa.string(), "item_id": pa.string(), "timestamp": pa.int64()},
            "interactions",
        )

    @property
    def num_items(self) -> int:
        return self.items.num_rows

    @property
    def num_users(self) -> int:
        return len(self.interactions.column("user_id").unique())

    @property
    def num_interactions(self) -> int:
        return self.interactions.num_rows

    @property
    def num_row_errors(self) -> int:
        """Items whose whole row could not be read (non-null ``row_error``)."""
        if ROW_ERROR not in self.items.column_names:
            return 0
        col = self.items.column(ROW_ERROR)
        return len(col) - col.null_count

    @property
    def column_errors(self) -> dict[str, int]:
        """``{column: items whose value of it could not be read}`` (non-null ``<column>__error``)."""
        return {column: len(self.items.column(err)) - self.items.column(err).null_count
                for column, err in error_columns(self.items).items()}

    def fingerprint(self) -> str:
        """sha256 (hex) of both tables' content, independent of row and column order.

        Rows are sorted (items by ``item_id``, interactions by user, item, timestamp and the rest
        of the columns), columns by name; media URIs under ``root`` are made relative to it; the
        result is written as one Arrow IPC stream per table and hashed. The problem columns
        (``row_error``, ``<column>__error``) are content like any other: fixing a bad row changes
        the fingerprint.
        """
        h = hashlib.sha256(b"mmfeat-source-v1\0")
        for name, table in (("items", self.items), ("interactions", self.interactions)):
            h.update(name.encode() + b"\0")
            h.update(_canonical_ipc(self._relative_media(table)))
        return h.hexdigest()

    def _relative_media(self, table: pa.Table) -> pa.Table:
        """Media URIs under ``root`` with the root prefix cut off (vectorized)."""
        if self.root is None:
            return table
        prefix = os.path.abspath(self.root).rstrip(os.sep) + os.sep
        for col in MEDIA_COLUMNS:
            if col in table.column_names:
                vals = table.column(col).combine_chunks().cast(pa.string())
                under = pc.fill_null(pc.starts_with(vals, prefix), False)
                cut = pc.utf8_slice_codeunits(vals, len(prefix))
                idx = table.column_names.index(col)
                table = table.set_column(idx, col, pc.if_else(under, cut, vals))
        return table

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": self.num_items,
            "users": self.num_users,
            "interactions": self.num_interactions,
            "row_errors": self.num_row_errors,
            "column_errors": self.column_errors,
            "item_columns": self.items.column_names,
            "interaction_columns": self.interactions.column_names,
        }


def _check_schema(table: pa.Table, required: Mapping[str, pa.DataType], what: str) -> None:
    for name, typ in required.items():
        if name not in table.column_names:
            raise SourceError(f"{what} table has no {name!r} column")
        if table.schema.field(name).type != typ:
            raise SourceError(
                f"{what}.{name} must be {typ}, got {table.schema.field(name).type}"
            )


def _canonical_ipc(table: pa.Table) -> bytes:
    table = table.replace_schema_metadata(None)
    table = table.select(sorted(table.column_names))
    keys = [c for c in ("item_id", "user_id", "timestamp") if c in table.column_names]
    if "user_id" in keys:
        keys = ["user_id", "item_id", "timestamp"]
    rest = [
        c
        for c in table.column_names
        if c not in keys and not pa.types.is_nested(table.schema.field(c).type)
    ]
    if table.num_rows:
        table = table.sort_by([(c, "ascending") for c in keys + rest])
    table = table.combine_chunks()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches():
            writer.write_batch(batch)
    return sink.getvalue()
