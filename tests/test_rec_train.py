"""Training, selection on valid, run records and the FREEDOM graph cache of recommenders/."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import mmfeat.recommenders.trainer as trainer_mod
import mmfeat.recommenders.tasks as tasks_mod
from mmfeat.recommenders import RunRecord, build_model, from_split_frame, grid_search, split_interactions, train
from mmfeat.recommenders.models._graph import knn_cache_key, knn_normalized_graph

FAST = {"epochs": 25, "train_batch_size": 256, "learning_rate": 0.01, "stopping_step": 5,
        "embedding_size": 16, "topk": [5, 10, 20], "eval_batch_size": 64}
FREEDOM_FAST = {**FAST, "feat_embed_dim": 16}


@pytest.fixture(scope="module")
def clustered():
    """120 users, 150 items in 6 clusters; a user interacts with 14 items of its own cluster.
    Text features = noisy cluster centroids."""
    rng = np.random.default_rng(0)
    n_users, n_items, n_cl = 120, 150, 6
    item_cl = np.arange(n_items) % n_cl
    rows = []
    for u in range(n_users):
        c = u % n_cl
        items = rng.choice(np.flatnonzero(item_cl == c), 14, replace=False)
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(items)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    centers = rng.normal(size=(n_cl, 16))
    feat = centers[item_cl] + 0.3 * rng.normal(size=(n_items, 16))
    ids = [f"i{i}" for i in range(n_items)]
    return from_split_frame(split_interactions(df, "random", seed=0),
                            features={"text": (ids, feat), "image": (ids, feat[:, ::-1].copy())})


def _random_recall20(data):
    # expected recall@20 of a random ranking of the non-train items
    n_train = np.diff(data.train_csr().indptr)
    return float(np.mean(20 / (data.n_items - n_train[np.unique(data.test[:, 0])])))


@pytest.mark.parametrize("model", ["LightGCN", "FREEDOM"])
def test_model_learns_and_writes_run_record(clustered, model, tmp_path):
    rec = train(clustered, model, FREEDOM_FAST if model == "FREEDOM" else FAST, runs_dir=tmp_path, progress=False)
    rand = _random_recall20(clustered)
    assert rec.test["recall@20"] > 2.5 * rand, (rec.test["recall@20"], rand)
    assert rec.best_epoch >= 0 and rec.best_valid["recall@20"] == max(
        e["valid"]["recall@20"] for e in rec.epochs if "valid" in e)
    d = json.loads((tmp_path / rec.run_id / "record.json").read_text())
    assert d["split_hash"] == clustered.split_hash and d["best_epoch"] == rec.best_epoch
    assert d["test"]["recall@20"] == pytest.approx(rec.test["recall@20"])
    assert (tmp_path / rec.run_id / "model.pt").exists() and (tmp_path / rec.run_id / "curve.png").exists()
    assert d["s_per_epoch"] > 0 and d["peak_rss_mb"] > 0


def test_bpr_trains(clustered):
    rec = train(clustered, "BPR", {**FAST, "epochs": 5}, progress=False)
    assert np.isfinite(rec.epochs[-1]["loss"]) and rec.epochs[-1]["loss"] < rec.epochs[0]["loss"]


def test_training_is_seeded(clustered):
    a = train(clustered, "LightGCN", {**FAST, "epochs": 3}, progress=False)
    b = train(clustered, "LightGCN", {**FAST, "epochs": 3}, progress=False)
    assert [e["loss"] for e in a.epochs] == [e["loss"] for e in b.epochs]


def test_early_stopping_patience(clustered):
    rec = train(clustered, "BPR", {**FAST, "epochs": 60, "learning_rate": 0.0, "stopping_step": 3},
                progress=False)
    # lr 0 -> valid never improves after epoch 0 -> stops after 1 + (3 + 1) evaluations (MMRec rule)
    assert rec.stopped_early and len(rec.epochs) == 5 and rec.best_epoch == 0


def test_test_metrics_are_from_best_valid_epoch(clustered):
    rec = train(clustered, "LightGCN", {**FAST, "epochs": 6}, progress=False)
    model = build_model("LightGCN", clustered, rec.config)
    model.load_state_dict(rec._model.state_dict())
    from mmfeat.recommenders import Evaluator
    v = Evaluator(clustered.train_csr(), clustered.valid, FAST["topk"]).evaluate(model)
    assert v["recall@20"] == pytest.approx(rec.best_valid["recall@20"])


def test_grid_search_selects_on_valid_not_test(clustered, monkeypatch):
    # fake fit: valid and test disagree on the best combination
    fake = {0.1: (0.30, 0.10), 0.2: (0.20, 0.90), 0.3: (0.25, 0.50)}

    def fake_fit(data, model_name, cfg, runs_dir=None, **kw):
        v, t = fake[cfg["reg_weight"]]
        return RunRecord(run_id=str(cfg["reg_weight"]), model=model_name, config={**cfg, "valid_metric": "recall@20"},
                         split_hash="", feature_versions={}, missing_features={}, data={},
                         best_valid={"recall@20": v}, test={"recall@20": t})

    monkeypatch.setattr(trainer_mod, "fit", fake_fit)
    res = grid_search(clustered, "BPR", {"reg_weight": [0.1, 0.2, 0.3]})
    assert res.best.config["reg_weight"] == 0.1
    assert len(res.table()) == 3


def test_grid_search_real(clustered):
    res = grid_search(clustered, "LightGCN", {"n_layers": [1, 2]}, {**FAST, "epochs": 3}, progress=False)
    vals = [r.best_valid["recall@20"] for r in res.runs]
    assert res.best.best_valid["recall@20"] == max(vals)


def test_missing_hyper_parameter_is_a_clear_key_error(clustered):
    from mmfeat.recommenders.models.lightgcn import LightGCN
    with pytest.raises(KeyError, match="n_layers"):
        LightGCN(clustered, {"embedding_size": 8, "reg_weight": 0.0})


def test_feature_graph_cache_key_follows_content(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 8)).astype(np.float32)
    g = f.copy()
    g[3, 0] += 1.0
    assert knn_cache_key(f, 10) == knn_cache_key(f.copy(), 10)
    assert knn_cache_key(f, 10) != knn_cache_key(g, 10)
    assert knn_cache_key(f, 10) != knn_cache_key(f, 5)
    a = knn_normalized_graph(f, 5, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    knn_normalized_graph(g, 5, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2
    # each row has its k nearest (self first, cosine), values D^-1/2 A D^-1/2 with row degree k
    dense = a.to_dense().numpy()
    assert ((dense > 0).sum(1) == 5).all() and np.allclose(dense[dense > 0], 1 / 5, rtol=1e-5)
    assert (np.diag(dense) > 0).all()


def test_freedom_pre_epoch_prunes_edges(clustered):
    m = build_model("FREEDOM", clustered, {**FREEDOM_FAST, "dropout": 0.5})
    torch.manual_seed(0)
    m.pre_epoch()
    a = m.masked_adj.to_sparse_coo().coalesce()
    n_train = clustered.train_csr().nnz
    assert a._nnz() == 2 * int(n_train * 0.5)
    first = a.indices().clone()
    m.pre_epoch()
    assert not torch.equal(first, m.masked_adj.to_sparse_coo().coalesce().indices())


# ---------------------------------------------------------------------------- early stopping as MMRec does it
class _ScriptedEvaluator:
    """Stands in for the trainer's Evaluator: each evaluate() returns the next scripted recall@20."""

    scores: list = []

    def __init__(self, *args, **kwargs):
        pass

    def evaluate(self, model):
        return {"recall@20": _ScriptedEvaluator.scores.pop(0) if _ScriptedEvaluator.scores else 0.0}


