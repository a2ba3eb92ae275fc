"""What a population of sessions says about a recommender: retention, engagement, instruction following,
hit rate on the users' real held-out items, diversity, coverage and filter-bubble drift.

Why these, and how each is read from a trace (rows of :func:`~.session.trace_row`):

- **retention** (RecoWorld's objective): pages a user saw before the session ended (leaving, or the turn cap);
  mean, standard deviation and the distribution over 1..turns; ``completed`` is the share reaching the cap.
- **engagement**: clicks per session, click-through rate (clicks / items shown), mean rating of clicked items.
- **instruction following**: for each instruction a user wrote, the share of items on the *next* page that
  satisfy it. The instruction is parsed here by the deterministic parser, whatever parsed it for the agent
  (an LLM's misreading counts against the agent, and static baselines are judged the same way). An item
  satisfies when it passes the filters (excluded genres, year range, sequel and title rules), has an asked-for
  genre when some were asked for, and has no genre asked to be fewer. Instructions with no item-checkable
  part ("something new") or that no catalog item satisfies are counted apart, not scored.
- **hit rate** against each user's real held-out items (never visible to the recommender): the share of
  sessions whose pages showed at least one, and held-out items per page.
- **diversity**: intra-page genre diversity, the mean pairwise ``1 - cosine`` of the page items' genre vectors
  (intra-list diversity).
- **coverage**: distinct items shown over the catalog size.
- **filter bubble** (Agent4Rec's effect): per turn, the Jensen-Shannon divergence (bits, in [0, 1]) between a
  page's genre distribution and the user's profile (genres of the training history); ``bubble_drift`` is the
  mean over sessions with two or more pages of (last page's divergence - first page's), so users who leave
  early do not bias it. Positive drift = pages move away from the profile over the session; negative = they
  narrow onto it.

Reference:
    RecoWorld (Meta, 2025), retention as the objective; Zhang et al., "On Generative Agents in Recommendation",
    SIGIR 2024 (Agent4Rec: the filter-bubble experiment); Ziegler et al., "Improving recommendation lists
    through topic diversification", WWW 2005 (intra-list diversity).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from mmfeat.agents.recommender.constraints import Constraints, hard_mask, wish_mask
from mmfeat.agents.recommender.instructions import parse_instruction
from mmfeat.agents.types import Catalog, UserHistory

#: the metrics of a population, in table order (``metrics_table``)
TABLE_METRICS = ("retention", "completed", "clicks_per_session", "ctr", "mean_rating", "instruction_following",
                 "hit_rate", "hits_per_page", "diversity", "coverage", "bubble_drift")


def trace_frame(rows: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Trace rows as a DataFrame (a DataFrame is returned as it is)."""
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def session_lengths(trace: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.Series:
    """Pages seen per session (rows with a non-empty page), indexed by session; sessions that showed nothing
    count 0."""
    df = trace_frame(trace)
    if df.empty:
        return pd.Series(dtype=np.int64)
    shown = df["items"].map(len) > 0
    return shown.groupby(df["session"]).sum().astype(np.int64)


def satisfying_items(catalog: Catalog, c: Constraints) -> np.ndarray | None:
    """bool ``[n_items]``: items satisfying the item-checkable parts of ``c``; None when it has none."""
    if not (c.has_hard() or c.include_genres or c.avoid_genres):
        return None
    ok = hard_mask(catalog, c)
    wish = wish_mask(catalog, c)
    return ok if wish is None else ok & wish


def split_masks(catalog: Catalog, c: Constraints) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The two halves of :func:`satisfying_items`: the filters (hard parts) and the genre wishes (soft parts:
    an asked-for genre, no genre asked to be fewer); None for a half the constraints do not have."""
    return (hard_mask(catalog, c) if c.has_hard() else None), wish_mask(catalog, c)


def _instruction_masks(catalog: Catalog):
    @lru_cache(maxsize=4096)
    def mask(text: str) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        c = parse_instruction(text, catalog.genre_names).constraints
        return (satisfying_items(catalog, c),) + split_masks(catalog, c)
    return mask


def instruction_following(df: pd.DataFrame, catalog: Catalog) -> dict[str, Any]:
    """Share of next-page items satisfying each instruction (see the module docstring), with the counts; also
    split into the filters alone (``instruction_following_hard``) and the genre wishes alone
    (``instruction_following_soft``), each over the instructions that have that part."""
    mask = _instruction_masks(catalog)
    nxt = df[["session", "turn", "items"]].rename(columns={"items": "next_items"})
    nxt = nxt.assign(turn=nxt["turn"] - 1)
    given = df.loc[df["instruction"].notna() & (df["instruction"].astype(str).str.len() > 0),
                   ["session", "turn", "instruction"]]
    pairs = given.merge(nxt, on=["session", "turn"], how="inner")
    sat = shown = checked = unchecked = impossible = 0
    part = {"hard": [0, 0], "soft": [0, 0]}
    for text, items in zip(pairs["instruction"], pairs["next_items"], strict=True):
        if len(items) == 0:
            continue
        m, hard, soft = mask(str(text))
        if m is None:
            unchecked += 1
        elif not m.any():
            impossible += 1
        else:
            page = np.asarray(items, dtype=np.int64)
            checked += 1
            sat += int(m[page].sum())
            shown += len(items)
            for name, h in (("hard", hard), ("soft", soft)):
                if h is not None:
                    part[name][0] += int(h[page].sum())
                    part[name][1] += len(page)
    return {"instruction_following": sat / shown if shown else float("nan"), "instructions_checked": checked,
            "instructions_unchecked": unchecked, "instructions_impossible": impossible,
            "instructions_total": int(len(given)),
            **{f"instruction_following_{k}": (v[0] / v[1] if v[1] else float("nan")) for k, v in part.items()}}


def _genre_rows(catalog: Catalog, pages: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Padded genre matrices of pages ``[n_pages, k, n_genres]`` and the item mask ``[n_pages, k]``."""
    k = max((len(p) for p in pages), default=0)
    idx = np.zeros((len(pages), max(k, 1)), dtype=np.int64)
    valid = np.zeros_like(idx, dtype=bool)
    for r, p in enumerate(pages):
        idx[r, :len(p)] = p
        valid[r, :len(p)] = True
    g = np.asarray(catalog.genres, dtype=np.float64)[idx] * valid[..., None]
    return g, valid


def intra_page_diversity(catalog: Catalog, pages: Sequence[Sequence[int]]) -> np.ndarray:
    """Per page: mean pairwise ``1 - cosine`` of its items' genre vectors (nan for pages under 2 items)."""
    g, valid = _genre_rows(catalog, pages)
    v = g / np.maximum(np.linalg.norm(g, axis=2, keepdims=True), 1e-12)
    sim = np.einsum("pig,pjg->pij", v, v)
    n = valid.sum(axis=1)
    pair = valid[:, :, None] & valid[:, None, :] & ~np.eye(valid.shape[1], dtype=bool)[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, ((1.0 - sim) * pair).sum(axis=(1, 2)) / (n * (n - 1)), np.nan)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence in bits (rows are normalised here; a zero row gives nan)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    ps, qs = p.sum(axis=1, keepdims=True), q.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p, q = p / ps, q / qs
        m = 0.5 * (p + q)

        def kl(a: np.ndarray) -> np.ndarray:
            return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0).sum(axis=1)

        out = 0.5 * kl(p) + 0.5 * kl(q)
    return np.where((ps[:, 0] > 0) & (qs[:, 0] > 0), out, np.nan)


