"""Generative recommenders over semantic IDs: the trie of valid code tuples, constrained beam search, and TIGER.

Semantic IDs come from the store (a ``semantic_ids`` feature set, output kind ``codes``); a run passes them as
``--feature codes=FEATURE_SET`` and they arrive as :attr:`SequenceData.item_codes`.

Example::

    from mmfeat.recommenders import fit, split_interactions
    from mmfeat.recommenders.sequential import from_loo_frame
    data = from_loo_frame(split_interactions(interactions_df, "loo"), codes=(item_ids, codes))
    rec = fit(data, "TIGER", {"epochs": 20})
"""
from .trie import CodeTrie, constrained_beam_search

__all__ = ["CodeTrie", "constrained_beam_search"]
