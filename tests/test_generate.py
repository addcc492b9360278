import pytest
import torch

from playground.inspect.generation import generate, sample_next, stream

from conftest import FAMILIES, POSITIONS, tiny_model


def decodes_like_the_full_pass(model, prompt: list[int], steps: int, **kwargs):
    """Greedy generation with the cache equals generation without it (every step re-runs the whole sequence):
    the same tokens, logits within 1e-4 at every step. Returns the cached generation."""
    cached = generate(model, prompt, steps, use_cache=True, **kwargs)
    uncached = generate(model, prompt, steps, use_cache=False)
    assert cached.tokens == uncached.tokens
    diff = max((a.logits - b.logits).abs().max().item() for a, b in zip(cached.steps, uncached.steps))
    assert diff < 1e-4
    return cached

@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("family", FAMILIES)
def test_cached_equals_uncached_over_64_steps(family, position):
    model = tiny_model(family=family, position=position, n_kv_heads=2, seed=3)
    prompt = torch.randint(0, 97, (10,), generator=torch.Generator().manual_seed(5)).tolist()
    decodes_like_the_full_pass(model, prompt, 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_recorded_rows_are_the_full_pass_rows(family):
    model = tiny_model(family=family, position="rope", n_kv_heads=2)
    prompt = [5, 9, 11, 2, 7]
    gen = generate(model, prompt, 6, record=True)
    seq = ([1] if family == "encdec" else prompt) + gen.tokens[:-1]
    x = torch.tensor([seq])
    with torch.no_grad():
        full = model(torch.tensor([prompt]), x, capture=True) if family == "encdec" else model(x, capture=True, prefix_len=len(prompt) if family == "prefix" else 0)
    kind = "decoder_self" if family == "encdec" else "self"
    weights = torch.stack([r.weights[0] for r in full.attentions if r.kind == kind])  # (L, nh, T, T)
    start = len(seq) - len(gen.steps)
    for i, step in enumerate(gen.steps):
        t = start + i
        row = step.attention[kind]  # (L, nh, Tk)
        assert row.shape == (2, 4, t + 1)
        assert torch.allclose(torch.from_numpy(row), weights[:, :, t, : t + 1], atol=1e-5)
    if family == "encdec":
        assert gen.steps[0].attention["cross"].shape == (2, 4, len(prompt))


def test_cross_attention_kv_computed_once_per_input():
    model = tiny_model(family="encdec")
    calls = []
    for block in model.decoder.blocks:
        block.cross_attn.k_proj.register_forward_hook(lambda *a: calls.append(1))
    generate(model, [4, 5, 6, 7], 12, use_cache=True)
    assert len(calls) == model.cfg.n_layer
    calls.clear()
    generate(model, [4, 5, 6, 7], 12, use_cache=False)
    assert len(calls) == model.cfg.n_layer * 12


def test_streaming_yields_tokens_one_by_one_and_stops():
    model = tiny_model()
    it = stream(model, [1, 2, 3], 5)
    first = next(it)
    assert first.index == 0 and isinstance(first.token, int)
    assert len(list(it)) == 4
    greedy = generate(model, [1, 2, 3], 5).tokens
    stop = greedy[1]
    assert generate(model, [1, 2, 3], 5, stop_id=stop).tokens == greedy[: greedy.index(stop) + 1]


def test_sampling():
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0]])
    assert sample_next(logits).item() == 1
    assert sample_next(logits, temperature=1.0, top_k=1).item() == 1
    assert sample_next(logits, temperature=1.0, top_p=0.01).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = [sample_next(logits, temperature=1.0, top_k=2, generator=g).item() for _ in range(300)]
    assert set(draws) == {1, 2}  # top-k keeps exactly the two best
    g = torch.Generator().manual_seed(0)
    draws = [sample_next(logits, temperature=1.0, top_p=0.9, generator=g).item() for _ in range(300)]
    assert set(draws) == {1, 2}  # p(1)=0.84 < 0.9, so token 2 is needed too; token 0 (0.11) is not
    model = tiny_model()
    a = generate(model, [1, 2], 10, temperature=1.0, seed=7).tokens
    assert a == generate(model, [1, 2], 10, temperature=1.0, seed=7).tokens
    with pytest.raises(ValueError):
        sample_next(logits, temperature=-1)