def test_early_stopping_compares_scores_rounded_to_4_decimals(clustered, monkeypatch):
    # 0.12344 beats 0.12341 only in the 5th decimal: MMRec's evaluator rounds both to 0.1234, so epoch 0
    # stays the best and epoch 1 is a bad evaluation (unrounded, epoch 1 would be the best).
    _ScriptedEvaluator.scores = [0.12341, 0.12344, 0.1234, 0.9]  # 3 valid passes, then the test pass
    monkeypatch.setattr(tasks_mod, "Evaluator", _ScriptedEvaluator)
    rec = train(clustered, "BPR", {**FAST, "epochs": 10, "stopping_step": 1}, progress=False)
    assert rec.best_epoch == 0 and len(rec.epochs) == 3 and rec.stopped_early
    assert rec.best_valid["recall@20"] == 0.12341  # the record keeps full precision
    assert rec.test == {"recall@20": 0.9}


def test_early_stopping_rounds_like_numpy_float64():
    stop = trainer_mod.EarlyStopping(stopping_step=0)
    assert stop.rounded(0.12345) == float(np.round(np.float64(0.12345), 4))
    assert stop.update(0.30004) == (True, False)
    assert stop.update(0.30001) == (False, True)  # equal after rounding: not an improvement


def test_grid_selection_compares_rounded_valid_scores(clustered, monkeypatch):
    fake = {0.1: (0.12341, 0.1), 0.2: (0.12344, 0.9)}  # equal at 4 decimals: the first combination wins

    def fake_fit(data, model_name, cfg, runs_dir=None, **kw):
        v, t = fake[cfg["reg_weight"]]
        return RunRecord(run_id=str(cfg["reg_weight"]), model=model_name, config={**cfg, "valid_metric": "recall@20"},
                         split_hash="", feature_versions={}, missing_features={}, data={},
                         best_valid={"recall@20": v}, test={"recall@20": t})

    monkeypatch.setattr(trainer_mod, "fit", fake_fit)
    assert grid_search(clustered, "BPR", {"reg_weight": [0.1, 0.2]}).best.config["reg_weight"] == 0.1


