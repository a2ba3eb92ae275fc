"""fMRLRec trained as its reference (github.com/yueqirex/fMRLRec) trains it: complex LRU projections whose
imaginary parts train, per-chunk fan-in init of the Matryoshka layers, batches of users, and the first item
predicted from an empty history.

The default tests check hand-derived properties; the ``slow`` ones compare with the reference's own layers
when its checkout is at ``FMRLREC_REF`` (default /tmp/fmrlrec_ref) and skip otherwise.
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from mmfeat.recommenders import ConfigError, build_model, fit, resolve_config, split_interactions
from mmfeat.recommenders.sequential import from_loo_frame
from mmfeat.recommenders.sequential.batches import epoch_batches, train_samples, with_empty_history
from mmfeat.recommenders.sequential.lru import LRUBlock, LRULayer, MRLLinear
from mmfeat.recommenders.sequential.training import SequentialTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZES = [4, 8, 16]
REF = Path(os.environ.get("FMRLREC_REF", "/tmp/fmrlrec_ref"))


def _data(n_users: int = 40, length: int = 9):
    rng = np.random.default_rng(0)
    rows = [(u, int(i), t) for u in range(n_users) for t, i in enumerate(rng.choice(25, length, replace=False))]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return from_loo_frame(split_interactions(df, "loo"), split_hash="toy")


def _randomise_imaginary_parts(layer: LRULayer) -> None:
    """Nonzero imaginary parts (they start at zero), so the checks exercise them."""
    with torch.no_grad():
        for lin in (layer.in_im, layer.out_im):
            lin.weight.copy_(torch.randn_like(lin.weight) * 0.3 * lin.mask)
        layer.in_im.bias.copy_(torch.randn_like(layer.in_im.bias) * 0.3)


# ---------------------------------------------------------------------------- complex B and C
def test_gradients_reach_the_imaginary_parts_of_b_and_c():
    torch.manual_seed(0)
    layer = LRULayer(SIZES, 0.0, 0.9, 0.0)
    assert not layer.in_im.weight.detach().any() and not layer.out_im.weight.detach().any()
    (layer(torch.randn(3, 7, 16)) * torch.randn(3, 7, 16)).sum().backward()
    for lin in (layer.in_im, layer.out_im):
        assert float(lin.weight.grad.abs().sum()) > 0
        assert float((lin.weight.grad * (1 - lin.mask)).abs().sum()) == 0.0  # the Matryoshka mask holds
    assert float(layer.in_im.bias.grad.abs().sum()) > 0


def test_lru_equals_the_complex_recurrence_with_padding_carrying_nothing():
    """``y_t = Re(C h_t) + c`` with ``h_t = lambda h_{t-1} + gamma (B x_t + b)`` in torch complex arithmetic,
    one step at a time; leading padding positions hold their own input and pass nothing on (the reference's
    masked scan)."""
    torch.manual_seed(1)
    layer = LRULayer(SIZES, 0.3, 0.95, 0.0).eval()
    _randomise_imaginary_parts(layer)
    x = torch.randn(2, 8, 16)
    real = torch.tensor([[False, True, True, True, True, True, False, False],
                         [False, False, False, True, True, True, True, True]])
    with torch.no_grad():
        got = layer(x, real)
        lam = torch.exp(torch.complex(-torch.exp(layer.nu_log), torch.exp(layer.theta_log)))
        gamma = torch.exp(layer.gamma_log)
        B = torch.complex(layer.in_re.weight * layer.in_re.mask, layer.in_im.weight * layer.in_im.mask)
        b = torch.complex(layer.in_re.bias, layer.in_im.bias)
        C = torch.complex(layer.out_re.weight * layer.out_re.mask, layer.out_im.weight * layer.out_im.mask)
        for row in range(2):
            state = torch.zeros(16, dtype=torch.cfloat)
            seen_real = False
            for t in range(8):
                u = (B @ x[row, t].to(torch.cfloat) + b) * gamma
                if real[row, t]:
                    state, seen_real = lam * state + u, True
                    h = state
                elif seen_real:
                    continue  # trailing padding: no target reads it
                else:
                    h = u
                want = (C @ h).real + layer.out_re.bias
                assert torch.allclose(got[row, t], want, atol=1e-5), (row, t)


# ---------------------------------------------------------------------------- per-chunk init
def test_matryoshka_linear_chunks_start_with_their_own_fan_in():
    """Chunk i (outputs ``[s_{i-1}, s_i)``, fan-in ``s_i``) is the reference's ``nn.Linear(s_i, .)``: uniform in
    ``+-1/sqrt(s_i)``, std ``1/sqrt(3 s_i)``; weights outside the block lower-triangular mask are zero."""
    sizes = [8, 16, 32, 64, 128, 256]
    bounds = [0, *sizes]
    weights, biases = [[] for _ in sizes], [[] for _ in sizes]
    for seed in range(20):
        torch.manual_seed(seed)
        lin = MRLLinear(sizes)
        assert not (lin.weight.detach() * (1 - lin.mask)).any()
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            weights[i].append(lin.weight[a:b, :b].detach().flatten())
            biases[i].append(lin.bias[a:b].detach())
    for i, s in enumerate(sizes):
        w, bias = torch.cat(weights[i]), torch.cat(biases[i])
        assert float(w.abs().max()) <= 1 / math.sqrt(s) + 1e-7 and float(bias.abs().max()) <= 1 / math.sqrt(s) + 1e-7
        assert abs(float(w.std()) * math.sqrt(3 * s) - 1) < 0.1, (s, float(w.std()))
        assert float(w.abs().max()) > 0.9 / math.sqrt(s)


# ---------------------------------------------------------------------------- batches of users
def test_fmrlrec_batches_are_32_users_with_all_their_targets():
    cfg = resolve_config("fMRLRec", {"hidden_size": 16, "mrl_sizes": [8, 16]})
    assert (cfg["train_batch_size"], cfg["train_batch_unit"], cfg["train_mode"]) == (32, "samples", "last")
    data = _data(n_users=70)
    task = SequentialTask("fMRLRec", data, cfg)
    batches = list(epoch_batches(task.tokens, task.starts, task.ends, task.n_targets, task.max_len, 32,
                                 np.random.default_rng(0), "samples"))
    assert [len(x) for x, _ in batches] == [32, 32, 6]  # one window per user, 70 users
    assert all(((y > 0).sum(1) == 7).all() for _, y in batches)  # every target of the window (first item too)
    with pytest.raises(ConfigError, match="train_batch_unit='users' is not one of targets, samples"):
        fit(data, "fMRLRec", {"hidden_size": 16, "mrl_sizes": [8, 16], "train_batch_unit": "users"}, progress=False)


def test_samples_unit_counts_windows_and_targets_unit_counts_targets():
    lengths = np.array([3, 4, 9, 23, 6])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(1, indptr[-1] + 1)
    s, e, c = train_samples(indptr, 5, "window")
    rng = np.random.default_rng(0)
    by_samples = [len(x) for x, _ in epoch_batches(tokens, s, e, c, 5, 3, rng, "samples")]
    assert by_samples == [3] * (len(s) // 3) + ([len(s) % 3] if len(s) % 3 else [])
    by_targets = [int((y > 0).sum()) for _, y in epoch_batches(tokens, s, e, c, 5, 10, rng, "targets")]
    assert sum(by_targets) == int(c.sum()) and max(by_targets) < 10 + 5


# ---------------------------------------------------------------------------- the first item as a target
def test_every_first_item_is_a_target_of_a_padding_input_as_in_the_reference_loader():
    """The reference's train window of a user with train sequence ``seq``: inputs ``seq[:-1][-L:]``, labels
    ``seq[-L:]`` (left-aligned here): the first item is a target exactly when ``len(seq) <= L``, and its
    input is the padding token."""
    lengths = np.array([3, 4, 7, 8, 12])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.arange(1, indptr[-1] + 1)
    padded, pindptr = with_empty_history(tokens, indptr)
    assert (padded[pindptr[:-1]] == 0).all() and (np.delete(padded, pindptr[:-1]) == tokens).all()
    L = 5
    s, e, c = train_samples(pindptr, L, "last")
    for u, (start, end, n) in enumerate(zip(s, e, c)):
        seq = list(tokens[indptr[u]:indptr[u + 1] - 2])  # the reference's train sequence
        want_inputs, want_labels = seq[:-1][-L:], seq[-L:]
        if len(seq) <= L:
            want_inputs = [0] + want_inputs
        assert list(padded[start:end]) == want_inputs and list(padded[start + 1:end + 1]) == want_labels
        assert n == len(want_labels)


def test_first_item_is_predicted_from_the_empty_history_and_padding_changes_no_real_position():
    torch.manual_seed(0)
    data = _data()
    cfg = {"hidden_size": 16, "mrl_sizes": [8, 16], "lru_dropout": 0.0, "lru_attn_dropout": 0.0,
           "lru_r_max": 0.9, "max_seq_length": 8}
    model = build_model("fMRLRec", data, cfg).eval()
    seqs = torch.tensor([[3, 7, 1, 9, 2]])
    with torch.no_grad():
        table = model.items()
        shifted = model.encode(torch.tensor([[0, 3, 7, 1, 9, 2, 0, 0]]), table)
        alone = model.encode(seqs, table)
        empty = model.encode(torch.zeros(1, 1, dtype=torch.long), table)
    assert torch.allclose(shifted[:, 1:6], alone, atol=1e-5)  # a leading padding token passes nothing on
    assert torch.allclose(shifted[:, 0], empty[:, 0], atol=1e-6)  # the empty history: padding alone
    assert not torch.allclose(empty[0, 0], torch.zeros(16))
    # the task trains on every user's first item; without first_item_target it does not
    first_items = set((data.tokens[data.indptr[:-1]]).tolist())
    for flag, expect in ((True, True), (False, False)):
        task = SequentialTask("fMRLRec", data, resolve_config("fMRLRec", {**cfg, "first_item_target": flag}))
        rows = epoch_batches(task.tokens, task.starts, task.ends, task.n_targets, 8, 32, np.random.default_rng(0),
                             "samples")
        firsts = [(int(y[0]), int(x[0])) for x, y in rows for x, y in zip(x, y)]
        assert all(x == 0 for _, x in firsts) == expect
        assert ({t for t, _ in firsts} == first_items) == expect
    rec = fit(data, "fMRLRec", {**cfg, "epochs": 1, "early_stopping": False}, progress=False)
    assert rec.data["first_item_target"] and rec.data["train_targets"] == int((data.lengths - 2).sum())


# ---------------------------------------------------------------------------- against the reference's code
def _reference_lru():
    path = REF / "model" / "lru.py"
    if not path.is_file():
        pytest.skip(f"the fMRLRec reference checkout is not at {REF}")
    spec = importlib.util.spec_from_file_location("fmrlrec_reference_lru", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ref_args(sizes: list[int]) -> SimpleNamespace:
    return SimpleNamespace(mrl_hidden_sizes=sizes, lru_use_bias=True, lru_attn_dropout=0.0, lru_dropout=0.0,
                           lru_r_min=0.2, lru_r_max=0.9)


def _copy_linear(ref_layer, re: MRLLinear, im: MRLLinear | None, sizes: list[int]) -> None:
    """The reference's per-chunk ``nn.Linear`` (complex or real) into our dense masked real/imaginary pair."""
    bounds = [0, *sizes]
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            lin = getattr(ref_layer, f"mrl_linear_{i}")
            w, bias = lin.weight.detach(), lin.bias.detach()
            re.weight[a:b, :b] = w.real
            re.bias[a:b] = bias.real
            if im is not None:
                im.weight[a:b, :b] = w.imag
                if im.bias is not None:
                    im.bias[a:b] = bias.imag