def test_bad_generation_inputs():
    model = tiny_model(position="learned")
    with pytest.raises(ValueError, match="empty"):
        generate(model, [], 4)
    with pytest.raises(ValueError, match="learned positions"):
        generate(model, [1] * 90, 20)
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[1, 500]]))


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
@pytest.mark.parametrize("family", FAMILIES)
def test_sliding_window_cache_rolls_and_decodes_like_the_full_pass(family, position):
    """With a window W the cache drops what no query can see: it holds at most W positions while decoding,
    and greedy decoding with it equals the uncached full pass under the same window mask."""
    window = 6
    model = tiny_model(family=family, position=position, n_kv_heads=2, seed=3, sliding_window=window)
    prompt = torch.randint(0, 97, (10,), generator=torch.Generator().manual_seed(5)).tolist()
    cached = decodes_like_the_full_pass(model, prompt, 20, record=True)
    cfg = model.cfg
    per_position = 2 * cfg.n_kv_heads * cfg.head_dim * 4 * cfg.n_layer  # fp32 K and V, every layer
    held = [s.cache_bytes for s in cached.steps]
    if family == "encdec":  # the decoder's self-attention cache rolls; cross K/V stay fixed on top
        held = [b - held[0] + per_position for b in held]
    else:
        assert held[0] == len(prompt) * per_position  # the prefill keeps the whole prompt
    assert held[-1] == window * per_position and max(held[1:]) == window * per_position
    kind = "decoder_self" if family == "encdec" else "self"
    assert all(s.attention[kind].shape[-1] <= max(window, len(prompt)) for s in cached.steps)


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
@pytest.mark.parametrize("family", FAMILIES)
def test_a_window_of_16_allocates_16_positions_over_256_tokens(family, position):
    """The memory, not only a counter: after the prefill every layer's K/V buffers are W slots
    (tensor.nbytes), whatever the length, and decoding with them equals the uncached full pass."""
    window, prompt_len = 16, 24  # the prompt is longer than the window: the prefill holds all of it
    model = tiny_model(family=family, position=position, n_kv_heads=2, seed=3, sliding_window=window,
                       context_length=288)
    prompt = torch.randint(0, 97, (prompt_len,), generator=torch.Generator().manual_seed(5)).tolist()
    cached = decodes_like_the_full_pass(model, prompt, 256)
    cfg = model.cfg
    per_slot = cfg.n_layer * 2 * 1 * cfg.n_kv_heads * cfg.head_dim * 4  # layers x (K, V) x B x n_kv x hs x fp32
    cross = per_slot * prompt_len if family == "encdec" else 0  # cross K/V over the source, computed once
    first, rest = cached.steps[0], cached.steps[1:]
    seq_len = 1 if family == "encdec" else prompt_len  # what the decoder's prefill wrote
    assert first.cache_bytes == cross + per_slot * seq_len
    assert first.cache_bytes_allocated == cross + per_slot * max(seq_len, window)
    assert {s.cache_bytes_allocated for s in rest} == {cross + per_slot * window}
    assert [s.cache_bytes for s in rest] == [cross + per_slot * min(seq_len + i, window) for i in range(1, 256)]


