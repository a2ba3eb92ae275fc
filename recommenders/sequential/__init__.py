"""Sequential (next-item) recommenders on store features: leave-one-out sequences, SASRec, GRU4Rec and an
fMRLRec-style Matryoshka LRU, trained by the shared trainer (:func:`mmfeat.recommenders.fit`).

Example::

    from mmfeat.recommenders import fit, split_interactions
    from mmfeat.recommenders.sequential import from_loo_frame
    data = from_loo_frame(split_interactions(interactions_df, "loo"))
    rec = fit(data, "SASRec", {"epochs": 50})
"""
from .data import SequenceData, SequenceSplitError, from_loo_frame
from .evaluation import SequentialEvaluator, metrics_from_ranks

from . import training as _training  # noqa: F401  (registers the "sequential" task with the trainer)

__all__ = ["SequenceData", "SequenceSplitError", "from_loo_frame", "SequentialEvaluator", "metrics_from_ranks"]
