"""MMRecUn-style unlearning (recommenders/unlearning.py) on tiny clustered data.

Stated band (also in ``unlearn``'s docstring), for 10 unlearning epochs at the default weights: the
forget-set Recall@10 falls at least 0.3 (absolute) below the original model's, and the retain-set (test)
Recall@10 stays within 0.15 (absolute) of the original model's.
"""
import numpy as np
import pytest
import torch

from mmfeat.recommenders import ConfigError, train
from mmfeat.recommenders.data import InteractionData
from mmfeat.recommenders.unlearning import (UnlearnConfig, evaluate_unlearning, forget_set, resolve_unlearn_config,
                                            retain_data, unlearn)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_USERS, N_ITEMS, N_CL = 48, 60, 4
FORGET_DROP = 0.3  # forget-set Recall@10 must fall at least this much below the original's
RETAIN_BAND = 0.15  # retain-set Recall@10 must stay within this of the original's
_TRAIN = {"embedding_size": 16, "train_batch_size": 128, "learning_rate": 0.02, "epochs": 40,
          "early_stopping": False, "eval_step": 40, "topk": [10], "metrics": ["recall"], "valid_metric": "recall@10",
          "seed": 0}


def _clustered(seed: int = 0) -> InteractionData:
    """Item i in cluster i % 4, user u in cluster u % 4; each user trains on 7 of its cluster's 15 items plus
    3 random items of other clusters (signal only memorization explains) and is validated / tested on 2 more
    items of its cluster each, so a good model ranks own-cluster items first. Item features are noisy cluster
    centers (for FREEDOM)."""
    rng = np.random.default_rng(seed)
    item_cl = np.arange(N_ITEMS) % N_CL
    train, valid, test = [], [], []
    for u in range(N_USERS):
        own = rng.permutation(np.flatnonzero(item_cl == u % N_CL))
        other = rng.permutation(np.flatnonzero(item_cl != u % N_CL))
        train += [(u, i) for i in own[:7]] + [(u, i) for i in other[:3]]
        valid += [(u, i) for i in own[7:9]]
        test += [(u, i) for i in own[9:11]]
    centers = rng.normal(size=(N_CL, 8))
    feats = {r: (centers[item_cl] + 0.3 * rng.normal(size=(N_ITEMS, 8))).astype(np.float32) for r in ("text", "image")}
    return InteractionData(n_users=N_USERS, n_items=N_ITEMS, train=np.array(train), valid=np.array(valid),
                           test=np.array(test), user_ids=np.arange(N_USERS).astype(str),
                           item_ids=np.arange(N_ITEMS).astype(str), item_features=feats, split_hash="clustered")


@pytest.fixture(scope="module")
def data():
    return _clustered()


@pytest.fixture(scope="module")
def lightgcn(data):
    torch.set_num_threads(1)
    return train(data, "LightGCN", {**_TRAIN, "n_layers": 2}, progress=False)._model


def _keys(pairs, n_items=N_ITEMS):
    return set((pairs[:, 0].astype(np.int64) * n_items + pairs[:, 1]).tolist())


@pytest.mark.parametrize("kind", ["interactions", "items"])
def test_forget_set_never_leaks_into_retain_train(data, kind):
    f = forget_set(data, kind, share=0.1, seed=3)
    r = retain_data(data, f)
    fk, rk, all_k = _keys(f.pairs), _keys(r.train), _keys(data.train)
    assert fk and not (fk & rk)
    assert fk | rk == all_k  # nothing else is removed
    assert not (_keys(np.stack(r.train_csr().nonzero(), 1)) & fk)  # nor in its graph
    assert f.summary()["n_pairs"] == len(fk)


def test_items_mode_removes_every_interaction_of_the_items(data):
    f = forget_set(data, "items", share=0.1, seed=1)
    assert f.items is not None and len(f.items) == 6
    r = retain_data(data, f)
    for split in (r.train, r.valid, r.test):
        assert not np.isin(split[:, 1], f.items).any()
    assert _keys(f.pairs) == _keys(data.train[np.isin(data.train[:, 1], f.items)])


def test_forget_set_is_seeded_and_validated(data):
    a, b = forget_set(data, "interactions", 0.1, seed=5), forget_set(data, "interactions", 0.1, seed=5)
    assert np.array_equal(a.pairs, b.pairs) and len(a.pairs) == round(0.1 * len(data.train))
    assert not np.array_equal(a.pairs, forget_set(data, "interactions", 0.1, seed=6).pairs)
    with pytest.raises(ValueError, match="kind"):
        forget_set(data, "users")
    with pytest.raises(ValueError, match="share"):
        forget_set(data, "items", share=1.5)


