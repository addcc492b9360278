"""Weights rebuilt from q, k and the log-sum-exp (``nn.rebuild``) equal the textbook softmax, tile by tile.

Every family x mask (causal, GLM prefix, sliding window, padding, cross) x position encoding x variant x
kernel: any tile equals the weights the explicit path computes by hand within 1e-5, rows of a whole
reconstruction sum to 1, the kernel's own log-sum-exp equals the streamed one, and the tile-wise
faithfulness check (sum_j weight v_j against the kernel's output) fails when a single weight is changed.
"""
import pytest
import torch

from playground.nn import rebuild
from playground.nn.kernels import sdpa_call
from playground.nn.masks import MaskRule
from playground.nn.rebuild import AttentionSource, max_output_diff

from conftest import FAMILIES, POSITIONS, VARIANTS, tiny_model
from test_attention import MASKS, run, softmax_by_hand

KERNELS = ("explicit", "math", "flash", "flex")


def odd_tiles(Tq: int, Tk: int):
    """Tiles of 5 x 7 that do not line up with anything."""
    return rebuild.tile_grid(Tq, Tk, 5, 7)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_tile_equals_the_explicit_weights(family, variant, position, mask, kernel):
    model = tiny_model(family=family, position=position, n_kv_heads=VARIANTS[variant], backend=kernel,
                       sliding_window=4 if mask == "window" else 0)
    by_hand, hooks = softmax_by_hand(model)
    with torch.no_grad():
        out = run(model, family, mask, capture=True)
    for h in hooks:
        h.remove()
    assert len(by_hand) == len(out.attentions)
    kinds = {r.kind for r in out.attentions}
    assert kinds == ({"encoder_self", "decoder_self", "cross"} if family == "encdec" else {"self"})
    for rec, expected in zip(out.attentions, by_hand):
        src = rec.source
        assert src.k.shape[1] == VARIANTS[variant]  # K per K/V head: GQA and MQA store less
        B, nh, Tq, Tk = src.shape
        for b in range(B):
            for r0, r1, c0, c1 in odd_tiles(Tq, Tk):
                tile = src.tile(r0, r1, c0, c1, batch=b)
                assert torch.allclose(tile, expected[b, :, r0:r1, c0:c1], atol=1e-5, rtol=0)
                heads = [nh - 1, 0]
                assert torch.allclose(src.tile(r0, r1, c0, c1, heads=heads, batch=b), tile[heads], atol=1e-6, rtol=0)
        whole = src.dense()
        seen = rec.mask.expand(B, 1, Tq, Tk).any(-1)  # (B, 1, Tq): queries with a key to see
        sums = whole.sum(-1)
        assert torch.allclose(sums[seen.expand_as(sums)], torch.ones(()), atol=1e-5)
        assert rec.max_abs_diff < 1e-5


@pytest.mark.parametrize("position", ["rope", "alibi"])
@pytest.mark.parametrize("family", ["decoder", "prefix"])
def test_the_kernels_log_sum_exp_is_used_and_equals_the_dense_one(family, position):
    """Each kernel's recorded lse (its own, or the streamed pass where it returns none) against logsumexp of the
    whole score matrix, built densely here from q, k, the ALiBi bias and the mask: an independent computation."""
    for kernel, source in (("flash", "kernel"), ("explicit", "kernel"), ("math", "streamed"), ("flex", "streamed")):
        model = tiny_model(family=family, position=position, n_kv_heads=2, backend=kernel)
        with torch.no_grad():
            out = run(model, family, "plain", capture=True)
        for rec in out.attentions:
            src = rec.source
            assert src.lse_source == source, (kernel, rec.call)
            k = src.k.float().repeat_interleave(src.n_heads // src.n_kv_heads, dim=1)
            scores = src.q.float() @ k.transpose(-2, -1) / src.q.shape[-1] ** 0.5  # (B, nh, Tq, Tk)
            if src.alibi_slopes is not None:
                scores = scores + rec.bias
            dense = scores.masked_fill(~rec.mask.expand_as(scores), float("-inf")).logsumexp(-1)
            assert torch.allclose(src.lse, dense, atol=1e-5, rtol=0), (kernel, family, position)


def test_cpu_flash_returns_sdpas_output_and_the_explicit_log_sum_exp():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 3, 300, 64, generator=g) for _ in range(3))
    causal = torch.ones(300, 300, dtype=torch.bool).tril()
    for mask, is_causal in ((None, True), (causal, False)):
        run = sdpa_call(q, k, v, mask, kernel="flash", is_causal=is_causal, return_lse=True)
        out, lse = run.out, run.lse
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        scores = (q @ k.transpose(-1, -2) / 8).masked_fill(~causal, float("-inf"))
        assert torch.allclose(out, ref, atol=1e-6) and lse.shape == (1, 3, 300)
        assert torch.allclose(lse, scores.logsumexp(-1), atol=5e-6, rtol=0)


