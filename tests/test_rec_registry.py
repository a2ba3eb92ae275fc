"""Every registered model, generated from the registry: train 2 epochs on tiny data, evaluate, save and load.

A new model that registers itself is covered without editing this file; the tiny config is the shared
``TINY`` restricted to the keys the model declares (configs are strict).
"""
import numpy as np
import pytest
import torch

from mmfeat.recommenders import Evaluator, build_model, fit, model_names
from mmfeat.recommenders.data import InteractionData
from mmfeat.recommenders.models import get_model_class

TINY = {"epochs": 2, "train_batch_size": 64, "embedding_size": 8, "feat_embed_dim": 8, "weight_size": [8],
        "knn_k": 3, "n_words": 6, "topk": [5, 10], "valid_metric": "recall@10", "eval_batch_size": 16,
        "learning_rate": 0.01, "seed": 1}


def _tiny(roles) -> InteractionData:
    """20 users x 30 items, 5 train + 1 valid + 1 test item per user; random features for ``roles``."""
    rng = np.random.default_rng(0)
    rows = np.array([(u, i) for u in range(20) for i in rng.choice(30, 7, replace=False)])
    train, valid, test = (np.concatenate([rows[u * 7 + a: u * 7 + b] for u in range(20)])
                          for a, b in ((0, 5), (5, 6), (6, 7)))
    dims = {"text": 6, "image": 5}
    return InteractionData(n_users=20, n_items=30, train=train, valid=valid, test=test,
                           user_ids=np.arange(20).astype(str), item_ids=np.arange(30).astype(str),
                           item_features={r: rng.normal(size=(30, dims.get(r, 4))).astype(np.float32)
                                          for r in roles},
                           split_hash="tiny")


def _tiny_sequences(roles):
    """20 users x 8 distinct items of 30 in random order (6 train + valid + test), random features."""
    import pandas as pd

    from mmfeat.recommenders import split_interactions
    from mmfeat.recommenders.sequential import from_loo_frame

    rng = np.random.default_rng(0)
    df = pd.DataFrame([(u, int(i), t) for u in range(20) for t, i in enumerate(rng.choice(30, 8, replace=False))],
                      columns=["user_id", "item_id", "timestamp"])
    dims = {"text": 6, "image": 5}
    feats = {r: (np.arange(30), rng.normal(size=(30, dims.get(r, 4))).astype(np.float32)) for r in roles}
    return from_loo_frame(split_interactions(df, "loo"), features=feats, split_hash="tiny")


pytestmark = pytest.mark.usefixtures("one_torch_thread")
SEQUENTIAL_TINY = {"hidden_size": 16, "inner_size": 16, "embedding_size": 8, "max_seq_length": 5,
                   "train_batch_size": 32, "mrl_sizes": [8, 16]}


