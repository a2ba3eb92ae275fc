"""Sequential models on tiny data with a sequential rule (next item = last item + 1): each must beat the
popularity baseline; item representations, losses, and fMRLRec's nested sizes."""
import numpy as np
import pandas as pd
import pytest
import torch

from mmfeat.recommenders import ConfigError, build_model, fit, split_interactions
from mmfeat.recommenders.sequential import SequentialEvaluator, from_loo_frame

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_ITEMS = 30
SMALL = {"epochs": 30, "learning_rate": 0.01, "train_batch_size": 128, "max_seq_length": 8, "hidden_size": 16,
         "inner_size": 32, "embedding_size": 16, "mrl_sizes": [8, 16], "seed": 3, "early_stopping": False,
         "topk": [1, 5, 10], "valid_metric": "hit@5", "learner": "adam", "weight_decay": 0.0}


def _cyclic(features: bool = False):
    """80 users, each walking 12 steps through the item cycle from a random start."""
    rng = np.random.default_rng(0)
    starts = rng.integers(0, N_ITEMS, 80)
    df = pd.DataFrame([(u, int((s + t) % N_ITEMS), t) for u, s in enumerate(starts) for t in range(12)],
                      columns=["user_id", "item_id", "timestamp"])
    feats = {"text": (np.arange(N_ITEMS), np.eye(N_ITEMS, dtype=np.float32))} if features else None
    return from_loo_frame(split_interactions(df, "loo"), features=feats, split_hash="cyclic")


class _Popularity(torch.nn.Module):
    device = torch.device("cpu")

    def __init__(self, data):
        super().__init__()
        counts = np.bincount(data.tokens - 1, minlength=data.n_items).astype(np.float32)
        self.scores = torch.from_numpy(counts)

    def full_sort_predict(self, inputs, lengths):
        return self.scores.expand(len(inputs), -1).clone()

    def prepare_eval(self):
        pass

    def end_eval(self):
        pass


def _cfg(name):
    from mmfeat.recommenders.models import get_model_class

    fields = get_model_class(name).config_class.model_fields
    return {k: v for k, v in SMALL.items() if k in fields}


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "fMRLRec"])
def test_each_model_beats_popularity(name):
    data = _cyclic()
    pop = SequentialEvaluator(data, "test", max_len=8, topk=(5,), metrics=("hit",)).evaluate(_Popularity(data))
    rec = fit(data, name, _cfg(name), progress=False)
    assert rec.test["hit@5"] > pop["hit@5"] + 0.3, (rec.test, pop)


def test_fmrlrec_reports_every_nested_size_from_one_training():
    rec = fit(_cyclic(), "fMRLRec", {**_cfg("fMRLRec"), "epochs": 3}, progress=False)
    assert set(rec.sub_models) == {"d8"} and set(rec.sub_models["d8"]) == {"valid", "test"}
    assert set(rec.sub_models["d8"]["test"]) == set(rec.test)  # same metrics at every size


def test_fmrlrec_prefix_is_a_model_of_its_own():
    """Output dims [:8] do not depend on any parameter or input beyond dim 8 (full-scale Matryoshka)."""
    data = _cyclic(features=True)
    model = build_model("fMRLRec", data, {**_cfg("fMRLRec"), "lru_dropout": 0.0, "lru_attn_dropout": 0.0}).eval()
    inputs = torch.from_numpy(SequentialEvaluator(data, "test", max_len=8).inputs)
    before = model.encode(inputs, model.items())[..., :8].detach().clone()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and p.shape[0] == 16:  # rows 8.. of every layer's weight
                p[8:] += torch.randn_like(p[8:])
            elif p.ndim == 1 and p.shape[0] == 16:
                p[8:] += 1.0
    after = model.encode(inputs, model.items())[..., :8]
    assert torch.allclose(before, after, atol=1e-5)


def test_item_repr_auto_reads_features_and_nothing_given_is_ignored():
    data = _cyclic(features=True)
    rec = fit(data, "SASRec", _cfg("SASRec"), progress=False)
    assert rec.data["item_repr"] == "feature" and rec.feature_versions == {} and rec.test["hit@5"] > 0.5
    with pytest.raises(ConfigError, match="item_repr=id reads no item features"):
        build_model("SASRec", data, {"item_repr": "id"})
    with pytest.raises(ConfigError, match="needs item features"):
        build_model("SASRec", _cyclic(), {"item_repr": "feature"})
    both = build_model("SASRec", data, {"item_repr": "id+feature"})
    assert both.items.id_embedding is not None and len(both.items.projections) == 1


