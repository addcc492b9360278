"""Beyond raw weights: value-weighted norms, attention rollout, the logit lens and head ablation, each
checked against a brute-force computation written here, independently of the library's code."""
import copy
import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from playground import zoo
from playground.inspect import heads
from playground.inspect.ablation import ablate_heads, heads_ablated
from playground.inspect.analysis import analyze
from playground.inspect.attribution import rollout, value_norms
from playground.inspect.logit_lens import layer_logits, logit_lens
from playground.train.tasks import induction_task

T = 9
SHAPES = {  # name: (tiny_model overrides, prefix_len)
    "decoder-MHA": (dict(), 0),
    "decoder-GQA-alibi": (dict(n_kv_heads=2, position="alibi"), 0),
    "decoder-MQA-rmsnorm": (dict(n_kv_heads=1, norm="rmsnorm", mlp="swiglu"), 0),
    "prefix-GQA": (dict(family="prefix", n_kv_heads=2), 4),
    "decoder-post-norm": (dict(norm_placement="post", position="learned"), 0),
}


def model_for(name: str):
    overrides, prefix_len = SHAPES[name]
    model = tiny_model(**overrides)
    with torch.no_grad():  # biases start at zero: give them values so b_V and b_O count
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
        for block in model.decoder.blocks:  # weights of std 0.02 attend almost uniformly: sharpen them
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(block.self_attn, proj).weight.mul_(8.0)
    return model, prefix_len


def ids_for(model) -> list[int]:
    return torch.randint(0, model.cfg.vocab_size, (T,), generator=torch.Generator().manual_seed(5)).tolist()


@pytest.mark.parametrize("name", list(SHAPES))
def test_value_norms_match_brute_force(name):
    model, prefix_len = model_for(name)
    ids = ids_for(model)
    got = value_norms(model, ids, prefix_len=prefix_len)
    json.dumps(got.to_dict())
    inputs, outputs = [], []

    def keep(module, args, out):
        inputs.append(args[0][0])  # (T, d) the sublayer's input
        outputs.append(out[0])  # (T, d) its output

    hooks = [b.self_attn.register_forward_hook(keep) for b in model.decoder.blocks]
    with torch.no_grad():
        records = model(torch.tensor([ids]), prefix_len=prefix_len, capture=True).attentions
    for h in hooks:
        h.remove()
    cfg = model.cfg
    nh, hs, groups = cfg.n_heads, cfg.head_dim, cfg.n_heads // cfg.n_kv_heads
    for layer, (block, rec) in enumerate(zip(model.decoder.blocks, records)):
        attn, x, A = block.self_attn, inputs[layer].double(), rec.weights[0].double()  # (T, d), (nh, T, T)
        Wv, bv = attn.v_proj.weight.detach().double(), attn.v_proj.bias.detach().double()  # (n_kv * hs, d), (n_kv * hs,)
        Wo = attn.o_proj.weight.detach().double()  # (d, nh * hs)
        f = {}
        for h in range(nh):
            g = h // groups
            for j in range(T):
                v = Wv[g * hs:(g + 1) * hs] @ x[j] + bv[g * hs:(g + 1) * hs]
                f[h, j] = Wo[:, h * hs:(h + 1) * hs] @ v
        for i in range(T):
            total = attn.o_proj.bias.detach().double().clone()
            for j in range(T):
                layer_sum = sum(A[h, i, j] * f[h, j] for h in range(nh))
                total += layer_sum
                assert got.per_layer[layer, i, j] == pytest.approx(float(layer_sum.norm()), rel=1e-5, abs=1e-5)
                for h in range(nh):
                    assert got.per_head[layer, h, i, j] == pytest.approx(float(A[h, i, j] * f[h, j].norm()), rel=1e-5, abs=1e-5)
            # the decomposition is the layer: sum over keys and heads, plus b_O, is the sublayer's output
            assert torch.allclose(total.float(), outputs[layer][i], atol=1e-4)


def test_pooled_value_norms_are_the_max_and_mean_of_the_exact_ones_across_tiles():
    """600 tokens in 7 x 7 cells of 86: tiles of 430 rows and keys, so cells, tiles and the diagonal all cross."""
    model, _ = model_for("decoder-GQA-alibi")
    ids = torch.randint(0, model.cfg.vocab_size, (600,), generator=torch.Generator().manual_seed(3)).tolist()
    exact = value_norms(model, ids)
    assert exact.exact and exact.per_head.shape[-2:] == (600, 600)
    for how, reduce in (("max", np.max), ("mean", np.mean)):
        got = value_norms(model, ids, cells=7, how=how)
        assert got.cell == (86, 86) and got.per_head.shape[-2:] == (7, 7) and list(got.rows) == [*range(0, 600, 86), 600]
        for a in range(7):
            for b in range(7):
                rows, cols = slice(got.rows[a], got.rows[a + 1]), slice(got.cols[b], got.cols[b + 1])
                np.testing.assert_allclose(got.per_head[:, :, a, b], reduce(exact.per_head[:, :, rows, cols], (-2, -1)),
                                           rtol=1e-5, atol=1e-7)
                np.testing.assert_allclose(got.per_layer[:, a, b], reduce(exact.per_layer[:, rows, cols], (-2, -1)),
                                           rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="max' or 'mean"):
        value_norms(model, ids[:5], how="sum")