@pytest.mark.parametrize("name", [n for n in model_names() if getattr(get_model_class(n), "task", "") == "sequential"])
def test_every_sequential_model_trains_evaluates_saves_and_loads(name, tmp_path):
    from mmfeat.recommenders.sequential import SequentialEvaluator

    cls = get_model_class(name)
    data = _tiny_sequences(())
    cfg = {k: v for k, v in {**TINY, **SEQUENTIAL_TINY, "valid_metric": "ndcg@10"}.items()
           if k in cls.config_class.model_fields}
    if "codes" in cls.modality_roles:  # generative: semantic IDs (unique tuples) instead of features
        data.item_codes = np.column_stack([np.arange(30) // 6, np.arange(30) % 6])
        cfg.update(beam_size=10, topk=[5, 10], metrics=["hit", "ndcg", "mrr"], n_heads=2)
    rec = fit(data, name, cfg, runs_dir=tmp_path, progress=False)
    assert len(rec.epochs) == 2 and all(np.isfinite(e["loss"]) for e in rec.epochs)
    assert set(rec.test) >= {"hit@10", "ndcg@10", "mrr@10"} and 0.0 <= rec.test["hit@10"] <= 1.0
    loaded = build_model(name, data, rec.config)
    loaded.load_state_dict(torch.load(tmp_path / rec.run_id / "model.pt", weights_only=True))
    ev = SequentialEvaluator(data, "test", max_len=5, topk=(5, 10), metrics=("hit", "ndcg"))
    inputs, lengths = torch.from_numpy(ev.inputs), torch.from_numpy(ev.lengths)
    scores = []
    for m in (rec._model.cpu(), loaded):
        m.eval()
        with torch.no_grad():
            scores.append(m.full_sort_predict(inputs, lengths))
    assert scores[0].shape == (data.n_users, data.n_items) and torch.equal(scores[0], scores[1])
    assert ev.evaluate(loaded) == pytest.approx({k: rec.test[k] for k in ev.evaluate(loaded)})


@pytest.mark.parametrize("name", [n for n in model_names() if getattr(get_model_class(n), "task", "") == "ctr"])
def test_every_ctr_model_trains_evaluates_saves_and_loads(name, tmp_path):
    from mmfeat.recommenders.ctr.training import CTREvaluator
    from tests.test_ctr_models import TINY as CTR_TINY
    from tests.test_ctr_models import TINY_QIN, clustered_ctr

    cls = get_model_class(name)
    data = clustered_ctr(400)
    cfg = {k: v for k, v in {**CTR_TINY, **TINY_QIN, "epochs": 2}.items() if k in cls.config_class.model_fields}
    rec = fit(data, name, cfg, runs_dir=tmp_path, progress=False)
    assert len(rec.epochs) == 2 and all(np.isfinite(e["loss"]) for e in rec.epochs)
    assert set(rec.test) == {"auc", "logloss"} and 0.0 <= rec.test["auc"] <= 1.0
    loaded = build_model(name, data, rec.config)
    loaded.load_state_dict(torch.load(tmp_path / rec.run_id / "model.pt", weights_only=True))
    ev = CTREvaluator(data.splits["test"], ("auc", "logloss"), 64)
    np.testing.assert_array_equal(ev.predict(rec._model.cpu()), ev.predict(loaded))
    assert ev.evaluate(loaded) == pytest.approx(rec.test)


@pytest.mark.parametrize("name", [n for n in model_names()
                                  if getattr(get_model_class(n), "task", "") not in ("sequential", "ctr")])
def test_every_registered_model_trains_evaluates_saves_and_loads(name, tmp_path):
    cls = get_model_class(name)
    data = _tiny(cls.modality_roles)
    cfg = {k: v for k, v in TINY.items() if k in cls.config_class.model_fields}
    if not cls.trainable:  # closed-form (ItemKNNCBF): one evaluation, no epochs to set
        cfg.pop("epochs", None)
    rec = fit(data, name, cfg, runs_dir=tmp_path, progress=False)
    assert len(rec.epochs) == (2 if cls.trainable else 1) and all(np.isfinite(e["loss"]) for e in rec.epochs)
    assert set(rec.test) >= {"recall@10", "ndcg@10"} and 0.0 <= rec.test["recall@10"] <= 1.0

    # the saved state dict rebuilds the same model: identical scores and metrics
    loaded = build_model(name, data, rec.config)
    loaded.load_state_dict(torch.load(tmp_path / rec.run_id / "model.pt", weights_only=True))
    users = torch.arange(data.n_users)
    scores = []
    for m in (rec._model.cpu(), loaded):
        m.eval()
        with torch.no_grad():
            m.prepare_eval()
            scores.append(m.full_sort_predict(users))
            m.end_eval()
    assert scores[0].shape == (data.n_users, data.n_items) and torch.isfinite(scores[0]).all()
    assert torch.equal(scores[0], scores[1])
    ev = Evaluator(data.train_csr(), data.test, (5, 10), ("recall", "ndcg"), 16)
    assert ev.evaluate(loaded) == pytest.approx({k: rec.test[k] for k in ev.evaluate(loaded)})


@pytest.mark.parametrize("name", model_names())
def test_every_model_declares_a_typed_config_with_valid_grid_and_reference(name):
    from mmfeat.recommenders import TrainerConfig, resolve_config

    cls = get_model_class(name)
    assert issubclass(cls.config_class, TrainerConfig) and cls.config_class is not TrainerConfig
    for key, values in cls.grid.items():  # every candidate of the search space fits the declared type
        for v in values:
            assert resolve_config(name, {key: v})[key] == v, (key, v)
    doc = cls.__doc__ or ""
    assert "Reference:" in doc, f"{name}: no 'Reference:' block in the class docstring"
    ref = doc.split("Reference:", 1)[1]
    assert "Paper:" in ref and "Code:" in ref and any(str(y) in ref for y in range(2000, 2031)), name
