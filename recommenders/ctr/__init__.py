"""CTR recommenders (DIN, QIN) on the MMCTR challenge's data shape, with MUSE-style history retrieval.

- :mod:`.data` / :mod:`.layout`: the rows and item table, read from / written to MicroLens_1M_MMCTR files.
- :mod:`.build`: a CTR set from a source's interactions and a store embedding (time split, labels, levels).
- :mod:`.gsu`: MUSE's general search unit (top-k history items by embedding cosine).
- :mod:`.metrics`: AUC, logloss, gAUC.
- :mod:`.din`, :mod:`.qin`: the models; :mod:`.training`: the task the shared trainer runs.
"""
from .build import build_ctr_set, reduce_dim
from .data import CTRData, CTRDataError, CTRSplit
from .layout import read_layout, write_layout
from .metrics import auc, group_auc, logloss

from . import training as _training  # noqa: F401  (registers the "ctr" task with the trainer)

__all__ = ["CTRData", "CTRDataError", "CTRSplit", "auc", "build_ctr_set", "group_auc", "logloss", "read_layout",
           "reduce_dim", "write_layout"]
