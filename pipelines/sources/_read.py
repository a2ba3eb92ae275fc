"""Reading text files with an explicit encoding, marking undecodable bytes instead of failing.

A file that decodes cleanly is read as is (one C-speed decode to validate it). A file with bytes
that are not valid in the given encoding is decoded with every bad byte run replaced by a marker
that carries its byte offset; the parsers below then find the marked cells and turn them into
problems of the cell's column ("line 17: bytes not valid utf-8 (0xff)"), so one bad byte never
rejects the whole file, never costs an item its other fields, and no character is silently replaced.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .base import ROW_ERROR, SourceError, error_column

log = logging.getLogger("mmfeat.sources")


#: A Unicode noncharacter that brackets each undecodable byte run: ``\U0010fffe<offset>:<hex>\U0010fffe``.
MARK = "\U0010fffe"
_MARK_RE = re.compile(f"{MARK}(\\d+):([0-9a-f]+){MARK}")
_HANDLER = "mmfeat-mark-undecodable"


def _mark_undecodable(err: UnicodeError) -> tuple[str, int]:
    bad = err.object[err.start:err.end]  # type: ignore[attr-defined]
    return f"{MARK}{err.start}:{bytes(bad).hex()}{MARK}", err.end  # type: ignore[attr-defined]


codecs.register_error(_HANDLER, _mark_undecodable)


@dataclass
class Decoded:
    """A text file decoded with ``encoding``; ``bad`` when some bytes did not decode (marked)."""

    path: Path
    text: str
    encoding: str
    bad: bool
    _newlines: np.ndarray | None = field(default=None, repr=False)
    _utf8: bytes | None = field(default=None, repr=False)

    def utf8(self) -> bytes:
        """The text as UTF-8 bytes (what pyarrow.csv reads); a clean UTF-8 file is not re-encoded."""
        return self._utf8 if self._utf8 is not None else self.text.encode("utf-8")

    def line_of(self, offset: int) -> int:
        """1-based line of a byte offset in the original file."""
        assert self._newlines is not None
        return int(np.searchsorted(self._newlines, offset, side="left")) + 1

    def problem(self, cell: str | None) -> str | None:
        """The undecodable-bytes reason for a cell, or None when the cell decoded cleanly."""
        if not self.bad or cell is None or MARK not in cell:
            return None
        m = _MARK_RE.search(cell)
        if m is None:
            return f"bytes not valid {self.encoding}"
        off = int(m.group(1))
        return f"line {self.line_of(off)}: bytes not valid {self.encoding} (0x{m.group(2)} at byte {off})"


def _line(problem: str) -> str:
    """The line number a :meth:`Decoded.problem` reason starts with (for skip reports)."""
    return problem.split(":", 1)[0].removeprefix("line ")


def decode_file(path: Path, encoding: str) -> Decoded:
    """Decode a whole text file; undecodable bytes are marked, never replaced silently.

    Args:
        path: the file.
        encoding: any Python codec name (``utf-8`` strips a leading byte-order mark).

    Returns:
        The decoded file.

    Raises:
        SourceError: unknown encoding, unreadable file, or a file that already contains the
            marker character (then bad bytes cannot be located).
    """
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise SourceError(f"option encoding={encoding!r} is not a known text encoding") from None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SourceError(f"{path}: cannot be read ({e})") from None
    if codec == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode(codec)
        return Decoded(path, text, encoding, False, _utf8=data if codec == "utf-8" else None)
    except UnicodeDecodeError:
        pass
    if MARK in data.decode(codec, errors="ignore"):
        raise SourceError(f"{path}: has bytes that are not valid {encoding} and contains U+10FFFE; "
                          "re-encode the file or pass the right encoding=")
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 0x0A)
    return Decoded(path, data.decode(codec, errors=_HANDLER), encoding, True, newlines)


def read_rows(dec: Decoded, delimiter: str, strip: bool = True) -> list[tuple[int, list[str], str | None]]:
    """Non-blank rows of a delimited text as ``(line, cells, problem)``.

    csv-module quoting rules; a tab-separated file is split on tabs only. Cells are whitespace-
    stripped, except the text cells (all but the first) when ``strip`` is false, so an unquoted
    ``,`` inside a title keeps its spacing. ``problem`` names undecodable bytes in the row.

    Raises:
        SourceError: the file is not parseable as CSV at all (e.g. an unterminated quote).
    """
    out: list[tuple[int, list[str], str | None]] = []
    f = io.StringIO(dec.text, newline="")
    try:
        if delimiter == "\t":
            rows = ((n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(f, 1))
        else:
            reader = csv.reader(f, delimiter=delimiter)
            rows = ((reader.line_num, r) for r in _large_fields(reader))
        for n, r in rows:
            if not any(c.strip() for c in r):
                continue
            cells = [c.strip() for c in r] if strip else [r[0].strip(), *r[1:]]
            problem = next((p for p in map(dec.problem, cells) if p), None) if dec.bad else None
            out.append((n, cells, problem))
    except csv.Error as e:
        raise SourceError(f"{dec.path}: malformed CSV ({e}); fix the quoting or pass the right encoding=") from None
    return out


def read_lines(dec: Decoded) -> pa.Array:
    """Every line of the text (blank ones too, so index k is line k+1), via pyarrow.csv.

    One column, no quoting and no delimiter the text contains: pyarrow.csv only splits lines,
    multithreaded, and keeps line numbers exact.
    """
    data = dec.utf8()
    delim = next((d for d in "\x1f\x1e\x1d\x1c\x00" if d.encode() not in data), None)
    if delim is None:
        raise SourceError(f"{dec.path}: contains control characters \\x00 and \\x1c-\\x1f; is it a text file?")
    if not data.strip():
        return pa.array([], pa.string())
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=["line"], block_size=1 << 24),
        parse_options=pacsv.ParseOptions(delimiter=delim, quote_char=False, escape_char=False,
                                         ignore_empty_lines=False, newlines_in_values=False),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
    )
    return table.column("line").combine_chunks()


@dataclass
class RowProblems:
    """Problems found while reading one source, each kept with the columns it touches.

    A problem in one field of an item (undecodable bytes in its title, a cover path leaving the
    data root, a non-numeric count) is recorded against that output column with :meth:`cell` and
    becomes the items table's ``<column>__error``: only feature sets that read the column fail
    the item, so a bad cover never costs the item its title embedding. :meth:`row` is only for
    problems that invalidate every field of the row -- a repeated item id, where no one can say
    which row is the item -- and becomes ``row_error`` (first reason per item wins). Rows without
    a readable id cannot be items: :meth:`skip` records them; undecodable cells of columns the
    source does not load touch nothing: :meth:`ignore` records them; :meth:`warn` logs both with
    their line numbers, so nothing is dropped silently.
    """

    row_errors: dict[str, str] = field(default_factory=dict)
    cell_errors: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped: dict[tuple[Path, str], list[object]] = field(default_factory=dict)
    ignored: dict[tuple[Path, str], list[object]] = field(default_factory=dict)

    def row(self, item_id: str, reason: str) -> None:
        """A problem that invalidates the whole row of ``item_id`` (every feature set fails it)."""
        self.row_errors.setdefault(item_id, reason)

    def cell(self, item_id: str, column: str, reason: str) -> None:
        """A problem with ``item_id``'s value of the output ``column`` (first reason wins)."""
        self.cell_errors.setdefault(column, {}).setdefault(item_id, reason)

    def skip(self, path: Path, reason: str, lines: list[object], unit: str = "line") -> None:
        """Record rows that cannot be items or interactions (``unit``: what ``lines`` holds)."""
        if lines:
            self.skipped.setdefault((path, f"{reason}|{unit}"), []).extend(lines)

    def ignore(self, path: Path, reason: str, lines: list[object], unit: str = "line") -> None:
        """Record bad cells of columns the source does not load: they affect no item, but are logged."""
        if lines:
            self.ignored.setdefault((path, f"{reason}|{unit}"), []).extend(lines)

    def warn(self) -> None:
        """Log one warning per (file, reason) for skipped rows and ignored cells, naming the first lines."""
        for verb, what, found in (("skipped", "row", self.skipped), ("ignored", "cell", self.ignored)):
            for (path, key), lines in found.items():
                reason, unit = key.rsplit("|", 1)
                shown = ", ".join(map(str, lines[:10])) + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")
                log.warning("%s: %s %d %s(s): %s (%s %s)", path, verb, len(lines), what, reason, unit, shown)

    def columns(self, ids: Sequence[str]) -> dict[str, pa.Array]:
        """The problem columns aligned to ``ids``: ``<column>__error`` for every column with a
        problem, then ``row_error`` when some row has one; empty when every row is fine.

        Aligned with one hash lookup per column (``index_in``), not a Python loop over the items.
        """
        if not self.cell_errors and not self.row_errors:
            return {}
        id_arr = pa.array(list(ids), pa.string())
        out = {error_column(c): _aligned(id_arr, by_id) for c, by_id in sorted(self.cell_errors.items())}
        if self.row_errors:
            out[ROW_ERROR] = _aligned(id_arr, self.row_errors)
        return out


def _aligned(ids: pa.Array, by_id: dict[str, str]) -> pa.Array:
    """``by_id[id]`` for each of ``ids`` (null where absent), vectorized."""
    keys = pa.array(list(by_id), pa.string())
    return pc.take(pa.array(list(by_id.values()), pa.string()), pc.index_in(ids, value_set=keys))


def _large_fields(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """Rows of a csv reader with the module's field limit raised to 1 GiB while they are read
    (long comment fields), and restored afterwards: a library must not change a process-wide
    setting behind its user's back."""
    old = csv.field_size_limit(1 << 30)
    try:
        yield from reader
    finally:
        csv.field_size_limit(old)