def test_the_faithfulness_check_fails_when_one_weight_changes():
    model = tiny_model(family="decoder", position="rope", n_kv_heads=2, backend="flash")
    v_seen = []
    attn = model.decoder.blocks[0].self_attn
    handle = attn.v_proj.register_forward_hook(lambda m, a, out: v_seen.append(out))
    with torch.no_grad():
        out = run(model, "decoder", "plain", capture=True)
    handle.remove()
    rec = out.attentions[0]
    v, kernel_out = rec.check
    assert max_output_diff(rec.source, v, kernel_out) < 1e-5

    def perturbed(r0, r1, c0, c1, b):
        w = rec.source.tile(r0, r1, c0, c1, batch=b)
        if r0 <= 7 < r1 and c0 <= 3 < c1 and b == 1:
            w[1, 7 - r0, 3 - c0] += 0.01  # one weight of one head of one query
        return w

    assert max_output_diff(rec.source, v, kernel_out, block=4, tile_fn=perturbed) > 1e-3
    assert rec.max_abs_diff < 1e-5 and rec.check is None  # the check ran once and let v and out go


def test_a_source_holds_q_k_and_lse_not_the_weights():
    T, nh, n_kv, hs = 2048, 8, 2, 32
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, nh, T, hs, generator=g), torch.randn(1, n_kv, T, hs, generator=g)
    src = AttentionSource(q, k, None, MaskRule("causal", window=100))
    assert src.nbytes == (nh + n_kv) * T * hs * 4 + nh * T * 4  # linear in T: the weights would be nh T² 4
    tile = src.tile(1000, 1010, 0, 2048)
    assert torch.allclose(tile.sum(-1), torch.ones(()), atol=1e-5) and (tile[:, :, :901] == 0).all()
    with pytest.raises(ValueError, match="outside"):
        src.tile(0, 10, 2040, 2050)


def test_dense_refuses_what_is_too_large_to_hold(monkeypatch):
    monkeypatch.setattr(rebuild, "MAX_DENSE", 100)
    src = AttentionSource(torch.randn(1, 2, 12, 8), torch.randn(1, 1, 12, 8), None, MaskRule("causal"))
    with pytest.raises(ValueError, match="ask for a tile"):
        src.dense()


def test_each_record_leaves_the_device_as_it_is_written(monkeypatch):
    """A layer's record is moved off the device (``to_cpu``) when it is written, before the next layer runs: on a
    GPU no layer's q, k and lse (nor the check's values and output) wait there for the forward to end."""
    moved = []
    original = AttentionSource.to_cpu

    def spy(self):
        moved.append(original(self))
        return moved[-1]

    monkeypatch.setattr(AttentionSource, "to_cpu", spy)
    model = tiny_model(family="decoder", n_kv_heads=2, position="rope")
    seen = []

    def listener(rec):
        v, out = rec.check
        seen.append((rec.source is moved[-1], len(moved), v.device.type, out.device.type))

    with torch.no_grad(), model.recorder.listen(listener):
        model(torch.randint(0, model.cfg.vocab_size, (1, 12)), capture=True)
    assert seen == [(True, layer + 1, "cpu", "cpu") for layer in range(model.cfg.n_layer)]


# bf16 keeps 8 bits of mantissa: a kernel that scales q in bf16 before its product moves scores of a few units by
# about 1%, and each weight with them; fp16 keeps 11 bits
@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 3e-2), (torch.float16, 2e-3)])
@pytest.mark.parametrize("kernel", ["explicit", "flash", "math"])
def test_rebuilt_rows_sum_to_one_in_bf16_and_fp16(kernel, dtype, tol):
    """A model run in half precision: the weights rebuilt in float32 from its q, k and the recorded lse are a
    distribution in every row, within the dtype's tolerance (an lse taken from scores rounded to bf16 is off by
    a few percent, and fails this)."""
    torch.manual_seed(0)
    model = tiny_model(family="decoder", position="alibi", n_kv_heads=2, backend=kernel, d_model=64,
                       context_length=320)
    with torch.no_grad():  # scores of a trained model's size (several units), where bf16 rounding shows
        for name, p in model.named_parameters():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                p.mul_(40)
    model = model.to(dtype)
    ids = torch.randint(0, 97, (1, 300), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(ids, capture=True)
    for rec in out.attentions:
        sums = rec.weights.sum(-1)
        assert (sums - 1).abs().max() < tol, (kernel, dtype, float((sums - 1).abs().max()))
