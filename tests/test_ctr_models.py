"""DIN and QIN: the factored attention equals the textbook one, tiny training beats popularity, the trainer's
CTR rules (selection metric, plateau LR decay, no ignored keys), and the request path (run_training, CLI)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmfeat.pipelines.training import run as tr
from mmfeat.pipelines.cli import main
from mmfeat.recommenders import ConfigError, fit
from mmfeat.recommenders.ctr import CTRData, CTRSplit, auc
from mmfeat.recommenders.models import build_model
from tests.conftest import import_microlens_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"embedding_size": 8, "dnn_hidden_units": [16], "attention_hidden_units": [16], "train_batch_size": 128,
        "max_len": 8}
TINY_QIN = {"embedding_size": 8, "train_batch_size": 128, "max_len": 8, "num_layers": 2, "num_row": 2}


def clustered_ctr(n_rows: int = 3000, seed: int = 0) -> CTRData:
    """60 items in 3 clusters (the cluster is in the item embedding); a row's history is from one cluster and
    its label says whether the target is from that cluster: popularity cannot predict it, attention can."""
    rng = np.random.default_rng(seed)
    n_items, L = 60, 8
    cluster = np.arange(n_items) % 3
    emb = np.zeros((n_items + 1, 6), np.float32)
    emb[1:, :3] = np.eye(3)[cluster]
    emb[1:, 3:] = rng.normal(scale=0.1, size=(n_items, 3))
    splits = {}
    for name, n in (("train", n_rows), ("valid", n_rows // 4), ("test", n_rows // 4)):
        user_c = rng.integers(0, 3, n)
        seq = np.stack([rng.choice(np.flatnonzero(cluster == c), L) + 1 for c in user_c]).astype(np.int32)
        seq[: n // 5, : L // 2] = 0  # some short histories (left padding)
        item = rng.integers(1, n_items + 1, n)
        label = (cluster[item - 1] == user_c).astype(np.float32)
        splits[name] = CTRSplit(user=np.arange(n), item=item, likes_level=rng.integers(0, 11, n),
                                views_level=rng.integers(0, 11, n), label=label, item_seq=seq)
    tags = np.zeros((n_items + 1, 5), np.int64)
    tags[1:, 0] = rng.integers(1, 4, n_items)
    return CTRData(splits=splits, item_tags=tags, item_emb=emb, item_ids=[""] + [str(i) for i in range(1, 61)])


def _batch(data: CTRData, n: int = 64) -> dict:
    from mmfeat.recommenders.ctr.training import batch_of

    return batch_of(data.splits["train"], np.arange(n), torch.device("cpu"))


@pytest.mark.parametrize("softmax", [False, True])
def test_din_factored_attention_equals_the_concatenation_mlp(softmax):
    data = clustered_ctr(300)
    model = build_model("DIN", data, {**TINY, "din_use_softmax": softmax, "attention_dropout": 0.0}).eval()
    b = _batch(data)
    items = model.batch_items(b)
    got = model.attention(items)
    t, s, mask = items.target, items.seq, items.mask
    tt = t.unsqueeze(1).expand_as(s)
    h = torch.relu(model.attention.first(torch.cat([tt, s, tt - s, tt * s], dim=-1)))  # every position
    score = model.attention.rest(h).squeeze(-1)
    score = score.masked_fill(~mask, -torch.inf).softmax(-1).nan_to_num(0.0) if softmax else score * mask
    torch.testing.assert_close(got, (score.unsqueeze(-1) * s).sum(1), rtol=1e-4, atol=1e-5)


def test_qin_attention_is_relu_gated_scaled_dot_product():
    data = clustered_ctr(300)
    model = build_model("QIN", data, TINY_QIN).eval()
    items = model.batch_items(_batch(data))
    att = model.attention
    q = att.q(items.target)
    k, v = att.kv(items.seq).chunk(2, dim=-1)
    scores = torch.relu((q.unsqueeze(1) * k).sum(-1) / q.shape[-1] ** 0.5 * items.mask)
    want = att.o((scores.unsqueeze(-1) * v).sum(1)) + items.target
    torch.testing.assert_close(att(items), want, rtol=1e-4, atol=1e-5)


def test_item_representation_is_computed_once_per_distinct_item():
    data = clustered_ctr(300)
    model = build_model("DIN", data, TINY)
    b = _batch(data)
    items = model.batch_items(b)
    ids = torch.cat([b["item_seq"], b["item"].unsqueeze(1)], 1)
    assert items.table.shape[0] == len(torch.unique(ids))
    torch.testing.assert_close(items.seq, model.item_repr(b["item_seq"]))
    assert not model.item_repr(torch.zeros(1, dtype=torch.long))[:, :16].any()  # padding: zero id and tags


@pytest.mark.parametrize("name", ["DIN", "QIN"])
def test_tiny_training_beats_popularity(name):
    data = clustered_ctr()
    train, test = data.splits["train"], data.splits["test"]
    ctr = np.bincount(train.item, weights=train.label, minlength=61) / np.maximum(np.bincount(train.item, minlength=61), 1)
    popularity = auc(test.label, ctr[test.item])
    cfg = {**(TINY if name == "DIN" else TINY_QIN), "epochs": 6, "learning_rate": 3e-3}
    rec = fit(data, name, cfg, progress=False)
    assert rec.test["auc"] > max(popularity, 0.5) + 0.2, (rec.test, popularity)
    assert set(rec.test) == {"auc", "logloss"} and rec.best_valid["auc"] == max(e["valid"]["auc"] for e in rec.epochs)


def test_ctr_trainer_rules():
    data = clustered_ctr(300)
    with pytest.raises(ConfigError, match="select on one of auc, gauc"):
        fit(data, "DIN", {**TINY, "valid_metric": "logloss", "epochs": 1}, progress=False)
    with pytest.raises(ConfigError, match="topk does not apply"):
        fit(data, "DIN", {**TINY, "topk": [10], "epochs": 1}, progress=False)
    with pytest.raises(ConfigError, match="max_len=9 exceeds"):
        fit(data, "DIN", {**TINY, "max_len": 9, "epochs": 1}, progress=False)
    with pytest.raises(ConfigError, match="CTR model"):
        fit(object(), "DIN", TINY, progress=False)


def test_plateau_decays_the_learning_rate_and_the_epoch_schedule_keeps_it():
    from mmfeat.recommenders.ctr.training import CTRTask
    from mmfeat.recommenders.models import resolve_config

    task = CTRTask("DIN", clustered_ctr(300), resolve_config("DIN", {}))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    task.on_plateau(opt, sched)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    stop = task.early_stopping(1)
    assert stop.update(0.7) == (True, False) and stop.update(0.7000005) == (False, False)  # < 1e-6: no gain
    assert stop.update(0.71) == (True, False)  # FuxiCTR does not round: 1e-2 above is a gain


@pytest.mark.parametrize("name", ["DIN", "QIN"])
def test_embedding_regularizer_covers_the_whole_feature_embedding_module(name):
    """FuxiCTR's BaseModel.regularization_loss penalises every parameter of its FeatureEmbeddingDict, whose
    feature_encoders hold the Linear on item_emb_d{D}: the map is in the L2 term, the network is not."""
    lam = 1e-2
    model = build_model(name, clustered_ctr(300), {**(TINY if name == "DIN" else TINY_QIN),
                                                    "embedding_regularizer": lam})
    scope = [model.item_id_emb.weight, model.tag_emb.weight, model.item_emb_proj.weight,
             *(e.weight for e in model.level_emb.values())]
    reg = model.regularization()
    assert float(reg) == pytest.approx(lam / 2 * float(sum(p.pow(2).sum() for p in scope)), rel=1e-6)
    reg.backward()
    assert torch.allclose(model.item_emb_proj.weight.grad, lam * model.item_emb_proj.weight.detach())
    scoped = {id(p) for p in scope}
    assert all(p.grad is None for p in model.parameters() if id(p) not in scoped)


@pytest.mark.parametrize("name", ["DIN", "QIN"])
def test_the_loss_is_fuxictrs_cross_entropy_on_probabilities(name):
    """A saturated wrong prediction (sigmoid(x) == 1.0 in float32): FuxiCTR's BCE on the Sigmoid output clamps
    its log at -100 and passes no gradient; BCE with logits gave loss x and gradient 1/B, which made our QIN's
    first steps differ from the authors' (step-0 loss 0.9669 vs 0.9766 on the same weights and batch)."""
    model = build_model(name, clustered_ctr(300), TINY if name == "DIN" else TINY_QIN)
    logits = torch.tensor([30.0, -2.0], requires_grad=True)
    model.logits = lambda batch: logits
    model.embedding_regularizer = 0.0
    loss = model.calculate_loss({"label": torch.tensor([0.0, 1.0])})
    assert loss.item() == pytest.approx((100.0 + np.log1p(np.exp(2.0))) / 2, rel=1e-6)
    loss.backward()
    assert logits.grad[0].item() == 0.0 and logits.grad[1].item() < 0