def _copy_block(ref_block, ours: LRUBlock, sizes: list[int]) -> None:
    bounds = [0, *sizes]
    lru, ref_lru = ours.lru, ref_block.lru_layer
    with torch.no_grad():
        for name, ln in (("input_layernorm", ours.ln1), ("post_lru_layernorm", ours.ln2)):
            for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
                ref_ln = getattr(getattr(ref_block, name), f"layernorm_{i}")
                ln.weight[a:b], ln.bias[a:b] = ref_ln.weight, ref_ln.bias
        lru.nu_log.copy_(ref_lru.params_log[0])
        lru.theta_log.copy_(ref_lru.params_log[1])
        lru.gamma_log.copy_(ref_lru.params_log[2])
    _copy_linear(ref_lru.in_proj, lru.in_re, lru.in_im, sizes)
    _copy_linear(ref_lru.out_proj, lru.out_re, lru.out_im, sizes)
    for ref_name, mine in (("gate", ours.wg), ("w_1", ours.w1), ("w_2", ours.w2)):
        _copy_linear(getattr(ref_block.feed_forward, ref_name), mine, None, sizes)


def _give_reference_imaginary_parts(ref_block) -> None:
    with torch.no_grad():
        for proj in (ref_block.lru_layer.in_proj, ref_block.lru_layer.out_proj):
            for lin in proj.modules():
                if isinstance(lin, torch.nn.Linear):
                    lin.weight.add_(0.3j * torch.randn(lin.weight.shape))
                    lin.bias.add_(0.3j * torch.randn(lin.bias.shape))


