"""FlexAttention against the explicit formula, its block mask against the dense mask, and its one compile.

Every test uses the same head count, head size and dtype, so the whole file shares the kernel
that ``warm_up`` compiles (a prompt and a single-query variant).
"""
import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from playground.nn import flex
from playground.nn.kernels import explicit_attention
from playground.nn.masks import MaskRule, positions
from playground.nn.position import alibi_bias, alibi_slopes

NH, HS = 4, 32


@pytest.fixture(scope="module", autouse=True)
def compiled():
    assert flex.flex_status("cpu") is None
    flex.warm_up("cpu", torch.float32, heads=NH, head_dim=HS)
    assert flex.is_warm("cpu") and flex.flex_status("cpu") is None


def qkv(B, Tq, Tk, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, NH, T, HS, generator=g) for T in (Tq, Tk, Tk))  # (B, nh, T, hs)


def padded(B, Tk):
    """(B, Tk) key validity: the last sequence loses its last third (at least one key)."""
    valid = torch.ones(B, Tk, dtype=torch.bool)
    valid[-1, Tk - Tk // 3:] = False
    return valid


def check_against_explicit(rule, Tq, Tk, *, q_start=0, k_start=0, key_valid=None, alibi=False, B=2):
    q, k, v = qkv(B, Tq, Tk)
    slopes = alibi_slopes(NH) if alibi else None
    out, block_mask = flex.flex_attention(q, k, v, rule, q_start=q_start, k_start=k_start,
                                          key_valid=key_valid, alibi_slopes=slopes)
    q_pos, k_pos = positions(q_start, Tq), positions(k_start, Tk)
    mask = rule.dense(q_pos, k_pos, key_valid).expand(B, 1, Tq, Tk)
    expected, _ = explicit_attention(q, k, v, mask, alibi_bias(slopes, q_pos, k_pos) if alibi else None)
    sees = mask.any(-1).expand(B, NH, Tq)  # rows with at least one visible key
    assert out.shape == (B, NH, Tq, HS)
    assert (out[sees] - expected[sees]).abs().max().item() < 1e-5
    assert (out[~sees] == 0).all()  # a query that sees nothing (padding) gets zeros, not NaN
    assert block_mask.seq_lengths == (Tq, Tk)
    return out, block_mask


SELF_RULES = [
    ("causal", 0, 0), ("bidirectional", 0, 0),
    ("prefix", 0, 0), ("prefix", 5, 0), ("prefix", "T", 0),
    ("causal", 0, 1), ("causal", 0, 7), ("causal", 0, 64), ("prefix", 5, 7), ("bidirectional", 0, 7),
]


@pytest.mark.parametrize("T", [1, 37, 200])
@pytest.mark.parametrize("alibi", [False, True])
@pytest.mark.parametrize("kind,prefix_len,window", SELF_RULES)
def test_self_attention_equals_explicit(kind, prefix_len, window, alibi, T):
    rule = MaskRule(kind, T if prefix_len == "T" else prefix_len, window)
    check_against_explicit(rule, T, T, alibi=alibi)
    check_against_explicit(rule, T, T, alibi=alibi, key_valid=padded(2, T))


@pytest.mark.parametrize("Tk", [1, 37, 200])
@pytest.mark.parametrize("alibi", [False, True])
def test_cross_attention_with_padding_equals_explicit(alibi, Tk):
    check_against_explicit(MaskRule("cross"), 5, Tk, key_valid=padded(2, Tk), alibi=alibi)
    check_against_explicit(MaskRule("cross"), 130, Tk, key_valid=padded(2, Tk), alibi=alibi)


@pytest.mark.parametrize("rule", [MaskRule("causal"), MaskRule("prefix", 35), MaskRule("causal", window=7),
                                  MaskRule("prefix", 41, 4)])
@pytest.mark.parametrize("alibi", [False, True])
def test_chunk_and_step_against_a_cache_use_absolute_positions(rule, alibi):
    # a chunk of 3 queries at positions 40..42 over cached keys 30..42, as a cached decoder sees
    check_against_explicit(rule, 3, 13, q_start=40, k_start=30, alibi=alibi)
    check_against_explicit(rule, 3, 13, q_start=40, k_start=30, alibi=alibi, key_valid=padded(2, 13))
    # one decoding step: query 142 over keys 0..142; and its output is the last row of the full pass
    step, _ = check_against_explicit(rule, 1, 143, q_start=142, alibi=alibi)
    q, k, v = qkv(2, 143, 143)
    full, _ = flex.flex_attention(q, k, v, rule, q_start=0, k_start=0, alibi_slopes=alibi_slopes(NH) if alibi else None)
    last, _ = flex.flex_attention(q[:, :, -1:], k, v, rule, q_start=142, k_start=0,
                                  alibi_slopes=alibi_slopes(NH) if alibi else None)
    assert torch.allclose(last[:, :, 0], full[:, :, -1], atol=1e-5)


def expected_grid(mask: torch.Tensor, block: int = 128) -> np.ndarray:
    """Tiles of a dense (Tq, Tk) mask, padded with False like FlexAttention: 0 none, 1 some, 2 all visible."""
    Tq, Tk = mask.shape
    n_q, n_k = -(-Tq // block), -(-Tk // block)
    tiles = torch.zeros(n_q * block, n_k * block, dtype=torch.bool)
    tiles[:Tq, :Tk] = mask
    seen = tiles.view(n_q, block, n_k, block).sum((1, 3))  # (n_q, n_k)
    return np.where(seen == 0, 0, np.where(seen == block * block, 2, 1)).astype(np.int8)


def grid_of(rule, T, key_valid=None, B=1):
    return flex.block_mask_for(rule, B, T, T, q_start=0, k_start=0, key_valid=key_valid)


def test_causal_grid_skips_the_upper_triangle():
    block_mask = grid_of(MaskRule("causal"), 1024)
    grid = flex.block_grid(block_mask)
    assert grid.shape == (8, 8) and grid.dtype == np.int8
    assert np.array_equal(grid, np.tril(np.full((8, 8), 2, np.int8), -1) + np.eye(8, dtype=np.int8))
    assert (grid == 0).sum() == 28 and flex.skipped_share(grid) == 28 / 64
    assert np.array_equal(grid > 0, block_mask.to_dense()[0, 0].numpy() > 0)
    assert np.array_equal(grid, expected_grid(MaskRule("causal").dense(positions(0, 1024), positions(0, 1024))))


def test_sliding_window_grid_skips_over_80_percent_at_2048():
    rule = MaskRule("causal", window=256)
    block_mask = grid_of(rule, 2048)
    grid = flex.block_grid(block_mask)
    assert grid.shape == (16, 16)
    assert np.array_equal(grid, expected_grid(rule.dense(positions(0, 2048), positions(0, 2048))))
    assert np.array_equal(grid > 0, block_mask.to_dense()[0, 0].numpy() > 0)
    # per query block: the diagonal tile and two back partial, the one between full (45 tiles computed)
    assert (grid > 0).sum() == 45 and (grid == 2).sum() == 15
    assert flex.skipped_share(grid) == pytest.approx(211 / 256) and flex.skipped_share(grid) > 0.8


@pytest.mark.parametrize("rule", [MaskRule("prefix", 150), MaskRule("bidirectional", window=100), MaskRule("causal")])
def test_grid_of_a_padded_batch_at_a_ragged_length(rule):
    T = 300
    valid = torch.ones(2, T, dtype=torch.bool)
    valid[1, 140:] = False  # the second sequence is 140 tokens long
    block_mask = grid_of(rule, T, valid, B=2)
    for b in range(2):
        grid = flex.block_grid(block_mask, batch=b)
        mask = rule.dense(positions(0, T), positions(0, T), valid)[b, 0]
        assert np.array_equal(grid, expected_grid(mask))
        assert np.array_equal(grid > 0, block_mask.to_dense()[b, 0].numpy() > 0)
    assert (flex.block_grid(block_mask, batch=1)[:, 2] == 0).all()  # keys 256.. are all padding


def test_no_recompile_for_new_lengths_rules_padding_or_alibi():
    before = counters["stats"]["unique_graphs"]
    calls = [
        (MaskRule("causal"), 1, 77, 76, 0, None, False),
        (MaskRule("prefix", 9), 2, 333, 0, 0, None, True),
        (MaskRule("causal", window=33), 3, 129, 0, 0, padded(3, 129), True),
        (MaskRule("bidirectional"), 2, 64, 0, 0, padded(2, 64), False),
        (MaskRule("cross"), 2, 17, 0, 0, padded(2, 90), False),
        (MaskRule("causal", window=5), 1, 1, 500, 0, None, True),
    ]
    for rule, B, Tq, q_start, k_start, key_valid, alibi in calls:
        Tk = key_valid.shape[1] if key_valid is not None else q_start + Tq
        q, k, v = qkv(B, Tq, Tk)
        q = q.transpose(1, 2).contiguous().transpose(1, 2)  # as a model passes it: a view of (B, T, nh, hs)
        flex.flex_attention(q, k, v, rule, q_start=q_start, k_start=k_start, key_valid=key_valid,
                            alibi_slopes=alibi_slopes(NH) if alibi else None)
    assert counters["stats"]["unique_graphs"] == before


def test_bad_inputs_are_refused():
    q, k, v = qkv(2, 10, 10)
    with pytest.raises(ValueError, match="alibi_slopes"):
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0, alibi_slopes=torch.ones(3))
    with pytest.raises(ValueError, match="key_valid"):
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0, key_valid=torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="expected"):
        flex.flex_attention(q, k[:, :2], v[:, :2], MaskRule("causal"), q_start=0, k_start=0)


