"""MicroLens (official layout): pair files parsed with pyarrow.csv + Arrow compute, item files per row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._paths import _check_path_options, _first_existing, _option_path, _required_file, _root, media_dir_paths
from ._read import MARK, Decoded, RowProblems, decode_file, read_lines, read_rows
from ._tables import _id_sort_key, _is_int, _items_table, _order_index
from .base import SourceError, SourceTables

_ITEM_HEADER_NAMES = {"item", "item_id", "itemid", "video", "video_id", "videoid", "id", "iid"}
_USER_HEADER_NAMES = {"user", "user_id", "userid", "uid"}
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"

Row = tuple[int, list[str], "str | None"]


def _is_header(first: str, second: str | None) -> bool:
    """MicroLens ids are integers, so a header name or a non-integer before an integer is a header."""
    first = first.strip().strip('"').lower()
    if first in _ITEM_HEADER_NAMES | _USER_HEADER_NAMES:
        return True
    return not _is_int(first) and second is not None and _is_int(second.strip().strip('"'))


def _drop_header(rows: list[Row]) -> list[Row]:
    if not rows:
        return rows
    second = rows[1][1][0] if len(rows) > 1 else None
    return rows[1:] if _is_header(rows[0][1][0], second) else rows


# ------------------------------------------------------------------------------- pair files


def _nonblank(dec: Decoded) -> tuple[pa.Array, np.ndarray]:
    """Trimmed non-blank lines of a pair file and their 1-based line numbers."""
    lines = pc.utf8_trim_whitespace(read_lines(dec))
    keep = pc.greater(pc.binary_length(lines), 0)
    numbers = np.flatnonzero(keep.to_numpy(zero_copy_only=False)) + 1
    return lines.filter(keep), numbers


def _drop_header_line(lines: pa.Array, numbers: np.ndarray, split) -> tuple[pa.Array, np.ndarray]:
    if len(lines) == 0:
        return lines, numbers
    first = split(lines.slice(0, 1))[0].as_py()[0]
    second = split(lines.slice(1, 1))[0].as_py()[0] if len(lines) > 1 else None
    if _is_header(first, second):
        return lines.slice(1), numbers[1:]
    return lines, numbers


def _field(lists: pa.Array, k: int, quoted: bool = False) -> pa.Array:
    """Field ``k`` of each row (every row has more than ``k`` fields), trimmed (and unquoted)."""
    vals = pc.utf8_trim_whitespace(pc.list_element(lists, k))
    return pc.utf8_trim(vals, '"') if quoted else vals


def _skip_masked(mask: pa.Array, numbers: np.ndarray, path: Path, reason: str, problems: RowProblems) -> pa.Array:
    """Report the rows under ``mask`` as skipped; returns the keep-mask."""
    m = mask.to_numpy(zero_copy_only=False)
    problems.skip(path, reason, numbers[m].tolist())
    return pc.invert(mask)


def _filter(keep: pa.Array, numbers: np.ndarray, *arrays: pa.Array) -> tuple:
    """``numbers`` and every array filtered by ``keep``."""
    return (numbers[keep.to_numpy(zero_copy_only=False)], *(a.filter(keep) for a in arrays))


def _pairs_csv(dec: Decoded, problems: RowProblems) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``user,item[,timestamp]`` rows. One ordering per file: every row has a numeric timestamp,
    or none has one (then the order index within the user's rows is the timestamp). Rows with
    no user or item id (or undecodable bytes) are skipped and reported with their lines.

    Raises:
        SourceError: some rows have a timestamp and others do not, or one is not a number
            (names the file and the first offending line).
    """
    path = dec.path
    split = lambda a: pc.split_pattern(a, ",")  # noqa: E731
    lines, numbers = _drop_header_line(*_nonblank(dec), split)
    if dec.bad:
        keep = _skip_masked(pc.match_substring(lines, MARK), numbers, path, f"bytes not valid {dec.encoding}", problems)
        numbers, lines = _filter(keep, numbers, lines)
    fields = split(lines)
    keep = _skip_masked(pc.less(pc.list_value_length(fields), 2), numbers, path,
                        "no item id (expected user,item,timestamp)", problems)
    numbers, fields = _filter(keep, numbers, fields)
    quoted = '"' in dec.text
    users, items = _field(fields, 0, quoted), _field(fields, 1, quoted)
    keep = _skip_masked(pc.or_(pc.equal(pc.binary_length(users), 0), pc.equal(pc.binary_length(items), 0)),
                        numbers, path, "empty user or item id", problems)
    numbers, fields, users, items = _filter(keep, numbers, fields, users, items)
    has_ts = pc.greater(pc.list_value_length(fields), 2).to_numpy(zero_copy_only=False)
    ts = None
    if has_ts.any():
        ts = pc.if_else(pa.array(has_ts), fields, pa.scalar(["", "", ""], fields.type)) if not has_ts.all() else fields
        ts = _field(ts, 2, quoted)
        has_ts = pc.greater(pc.binary_length(ts), 0).to_numpy(zero_copy_only=False)
    return users, items, _timestamps(ts, has_ts, users, numbers, path)


