"""Names the CLI checks before it imports anything heavy: the registered recommender models.

The model registry (:func:`mmfeat.recommenders.model_names`) is filled by importing every model module,
which imports torch (5 to 55 s on a busy machine). A mistyped ``--model`` must be refused at once, so the
CLI checks it against this static copy of the registry's names; ``tests/test_cli.py`` compares
the copy with the registry, so adding a model without adding its name here fails a test, not a user.
"""

from __future__ import annotations

import difflib

from mmfeat.pipelines.cli.errors import UsageError

#: ``mmfeat.recommenders.model_names()``, in its order (case-insensitive sort).
MODEL_NAMES: tuple[str, ...] = (
    "BM3", "BPR", "CM3", "DGVAE", "DIN", "fMRLRec", "FREEDOM", "GRU4Rec", "ItemKNNCBF", "LATTICE", "LightGCN",
    "LIRDRec", "MMHCL", "QIN", "REARM", "SASRec", "TIGER", "VBPR",
)


def check_model_name(name: str, option: str = "--model") -> str:
    """The registered spelling of model ``name`` (matched case-insensitively, as the registry does).

    Args:
        name: the model name as the user typed it.
        option: the option it came from, for the message.

    Returns:
        The registered display name (``freedom`` -> ``FREEDOM``).

    Raises:
        UsageError: no registered model has that name; the message names the closest one and lists all.
    """
    by_lower = {n.lower(): n for n in MODEL_NAMES}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    # the registry's own matching (mmfeat.recommenders.config.closest: difflib on lower-cased names), which
    # cannot be imported from here without importing torch
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    suggestion = f" did you mean {by_lower[close[0]]}?" if close else ""
    raise UsageError(f"{option}: unknown model {name!r};{suggestion} models: {', '.join(MODEL_NAMES)}")
