"""Defaults the whole project shares, in a module that imports nothing (so the CLI can use them before torch).

``DEFAULT_SEED`` seeds every split, negative sample and training run that is not given a seed: the CLI, the
flows, :func:`mmfeat.train` and the recommenders all default to it.
"""

DEFAULT_SEED = 2024