def test_batchnorm_never_sees_a_one_row_batch():
    data = clustered_ctr(129)  # 129 train rows, batch 128: the last row joins the previous batch
    rec = fit(data, "DIN", {**TINY, "epochs": 1}, progress=False)
    assert np.isfinite(rec.test["auc"])


# ---------------------------------------------------------------------------- request path
@pytest.fixture()
def microlens_store(tmp_path: Path) -> str:
    return import_microlens_features(tmp_path, [("title_minilm", None)])


def test_run_training_din_on_the_sample_records_versions_and_the_set(microlens_store, tmp_path):
    out = tr.run_training("microlens", model="DIN", features={"text": "title_minilm"}, versus=["ids"],
                          overrides={**TINY, "epochs": 1}, store_root=microlens_store, runs_dir=str(tmp_path / "runs"))
    with_f, ids = (arm["best"] for arm in out["arms"])
    assert with_f["feature_versions"]["text"].startswith("microlens-mini/title_minilm/v-")
    assert ids["feature_versions"] == {} and ids["data"]["emb_dim"] == 0
    record = json.loads(Path(with_f["record_path"]).read_text())
    assert record["data"]["label"].startswith("implicit clicks") and record["data"]["history"]["kind"] == "last"
    assert record["split"]["method"] == "time" and record["split_hash"] == ids["split_hash"]
    assert "auc" in record["test"] and record["data"]["embedding"]["dim"] == 8


