"""Value conversion and table building shared by the adapters."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from ._read import MARK, Decoded, RowProblems, _line, decode_file
from .base import SourceError

SPLIT_CODES = {"train": 0, "valid": 1, "validation": 1, "val": 1, "test": 2}
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)")


def _is_int(s: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", s.strip()))


def _norm_id(v: Any) -> str | None:
    """Ids as strings; integral floats (pandas reading an int column with nulls) lose the .0."""
    if v is None:
        return None
    if isinstance(v, float):
        if v != v:  # NaN
            return None
        if v.is_integer():
            return str(int(v))
    s = str(v).strip()
    return s or None


def _id_sort_key(s: str) -> tuple:
    return (0, int(s), "") if _is_int(s) else (1, 0, s)


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v != v:
        return None
    s = str(v).strip()
    return s or None


def _strings(values: Iterable[Any]) -> pa.Array:
    return pa.array([_text(v) for v in values], pa.string())


def _number(v: Any) -> tuple[int | None, bool]:
    """``(int value, ok)``: blanks are ``(None, True)``; a non-number is ``(None, False)``."""
    if v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip()):
        return None, True
    try:
        return int(float(v)), True
    except (TypeError, ValueError, OverflowError):
        return None, False


def _ints(values: Iterable[Any], what: str, path: Path | str, lines: Sequence[int] | None = None) -> pa.Array:
    """Integers of a column that must be numeric throughout (timestamps): a non-number stops the
    source, naming the file and the first offending line (row when lines are unknown)."""
    out = []
    for k, v in enumerate(values):
        n, ok = _number(v)
        if not ok:
            where = f"line {lines[k]}" if lines is not None else f"row {k + 1}"
            raise SourceError(f"{path}: {where}: {what} value {v!r} is not a number; every row needs "
                              f"a numeric {what} (or none of them, for file order)")
        out.append(n)
    return pa.array(out, pa.int64())


def _split_codes(values: Iterable[Any], path: Path | str) -> pa.Array:
    out = []
    for k, v in enumerate(values):
        t = _text(v)
        if t is None:
            out.append(None)
            continue
        code = SPLIT_CODES.get(t.lower())
        if code is None:
            n, _ = _number(t)
            code = n if n in (0, 1, 2) else None
        if code is None:
            raise SourceError(f"{path}: row {k + 1}: split value {t!r} is not 0/1/2 or train/valid/test")
        out.append(code)
    return pa.array(out, pa.int8())


def _order_index(users: Sequence[str | None]) -> list[int]:
    """Position of each row within its user's rows (file order)."""
    import pandas as pd

    return pd.Series(list(users), dtype=object).groupby(list(users), sort=False).cumcount().tolist()


def _items_table(
    ids: Sequence[str],
    text: Mapping[str, Mapping[str, str | None]] | None = None,
    media: Mapping[str, Sequence[str | None]] | None = None,
    numeric: Mapping[str, Mapping[str, Any]] | None = None,
    problems: RowProblems | None = None,
) -> pa.Table:
    """The items table; problem columns (``<column>__error``, ``row_error``) are added only when
    some row has such a problem, so a clean source keeps its fingerprint."""
    cols: dict[str, pa.Array] = {"item_id": pa.array(list(ids), pa.string())}
    for name, by_id in (text or {}).items():
        cols[name] = _strings(by_id.get(i) for i in ids)
    for name, values in (media or {}).items():
        cols[name] = pa.array(list(values), pa.string())
    for name, by_id in (numeric or {}).items():
        cols[name] = pa.array([by_id.get(i) for i in ids], pa.int64())
    if problems is not None:
        cols.update(problems.columns(ids))
    return pa.table(cols)


def _keep_readable_ids(
    users: list[str | None], items: list[str | None], path: Path, problems: RowProblems,
    lines: Sequence[int], unit: str = "line",
) -> list[int]:
    """Indices of interaction rows with both ids; the others are reported as skipped."""
    keep = [k for k, (u, i) in enumerate(zip(users, items)) if u is not None and i is not None]
    if len(keep) != len(users):
        kept = set(keep)
        problems.skip(path, "empty or undecodable user or item id",
                      [lines[k] for k in range(len(users)) if k not in kept], unit=unit)
    return keep


