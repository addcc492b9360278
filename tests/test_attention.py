"""Attention kernels agree, captured weights are real, GQA/MQA are what they claim."""
import pytest
import torch

import playground.nn.attention as attention_module
from playground.nn.attention import Attention, AttentionInputs
from playground.nn.cache import kv_bytes_per_token
from playground.inspect.generation import generate
from playground.nn.masks import MaskRule
from playground.nn.kernels import KernelUnavailable, explicit_attention, probe, sdpa
from playground.nn.position import apply_rope
from playground.models import build_model

from conftest import FAMILIES, POSITIONS, VARIANTS, tiny_config, tiny_model

AVAILABLE = probe()  # {kernel: None if it runs here, else PyTorch's reason}
MASKS = ("plain", "window", "padding")


def run(model, family, mask, capture=False):
    """A forward pass of the tiny model with the chosen mask situation; fixed inputs."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 97, (2, 12), generator=g)
    valid = torch.ones(2, 12, dtype=torch.bool)
    if mask == "padding":
        valid[1, -2:] = False  # right padding of the second sequence
    kv = valid if mask == "padding" else None
    if family == "encdec":
        return model(x, x[:, :9], src_valid=kv, capture=capture)
    return model(x, prefix_len=5 if family == "prefix" else 0, key_valid=kv, capture=capture)


def softmax_by_hand(model) -> tuple[list[torch.Tensor], list]:
    """Hooks on every attention layer that recompute its weights the textbook way, one head at a time,
    from the layer's own projections and the mask / bias / RoPE it was given:
    softmax(q_h k_g^T / sqrt(hs) + bias_h), -inf where the mask forbids, g = h // (nh / n_kv).
    Returns (the list the weights (B, nh, Tq, Tk) are appended to, in call order; the hook handles)."""
    found = []

    def hook(attn, args, _out):
        x, inputs = args[0], args[1]
        source = args[2] if attn.cross else x
        (B, T, _), Tk, hs = x.shape, source.shape[1], attn.head_dim
        q = attn.q_proj(x).view(B, T, attn.n_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = attn.k_proj(source).view(B, Tk, attn.n_kv_heads, hs).transpose(1, 2)  # (B, n_kv, Tk, hs)
        if inputs.rope is not None and not attn.cross:
            q, k = apply_rope(q, *inputs.rope), apply_rope(k, *inputs.rope)
        allowed = inputs.mask.expand(B, 1, T, Tk)[:, 0]  # (B, T, Tk)
        weights = torch.empty(B, attn.n_heads, T, Tk)
        for h in range(attn.n_heads):
            scores = torch.einsum("btd,bsd->bts", q[:, h], k[:, h // (attn.n_heads // attn.n_kv_heads)]) / hs ** 0.5
            if inputs.bias is not None:
                scores = scores + inputs.bias[h]
            weights[:, h] = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        found.append(weights)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Attention)]
    return found, handles


@pytest.mark.parametrize("kernel", ["flash", "efficient", "math"])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_sdpa_kernel_matches_explicit(family, variant, position, mask, kernel):
    if AVAILABLE[kernel] is not None:
        pytest.skip(f"{kernel} cannot run here: {AVAILABLE[kernel][:160]}")
    overrides = dict(family=family, position=position, n_kv_heads=VARIANTS[variant],
                     sliding_window=4 if mask == "window" else 0)
    explicit = tiny_model(backend="explicit", **overrides)
    fast = build_model(tiny_config(backend=kernel, **overrides)).eval()
    fast.load_state_dict(explicit.state_dict())
    by_hand, hooks = softmax_by_hand(explicit)
    with torch.no_grad():
        a, b = run(explicit, family, mask, capture=True), run(fast, family, mask, capture=True)
    for h in hooks:
        h.remove()
    assert torch.allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    assert {r.kernel for r in b.attentions} == {kernel}
    assert all(r.recomputed and r.max_abs_diff < 1e-5 for r in b.attentions)
    assert not any(r.recomputed for r in a.attentions)
    assert len(by_hand) == len(a.attentions) == len(b.attentions)
    for ra, rb, w in zip(a.attentions, b.attentions, by_hand):  # both models' weights = the textbook softmax
        assert torch.allclose(ra.weights, w, atol=1e-6)
        assert torch.allclose(rb.weights, w, atol=1e-6)


def test_capture_block_records_what_capture_true_returns(monkeypatch):
    """One recorder: ``with model.capture()`` collects the records ``capture=True`` returns, in order
    (encoder layers, then each decoder layer's self and cross); off by default, SDPA models never
    compute weights, and Attention returns only its output."""
    model = tiny_model(family="encdec", backend="math")
    src, tgt = torch.randint(0, 97, (2, 12)), torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        direct = model(src, tgt, capture=True)
        with model.capture() as records:
            quiet = model(src, tgt)
        with model.capture() as outer:
            inner = model(src, tgt, capture=True).attentions
    order = [("encoder_self", 0), ("encoder_self", 1), ("decoder_self", 0), ("cross", 0),
             ("decoder_self", 1), ("cross", 1)]
    assert [(r.kind, r.layer) for r in direct.attentions] == order
    assert [(r.kind, r.layer) for r in records] == order and quiet.attentions == []
    assert all(torch.equal(a.weights, b.weights) and a.max_abs_diff == b.max_abs_diff
               for a, b in zip(direct.attentions, records))
    assert [id(r) for r in outer] == [id(r) for r in inner]  # nested captures hand their records outward
    assert not model.recorder.on

    def no_weights(*args, **kwargs):
        raise AssertionError("weights recorded while nothing records")

    monkeypatch.setattr(attention_module, "AttentionSource", no_weights)
    with torch.no_grad():
        out = model(src, tgt)
        pos = torch.arange(9)
        y = model.decoder.blocks[0].self_attn(torch.randn(2, 9, 32), AttentionInputs(pos, pos, MaskRule("causal"),
                                                                                    0, 0))
    assert out.attentions == [] and isinstance(y, torch.Tensor) and y.shape == (2, 9, 32)
    with pytest.raises(AssertionError, match="while nothing records"), torch.no_grad():
        model(src, tgt, capture=True)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("position", ["rope", "alibi"])
@pytest.mark.parametrize("family", FAMILIES)
def test_weight_rows_sum_to_one_and_are_zero_where_masked(family, position, mask):
    model = tiny_model(family=family, position=position, n_kv_heads=2, sliding_window=4 if mask == "window" else 0)
    with torch.no_grad():
        out = run(model, family, mask, capture=True)
    kinds = {r.kind for r in out.attentions}
    assert kinds == ({"encoder_self", "decoder_self", "cross"} if family == "encdec" else {"self"})
    for rec in out.attentions:
        w = rec.weights  # (B, nh, Tq, Tk)
        assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5)
        forbidden = ~rec.mask.expand(w.shape[0], 1, *w.shape[2:]).expand_as(w)
        assert forbidden.any() or (family == "encdec" and rec.kind != "decoder_self" and mask != "padding")
        assert (w[forbidden] == 0).all()


def test_auto_reports_the_kernel_that_ran_and_forced_unavailable_kernel_raises():
    q = torch.randn(1, 2, 8, 16)
    out, ran = sdpa(q, q, q, kernel="auto", is_causal=True)
    assert ran in ("flash", "efficient", "math")
    assert AVAILABLE[ran] is None
    assert AVAILABLE["math"] is None
    for name, reason in AVAILABLE.items():
        if reason is not None:
            with pytest.raises(KernelUnavailable, match=name):
                sdpa(q, q, q, kernel=name, is_causal=True)
    ref, _ = explicit_attention(q, q, q, torch.ones(8, 8, dtype=torch.bool).tril())
    assert torch.allclose(out, ref, atol=1e-5)


def test_gqa_equals_mha_whose_kv_heads_are_repeated():
    gqa = tiny_model(n_kv_heads=2, backend="explicit")
    mha = build_model(tiny_config(n_kv_heads=4, backend="explicit")).eval()
    state = gqa.state_dict()
    hs, groups = 8, 2
    for name, tensor in list(state.items()):
        if name.endswith(("self_attn.k_proj.weight", "self_attn.v_proj.weight")):
            heads = tensor.view(2, hs, -1).repeat_interleave(groups, dim=0)  # (4, hs, d)
            state[name] = heads.reshape(4 * hs, -1)
        elif name.endswith(("self_attn.k_proj.bias", "self_attn.v_proj.bias")):
            state[name] = tensor.view(2, hs).repeat_interleave(groups, dim=0).reshape(-1)
    mha.load_state_dict(state)
    x = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        a, b = gqa(x, capture=True), mha(x, capture=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)
    assert all(torch.allclose(ra.weights, rb.weights, atol=1e-6) for ra, rb in zip(a.attentions, b.attentions))
    same = tiny_model(n_kv_heads=4)
    assert same.cfg.variant == "MHA" and same.decoder.blocks[0].self_attn.k_proj.out_features == 32


def test_mqa_cache_is_one_over_n_heads_of_mha_measured_and_matches_formula():
    measured = {}
    for variant, n_kv in VARIANTS.items():
        model = tiny_model(n_kv_heads=n_kv)
        steps = generate(model, [3, 4, 5, 6], 20).steps
        measured[variant] = steps[-1].cache_bytes
        per_token = kv_bytes_per_token(variant, 2, 4, 8, "float32", n_kv_heads=n_kv)
        assert steps[-1].cache_bytes == per_token * (4 + 19)  # tokens held after the last step
        assert [s.cache_bytes for s in steps] == [per_token * (4 + i) for i in range(20)]
    assert measured["MHA"] == 4 * measured["MQA"]
    assert measured["MHA"] == 2 * measured["GQA"]


def test_cache_misuse_says_what_to_do():
    model = tiny_model()
    with pytest.raises(ValueError, match="setup_cache"):
        model(torch.tensor([[1, 2]]), start_pos=3)
    model.setup_cache(1, 4)
    model(torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="full"):
        model(torch.tensor([[1, 2]]), start_pos=3)