def _timestamps(ts: pa.Array | None, present: np.ndarray, users: pa.Array, numbers: np.ndarray, path: Path) -> pa.Array:
    if ts is None or not present.any():
        return pa.array(_order_index(users.to_pylist()), pa.int64())
    if not present.all():
        with_ts, without = numbers[present][0], numbers[~present][0]
        raise SourceError(
            f"{path}: line {without} has no timestamp but line {with_ts} has one; one ordering per "
            "file: give every row a timestamp, or none (then file order is used)"
        )
    try:
        return pc.cast(ts, pa.int64())
    except pa.ArrowInvalid:
        pass
    numeric = pc.match_substring_regex(ts, _NUMBER).to_numpy(zero_copy_only=False)
    if not numeric.all():
        k = int(np.flatnonzero(~numeric)[0])
        raise SourceError(f"{path}: line {numbers[k]}: timestamp {ts[k].as_py()!r} is not a number; "
                          "every row needs a numeric timestamp (or none, for file order)")
    return pc.cast(pc.floor(pc.cast(ts, pa.float64())), pa.int64())  # fractional or exponent notation


def _pairs_tsv(dec: Decoded, problems: RowProblems) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``user<TAB>item item ...`` lines in time order, exploded with Arrow; timestamp = position
    in the user's line. A line with no items, or an undecodable user, is skipped and reported;
    an undecodable item token is skipped (its neighbours keep their positions)."""
    path = dec.path

    def split(a: pa.Array) -> pa.Array:
        return pc.if_else(pc.match_substring(a, "\t"), pc.split_pattern(a, "\t", max_splits=1),
                          pc.utf8_split_whitespace(a, max_splits=1))

    lines, numbers = _drop_header_line(*_nonblank(dec), split)
    parts = split(lines)
    keep = _skip_masked(pc.less(pc.list_value_length(parts), 2), numbers, path,
                        "no items (expected 'user<TAB>item item ...')", problems)
    numbers, parts = _filter(keep, numbers, parts)
    users, rest = _field(parts, 0), _field(parts, 1)
    if dec.bad:
        keep = _skip_masked(pc.match_substring(users, MARK), numbers, path, f"user id with bytes not valid {dec.encoding}", problems)
        numbers, users, rest = _filter(keep, numbers, users, rest)
    seqs = pc.utf8_split_whitespace(rest)
    lengths = pc.list_value_length(seqs).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(seqs).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(seqs)
    starts = np.cumsum(lengths) - lengths
    positions = np.arange(len(flat), dtype=np.int64) - starts[parents]
    out_users = users.take(pa.array(parents))
    if dec.bad:
        marked = pc.match_substring(flat, MARK)
        problems.skip(path, f"item tokens with bytes not valid {dec.encoding}",
                      sorted(set(numbers[parents[marked.to_numpy(zero_copy_only=False)]].tolist())))
        ok = pc.invert(marked)
        flat, out_users, positions = flat.filter(ok), out_users.filter(ok), positions[ok.to_numpy(zero_copy_only=False)]
    return out_users, flat, pa.array(positions, pa.int64())


# ------------------------------------------------------------------------------- item files


def _item_id(line: int, cells: list[str], path: Path, problems: RowProblems) -> str | None:
    """The row's item id, or None (reported as skipped) when it is empty or undecodable."""
    item = cells[0].strip() if cells else ""
    if not item or MARK in item:
        problems.skip(path, "empty or undecodable item id", [line])
        return None
    return item


def _text_by_item(dec: Decoded, problems: RowProblems, column: str) -> dict[str, str | None]:
    """``item,text`` rows (header optional; unquoted commas in the text are kept) as the output
    ``column``. Undecodable bytes in a row's text are charged to ``column`` for that item (its
    other fields stay usable), and the text is not used."""
    out: dict[str, str | None] = {}
    for line, cells, problem in _drop_header(read_rows(dec, ",", strip=False)):
        item = _item_id(line, cells, dec.path, problems)
        if item is None:
            continue
        if problem:
            problems.cell(item, column, f"{dec.path.name} {problem}")
            out[item] = None
        else:
            out[item] = ",".join(cells[1:]).strip() or None
    return out


