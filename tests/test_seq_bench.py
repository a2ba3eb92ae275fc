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


def test_late_epochs_refuses_a_key_it_would_ignore_or_a_typo_before_training():
    """late_epochs.py decides the epochs, seeds and samples itself: a --set of them would be silently
    overridden, so it is refused with the option that sets it; a typo is named too."""
    from late_epochs import mode_configs

    cfgs = mode_configs("GRU4Rec", ["window:10", "prefix"], {"learning_rate": 0.005})
    assert cfgs["window:10"]["train_stride"] == 10 and cfgs["prefix"]["learning_rate"] == 0.005
    with pytest.raises(SystemExit, match="--set epochs, seed: this benchmark sets them itself"):
        mode_configs("GRU4Rec", ["window:10"], {"seed": 3, "epochs": 4})
    with pytest.raises(SystemExit, match="did you mean learning_rate"):
        mode_configs("GRU4Rec", ["window:10"], {"learning_rat": 0.1})
    with pytest.raises(SystemExit, match="--model 'GRU4Re'"):
        mode_configs("GRU4Re", ["window:10"], {})


def test_an_unknown_model_is_refused_with_its_name_not_a_key_error():
    """``recbole_seq_parity.py --models GRU4Re`` ended in a KeyError traceback; every sequential bench now names
    the model and the choices before any run."""
    from recbole_seq_parity import check_sets, resolved_config

    with pytest.raises(SystemExit, match="--models 'GRU4Re': expected one of SASRec, GRU4Rec"):
        check_sets(["GRU4Re"], [([], {})])
    with pytest.raises(SystemExit, match="--set dropout_prob=2: hyper-parameter 'dropout_prob'"):
        check_sets(["GRU4Rec"], [(["dropout_prob=2"], {"dropout_prob": 2})])
    assert resolved_config("GRU4Rec", {"learning_rate": 0.01}, "x")["learning_rate"] == 0.01
