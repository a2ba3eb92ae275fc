"""bench/generative/grid_replay.py's decoding of GRID's recorded batches into our training samples."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "generative"))
from grid_replay import code_lookup, to_ours  # noqa: E402


def _grid_batch(sid: np.ndarray, rows: list[tuple[list[int], int]], width: int, pad_left: bool) -> dict:
    """GRID's layout: each row's history codes (levels per item, -1 padding), its target's codes as the label."""
    levels = sid.shape[0]
    seq = np.full((len(rows), width * levels), -1, np.int64)
    for r, (history, _) in enumerate(rows):
        codes = sid[:, history].T.reshape(-1)
        if pad_left:
            seq[r, seq.shape[1] - len(codes):] = codes
        else:
            seq[r, :len(codes)] = codes
    labels = np.concatenate([sid[:, target] for _, target in rows])
    return {"sequence": torch.from_numpy(seq), "mask": torch.from_numpy(seq >= 0), "labels": torch.from_numpy(labels)}


@pytest.mark.parametrize("pad_left", [False, True])
def test_grid_batches_decode_to_the_same_histories_and_targets(pad_left):
    rng = np.random.default_rng(0)
    sid = np.stack([rng.integers(0, 8, 40), rng.integers(0, 8, 40), rng.integers(0, 8, 40), np.arange(40) % 2])
    sid = sid[:, np.unique(sid.T, axis=0, return_index=True)[1]]  # distinct tuples, one item each
    n = sid.shape[1]
    rows = [(list(rng.integers(0, n, k)), int(rng.integers(0, n))) for k in (1, 3, 5, 2)]
    inputs, targets = to_ours(_grid_batch(sid, rows, 6, pad_left), code_lookup(sid), 4, max_len=5)
    for r, (history, target) in enumerate(rows):
        assert inputs[r, :len(history)].tolist() == [h + 1 for h in history]
        assert (inputs[r, len(history):] == 0).all()
        assert targets[r].nonzero().flatten().tolist() == [len(history) - 1]
        assert int(targets[r, len(history) - 1]) == target + 1


def test_a_code_tuple_of_no_item_is_refused():
    sid = np.array([[0, 1, 2], [0, 0, 1]])
    batch = _grid_batch(sid, [([0], 1)], 2, False)
    batch["labels"] = torch.tensor([2, 0])  # (2, 0) is no item
    with pytest.raises(SystemExit, match="code tuple of no item"):
        to_ours(batch, code_lookup(sid), 2, max_len=2)


def test_a_mask_that_is_not_the_codes_is_refused():
    sid = np.array([[0, 1, 2], [0, 0, 1]])
    batch = _grid_batch(sid, [([0, 1], 2)], 3, False)
    batch["mask"][0, 0] = False  # GRID would not attend to the first code: our history would differ
    with pytest.raises(SystemExit, match="attention mask"):
        to_ours(batch, code_lookup(sid), 2, max_len=3)
