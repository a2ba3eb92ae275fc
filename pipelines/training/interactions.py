"""A manifest's interactions, filtered and split: the one path training and the MMRec export share,
so a split written by ``mmfeat store export mmrec`` is the split ``mmfeat train`` evaluates on."""

from __future__ import annotations

from typing import TYPE_CHECKING
from mmfeat.defaults import DEFAULT_SEED

if TYPE_CHECKING:
    import pandas as pd

    from mmfeat.pipelines.manifest import Manifest


class SplitRequestError(ValueError):
    """A filter or split that cannot apply to this source (e.g. ``min_rating`` without ratings)."""


def filtered_split(m: "Manifest", *, split: str | None = None, split_seed: int = DEFAULT_SEED,
                   min_rating: float | None = None, k_core: int = 0) -> tuple["pd.DataFrame", int, str, str]:
    """The manifest's interactions, filtered by rating and k-core, then split.

    Args:
        m: the loaded manifest (its source is read with the same adapter the extraction uses).
        split: ``given`` | ``random`` | ``time``; None = the source's split column if it has one,
            else random 8:1:1 (:func:`mmfeat.recommenders.splits.resolve_split_method`).
        split_seed: seed of the random split.
        min_rating: keep interactions with ``label >= min_rating``.
        k_core: iterated k-core filter on users and items (0 = off).

    Returns:
        ``(split_df[user_id, item_id, timestamp, split, ...], interactions kept, source fingerprint,
        split method that ran)``.

    Raises:
        SplitRequestError: ``min_rating`` on a source without ratings, or nothing left after filtering.

    Example:
        >>> from mmfeat.pipelines.manifest import load_manifest           # doctest: +SKIP
        >>> df, n, fp, method = filtered_split(load_manifest("movielens-100k"), min_rating=4, k_core=5)  # doctest: +SKIP
    """
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.recommenders.splits import k_core as apply_k_core
    from mmfeat.recommenders.splits import resolve_split_method, split_interactions

    _items, interactions, source_fp = load_items(m)
    df = interactions.to_pandas()
    if min_rating is not None:
        if "label" not in df.columns:
            raise SplitRequestError(f"--min-rating needs ratings, but {m.name}'s interactions have no rating/label "
                                    f"column (they have {list(df.columns)}); drop --min-rating")
        df = df[df["label"] >= min_rating]
    if k_core:
        df = apply_k_core(df, k_core)
    if df.empty:
        raise SplitRequestError(f"{m.name}: no interactions left after min_rating={min_rating}, k_core={k_core}")
    method = resolve_split_method(df, split)
    return split_interactions(df, method, seed=split_seed), int(len(df)), source_fp, method