def test_a_preset_trains_its_grid_under_explicit_values_and_the_records_name_it(microlens_store, tmp_path):
    out = tr.run_training("microlens", model="DIN", features={"text": "title_minilm"}, preset="din-mmctr",
                          overrides={**TINY, "epochs": 1}, store_root=microlens_store, runs_dir=str(tmp_path / "runs"))
    records = [json.loads(Path(r["record_path"]).read_text()) for r in out["records"]]
    assert sorted(r["config"]["embedding_regularizer"] for r in records) == [1e-7, 1e-6]  # the tuner's grid
    for r in records:
        assert r["preset"] == "din-mmctr" and r["config"]["net_dropout"] == 0.1 and r["config"]["stopping_step"] == 2
        assert r["config"]["train_batch_size"] == TINY["train_batch_size"]  # --set wins over the preset's 8192
    with pytest.raises(tr.TrainRequestError, match="configures DIN, not SASRec"):
        tr.run_training("microlens", model="SASRec", preset="din-mmctr", store_root=microlens_store)


@pytest.mark.parametrize("kw, match", [
    ({"split": "random"}, "split by time"),
    ({"min_rating": 4.0}, "--min-rating / --k-core do not apply"),
    ({"history": "gsu"}, "--history gsu retrieves"),
])
def test_ctr_requests_refuse_what_they_would_ignore(microlens_store, kw, match):
    with pytest.raises(tr.TrainRequestError, match=match):
        tr.validate_train_request("microlens", model="DIN", features={}, versus=None, overrides=None, grid=None,
                                  store_root=microlens_store, **kw)
    with pytest.raises(tr.TrainRequestError, match="--history applies to the CTR models"):
        tr.validate_train_request("microlens", model="LightGCN", features={}, versus=None, overrides=None, grid=None,
                                  store_root=microlens_store, history="last")


def test_cli_trains_din_with_gsu_history_through_the_flow(prefect_harness, microlens_store, tmp_path, capsys):
    rc = main(["train", "microlens", "--model", "DIN", "--feature", "text=title_minilm", "--history", "gsu",
               *sum((["--set", f"{k}={json.dumps(v)}"] for k, v in {**TINY, "epochs": 1}.items()), []),
               "--store", microlens_store, "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert rc == 0 and "DIN on microlens-mini" in out and "auc" in out


def test_an_mmctr_folder_is_a_source_models_train_on_as_written(microlens_store, tmp_path):
    """The challenge download's layout (here: our export of the sample) behind a manifest: DIN trains on the
    files' rows; a store feature replaces item_emb_d<D>."""
    from mmfeat.pipelines.store.exports import export_fuxictr
    from mmfeat.pipelines.store.feature_store import FeatureStore

    folder = tmp_path / "data" / "MicroLens_1M_x1"
    export_fuxictr(FeatureStore(microlens_store), "microlens", {"text": "title_minilm"}, folder, dim=8, seq_len=8)
    (tmp_path / "data" / "mmctr.yaml").write_text(
        "name: mmctr-sample\nsource: {kind: mmctr, root: MicroLens_1M_x1}\n"
        "feature_sets:\n  - name: tags_minilm\n    kind: text_embedding\n    input: {text_fields: [tags]}\n"
        "    params: {backbone: all-MiniLM-L6-v2}\n")
    from mmfeat.pipelines.training.ctr_data import load_ctr_data

    data, info = load_ctr_data(str(tmp_path / "data" / "mmctr.yaml"), store_root=microlens_store, seq_len=8)
    assert data.info["embedding"] == {"from": "item_info.parquet", "dim": 8} and data.feature_versions == {}
    assert info["rows"] == json.loads((folder / "_export.json").read_text())["rows"]
    out = tr.run_training(str(tmp_path / "data" / "mmctr.yaml"), model="DIN", overrides={**TINY, "epochs": 1},
                          store_root=microlens_store, runs_dir=str(tmp_path / "runs"))
    assert out["best"]["split"]["method"] == "given" and "auc" in out["best"]["test"]


def test_qin_fused_keys_and_values_start_at_the_reference_scale():
    """The reference has separate W_k / W_v (Xavier over dim + A each); one dim -> 2A layer drew a smaller std."""
    torch.manual_seed(0)
    model = build_model("QIN", clustered_ctr(300), {**TINY_QIN, "embedding_size": 32})
    kv = model.attention.kv.weight
    a, dim = kv.shape[0] // 2, kv.shape[1]
    separate, fused = (2 / (dim + a)) ** 0.5, (2 / (dim + 2 * a)) ** 0.5
    for half in kv.chunk(2, dim=0):
        assert abs(half.std().item() - separate) < 0.1 * separate
        assert abs(half.std().item() - fused) > 0.1 * fused
