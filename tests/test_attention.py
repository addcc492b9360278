"""Attention kernels agree, captured weights are real, GQA/MQA are what they claim."""
import pytest
import torch

from playground.nn.cache import kv_bytes_per_token
from playground.inspect.generation import generate
from playground.nn.kernels import KernelUnavailable, explicit_attention, probe, sdpa
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
    with torch.no_grad():
        a, b = run(explicit, family, mask, capture=True), run(fast, family, mask, capture=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    assert {r.kernel for r in b.attentions} == {kernel}
    assert all(r.recomputed and r.max_abs_diff < 1e-5 for r in b.attentions)
    assert not any(r.recomputed for r in a.attentions)
    for ra, rb in zip(a.attentions, b.attentions):
        assert torch.allclose(ra.weights, rb.weights, atol=1e-6)


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