@pytest.mark.slow
def test_block_equals_the_reference_block_with_the_same_weights():
    ref = _reference_lru()
    torch.manual_seed(0)
    ref_block = ref.LRUBlock(_ref_args(SIZES)).eval()
    _give_reference_imaginary_parts(ref_block)
    ours = LRUBlock(SIZES, 0.2, 0.9, 0.0, 0.0).eval()
    _copy_block(ref_block, ours, SIZES)
    x = torch.randn(3, 16, 16)
    mask = torch.arange(16)[None, :] >= torch.tensor([[0], [5], [11]])  # left padding, as the reference pads
    with torch.no_grad():
        want, got = ref_block(x, mask), ours(x, mask)
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


@pytest.mark.slow
def test_training_steps_equal_the_reference_complex_parameters():
    """AdamW with weight decay and gradient clipping on the reference's complex layer and on our real and
    imaginary pairs: the same trajectory (PyTorch's optimizers treat a complex parameter as its two parts)."""
    ref = _reference_lru()
    torch.manual_seed(0)
    ref_layer = ref.LRULayer(_ref_args(SIZES), 16, SIZES, use_bias=True, dropout=0.0, r_min=0.2, r_max=0.9)
    ours = LRULayer(SIZES, 0.2, 0.9, 0.0)
    with torch.no_grad():
        ours.nu_log.copy_(ref_layer.params_log[0])
        ours.theta_log.copy_(ref_layer.params_log[1])
        ours.gamma_log.copy_(ref_layer.params_log[2])
    _copy_linear(ref_layer.in_proj, ours.in_re, ours.in_im, SIZES)
    _copy_linear(ref_layer.out_proj, ours.out_re, ours.out_im, SIZES)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01) for m in (ref_layer, ours)]
    x, w = torch.randn(4, 8, 16), torch.randn(4, 8, 16)
    mask = torch.arange(8)[None, :] >= torch.tensor([[0], [2], [5], [7]])
    for _ in range(5):
        for model, opt in zip((ref_layer, ours), opts):
            opt.zero_grad()
            ((model(x, mask) * w).sum() ** 2).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    assert ours.in_im.weight.detach().any() and ours.out_im.weight.detach().any()
    with torch.no_grad():
        assert torch.allclose(ours(x, mask), ref_layer(x, mask), atol=1e-4)


@pytest.mark.slow
def test_initial_chunk_std_equals_the_reference_layers():
    ref = _reference_lru()
    sizes = [8, 16, 32, 64, 128]
    bounds = [0, *sizes]
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        ours_w, ref_w = [], []
        for seed in range(20):
            torch.manual_seed(seed)
            ours_w.append(MRLLinear(sizes).weight[a:b, :b].detach().flatten())
            ref_w.append(getattr(ref.MRLSquareLinearLayer(sizes, use_bias=True), f"mrl_linear_{i}").weight.detach()
                         .flatten())
        assert abs(float(torch.cat(ours_w).std()) / float(torch.cat(ref_w).std()) - 1) < 0.1, b