def test_status_names_a_missing_cpp_compiler(monkeypatch):
    from torch._inductor import config as inductor_config

    monkeypatch.setattr(flex.KERNEL, "status", {})
    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        reason = flex.flex_status("cpu")
    assert reason is not None and "no C++ compiler" in reason and "no-such-c++-compiler" in reason
    q, k, v = qkv(1, 4, 4)
    with pytest.raises(flex.FlexUnavailable, match="no C\\+\\+ compiler"):
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0)


def stand_in(fail):
    """A stand-in for the compiled kernel: raises ``fail(q)`` when that is not None, else returns q.
    Records the head dims it was called with."""
    calls = []

    def compiled():
        def call(q, k, v, **kwargs):
            calls.append(q.shape[-1])
            error = fail(q)
            if error is not None:
                raise error
            return q
        return call
    return compiled, calls


@pytest.fixture
def fresh_status(monkeypatch):
    monkeypatch.setattr(flex.KERNEL, "status", {})
    monkeypatch.setattr(flex.KERNEL, "failed", {})


def test_a_failed_compile_becomes_the_status_of_that_dtype_and_head_dim_only(monkeypatch, fresh_status):
    """A compile that fails for one head dim (a shared-memory limit at 128 on some GPUs) leaves FlexAttention
    on for every other head dim, dtype and device; for that one, the next call falls back at once."""
    from torch._inductor.exc import CppCompileError

    compiled, calls = stand_in(lambda q: CppCompileError(["g++"], "long compiler output") if q.shape[-1] == HS else None)
    monkeypatch.setattr(flex, "_compiled_flex", compiled)
    q, k, v = qkv(1, 4, 4)
    with pytest.raises(flex.FlexUnavailable, match="CppCompileError"):
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0)
    reason = flex.flex_status("cpu", torch.float32, HS)
    assert "failed to compile for float32 at head dim 32 on cpu" in reason and "C++ compile error" in reason
    assert "long compiler output" not in reason
    assert flex.flex_status("cpu") is None
    assert flex.flex_status("cpu", torch.float32, 16) is None and flex.flex_status("cpu", torch.bfloat16, HS) is None
    with pytest.raises(flex.FlexUnavailable, match="head dim 32"):  # not compiled again
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0)
    assert calls == [HS]
    assert flex.warm_up("cpu", torch.float32, heads=NH, head_dim=HS) == reason  # what the page's note shows
    q16 = torch.randn(1, NH, 4, 16)
    out, _ = flex.flex_attention(q16, q16, q16, MaskRule("causal"), q_start=0, k_start=0)
    assert out.shape == q16.shape and calls == [HS, 16]