def test_bpr_loss_and_prefix_mode_train():
    rec = fit(_cyclic(), "SASRec", {**_cfg("SASRec"), "loss_type": "BPR", "train_mode": "prefix", "epochs": 2},
              progress=False)
    assert rec.data["train_mode"] == "prefix" and all(np.isfinite(e["loss"]) for e in rec.epochs)
    with pytest.raises(ConfigError, match="loss_type='bce'"):
        build_model("SASRec", _cyclic(), {"loss_type": "bce"})


def test_valid_metric_must_be_computed():
    with pytest.raises(ConfigError, match="valid_metric='recall@20'"):
        fit(_cyclic(), "SASRec", {**_cfg("SASRec"), "valid_metric": "recall@20"}, progress=False)


def test_time_limit_always_runs_the_first_epoch():
    rec = fit(_cyclic(), "GRU4Rec", {**_cfg("GRU4Rec"), "epochs": 50, "time_limit_s": 1e-6}, progress=False)
    assert len(rec.epochs) == 1 and rec.stop_reason == "time_limit" and rec.test


def test_time_limit_does_not_start_an_epoch_that_would_end_past_it(monkeypatch):
    """A fake clock that ticks one second per reading: the trainer reads it at the start, before each epoch
    after the first (the check), around training and around validation, so an epoch takes 2 s (1 training,
    1 validation) and epoch k >= 1 is checked at second 5k and ends at 5k + 4. With an 11 s budget epoch 1
    (checked at 5, expected end 7) runs and epoch 2 (checked at 10, expected end 12) does not; stopping only
    after the limit was crossed ran epoch 2 as well, to second 14."""
    import types

    from mmfeat.recommenders import trainer

    ticks = iter(range(10_000))
    clock = types.SimpleNamespace(perf_counter=lambda: float(next(ticks)), strftime=trainer.time.strftime)
    monkeypatch.setattr(trainer, "time", clock)
    rec = fit(_cyclic(), "GRU4Rec", {**_cfg("GRU4Rec"), "epochs": 50, "time_limit_s": 11}, progress=False)
    assert [e["train_s"] for e in rec.epochs] == [1.0, 1.0]
    assert rec.stop_reason == "time_limit"


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec", "fMRLRec"])
def test_selected_position_shortcuts_equal_the_full_encoder(name):
    """Evaluation and prefix samples compute only the positions they need; that must equal encode() there."""
    data = _cyclic()
    model = build_model(name, data, _cfg(name)).eval()
    ev = SequentialEvaluator(data, "test", max_len=8)
    inputs, lengths = torch.from_numpy(ev.inputs), torch.from_numpy(ev.lengths)
    lengths[:4] = torch.tensor([1, 2, 5, 8])
    with torch.no_grad():
        table = model.items()
        encoded = model.encode(inputs, table)
        full = encoded[torch.arange(len(inputs)), lengths - 1]
        assert torch.allclose(model.last_hidden(inputs, lengths, table), full, atol=1e-5)
        sel = torch.rand(inputs.shape) < 0.2  # sparse positions (RecBole-style samples)
        assert torch.allclose(model.hidden_at(inputs, sel, table), encoded[sel], atol=1e-5)