def profile_genres(catalog: Catalog, histories: Sequence[UserHistory], users: np.ndarray) -> np.ndarray:
    """Genre counts of each user's training history, ``[len(users), n_genres]``."""
    g = np.asarray(catalog.genres, dtype=np.float64)
    return np.stack([g[np.asarray(histories[u].items, dtype=np.int64)].sum(axis=0) for u in users]) \
        if len(users) else np.zeros((0, g.shape[1]))


def population_metrics(trace: Sequence[dict[str, Any]] | pd.DataFrame, catalog: Catalog,
                       histories: Sequence[UserHistory], *, turns: int) -> dict[str, Any]:
    """Every metric of the module docstring for one recommender's sessions.

    Args:
        trace: the run's rows (:attr:`~.session.SessionRun.rows`) or their DataFrame.
        catalog: the items.
        histories: the population with held-out parts (``histories[u].user == u``); the held-out items are
            read here only, to score hits.
        turns: the run's turn cap (the retention distribution's range).

    Returns:
        A flat dict: the :data:`TABLE_METRICS` plus ``sessions``, ``retention_sd``, ``retention_dist`` (counts of
        sessions that saw 0..turns pages), ``errors``, instruction counts and ``bubble_by_turn``.

    Example:
        >>> m = population_metrics(run.rows, pop.catalog, pop.histories, turns=10)   # doctest: +SKIP
        >>> round(m["retention"], 2), round(m["hit_rate"], 3)                        # doctest: +SKIP
    """
    df = trace_frame(trace)
    if df.empty:
        return {"sessions": 0}
    lengths = session_lengths(df)
    pages_df = df[df["items"].map(len) > 0]
    pages = [np.asarray(p, dtype=np.int64) for p in pages_df["items"]]
    n_shown = sum(len(p) for p in pages)
    clicks = df["clicked"].map(len)
    ratings = np.concatenate([np.asarray(r, dtype=np.float64) for r in df["ratings"]]) if len(df) else np.zeros(0)
    ratings = ratings[np.isfinite(ratings)]
    last = df.sort_values(["session", "turn"]).groupby("session").tail(1)
    # hits: a held-out item on the page
    held = {u: set(np.asarray(histories[u].heldout_items, dtype=np.int64).tolist())
            for u in pages_df["user"].unique()}
    hits = np.array([len(held[u].intersection(p.tolist())) for u, p in zip(pages_df["user"], pages, strict=True)])
    session_hit = pd.Series(hits > 0).groupby(pages_df["session"].to_numpy()).any()
    # filter bubble: JS(page genres, profile genres) per page
    users = pages_df["user"].to_numpy()
    uniq, inv = np.unique(users, return_inverse=True)
    prof = profile_genres(catalog, histories, uniq)[inv]
    g, _ = _genre_rows(catalog, pages)
    js = js_divergence(g.sum(axis=1), prof) if len(pages) else np.zeros(0)
    bub = pd.DataFrame({"session": pages_df["session"].to_numpy(), "turn": pages_df["turn"].to_numpy(), "js": js})
    by_turn = bub.groupby("turn")["js"].mean()
    per_session = bub.dropna().sort_values(["session", "turn"]).groupby("session")["js"]
    firsts, lasts, counts = per_session.first(), per_session.last(), per_session.size()
    drift = (lasts - firsts)[counts >= 2]
    dist = np.bincount(lengths.to_numpy(), minlength=turns + 1)[: turns + 1]
    out: dict[str, Any] = {
        "sessions": int(len(lengths)),
        "retention": float(lengths.mean()), "retention_sd": float(lengths.std(ddof=0)),
        "retention_dist": dist.astype(int).tolist(),
        "completed": float((last["end_reason"] == "turn_cap").mean()),
        "errors": int((last["status"] == "error").sum()) if "status" in last else 0,
        "clicks_per_session": float(clicks.groupby(df["session"]).sum().mean()),
        "ctr": float(clicks.sum() / n_shown) if n_shown else float("nan"),
        "mean_rating": float(ratings.mean()) if len(ratings) else float("nan"),
        "hit_rate": float(session_hit.reindex(lengths.index, fill_value=False).mean()),
        "hits_per_page": float(hits.mean()) if len(hits) else float("nan"),
        "diversity": float(np.nanmean(intra_page_diversity(catalog, pages))) if pages else float("nan"),
        "coverage": float(len(np.unique(np.concatenate(pages))) / catalog.n_items) if pages else 0.0,
        "bubble_drift": float(drift.mean()) if len(drift) else float("nan"),
        "bubble_by_turn": [round(float(v), 4) for v in by_turn.reindex(range(turns)).to_numpy()],
    }
    out.update(instruction_following(df, catalog))
    return out


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(results: dict[str, dict[str, Any]], metrics: Sequence[str] = TABLE_METRICS,
                  extra: Sequence[str] = ()) -> str:
    """Recommenders side by side as a markdown table (name -> :func:`population_metrics` output)."""
    cols = ["recommender", "sessions", *metrics, *extra]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, m in results.items():
        lines.append("| " + " | ".join([name, _cell(m.get("sessions"))] + [_cell(m.get(k)) for k in (*metrics, *extra)])
                     + " |")
    return "\n".join(lines)


__all__ = ["TABLE_METRICS", "population_metrics", "metrics_table", "session_lengths", "instruction_following",
           "satisfying_items", "split_masks", "intra_page_diversity", "js_divergence", "profile_genres", "trace_frame"]