@pytest.mark.parametrize("error", [
    RuntimeError("CUDA error: an illegal memory access was encountered"),
    ValueError("something about this one call"),
])
def test_a_call_that_fails_without_compiling_says_so_for_that_call_only(monkeypatch, fresh_status, error):
    failures = [error]
    compiled, calls = stand_in(lambda q: failures.pop() if failures else None)
    monkeypatch.setattr(flex, "_compiled_flex", compiled)
    q, k, v = qkv(1, 4, 4)
    with pytest.raises(flex.FlexUnavailable, match="failed to run"):
        flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0)
    assert flex.flex_status("cpu") is None and flex.flex_status("cpu", torch.float32, HS) is None
    out, _ = flex.flex_attention(q, k, v, MaskRule("causal"), q_start=0, k_start=0)
    assert out.shape == q.shape and len(calls) == 2


@pytest.mark.parametrize("wrapped", [False, True])
def test_out_of_memory_is_out_of_memory_not_a_status(monkeypatch, fresh_status, wrapped):
    """torch.OutOfMemoryError (a RuntimeError), raised by the kernel or wrapped by the compiler, is
    OutOfDeviceMemory naming the tokens; FlexAttention stays on."""
    from torch._dynamo.exc import BackendCompilerFailed
    from playground.nn.kernels import OutOfDeviceMemory

    def oom(q):
        error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return BackendCompilerFailed(lambda: None, error, None) if wrapped else error

    failures = [oom]
    compiled, calls = stand_in(lambda q: failures.pop()(q) if failures else None)
    monkeypatch.setattr(flex, "_compiled_flex", compiled)
    q, k, v = qkv(1, 4, 9)
    with pytest.raises(OutOfDeviceMemory, match="Out of CPU memory at 9 tokens") as info:
        flex.flex_attention(q, k, v, MaskRule("cross"), q_start=0, k_start=0)
    assert (info.value.device, info.value.tokens) == ("cpu", 9)
    assert flex.flex_status("cpu") is None and flex.flex_status("cpu", torch.float32, HS) is None
    flex.flex_attention(q, k, v, MaskRule("cross"), q_start=0, k_start=0)
    assert len(calls) == 2