def test_pieces_of_a_batch_give_the_batch_gradient():
    """max_tokens_per_forward splits a batch into pieces; the accumulated step equals the one-piece step."""
    from mmfeat.recommenders.sequential.batches import epoch_batches, train_samples
    from mmfeat.recommenders.tasks import accumulated_step

    data = _cyclic()
    s, e, c = train_samples(data.indptr, 8, "prefix")
    inputs, targets = next(epoch_batches(data.tokens, s, e, c, 8, 64, np.random.default_rng(0)))
    grads = []
    for rows in (len(inputs), 5):
        torch.manual_seed(0)
        model = build_model("SASRec", data, {**_cfg("SASRec"), "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0})
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        n = float((targets > 0).sum())
        parts = [((inputs[a:a + rows], targets[a:a + rows]), float((targets[a:a + rows] > 0).sum()) / n)
                 for a in range(0, len(inputs), rows)]
        accumulated_step(model, opt, parts, None, 0, 0)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_gru4rec_runs_recbole_sized_batches_in_one_piece():
    """Each piece re-runs the GRU through every position (0.74-0.80x the epoch time in one piece on ML-1M), so
    GRU4Rec's default holds RecBole's 2,048 x 50-token batch whole; SASRec keeps its attention-memory bound."""
    from mmfeat.recommenders.models.base import resolve_config

    assert resolve_config("GRU4Rec", {})["max_tokens_per_forward"] >= 2048 * 50
    assert resolve_config("SASRec", {})["max_tokens_per_forward"] == 4096


def test_train_stride_outside_window_mode_is_an_error_not_ignored():
    with pytest.raises(ConfigError, match="train_stride=5 applies to train_mode=window only"):
        fit(_cyclic(), "SASRec", {**_cfg("SASRec"), "train_mode": "prefix", "train_stride": 5}, progress=False)
    with pytest.raises(ConfigError, match="train_stride=9 must be in 1..max_seq_length=8"):
        fit(_cyclic(), "SASRec", {**_cfg("SASRec"), "train_mode": "window", "train_stride": 9}, progress=False)


@pytest.mark.parametrize("name", ["SASRec", "GRU4Rec"])
def test_bfloat16_training_runs_the_products_in_bfloat16_and_still_learns(name):
    """``train_precision: bfloat16`` trains under autocast: the loss of one batch moves by bfloat16 rounding (so
    the key is honoured, not ignored), the weights and the evaluation stay float32, and the model learns."""
    from mmfeat.recommenders.sequential.batches import epoch_batches, train_samples

    data = _cyclic()
    s, e, c = train_samples(data.indptr, 8, "window")
    batch = next(epoch_batches(data.tokens, s, e, c, 8, 64, np.random.default_rng(0)))
    model = build_model(name, data, _cfg(name)).eval()  # eval: no dropout, the same function twice
    with torch.no_grad():
        full = model.calculate_loss(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model.calculate_loss(batch)
    assert half.dtype == torch.float32 and float(half) != float(full)
    assert abs(float(half) - float(full)) < 0.02 * float(full)
    rec = fit(data, name, {**_cfg(name), "train_precision": "bfloat16"}, progress=False)
    assert rec.data["train_precision"] == "bfloat16"
    assert all(p.dtype == torch.float32 for p in rec._model.parameters())
    pop = SequentialEvaluator(data, "test", max_len=8, topk=(5,), metrics=("hit",)).evaluate(_Popularity(data))
    assert rec.test["hit@5"] > pop["hit@5"] + 0.3, (rec.test, pop)


def test_train_precision_typo_is_an_error():
    with pytest.raises(ConfigError, match="train_precision='bf16' is not one of float32, bfloat16"):
        fit(_cyclic(), "SASRec", {**_cfg("SASRec"), "train_precision": "bf16"}, progress=False)


def test_rand_dropout_keeps_1_minus_p_scaled_and_is_off_in_eval():
    from mmfeat.recommenders.sequential.base import Dropout, rand_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = rand_dropout(x, 0.3)
    assert abs(float((y > 0).float().mean()) - 0.7) < 0.005
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.7))
    assert torch.equal(rand_dropout(x, 0.3, training=False), x) and not rand_dropout(x, 1.0).any()
    assert rand_dropout(x.bfloat16(), 0.5).dtype == torch.bfloat16
    assert torch.equal(Dropout(0.5).eval()(x), x)


def test_sasrec_written_out_attention_equals_the_fused_one(monkeypatch):
    """Training attention is written out (for rand_dropout's mask); with the mask keeping everything it must
    equal scaled_dot_product_attention, causal and with a query subset (forward_at)."""
    from mmfeat.recommenders.sequential import sasrec

    data = _cyclic()
    model = build_model("SASRec", data, {**_cfg("SASRec"), "hidden_dropout_prob": 0.0})
    monkeypatch.setattr(sasrec, "rand_dropout", lambda x, p, training=True: x)
    inputs = torch.from_numpy(SequentialEvaluator(data, "test", max_len=8).inputs)
    sel = torch.rand(inputs.shape) < 0.3
    with torch.no_grad():
        table = model.items()
        outs = [(model.train(mode).encode(inputs, table), model.hidden_at(inputs, sel, table)) for mode in (True, False)]
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5) and torch.allclose(outs[0][1], outs[1][1], atol=1e-5)