def rollout_by_hand(weights: np.ndarray, without_first: bool) -> np.ndarray:
    L, nh, n, _ = weights.shape
    keep = list(range(1, n)) if without_first else list(range(n))
    m = len(keep)
    R = [[float(i == j) for j in range(m)] for i in range(m)]
    for layer in range(L):
        A = [[sum(weights[layer, h, keep[i], keep[j]] for h in range(nh)) / nh for j in range(m)] for i in range(m)]
        if without_first:
            A = [[a / sum(row) for a in row] for row in A]
        A = [[0.5 * A[i][j] + 0.5 * (i == j) for j in range(m)] for i in range(m)]
        A = [[a / sum(row) for a in row] for row in A]
        R = [[sum(A[i][k] * R[k][j] for k in range(m)) for j in range(m)] for i in range(m)]
    full = np.zeros((n, n))
    for i in range(m):
        for j in range(m):
            full[keep[i], keep[j]] = R[i][j]
    return full


@pytest.mark.parametrize("name", ["decoder-MHA", "prefix-GQA"])
@pytest.mark.parametrize("without_first", [False, True])
def test_rollout_matches_brute_force(name, without_first):
    model, prefix_len = model_for(name)
    w = analyze(model, ids_for(model), prefix_len=prefix_len).weights("self")  # (L, nh, T, T)
    R = rollout(w, without_first=without_first)
    assert R.shape == (model.cfg.n_layer, T, T)
    assert np.allclose(R[-1], rollout_by_hand(w, without_first), atol=1e-10)
    assert np.allclose(R[0], rollout_by_hand(w[:1], without_first), atol=1e-10)
    rows = R[-1].sum(-1)
    assert np.allclose(rows[1:] if without_first else rows, 1.0)
    if without_first:
        assert (R[:, 0, :] == 0).all() and (R[:, :, 0] == 0).all()


def test_rollout_without_the_first_token_removes_a_sink():
    n = 5
    sink = np.zeros((1, 2, n, n))
    sink[..., 0] = 0.9  # every query puts 0.9 on the first token, the rest on itself
    sink[..., range(n), range(n)] += 0.1
    sink[..., 0, 0] = 1.0
    assert rollout(sink)[-1, n - 1, 0] == pytest.approx(0.45)  # half the sink's 0.9
    assert np.allclose(rollout(sink, without_first=True)[-1, 1:, 1:], np.eye(n - 1))  # left: each token itself
    with pytest.raises(ValueError, match="layers, heads"):
        rollout(sink[0])


@pytest.mark.parametrize("name", ["decoder-MHA", "decoder-MQA-rmsnorm", "prefix-GQA", "decoder-post-norm"])
def test_logit_lens_reads_each_layer_as_a_truncated_model_would(name):
    model, prefix_len = model_for(name)
    ids = ids_for(model)
    x = torch.tensor([ids])
    lens = logit_lens(model, ids, k=3, prefix_len=prefix_len)
    json.dumps(lens.to_dict())
    L = model.cfg.n_layer
    assert lens.top_ids.shape == lens.top_probs.shape == (L, T, 3) and lens.next_prob.shape == (L, T - 1)
    every = layer_logits(model, ids, prefix_len=prefix_len)  # (L, 1, T, V)
    with torch.no_grad():
        own = model(x, prefix_len=prefix_len).logits
        assert torch.allclose(every[-1], own, atol=1e-5)  # the last layer's lens is the model's own output
        for layer in range(L):
            # brute force: the same model cut after block ``layer`` (its final norm and head kept)
            cut = copy.deepcopy(model)
            cut.decoder.blocks = cut.decoder.blocks[:layer + 1]
            p = cut(x, prefix_len=prefix_len).logits[0].softmax(-1)  # (T, V)
            assert torch.allclose(every[layer, 0], cut(x, prefix_len=prefix_len).logits[0], atol=1e-5)
            for t in range(T):
                order = sorted(range(model.cfg.vocab_size), key=lambda v: -float(p[t, v]))[:3]
                assert lens.top_ids[layer, t].tolist() == order
                assert np.allclose(lens.top_probs[layer, t], [float(p[t, v]) for v in order], atol=1e-6)
                if t < T - 1:
                    assert lens.next_prob[layer, t] == pytest.approx(float(p[t, ids[t + 1]]), abs=1e-6)