@pytest.mark.parametrize("window", [0, 5])
@pytest.mark.parametrize("position", ["rope", "alibi"])
@pytest.mark.parametrize("family", FAMILIES)
def test_flex_cached_decoding_equals_uncached(family, position, window):
    """FlexAttention in every call (prefill, each one-token step against the cache, the uncached full passes) but
    those of 8 or 16 keys at this small head dim, which run SDPA with the dense mask on the CPU (torch 2.13's
    compiled CPU kernel miscomputes them): greedy tokens equal, logits within 1e-4, with and without a window."""
    from playground.nn.attention import FLEX_CPU_TINY, flex_miscomputes

    model = tiny_model(family=family, position=position, n_kv_heads=2, seed=3, sliding_window=window, backend="flex")
    prompt = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(5)).tolist()
    for n in (8, 16, 40):  # an encoder-decoder reads the prompt as its source and as its decoder's input
        x = torch.tensor([prompt[:n]])
        with torch.no_grad():
            records = (model(x, x, capture=True) if family == "encdec" else model(x, capture=True)).attentions
        for rec in records:
            routed = flex_miscomputes(torch.device("cpu"), rec.source.shape[-1], rec.source.q.shape[-1])
            assert routed is (n != 40)
            assert (rec.kernel == "flex") is not routed and (rec.reason == FLEX_CPU_TINY) is routed, (n, rec.kind)
    cached = decodes_like_the_full_pass(model, prompt, 12)
    explicit = tiny_model(family=family, position=position, n_kv_heads=2, seed=3, sliding_window=window,
                          backend="explicit")
    assert generate(explicit, prompt, 12).tokens == cached.tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_a_bfloat16_model_generates_with_a_bfloat16_cache(family):
    """``model.to(torch.bfloat16)`` is all a notebook does: the cache follows the weights' dtype (half the bytes)
    and the first step's logits stay within bf16 rounding of float32's."""
    model = tiny_model(family=family, position="rope", n_kv_heads=2, seed=3)
    prompt = [5, 9, 11, 2, 7, 3]
    fp32 = generate(model, prompt, 3)
    bf16 = generate(model.to(torch.bfloat16), prompt, 3)
    assert [s.cache_bytes * 2 for s in bf16.steps] == [s.cache_bytes for s in fp32.steps]
    assert bf16.steps[0].logits.dtype == torch.float32  # sampling reads float32 logits
    assert (bf16.steps[0].logits - fp32.steps[0].logits).abs().max() < 0.1


@pytest.mark.parametrize("family", (*FAMILIES, "mamba", "rwkv"))
def test_a_forward_computes_the_logits_asked_for(family):
    """logits="last" is the last row of every position's logits; "none" skips the head and keeps the attention."""
    recurrent = family in ("mamba", "rwkv")
    model = tiny_model(family=family, position="none" if recurrent else "rope", n_kv_heads=4 if recurrent else 2)
    ids = torch.tensor([[5, 9, 11, 2, 7, 3]])
    args = (torch.tensor([[3, 4, 6, 8, 1, 2, 9]]), ids) if family == "encdec" else (ids,)
    with torch.no_grad():
        full = model(*args, capture=True)
        last = model(*args, capture=True, logits="last")
        none = model(*args, capture=True, logits="none")
    assert full.logits.shape[:2] == (1, 6) and last.logits.shape == (1, 1, full.logits.shape[-1])
    assert torch.allclose(last.logits[:, 0], full.logits[:, -1], atol=1e-5)
    assert none.logits is None
    assert len(none.attentions) == len(full.attentions) > 0
    for a, b in zip(none.attentions, full.attentions):
        assert a.kind == b.kind and torch.equal(a.weights, b.weights)
    with pytest.raises(ValueError, match="logits must be one of"):
        model(*args, logits="first")


@pytest.mark.parametrize("dtype, size", [("bfloat16", 2), ("float32", 4)])
def test_the_generate_tabs_formula_curves_count_the_bytes_of_the_dtype_the_cache_ran_in(dtype, size):
    """The formula for the model's own variant equals the measured growth per token, in bf16 (as auto runs
    on CUDA) as in fp32: a bf16 cache measured against fp32 formulas would read half the formula."""
    from playground.ui.generation import generation_state
    from playground.ui.i18n import msg
    from playground.ui.lang import Words

    state = generation_state(Words(lang="en"), "untrained:decoder/MHA/rope", "to be or not to be", 4, 0.0, 0, 1.0,
                             0, 0, "auto", "cpu", dtype)
    tl = state["timeline"]
    cfg = tl.config
    per_token = tl.cache_bytes[1] - tl.cache_bytes[0]
    assert per_token == 2 * cfg.n_layer * cfg.n_kv_heads * cfg.head_dim * size  # K and V, every layer
    assert state["formulas"][msg("kv.heads", variant="MHA", n=cfg.n_heads)]["per_token"] == per_token