def test_cuda_head_dims_below_16_are_refused_by_the_documented_limit(monkeypatch, fresh_status):
    monkeypatch.setitem(flex.KERNEL.status, "cuda", None)  # as on a CUDA machine with Triton
    assert "at least 16" in flex.flex_status("cuda", torch.bfloat16, 8)
    assert flex.flex_status("cuda", torch.bfloat16, 16) is None and flex.flex_status("cuda") is None
    assert flex.flex_status("cpu", torch.float32, 8) is None


def test_the_block_mask_view_asks_the_status_of_its_own_device_dtype_and_head_dim(monkeypatch, fresh_status):
    """The page's block-mask view (nn.block_mask_timing.fused_vs_dense) says why, without compiling, when the kernel of
    that dtype and head dim failed to compile, and runs for another dtype."""
    from playground.nn.block_mask_timing import fused_vs_dense

    compiled, calls = stand_in(lambda q: None)
    monkeypatch.setattr(flex, "_compiled_flex", compiled)
    flex.KERNEL.failed[("cpu", torch.bfloat16, 16)] = "FlexAttention failed to compile for bfloat16 at head dim 16 on cpu"
    out = fused_vs_dense(MaskRule("causal"), 130, 130, 2, 16, device="cpu", dtype="bfloat16")
    assert out == {"reason": "FlexAttention failed to compile for bfloat16 at head dim 16 on cpu"} and calls == []
    assert "grid" in fused_vs_dense(MaskRule("causal"), 130, 130, 2, 16, device="cpu", dtype="float32")
    assert set(calls) == {16}


def test_the_block_mask_from_the_rule_is_the_one_create_block_mask_evaluates():
    """``blocks_from_rule`` sorts tiles from the rule's arithmetic on their corners; ``create_block_mask`` evaluates
    every (query, key) pair. Over random rules, windows, prefixes, offsets and lengths they skip the same tiles and
    mark the same full ones; with padding the corner arithmetic may keep a tile partial whose only visible keys
    are padding, never skip or fill one it should not."""
    import random

    from torch.nn.attention.flex_attention import create_block_mask

    from playground.nn.block_mask import blocks_from_rule

    rng = random.Random(0)
    for _ in range(40):
        kind = rng.choice(["causal", "bidirectional", "prefix", "cross"])
        window = 0 if kind == "cross" or rng.random() < 0.4 else rng.choice([1, 5, 64, 127, 128, 129, 300, 1000])
        rule = MaskRule(kind, prefix_len=rng.randint(0, 700) if kind == "prefix" else 0, window=window)
        Tq = rng.choice([1, 3, 128, 129, 300, 513])
        Tk = Tq if rng.random() < 0.5 else rng.choice([1, 50, 128, 200, 384, 700])
        q_start, k_start = rng.choice([0, 0, max(0, Tk - Tq), 17, 300]), rng.choice([0, 0, 5, 130])
        valid = torch.ones(2, Tk, dtype=torch.bool)
        padded = rng.random() < 0.3
        holes = rng.random() < 0.15
        if padded:
            valid[1, :rng.randint(0, Tk)] = False
            valid[0, rng.randint(0, Tk):] = False
        if holes:
            valid[1, rng.randint(0, Tk - 1)] = False
        mask_mod = flex._mask_mod(flex._numbers(rule, q_start, k_start, torch.device("cpu")), valid)
        want = create_block_mask(mask_mod, 2, None, Tq, Tk, device="cpu")
        got = blocks_from_rule(rule, 2, Tq, Tk, q_start=q_start, k_start=k_start, key_valid=valid,
                                    mask_mod=mask_mod)
        for b in range(2):
            w, g = flex.block_grid(want, b), flex.block_grid(got, b)
            case = (rule, Tq, Tk, q_start, k_start, b)
            assert not ((w != 0) & (g == 0)).any() and np.array_equal(w == 2, g == 2), case  # never wrong, as full
            if not (holes and b == 1):
                assert np.array_equal(w == 0, g == 0), case                          # as sparse