# ---------------------------------------------------------------------------- splits without validation users
@pytest.fixture(scope="module")
def no_valid():
    """24 users x 6 items each, every user's last item in test, none in valid."""
    rng = np.random.default_rng(1)
    rows = [(f"u{u}", f"i{i}", k) for u in range(24) for k, i in enumerate(rng.choice(30, 6, replace=False))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["split"] = np.where(df["timestamp"] == 5, 2, 0)
    return from_split_frame(df)


def test_split_without_validation_users_is_an_error(no_valid):
    with pytest.raises(ValueError, match="no validation users.*early_stopping=false"):  # a ConfigError
        train(no_valid, "LightGCN", {**FAST, "epochs": 3}, progress=False)
    with pytest.raises(ValueError, match="no validation users"):
        grid_search(no_valid, "LightGCN", {"n_layers": [1, 2]}, {**FAST, "epochs": 3}, progress=False)


def test_fixed_epochs_without_validation_reports_test_at_the_last_epoch(no_valid, tmp_path):
    from mmfeat.recommenders import Evaluator
    rec = train(no_valid, "LightGCN", {**FAST, "epochs": 3, "early_stopping": False}, runs_dir=tmp_path,
                progress=False)
    assert len(rec.epochs) == 3 and rec.best_epoch == 2 and not rec.stopped_early
    assert rec.selection == "last_epoch" and rec.best_valid == {}
    assert all("valid" not in e for e in rec.epochs)
    t = Evaluator(no_valid.train_csr(), no_valid.test, FAST["topk"]).evaluate(rec._model)
    assert t["recall@20"] == pytest.approx(rec.test["recall@20"])
    assert json.loads((tmp_path / rec.run_id / "record.json").read_text())["selection"] == "last_epoch"


def test_fixed_epochs_trains_every_epoch_even_when_valid_stalls(clustered):
    rec = train(clustered, "BPR", {**FAST, "epochs": 4, "learning_rate": 0.0, "stopping_step": 0,
                                   "early_stopping": False}, progress=False)
    assert len(rec.epochs) == 4 and not rec.stopped_early and rec.best_epoch == 3
    assert rec.best_valid == rec.epochs[-1]["valid"]


def _plotted_figure(rec, tmp_path, monkeypatch):
    """Run the trainer's curve plot and return the matplotlib figure it saved (and the png path)."""
    from matplotlib.figure import Figure

    saved = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(self) or real_savefig(self, *a, **k))
    path = trainer_mod._plot_curve(rec, tmp_path / "curve.png")
    assert path == str(tmp_path / "curve.png") and (tmp_path / "curve.png").stat().st_size > 0
    return saved[0]


def _curve_record(**kw):
    epochs = [{"epoch": e, "loss": 10.0 - e, "train_s": 0.1,
               **({"valid": {"recall@20": 0.1 + 0.01 * e}} if e % 2 else {})} for e in range(7)]
    base = dict(run_id="freedom-x", model="FREEDOM", config={"valid_metric": "recall@20"}, split_hash="ab" * 32,
                feature_versions={"text": "microlens-mini/title_minilm/v-111", "image": "microlens-mini/desc/v-222"},
                missing_features={}, data={}, epochs=epochs, best_epoch=5)
    return RunRecord(**{**base, **kw})


def test_curve_has_a_legend_integer_epoch_ticks_and_a_title_naming_model_dataset_and_versions(tmp_path, monkeypatch):
    fig = _plotted_figure(_curve_record(), tmp_path, monkeypatch)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train loss", "valid recall@20", "best valid epoch (5)"]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    title = ax.get_title()
    assert title.startswith("FREEDOM on microlens-mini")
    assert "text=title_minilm/v-111" in title and "image=desc/v-222" in title


def test_curve_title_of_a_run_without_features_names_the_split(tmp_path, monkeypatch):
    rec = _curve_record(feature_versions={}, model="LightGCN", selection="last_epoch", best_epoch=6)
    ax = _plotted_figure(rec, tmp_path, monkeypatch).axes[0]
    assert ax.get_title() == "LightGCN on split abababababab\nno item features"
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "reported (last) epoch (6)"