def _comments(dec: Decoded, problems: RowProblems, max_comments: int) -> dict[str, str]:
    """``user<TAB>item<TAB>comment`` (or ``item<TAB>comment``) rows: the first ``max_comments``
    per item joined with ``" | "``. A comment with undecodable bytes is charged to the item's
    ``comments`` (one unreadable comment would silently change what the others add up to)."""
    path = dec.path
    delim = "," if path.suffix.lower() == ".csv" else "\t"
    per_item: dict[str, list[str]] = {}
    for line, r, problem in read_rows(dec, delim, strip=False):
        if len(r) < 2:
            problems.skip(path, "not 'user<TAB>item<TAB>comment' or 'item<TAB>comment'", [line])
            continue
        item, comment = (r[1].strip(), delim.join(r[2:])) if len(r) >= 3 else (r[0], r[1])
        if line == 1 and (item.lower() in _ITEM_HEADER_NAMES or comment.strip().lower() in ("comment", "comments")):
            continue
        if not item or MARK in item:
            problems.skip(path, "empty or undecodable item id", [line])
            continue
        if problem:
            problems.cell(item, "comments", f"{path.name} {problem}")
            continue
        comment = comment.strip()
        lst = per_item.setdefault(item, [])
        if comment and len(lst) < max_comments:
            lst.append(comment)
    return {k: " | ".join(v) for k, v in per_item.items() if v}


def _likes_views(dec: Decoded, problems: RowProblems) -> dict[str, dict[str, Any]]:
    """``item<TAB>likes<TAB>views`` rows. Each bad value (undecodable, not a number) is charged
    to its own column (``likes`` or ``views``); a short row to both."""
    path = dec.path
    rows = _drop_header(read_rows(dec, "," if path.suffix.lower() == ".csv" else "\t"))
    out: dict[str, dict[str, Any]] = {"likes": {}, "views": {}}
    for line, r, _problem in rows:
        item = _item_id(line, r, path, problems)
        if item is None:
            continue
        if len(r) < 3:
            for col in out:
                problems.cell(item, col, f"{path.name} line {line}: not 'item<TAB>likes<TAB>views'")
            continue
        for col, cell in zip(out, r[1:3]):
            bad = dec.problem(cell)
            if bad:
                problems.cell(item, col, f"{path.name} {bad}")
                continue
            try:
                out[col][item] = int(float(cell))
            except (ValueError, OverflowError):
                problems.cell(item, col, f"{path.name} line {line}: {cell!r} is not a number")
    return out


# ------------------------------------------------------------------------------- the adapter


def _pairs_path(root: Path, prefix: str, pairs: str, pairs_file: str | None) -> tuple[Path, str]:
    if pairs not in ("auto", "csv", "tsv"):
        raise SourceError(f"option pairs={pairs!r}: expected 'auto', 'csv' or 'tsv'")
    if pairs_file is not None:
        pf = _required_file(root, pairs_file, "pairs_file")
        return pf, "tsv" if pf.suffix.lower() in (".tsv", ".txt") else "csv"
    csv_p, tsv_p = root / f"{prefix}_pairs.csv", root / f"{prefix}_pairs.tsv"
    pf, mode = (csv_p, "csv") if pairs == "csv" or (pairs == "auto" and csv_p.is_file()) else (tsv_p, "tsv")
    if not pf.is_file():
        want = {"auto": f"{csv_p.name} or {tsv_p.name}", "csv": csv_p.name, "tsv": tsv_p.name}[pairs]
        raise SourceError(f"microlens: required interactions file {want} not found in {root}")
    return pf, mode


def _optional(root: Path, value: str | None, option: str, defaults: list[str]) -> Path | None:
    return _required_file(root, value, option) if value else _first_existing(root, defaults)


def _media_dir(root: Path, opt: str | None, option: str, defaults: list[str]) -> Path | None:
    if opt is not None:
        p = _option_path(root, opt, option)
        if not p.is_dir():
            raise SourceError(f"option {option}={opt!r}: folder {p} does not exist")
        return p
    p = _first_existing(root, defaults)
    return p if p is not None and p.is_dir() else None