def loss_and_logit(logits, ids):
    """Brute force: mean over positions 0..T-2 of -log softmax at the next token, and of its logit."""
    logp = logits[0].double().log_softmax(-1)
    losses = [-float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1)]
    raw = [float(logits[0, t, ids[t + 1]]) for t in range(len(ids) - 1)]
    return sum(losses) / len(losses), sum(raw) / len(raw)


@pytest.mark.parametrize("name", ["decoder-MHA", "decoder-GQA-alibi", "prefix-GQA"])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablating_a_head_equals_removing_its_o_proj_slice_by_hand(name, mode):
    model, prefix_len = model_for(name)
    ids = ids_for(model)
    x = torch.tensor([ids])
    got = ablate_heads(model, ids, mode=mode, prefix_len=prefix_len)
    json.dumps(got.to_dict())
    hs = model.cfg.head_dim
    with torch.no_grad():
        base_loss, base_logit = loss_and_logit(model(x, prefix_len=prefix_len).logits, ids)
        assert got.loss == pytest.approx(base_loss, abs=1e-5) and got.target_logit == pytest.approx(base_logit, abs=1e-5)
        o_inputs = []
        hooks = [b.self_attn.o_proj.register_forward_hook(lambda m, a, o: o_inputs.append(a[0][0]))
                 for b in model.decoder.blocks]
        model(x, prefix_len=prefix_len)
        for h in hooks:
            h.remove()
        for layer in range(model.cfg.n_layer):
            for head in range(model.cfg.n_heads):
                edited = copy.deepcopy(model)
                o_proj = edited.decoder.blocks[layer].self_attn.o_proj
                cols = slice(head * hs, (head + 1) * hs)
                if mode == "mean":  # the head's mean output, written through its W_O slice, moves into the bias
                    o_proj.bias += o_proj.weight[:, cols] @ o_inputs[layer][:, cols].mean(0)
                o_proj.weight[:, cols] = 0.0
                loss, logit = loss_and_logit(edited(x, prefix_len=prefix_len).logits, ids)
                assert got.d_loss[layer, head] == pytest.approx(loss - base_loss, abs=1e-5)
                assert got.d_target_logit[layer, head] == pytest.approx(logit - base_logit, abs=1e-5)
    assert np.abs(got.d_loss).max() > 1e-3  # ablating does change something


def test_views_refuse_what_they_do_not_read():
    model, _ = model_for("decoder-MHA")
    for bad in (dict(mode="half"),):
        with pytest.raises(ValueError, match="mode"):
            ablate_heads(model, [1, 2, 3], **bad)
    with pytest.raises(ValueError, match="head must be"):
        with heads_ablated(model, [(0, 4)]):
            pass
    with pytest.raises(ValueError, match="layer must be"):
        with heads_ablated(model, [(2, 0)]):
            pass
    with pytest.raises(ValueError, match="decoder-only and prefix"):
        value_norms(tiny_model(family="rwkv", position="none"), [1, 2, 3])
    with pytest.raises(ValueError, match="decoder-only and prefix"):
        logit_lens(tiny_model(family="encdec"), [1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        logit_lens(model, [])


@pytest.fixture(scope="module")
def induction():
    model = zoo.load("induction")
    x, y, mask = induction_task(64, 24, model.cfg.vocab_size, 1234)  # fresh sequences, not the training seed
    return model, x, y, mask.bool()


def accuracy(model, x, y, mask) -> float:
    with torch.no_grad():
        pred = model(x).logits.argmax(-1)
    return float(((pred == y) & mask).sum() / mask.sum())


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablating_the_induction_heads_destroys_the_task(induction, mode):
    model, x, y, mask = induction
    L1 = [(1, h) for h in range(model.cfg.n_heads)]
    w = analyze(model, x[0].tolist()).weights("self")  # (L, nh, T, T)
    assert min(heads.induction_score(A, x[0].tolist()) for A in w[1]) >= 0.9  # every layer-1 head is one
    assert accuracy(model, x, y, mask) >= 0.95
    with heads_ablated(model, L1, mode):
        assert accuracy(model, x, y, mask) <= 0.05  # chance: one of 24 earlier tokens, ~0.04, or below
    for head in range(model.cfg.n_heads):  # no layer-0 head is a previous-token head; losing one costs nothing
        assert heads.previous_token_score(w[0, head]) < 0.3
        with heads_ablated(model, [(0, head)], mode):
            assert accuracy(model, x, y, mask) >= 0.95
    # the grid: every induction head's ablation lowers the answer's logit more than any layer-0 head's
    grid = ablate_heads(model, x, targets=y, mask=mask, mode=mode).d_target_logit  # (L, nh)
    assert grid[1].max() < min(grid[0].min(), 0.0)
