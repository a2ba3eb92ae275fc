"""The sequential benchmarks' command line (bench/sequential/recbole_seq_parity.py): a typo in a train mode stops
the benchmark before a 30-minute run starts, with the mode named, instead of failing inside its worker."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "sequential"))
from recbole_seq_parity import parse_train_mode  # noqa: E402


def test_train_modes_parse_to_the_trainer_keys():
    assert parse_train_mode("window:10") == {"train_mode": "window", "train_stride": 10}
    assert parse_train_mode("prefix") == {"train_mode": "prefix"}


@pytest.mark.parametrize("mode", ["windw:10", "window:0", "window:x", "prefix:3", "window:"])
def test_a_bad_train_mode_is_refused_with_its_name(mode):
    with pytest.raises(SystemExit, match=f"train mode '{mode}'"):
        parse_train_mode(mode)
