"""The simulated user (RecoWorld's user side), grounded in real interactions and checked for fidelity.

- :mod:`.profile`: tastes and Agent4Rec's traits (activity, conformity, diversity) from training history.
- :mod:`.cf`: the collaborative models (EASE, transitions, biased ALS) the taste is learned from.
- :mod:`.taste`: the learned click probability and rating (:class:`TasteModel`).
- :mod:`.mindset`: satisfaction, boredom, fatigue, trust; the leave probability.
- :mod:`.instruction`: reflective instructions (template or LLM).
- :mod:`.user`: :class:`SimulatedUser` (``react(page, rng) -> Reaction``).
- :mod:`.pairs`, :mod:`.fidelity`: the Agent4Rec / SimUSER / AlignUSER fidelity protocol and its baseline.
"""
from mmfeat.agents.simulator.fidelity import (
           FidelityReport,
           PopularityBaseline,
           fidelity,
)
from mmfeat.agents.simulator.mindset import Mindset, MindsetParams
from mmfeat.agents.simulator.profile import (
           Profile,
           ProfileArrays,
           build_profile,
           profile_arrays,
)
from mmfeat.agents.simulator.taste import TasteConfig, TasteModel, UserTaste
from mmfeat.agents.simulator.user import SimulatedUser, simulated_users

__all__ = ["FidelityReport", "Mindset", "MindsetParams", "PopularityBaseline", "Profile", "ProfileArrays",
           "SimulatedUser", "TasteConfig", "TasteModel", "UserTaste", "build_profile", "fidelity", "profile_arrays",
           "simulated_users"]