def load_microlens(
    root: Path | str,
    *,
    prefix: str = "MicroLens-100k",
    pairs: str = "auto",
    pairs_file: str | None = None,
    title_file: str | None = None,
    comments_file: str | None = None,
    likes_views_file: str | None = None,
    tags_file: str | None = None,
    covers_dir: str | None = None,
    videos_dir: str | None = None,
    cover_ext: str = ".jpg",
    video_ext: str = ".mp4",
    max_comments: int = 20,
    encoding: str = "utf-8",
) -> SourceTables:
    """The official MicroLens layout (MicroLens-50k / -100k; ``prefix`` picks which).

    Files (under ``root``; each overridable by the matching option; all read with ``encoding``):

    - ``{prefix}_pairs.csv`` (``user,item,timestamp``; header optional) and/or
      ``{prefix}_pairs.tsv`` (``user<TAB>item item ...`` in time order; timestamp = position).
      ``pairs="auto"`` prefers the csv; ``"csv"``/``"tsv"`` force one. One ordering per file:
      every csv row has a numeric timestamp, or none has (then the position in the user's rows).
    - titles: ``{prefix}_title_en.csv`` or ``{prefix}_titles.csv`` (``item,title``; header
      optional; unquoted commas in a title are kept).
    - optional ``{prefix}_comment_en.txt`` (``user<TAB>item<TAB>comment``) -> ``comments``,
      the first ``max_comments`` per item joined with ``" | "``.
    - optional ``{prefix}_likes_and_views.txt`` (``item<TAB>likes<TAB>views``) -> ``likes``, ``views``.
    - optional ``tags_to_summary.csv`` (``item,category``) -> ``tags``.
    - covers ``covers/`` or ``{prefix}_covers/`` (``<item>.jpg``) -> ``image_uri``;
      videos ``videos/`` or ``{prefix}_videos/`` (``<item>.mp4``) -> ``video_uri``.

    Args:
        root: the dataset folder.

    Returns:
        The normalized tables. A bad value is charged to its column only (``<column>__error``:
        undecodable bytes in a title -> ``title__error``, a cover symlinked out of the root ->
        ``image_uri__error``, a non-numeric count -> ``likes__error``), so the item's other
        feature sets keep it. Rows without a readable item id are skipped and logged.

    Raises:
        SourceError: a required file is missing, a path option leaves ``root``, or the pair
            file mixes rows with and without (numeric) timestamps.
    """
    root = _root(root, "microlens")
    _check_path_options(
        root, pairs_file=pairs_file, title_file=title_file, comments_file=comments_file,
        likes_views_file=likes_views_file, tags_file=tags_file, covers_dir=covers_dir, videos_dir=videos_dir,
    )
    problems = RowProblems()
    pf, mode = _pairs_path(root, prefix, pairs, pairs_file)
    users, inter_items, ts = (_pairs_csv if mode == "csv" else _pairs_tsv)(decode_file(pf, encoding), problems)
    if len(users) == 0:
        raise SourceError(f"{pf}: no interactions")
    files = {"pairs": str(pf)}

    tf = _optional(root, title_file, "title_file", [f"{prefix}_title_en.csv", f"{prefix}_titles.csv", f"{prefix}_title.csv"])
    if tf is None:
        raise SourceError(f"microlens: required titles file {prefix}_title_en.csv (or {prefix}_titles.csv) "
                          f"not found in {root}")
    text: dict[str, dict[str, str | None]] = {"title": _text_by_item(decode_file(tf, encoding), problems, "title")}
    files["titles"] = str(tf)
    tg = _optional(root, tags_file, "tags_file", ["tags_to_summary.csv", f"{prefix}_tags.csv"])
    if tg is not None:
        text["tags"] = _text_by_item(decode_file(tg, encoding), problems, "tags")
        files["tags"] = str(tg)
    cf = _optional(root, comments_file, "comments_file", [f"{prefix}_comment_en.txt", f"{prefix}_comments_en.txt"])
    if cf is not None:
        text["comments"] = _comments(decode_file(cf, encoding), problems, max_comments)
        files["comments"] = str(cf)
    numeric: dict[str, dict[str, Any]] = {}
    lf = _optional(root, likes_views_file, "likes_views_file", [f"{prefix}_likes_and_views.txt", f"{prefix}_likes_and_views.csv"])
    if lf is not None:
        numeric = _likes_views(decode_file(lf, encoding), problems)
        files["likes_views"] = str(lf)

    ids = sorted(set(text["title"]) | set(pc.unique(inter_items).to_pylist()), key=_id_sort_key)
    media = {}
    for col, opt, option, defaults, ext in (
        ("image_uri", covers_dir, "covers_dir", ["covers", f"{prefix}_covers"], cover_ext),
        ("video_uri", videos_dir, "videos_dir", ["videos", f"{prefix}_videos"], video_ext),
    ):
        media[col], bad = media_dir_paths(root, ids, _media_dir(root, opt, option, defaults), ext)
        for i, reason in bad.items():
            problems.cell(i, col, reason)
    problems.warn()
    items = _items_table(ids, text, media, numeric, problems)
    interactions = pa.table({"user_id": users, "item_id": inter_items, "timestamp": ts})
    return SourceTables(items, interactions, kind="microlens", root=root, files=files)


def microlens_mini_root() -> Path:
    """The embedded sample ``manifests/data/microlens-mini`` (MicroLens layout, real media)."""
    return Path(__file__).resolve().parents[2] / "manifests" / "data" / "microlens-mini"