def _column_mapping(spec, default: Sequence[str], path: Path, columns, option: str) -> dict[str, str]:
    if spec is None:
        mapping = {c: c for c in default}
    elif isinstance(spec, Mapping):
        mapping = dict(spec)
    else:
        mapping = {c: c for c in spec}
    missing = [c for c in mapping if c not in columns]
    if missing:
        raise SourceError(f"{path}: {option} {missing} not found (columns: {list(columns)})")
    return mapping


def _read_frame(path: Path, what: str, encoding: str, problems: RowProblems):
    """Parquet / JSON / CSV / TSV into a pandas DataFrame of strings (no NA-guessing), plus a
    per-row ``_problem`` column: ``{column: reason}`` of the row's cells with undecodable bytes
    (None for a clean row), so each problem can be charged to the column it is in.

    Rows pandas cannot split (wrong field count) have no reliable id: they are reported as
    skipped with their line numbers. A file that cannot be read at all stops the source.
    """
    import pandas as pd

    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pandas().assign(_problem=None)
        if suffix.endswith((".jsonl", ".json")):
            return pd.read_json(path, lines=suffix.endswith(".jsonl"), dtype=False).assign(_problem=None)
        dec = decode_file(path, encoding)
        sep = "\t" if suffix.endswith((".tsv", ".inter", ".item", ".txt", ".tsv.gz")) else ","
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = pd.read_csv(io.StringIO(dec.text), sep=sep, dtype=str, keep_default_na=False,
                             na_values=[""], on_bad_lines="warn")
    except SourceError:
        raise
    except Exception as e:  # pandas/pyarrow raise many types
        raise SourceError(f"{what} {path}: cannot be read ({type(e).__name__}: {e})") from None
    _report_bad_lines(caught, path, problems)
    return df.assign(_problem=_marked_cells(df, dec) if dec.bad else None)


def _marked_cells(df, dec: Decoded) -> list[dict[str, str] | None]:
    """Per row, ``{column: undecodable-bytes reason}`` of its marked cells (None for a clean row).
    Marked cells are found per column with one vectorized ``str.contains``; only hits are visited."""
    out: list[dict[str, str] | None] = [None] * len(df)
    for col in df.columns:
        hits = np.flatnonzero(df[col].str.contains(MARK, regex=False, na=False).to_numpy(dtype=bool))
        for k in hits:
            reason = dec.problem(df[col].iat[k])
            if reason:
                out[k] = {**(out[k] or {}), str(col): reason}
    return out


def cell_problems(df) -> list[dict[str, str]]:
    """The ``_problem`` column of :func:`_read_frame` as ``{column: reason}`` per row ({} = clean)."""
    return [p if isinstance(p, dict) else {} for p in df["_problem"]]


def row_problems(df, columns: Iterable[str] | None = None) -> list[str | None]:
    """Per row, the first undecodable-bytes reason among ``columns`` (all columns when None)."""
    wanted = None if columns is None else set(columns)
    return [next((r for c, r in p.items() if wanted is None or c in wanted), None) for p in cell_problems(df)]


def ignore_unloaded(df, loaded: Iterable[str], path: Path, encoding: str, problems: RowProblems) -> None:
    """Log the undecodable cells of columns the adapter does not load: they touch no item."""
    keep = set(loaded)
    by_column: dict[str, list[object]] = {}
    for p in cell_problems(df):
        for c, reason in p.items():
            if c not in keep:
                by_column.setdefault(c, []).append(_line(reason))
    for c, lines in by_column.items():
        problems.ignore(path, f"bytes not valid {encoding} in column {c!r}, which is not loaded", lines)


def _report_bad_lines(caught: list[warnings.WarningMessage], path: Path, problems: RowProblems) -> None:
    by_reason: dict[str, list[int]] = {}
    for w in caught:
        for m in _SKIPPED_LINE.finditer(str(w.message)):
            by_reason.setdefault(m.group(2).strip(), []).append(int(m.group(1)))
    for reason, lines in by_reason.items():
        problems.skip(path, f"cannot be split into the header's columns ({reason})", lines)