def test_unknown_or_mistyped_config_key_is_an_error(data, lightgcn):
    f = forget_set(data, "interactions", 0.1, seed=0)
    with pytest.raises(ConfigError, match="forget_weight"):  # the closest declared key is named
        unlearn(lightgcn, data, f, {"forget_weigth": 2.0})
    with pytest.raises(ConfigError, match="epochs"):
        resolve_unlearn_config({"epochs": "many"})
    assert resolve_unlearn_config(UnlearnConfig(epochs=3))["epochs"] == 3
    assert resolve_unlearn_config()["forget_weight"] == 1.0


@pytest.mark.parametrize("kind", ["interactions", "items"])
def test_unlearning_forgets_and_keeps_utility(data, lightgcn, kind):
    f = forget_set(data, kind, share=0.1, seed=2)
    before = {k: v.detach().clone() for k, v in lightgcn.state_dict().items()}
    res = unlearn(lightgcn, data, f, {"epochs": 10, "topk": [10], "metrics": ["recall"]})
    o, u = res.original, res.unlearned
    assert u["forget"]["recall@10"] <= o["forget"]["recall@10"] - FORGET_DROP, (o, u)
    assert abs(u["retain"]["recall@10"] - o["retain"]["recall@10"]) <= RETAIN_BAND, (o, u)
    assert res.unlearn_s > 0 and len(res.epochs) == 10 and all(np.isfinite(e["loss"]) for e in res.epochs)
    # the caller's model is untouched; the unlearned one is a new model on the retain graph
    assert all(torch.equal(before[k], v) for k, v in lightgcn.state_dict().items())
    assert res.model is not lightgcn and not (_keys(res.model.data.train) & _keys(f.pairs))
    assert evaluate_unlearning(res.model, data, f, {"topk": [10], "metrics": ["recall"]}) == u


def test_gold_model_is_evaluated_on_the_same_sets(data, lightgcn):
    f = forget_set(data, "items", share=0.1, seed=4)
    gold = train(retain_data(data, f), "LightGCN", {**_TRAIN, "epochs": 5, "eval_step": 5}, progress=False)._model
    res = unlearn(lightgcn, data, f, {"epochs": 1, "topk": [10], "metrics": ["recall"]}, gold=gold)
    assert set(res.gold) == {"forget", "retain"} and "recall@10" in res.gold["forget"]


def test_freedom_unlearns(data):
    torch.set_num_threads(1)
    cfg = {**_TRAIN, "feat_embed_dim": 16, "knn_k": 4, "dropout": 0.5}
    model = train(data, "FREEDOM", cfg, progress=False)._model
    f = forget_set(data, "items", share=0.1, seed=2)
    res = unlearn(model, data, f, {"epochs": 10, "topk": [10], "metrics": ["recall"]})
    assert res.unlearned["forget"]["recall@10"] <= res.original["forget"]["recall@10"] - FORGET_DROP, res.to_dict()
    assert abs(res.unlearned["retain"]["recall@10"] - res.original["retain"]["recall@10"]) <= RETAIN_BAND


# ---------------------------------------------------------------------------- mmfeat unlearn (one command)
def test_unlearn_command_trains_forgets_retrains_and_writes_the_result(tmp_path, capsys):
    import json

    from mmfeat.pipelines.cli import main
    from tests.conftest import import_microlens_features

    store = import_microlens_features(tmp_path, [("title_minilm", "a")])
    rc = main(["--store", store, "unlearn", "microlens", "--model", "LightGCN", "--forget", "items", "--share", "0.1",
               "--set", "epochs=3", "--set", "embedding_size=8", "--unlearn-set", "epochs=2",
               "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "| unlearned |" in out and "| gold (retrained without it) |" in out
    path = out.strip().splitlines()[-1].split("written: ")[1]
    result = json.loads(open(path).read())
    assert result["forget"]["kind"] == "items" and result["forget"]["n_items"] == 4
    assert result["unlearned"]["forget"]["recall@20"] <= result["original"]["forget"]["recall@20"]
    assert (tmp_path / "runs" / result["gold_run"] / "record.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--model", "SASRec"], "sequential"),
    (["--unlearn-set", "epoch=2"], "epochs"),
    (["--share", "1.5"], "share"),
])
def test_unlearn_command_refuses_bad_requests_before_training(argv, message, tmp_path, capsys):
    from mmfeat.pipelines.cli import main
    from tests.conftest import import_microlens_features

    store = import_microlens_features(tmp_path, [("title_minilm", "a")])
    rc = main(["--store", store, "unlearn", "microlens", *argv, "--runs", str(tmp_path / "runs")])
    assert rc != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/record.json"))


def test_run_unlearning_refuses_a_cold_split_before_training(tmp_path):
    from mmfeat.pipelines.training.run import TrainRequestError
    from mmfeat.pipelines.training.unlearning import run_unlearning
    from tests.conftest import import_microlens_features

    store = import_microlens_features(tmp_path, [("title_minilm", "a")])
    with pytest.raises(TrainRequestError, match="cold"):
        run_unlearning("microlens", model="LightGCN", split="cold", store_root=store, runs_dir=str(tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()