def test_sampled_softmax_is_ce_over_the_target_and_shared_drawn_items():
    """``ce_negatives: k``: CE over [target, k items drawn without replacement], a drawn item equal to the row's
    target masked; it learns, and a key that could not apply is an error, not ignored."""
    data = _cyclic()
    model = build_model("SASRec", data, {**_cfg("SASRec"), "ce_negatives": 6})
    hidden, table = torch.randn(5, 16), torch.randn(N_ITEMS + 1, 16)
    targets = torch.tensor([0, 3, 3, 7, 29])
    torch.manual_seed(1)
    loss = model.loss_at(hidden, targets, table)
    torch.manual_seed(1)
    neg = torch.randperm(N_ITEMS)[:6]
    expected = []
    for h, t in zip(hidden, targets):
        others = [float(h @ table[n + 1]) for n in neg if n != t]
        expected.append(-torch.log_softmax(torch.tensor([float(h @ table[t + 1]), *others]), 0)[0])
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-5)
    rec = fit(data, "SASRec", {**_cfg("SASRec"), "ce_negatives": 10}, progress=False)
    pop = SequentialEvaluator(data, "test", max_len=8, topk=(5,), metrics=("hit",)).evaluate(_Popularity(data))
    assert rec.test["hit@5"] > pop["hit@5"] + 0.3, (rec.test, pop)
    with pytest.raises(ConfigError, match="ce_negatives=10 samples the CE softmax, but loss_type=BPR"):
        build_model("SASRec", data, {"loss_type": "BPR", "ce_negatives": 10})
    with pytest.raises(ConfigError, match="ce_negatives=30 is not below the 30 items"):
        build_model("GRU4Rec", data, {"ce_negatives": 30})


def test_fmrlrec_samples_its_softmax_when_asked_instead_of_ignoring_ce_negatives():
    """fMRLRec's loss used to run the full softmax whatever ``ce_negatives`` said; each nested size now takes
    the shared loss, so one drawn negative gives CE over two classes (about log 2 at init), not over 30."""
    torch.manual_seed(0)  # the drawn negative: a row whose target it is has one class (loss 0)
    data = _cyclic()
    cfg = {**_cfg("fMRLRec"), "lru_dropout": 0.0, "lru_attn_dropout": 0.0}
    full = build_model("fMRLRec", data, cfg)
    sampled = build_model("fMRLRec", data, {**cfg, "ce_negatives": 1})
    sampled.load_state_dict(full.state_dict())
    hidden, table = torch.randn(64, 16) * 0.01, torch.randn(N_ITEMS + 1, 16) * 0.01
    targets = torch.randint(0, N_ITEMS, (64,))
    assert float(full.loss_at(hidden, targets, table)) == pytest.approx(np.log(N_ITEMS), abs=0.05)
    assert float(sampled.loss_at(hidden, targets, table)) == pytest.approx(np.log(2), abs=0.05)


def test_train_sample_fraction_draws_a_fresh_share_of_the_samples_each_epoch(monkeypatch):
    from mmfeat.recommenders.sequential import training

    drawn = []
    real = training.epoch_batches

    def spy(tokens, starts, ends, n_targets, *args, **kwargs):
        drawn.append(set(zip(starts.tolist(), ends.tolist())))
        return real(tokens, starts, ends, n_targets, *args, **kwargs)

    monkeypatch.setattr(training, "epoch_batches", spy)
    cfg = {**_cfg("SASRec"), "epochs": 3, "train_mode": "prefix", "train_sample_fraction": 0.25}
    rec = fit(_cyclic(), "SASRec", cfg, progress=False)
    everything = rec.data["train_samples"]
    assert rec.data["train_sample_fraction"] == 0.25
    assert [len(d) for d in drawn] == [round(0.25 * everything)] * 3
    assert drawn[0] != drawn[1]  # a new draw every epoch
    drawn.clear()
    fit(_cyclic(), "SASRec", {**cfg, "train_sample_fraction": 1.0}, progress=False)
    assert [len(d) for d in drawn] == [everything] * 3
    with pytest.raises(ConfigError, match="train_sample_fraction"):
        fit(_cyclic(), "SASRec", {**cfg, "train_sample_fraction": 0.0}, progress=False)
