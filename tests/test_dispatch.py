"""How each layer calls its kernel is recorded from the call itself, not assumed.

A stand-in around each SDPA kernel's call (``kernels.RUNNERS``) keeps the arguments every SDPA call receives: causal prefill passes ``is_causal=True`` and no mask (what lets CUDA's flash
kernel run), a decoding step no mask, and a chunk written into a non-empty cache a correct mask.
"""
import re

import pytest
import torch

from playground.nn import flex, kernels
from playground.nn.kernels import KernelUnavailable

from conftest import GPU_HEAD_DIMS, gpu_config, gpu_model, tiny_config, tiny_model


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Every SDPA kernel call's (attn_mask, is_causal, Tq, Tk), in order (``kernels.RUNNERS`` through stand-ins)."""
    calls = []
    for name, real in list(kernels.RUNNERS.items()):
        def recording(q, k, v, attn_mask, is_causal, scale, _real=real):
            calls.append({"mask": attn_mask, "is_causal": is_causal, "Tq": q.shape[-2], "Tk": k.shape[-2]})
            return _real(q, k, v, attn_mask, is_causal, scale)
        monkeypatch.setitem(kernels.RUNNERS, name, recording)
    return calls


def ids(n: int, seed: int = 5) -> torch.Tensor:
    return torch.randint(0, 97, (1, n), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_causal_prefill_passes_is_causal_and_no_mask(sdpa_calls):
    model = tiny_model(family="decoder", position="rope", backend="auto")
    out = model(ids(12), capture=True)
    assert len(sdpa_calls) == model.cfg.n_layer
    assert all(c["is_causal"] is True and c["mask"] is None and c["Tq"] == c["Tk"] == 12 for c in sdpa_calls)
    assert [(r.call, r.kernel, r.reason) for r in out.attentions] == [("is_causal", "flash", None)] * 2


@pytest.mark.parametrize("window", [0, 4])
@torch.no_grad()
def test_a_decoding_step_passes_no_mask(sdpa_calls, window):
    """One query against every key held: no mask, is_causal False. With a window the ring cache holds exactly
    the W visible keys, so a window needs no mask either while decoding."""
    model = tiny_model(family="decoder", position="rope", backend="math", sliding_window=window)
    x = ids(11)
    model.setup_cache(batch=1)
    model(x[:, :10])
    sdpa_calls.clear()
    step = model(x[:, 10:], start_pos=10, capture=True)
    model.clear_cache()
    assert len(sdpa_calls) == model.cfg.n_layer
    assert all(c["mask"] is None and c["is_causal"] is False and c["Tq"] == 1 for c in sdpa_calls)
    assert {c["Tk"] for c in sdpa_calls} == {window or 11}
    assert {r.call for r in step.attentions} == {"no mask"}
    full = model(x).logits[:, -1]
    assert torch.allclose(step.logits[:, -1], full, atol=1e-5)


@torch.no_grad()
def test_a_chunk_into_a_non_empty_cache_passes_the_right_mask(sdpa_calls):
    """4 queries at positions 6..9 over 10 keys: is_causal would align the triangle top-left (query 0 sees key 0
    only), so the call carries the mask: query i sees keys 0..6+i."""
    model = tiny_model(family="decoder", position="rope", backend="math")
    x = ids(10)
    model.setup_cache(batch=1)
    model(x[:, :6])
    sdpa_calls.clear()
    chunk = model(x[:, 6:], start_pos=6, capture=True)
    model.clear_cache()
    expected = torch.arange(10)[None, :] <= torch.arange(6, 10)[:, None]  # (4, 10)
    assert len(sdpa_calls) == model.cfg.n_layer
    for c in sdpa_calls:
        assert c["is_causal"] is False and c["mask"] is not None and c["mask"].dtype == torch.bool
        assert torch.equal(c["mask"].reshape(4, 10), expected)
    assert {r.call for r in chunk.attentions} == {"mask"}
    assert torch.allclose(chunk.logits, model(x).logits[:, 6:], atol=1e-5)


@torch.no_grad()
def test_a_chunk_into_a_non_empty_cache_goes_to_flex_under_auto(sdpa_calls):
    """Past one 128-key block auto takes the chunk to FlexAttention, whose rule has the offsets right."""
    model = tiny_model(family="decoder", position="rope", backend="auto")
    x = ids(200)
    model.setup_cache(batch=1, max_len=200)
    model(x[:, :150])
    sdpa_calls.clear()
    chunk = model(x[:, 150:], start_pos=150, capture=True)
    model.clear_cache()
    assert sdpa_calls == []
    assert {(r.call, r.kernel, r.reason) for r in chunk.attentions} == {("block mask", "flex", None)}
    assert all(r.block_mask is not None and r.max_abs_diff < 1e-5 for r in chunk.attentions)
    assert torch.allclose(chunk.logits, model(x).logits[:, 150:], atol=1e-5)


@torch.no_grad()
def test_within_one_key_block_auto_calls_sdpa_with_the_mask_and_says_why(sdpa_calls):
    """A block mask over a single 128-key tile skips nothing: auto calls SDPA with the dense mask there."""
    model = tiny_model(family="decoder", position="alibi", backend="auto")
    out = model(ids(128), capture=True)
    assert {r.call for r in out.attentions} == {"mask"}
    assert all("one 128-key block" in r.reason for r in out.attentions)
    assert len(sdpa_calls) == 2 and all(c["mask"].shape == (1, 4, 128, 128) for c in sdpa_calls)
    longer = model(ids(129), capture=True)
    assert {(r.call, r.reason) for r in longer.attentions} == {("block mask", None)}


@torch.no_grad()
def test_encoder_without_padding_passes_no_mask_and_cross_with_padding_a_mask(sdpa_calls):
    model = tiny_model(family="encdec", position="rope", backend="math")
    src, tgt = ids(9), ids(5, seed=6)
    out = model(src, tgt, capture=True)
    calls = {(r.kind, r.call) for r in out.attentions}
    assert calls == {("encoder_self", "no mask"), ("decoder_self", "is_causal"), ("cross", "no mask")}
    assert sum(c["mask"] is None for c in sdpa_calls) == len(sdpa_calls) == 3 * model.cfg.n_layer
    valid = torch.ones(1, 9, dtype=torch.bool)
    valid[0, -3:] = False
    sdpa_calls.clear()
    padded = model(src, tgt, src_valid=valid, capture=True)
    assert {(r.kind, r.call) for r in padded.attentions} == {
        ("encoder_self", "mask"), ("decoder_self", "is_causal"), ("cross", "mask")}
    cross = [c["mask"] for c in sdpa_calls if c["mask"] is not None and c["Tq"] == 5]
    assert len(cross) == model.cfg.n_layer
    assert all(torch.equal(m.reshape(5, 9), valid.expand(5, 9)) for m in cross)


@torch.no_grad()
def test_alibi_is_a_float_mask_and_all_true_padding_is_no_padding(sdpa_calls):
    model = tiny_model(family="decoder", position="alibi", backend="math")
    x = ids(8)
    out = model(x, capture=True)
    assert {r.call for r in out.attentions} == {"mask"}
    assert all(c["mask"].is_floating_point() and c["mask"].shape == (1, 4, 8, 8) for c in sdpa_calls)
    assert all(torch.isinf(c["mask"][0, :, 0, 1:]).all() for c in sdpa_calls)  # the causal part is in it
    rope = tiny_model(family="decoder", position="rope", backend="math")
    kept = rope(x, key_valid=torch.ones(1, 8, dtype=torch.bool), capture=True)
    assert {r.call for r in kept.attentions} == {"is_causal"}


@pytest.mark.parametrize("family, kwargs", [
    ("prefix", dict(prefix_len=4)),
    ("decoder", dict(sliding_window=3)),
])
@torch.no_grad()
def test_auto_says_why_it_used_a_mask_where_flex_cannot_run(monkeypatch, sdpa_calls, family, kwargs):
    reason = "no C++ compiler for TorchInductor"
    monkeypatch.setattr(flex, "flex_status", lambda device=None, dtype=None, head_dim=None: reason)
    prefix_len = kwargs.pop("prefix_len", 0)
    model = tiny_model(family=family, position="rope", backend="auto", **kwargs)
    out = model(ids(140), prefix_len=prefix_len, capture=True)
    assert {(r.call, r.reason) for r in out.attentions} == {("mask", reason)}
    assert len(sdpa_calls) == model.cfg.n_layer and all(c["mask"] is not None for c in sdpa_calls)
    forced = tiny_model(family=family, position="rope", backend="flex", **kwargs)
    with pytest.raises(KernelUnavailable, match=re.escape(reason)):  # a forced flex backend does not fall back
        forced(ids(140), prefix_len=prefix_len)


def test_training_under_auto_uses_sdpa_with_the_mask_and_says_why(sdpa_calls):
    """FlexAttention has no CPU backward: a forward that needs gradients stays on SDPA."""
    model = tiny_model(family="prefix", position="rope", backend="auto").train()
    with model.recorder.capture() as records:
        loss = model(ids(10), prefix_len=4).logits.sum()
    loss.backward()
    assert {r.call for r in records} == {"mask"} and all("gradients" in r.reason for r in records)
    assert all(c["mask"] is not None for c in sdpa_calls)


@torch.no_grad()
def test_the_plan_reads_the_rule_not_the_family():
    """A window as wide as the sequence cuts nothing (is_causal); a prefix of one token is plain causal."""
    x = ids(140)
    wide = tiny_model(family="decoder", position="rope", backend="auto", sliding_window=140, context_length=160)
    assert {r.call for r in wide(x, capture=True).attentions} == {"is_causal"}
    narrow = tiny_model(family="decoder", position="rope", backend="auto", sliding_window=139, context_length=160)
    assert {r.call for r in narrow(x, capture=True).attentions} == {"block mask"}
    glm = tiny_model(family="prefix", position="rope", backend="auto")
    assert {r.call for r in glm(x, prefix_len=1, capture=True).attentions} == {"is_causal"}
    assert {r.call for r in glm(x, prefix_len=3, capture=True).attentions} == {"block mask"}


@torch.no_grad()
def test_bfloat16_runs_and_the_record_gives_the_difference_to_float32_explicit():
    """The model and its cache run in bf16 (SDPA flash on the CPU takes bf16); the weights shown are the
    explicit path's in float32 and max_abs_diff is bf16 rounding, far above fp32's and far below a wrong output."""
    model = tiny_model(family="decoder", position="rope", backend="auto")
    x = ids(12)
    fp32 = model(x, capture=True).attentions
    model.to(torch.bfloat16)
    out = model(x, capture=True)
    assert out.logits.dtype == torch.bfloat16
    for r, ref in zip(out.attentions, fp32):
        assert (r.kernel, r.call, r.recomputed) == ("flash", "is_causal", True)
        assert r.weights.dtype == torch.float32
        assert 1e-5 < r.max_abs_diff < 5e-2 and ref.max_abs_diff < 1e-5
    model.setup_cache(batch=1)
    assert model.decoder.blocks[0].self_attn.cache.k.dtype == torch.bfloat16
    model.clear_cache()


def run_situation(model, family: str, situation: str, capture: bool = False):
    """A batch of 2 through the model: "plain" (causal; the prefix family's prefix; encoder + cross), "window"
    (the model's sliding window cuts), "padding" (the second sequence right-padded, via key_valid / src_valid)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 97, (2, 12), generator=g)
    valid = torch.ones(2, 12, dtype=torch.bool)
    valid[1, -3:] = False
    kv = valid if situation == "padding" else None
    if family == "encdec":
        return model(x, x[:, :9], src_valid=kv, capture=capture)
    return model(x, prefix_len=5 if family == "prefix" else 0, key_valid=kv, capture=capture)


@pytest.mark.parametrize("position", ["rope", "alibi", "learned", "sinusoidal", "none"])
@pytest.mark.parametrize("situation", ["plain", "window", "padding"])
@pytest.mark.parametrize("family", ["decoder", "prefix", "encdec"])
@torch.no_grad()
def test_flex_equals_explicit_for_every_family_mask_and_position(family, situation, position):
    """Every call through FlexAttention (causal, prefix, window, padding, cross, ALiBi as score_mod) gives the
    explicit path's logits within 1e-5 in float32, and each layer's output is the explicit one on the same Q, K, V."""
    window = 4 if situation == "window" else 0
    models = {backend: tiny_model(family=family, position=position, n_kv_heads=2, seed=2, sliding_window=window,
                                  backend=backend) for backend in ("flex", "explicit")}
    flex_out = run_situation(models["flex"], family, situation, capture=True)
    explicit_out = run_situation(models["explicit"], family, situation)
    assert (flex_out.logits - explicit_out.logits).abs().max() < 1e-5
    assert {(r.kernel, r.call) for r in flex_out.attentions} == {("flex", "block mask")}
    assert all(r.max_abs_diff < 1e-5 and r.block_mask is not None for r in flex_out.attentions)


# ----------------------------------------------------------------------------- on a GPU (skipped without CUDA)

BF16_TOLERANCE = 3e-2  # max |out - out_explicit(fp32)| for bf16 attention over a few hundred keys
FLASH_CASE = dict(family="decoder", position="rope", n_kv_heads=2)
FLEX_CASES = {"window": dict(family="decoder", position="rope", sliding_window=64),
              "alibi": dict(family="decoder", position="alibi")}
BADGE_CASES = (("untrained:decoder/MHA/rope", 0, "{sdpa} (is_causal=True, no mask)"),  # sdpa: PyTorch's pick
               ("untrained:decoder/MHA/rope", 32, "FlexAttention (compiled, block-sparse) (block mask)"),
               ("untrained:decoder/MHA/alibi", 0, "FlexAttention (compiled, block-sparse) (block mask)"))

# The CUDA kernels' documented limits on the head dim (torch 2.13): TorchInductor's FlexAttention template
# raises "NYI: embedding dimension of the query, key, and value must be at least 16" below 16; the flash
# kernel takes head dims up to 256, and a multiple of 8 is what it and memory-efficient take unpadded.
FLEX_CUDA_MIN_HEAD_DIM, FLASH_MAX_HEAD_DIM, FLASH_HEAD_DIM_MULTIPLE = 16, 256, 8


def test_the_cuda_tests_use_head_dims_the_cuda_kernels_take(monkeypatch):
    """Runs on the CPU: every model the cuda tests build has a head dim FlexAttention and flash take on CUDA,
    and together they cover 16, 64 and 128."""
    from playground.zoo import ModelSpec

    configs = [gpu_config(hd, **case) for hd in GPU_HEAD_DIMS for case in (FLASH_CASE, *FLEX_CASES.values())]
    assert all(cfg.context_length >= 301 for cfg in configs)  # the tests' 300-token prompt and one decoding step
    configs += [ModelSpec.parse(spec).config() for spec, _, _ in BADGE_CASES]
    for cfg in configs:
        hs = cfg.head_dim
        assert hs >= FLEX_CUDA_MIN_HEAD_DIM, f"FlexAttention on CUDA refuses head dim {hs}"
        assert hs <= FLASH_MAX_HEAD_DIM and hs % FLASH_HEAD_DIM_MULTIPLE == 0, f"flash on CUDA: head dim {hs}"
    assert {16, 64, 128} <= {cfg.head_dim for cfg in configs}
    monkeypatch.setitem(flex.KERNEL.status, "cuda", None)  # as where Triton is installed
    assert flex.CUDA_MIN_HEAD_DIM == FLEX_CUDA_MIN_HEAD_DIM
    assert all(flex.flex_status("cuda", torch.bfloat16, cfg.head_dim) is None for cfg in configs)
    assert flex.flex_status("cuda", torch.bfloat16, tiny_config().head_dim) is not None


def pytorch_pick(Tq: int, Tk: int, head_dim: int, dtype: torch.dtype, is_causal: bool) -> str:
    """The SDPA kernel PyTorch's dispatcher picks on CUDA for (1, 4, T, head_dim) inputs without a mask."""
    from playground.nn.kernels import BACKEND_NAMES

    q = torch.randn(1, 4, Tq, head_dim, device="cuda", dtype=dtype)
    k = torch.randn(1, 4, Tk, head_dim, device="cuda", dtype=dtype)
    return BACKEND_NAMES[int(torch._fused_sdp_choice(q, k, k, None, 0.0, is_causal))]


@pytest.mark.cuda
@pytest.mark.parametrize("head_dim", GPU_HEAD_DIMS)
@torch.no_grad()
def test_on_a_gpu_auto_runs_pytorchs_pick_for_causal_prefill_and_decoding(head_dim):
    """Flash, or cuDNN where PyTorch prefers it (Hopper and Blackwell with a recent cuDNN): the record names
    what torch._fused_sdp_choice picks for the call, never something else."""
    model = gpu_model(head_dim, **FLASH_CASE)
    dtype = model.lm_head.weight.dtype
    assert dtype in (torch.bfloat16, torch.float16)
    x = ids(300).cuda()
    picked = pytorch_pick(300, 300, head_dim, dtype, is_causal=True)
    assert picked in ("flash", "cudnn")
    prefill = model(x, capture=True)
    assert {(r.kernel, r.call) for r in prefill.attentions} == {(picked, "is_causal")}
    assert max(r.max_abs_diff for r in prefill.attentions) < BF16_TOLERANCE
    model.setup_cache(batch=1, max_len=301)
    model(x)
    step = model(ids(1, seed=7).cuda(), start_pos=300, capture=True)
    model.clear_cache()
    picked = pytorch_pick(1, 301, head_dim, dtype, is_causal=False)
    assert {(r.kernel, r.call) for r in step.attentions} == {(picked, "no mask")}
    assert max(r.max_abs_diff for r in step.attentions) < BF16_TOLERANCE


@pytest.mark.cuda
@pytest.mark.parametrize("head_dim", GPU_HEAD_DIMS)
@pytest.mark.parametrize("case", list(FLEX_CASES))
@torch.no_grad()
def test_on_a_gpu_auto_runs_flex_for_a_window_and_alibi(case, head_dim):
    model = gpu_model(head_dim, **FLEX_CASES[case])
    out = model(ids(300).cuda(), capture=True)
    assert {(r.kernel, r.call, r.reason) for r in out.attentions} == {("flex", "block mask", None)}
    assert max(r.max_abs_diff for r in out.attentions) < BF16_TOLERANCE


@pytest.mark.cuda
def test_on_a_gpu_the_badge_says_what_ran():
    from playground.ui.attention import badge
    from playground.ui.lang import Words
    from playground.ui.session import analysis_state
    from playground.zoo import ModelSpec

    from playground.nn.kernels import KERNEL_LABELS, run_dtype

    w = Words(lang="en")
    prompt = "all the world's a stage " * 20  # past one 128-key block
    for spec, window, expected in BADGE_CASES:
        state = analysis_state(w, spec, prompt, window=window, device="cuda")
        result = state.result(w)
        text = badge(w, state)
        T, hs = len(result.token_ids), ModelSpec.parse(spec).config().head_dim
        expected = expected.format(sdpa=KERNEL_LABELS[pytorch_pick(T, T, hs, run_dtype("auto", "cuda"), True)])
        assert expected in text and str(run_dtype("auto", "cuda")).removeprefix("torch.") in text, text
        assert result.max_abs_diff < BF16_TOLERANCE
