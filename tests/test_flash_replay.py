"""FlashAttention replayed tile by tile: the output, the running state of every step, the HBM
traffic against Theorem 2's bounds, the causal skipping, the memory levels and the GPU table."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground.inspect import flash_memory as fm
from playground.inspect import flash_replay as fr

N, D = 37, 16
BLOCKS = [(1, 1), (5, 7), (8, 3), (16, 16), (37, 37), (40, 64)]


@pytest.fixture(scope="module")
def qkv():
    g = torch.Generator().manual_seed(15)
    return [torch.randn(N, D, generator=g, dtype=torch.float64) * 2 for _ in range(3)]


def sdpa(q, k, v, causal):
    """(N, d) torch's scaled_dot_product_attention in float64: the independent reference."""
    return F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=causal)[0].numpy()


@pytest.mark.parametrize("order", fr.ORDERS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("blocks", BLOCKS)
def test_output_equals_standard_attention(qkv, order, causal, blocks):
    q, k, v = qkv
    r = fr.replay(q, k, v, block_rows=blocks[0], block_cols=blocks[1], causal=causal, order=order)
    assert r.output.shape == (N, D)
    assert np.max(np.abs(r.output - sdpa(q, k, v, causal))) < 1e-6
    assert r.max_abs_diff < 1e-6
    s = q.numpy() @ k.numpy().T / math.sqrt(D)
    if causal:
        s = np.where(np.tril(np.ones((N, N), bool)), s, -np.inf)
    lse = np.log(np.exp(s - s.max(1, keepdims=True)).sum(1)) + s.max(1)
    assert np.allclose(r.logsumexp, lse, atol=1e-10)


@pytest.mark.parametrize("order", fr.ORDERS)
@pytest.mark.parametrize("causal", [False, True])
def test_every_step_holds_the_softmax_of_the_keys_seen_so_far(qkv, order, causal):
    """After tile (i, j) the rows of block i have seen keys [0, end of block j): m, l, O are theirs."""
    q, k, v = (x.numpy() for x in qkv)
    s = q @ k.T / math.sqrt(D)
    if causal:
        s = np.where(np.tril(np.ones((N, N), bool)), s, -np.inf)
    r = fr.replay(q, k, v, block_rows=5, block_cols=7, causal=causal, order=order)
    computed = [st for st in r.steps if not st.skipped]
    assert computed
    for st in computed:
        (r0, r1), (c0, c1) = st.rows, st.cols
        seen = s[r0:r1, :c1]                                  # (Br, keys so far)
        m = seen.max(axis=1)
        e = np.exp(seen - m[:, None])
        assert np.allclose(st.scores, s[r0:r1, c0:c1], atol=1e-12, rtol=0)  # the BLAS may split a product differently
        assert np.allclose(st.m, m, atol=1e-12)
        assert np.allclose(st.l, e.sum(1), rtol=1e-12)
        assert np.allclose(st.probs, e[:, c0:c1], atol=1e-12)
        assert np.allclose(st.output, e @ v[:c1] / e.sum(1, keepdims=True), atol=1e-12)
        assert st.o_normalised == (order == "fa1")
        if order == "fa2":
            assert np.allclose(st.o, e @ v[:c1], atol=1e-10)


def test_loop_orders():
    _, fa2 = fr.schedule(10, 4, block_rows=4, block_cols=5, causal=False, order="fa2")
    _, fa1 = fr.schedule(10, 4, block_rows=4, block_cols=5, causal=False, order="fa1")
    assert [(s.i, s.j) for s in fa2] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert [(s.i, s.j) for s in fa1] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert [s.rows for s in fa2[::2]] == [(0, 4), (4, 8), (8, 10)]
    assert [s.index for s in fa1] == list(range(6))


def test_hbm_transfers_per_step():
    n, d, br, bc = 10, 4, 4, 5
    setup, fa2 = fr.schedule(n, d, block_rows=br, block_cols=bc, causal=False, order="fa2")
    assert setup == []
    first, last = fa2[0], fa2[1]
    assert [(t.tensor, t.block, t.elements) for t in first.reads] == [("Q", 0, 16), ("K", 0, 20), ("V", 0, 20)]
    assert first.writes == []
    assert [(t.tensor, t.elements) for t in last.reads] == [("K", 20), ("V", 20)]
    assert [(t.tensor, t.block, t.elements) for t in last.writes] == [("O", 0, 16), ("L", 0, 4)]
    assert [(t.tensor, t.elements) for t in fa2[-1].writes] == [("O", 8), ("L", 2)]  # the 2-row last block

    setup, fa1 = fr.schedule(n, d, block_rows=br, block_cols=bc, causal=False, order="fa1")
    assert sum(t.elements for t in setup) == n * d + 2 * n       # O = 0, l = 0, m = -inf
    assert [t.tensor for t in fa1[0].reads] == ["K", "V", "Q", "O", "l", "m"]
    assert [t.tensor for t in fa1[1].reads] == ["Q", "O", "l", "m"]
    assert [t.tensor for t in fa1[1].writes] == ["O", "l", "m"]


@pytest.mark.parametrize("n, d, br, bc", [(64, 8, 8, 16), (100, 16, 7, 9), (37, 16, 40, 64)])
def test_tiled_traffic_matches_the_closed_forms(n, d, br, bc):
    tr, tc = -(-n // br), -(-n // bc)
    fa1 = fm.tiled_traffic(n, d, block_rows=br, block_cols=bc, causal=False, order="fa1")
    fa2 = fm.tiled_traffic(n, d, block_rows=br, block_cols=bc, causal=False, order="fa2")
    assert fa1 == 3 * n * d + 2 * n + tc * (3 * n * d + 4 * n)
    assert fa2 == 2 * n * d + n + 2 * n * d * tr
    assert fm.standard_traffic(n, d) == 4 * n * d + 4 * n * n


def test_replay_counts_the_schedule(qkv):
    q, k, v = qkv
    for order in fr.ORDERS:
        r = fr.replay(q, k, v, block_rows=5, block_cols=7, causal=True, order=order)
        assert r.hbm_elements == fm.tiled_traffic(N, D, block_rows=5, block_cols=7, causal=True, order=order)


def test_standard_traffic_grows_like_n_squared():
    t = fm.traffic_over_n([128, 256, 512, 1024, 2048], 64, 83968)
    ratio = t["standard"] / t["standard_bound"]
    assert np.allclose(ratio, 4.0)
    growth = t["standard"][1:] / t["standard"][:-1]
    assert np.all(growth < 4.0) and np.all(np.diff(growth) > 0) and growth[-1] > 3.85   # -> 4x once N >> d


def test_tiled_traffic_grows_like_n2_d2_over_m():
    # N doubles: the ratio to N^2 d^2 / M stays in a narrow band
    t = fm.traffic_over_n([128, 256, 512, 1024, 2048], 16, 512)
    ratio = t["tiled"] / t["tiled_bound"]
    assert ratio.max() / ratio.min() < 1.1
    assert np.all(np.diff(ratio) < 0)                         # the O(N d) term fades
    growth = t["tiled"][1:] / t["tiled"][:-1]
    assert np.all(growth > 3.8) and np.all(growth < 4.0)
    # M doubles (d fixed) and d doubles (M fixed): traffic follows d^2 / M, the ratio stays in the band
    by_m = [fm.traffic_over_n([1024], 16, m) for m in (512, 1024, 2048, 4096)]
    by_d = [fm.traffic_over_n([1024], d, 4096) for d in (8, 16, 32)]
    ratios = [float(x["tiled"][0] / x["tiled_bound"][0]) for x in by_m + by_d]
    assert max(ratios) / min(ratios) < 1.25
    traffic_by_m = [int(x["tiled"][0]) for x in by_m]
    assert all(a > 1.8 * b for a, b in zip(traffic_by_m, traffic_by_m[1:]))   # twice the SRAM, ~half the traffic
    # with an A100's shared memory (M = 83968 fp16 elements >> d^2) the tiled kernel moves far less
    a100 = fm.traffic_over_n([1024, 4096], 64, fm.gpu("A100 40GB").budget())
    assert np.all(a100["tiled"] < a100["standard"] / 4)


def test_causal_fa2_skips_about_half_the_tiles():
    for br, bc in [(32, 32), (16, 64), (64, 16)]:
        _, steps = fr.schedule(1024, 64, block_rows=br, block_cols=bc, causal=True, order="fa2")
        skipped = sum(s.skipped for s in steps) / len(steps)
        assert 0.45 < skipped < 0.5
        assert all(s.j * bc > s.i * br + br - 1 for s in steps if s.skipped)
        assert all(s.reads == [] and s.writes == [] for s in steps if s.skipped)
    full = fm.tiled_traffic(1024, 64, block_rows=32, block_cols=32, causal=False, order="fa2")
    half = fm.tiled_traffic(1024, 64, block_rows=32, block_cols=32, causal=True, order="fa2")
    assert 0.5 < half / full < 0.56
    _, bidirectional = fr.schedule(1024, 64, block_rows=32, block_cols=32, causal=False, order="fa2")
    assert not any(s.skipped for s in bidirectional)


def test_memory_levels_of_each_tile(qkv):
    q, k, v = qkv
    for order in fr.ORDERS:
        r = fr.replay(q, k, v, block_rows=8, block_cols=8, causal=True, order=order)
        for st in r.steps:
            assert set(st.placement.values()) <= set(fm.LEVELS)
            assert all(st.placement[x] == "HBM" for x in ("Q", "K", "V", "O"))
            if st.skipped:
                assert "S_ij" not in st.placement and st.on_chip(D) == {"registers": 0, "SRAM": 0}
                assert st.scores is None
                continue
            assert st.placement["K_j"] == st.placement["V_j"] == st.placement["Q_i"] == "SRAM"
            assert st.placement["S_ij"] == "registers"
        st = next(s for s in r.steps if not s.skipped)
        if order == "fa2":   # Q_i, K_j, V_j in SRAM; S, P, m, l and the O accumulator in registers
            assert st.placement["O_i"] == st.placement["m_i"] == "registers"
            assert st.on_chip(D) == {"SRAM": 3 * 8 * D, "registers": 2 * 64 + 8 * D + 2 * 8}
        else:                # Algorithm 1 loads O_i, l_i, m_i into SRAM
            assert st.placement["O_i"] == st.placement["m_i"] == "SRAM" and st.placement["l"] == "HBM"
            assert st.on_chip(D) == {"SRAM": 4 * 8 * D + 2 * 8, "registers": 2 * 64}


def test_gpu_table_and_block_sizes():
    a100, h100 = fm.gpu("A100 40GB"), fm.gpu("H100 SXM")
    assert (a100.sm_count, a100.smem_per_sm_kb, a100.l1_smem_per_sm_kb) == (108, 164, 192)
    assert (h100.sm_count, h100.smem_per_sm_kb, h100.hbm_gb, h100.hbm_tb_s) == (132, 228, 80, 3.35)
    assert a100.register_kb_per_sm == h100.register_kb_per_sm == 256
    assert a100.budget() == 164 * 512 and a100.budget(4) == 164 * 256
    assert fm.block_sizes(a100.budget(), 64) == (64, 328)    # ceil(83968 / 256) = 328
    assert fm.block_sizes(h100.budget(), 128) == (128, 228)
    assert fm.block_sizes(4 * 64, 64) == (1, 1)
    assert fm.block_sizes(1000, 16) == (16, 16)              # ceil(1000 / 64) = 16
    for g in fm.GPUS.values():
        levels = g.hierarchy()
        assert [x["level"] for x in levels] == list(fm.LEVELS)
        totals = [x["total_bytes"] for x in levels]
        assert totals[0] < totals[2] and totals[1] < totals[2]
        assert levels[1]["bandwidth_tb_s"] > 5 * levels[2]["bandwidth_tb_s"]   # SRAM ~10x HBM


def test_bad_input_is_a_value_error(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match="GPU"):
        fm.gpu("V100")
    for budget, d in [(0, 64), (255, 64), (1024, 0), (True, 1), (100.5, 4)]:
        with pytest.raises(ValueError):
            fm.block_sizes(budget, d)
    with pytest.raises(ValueError, match="order"):
        fr.replay(q, k, v, block_rows=4, block_cols=4, causal=False, order="fa3")
    with pytest.raises(ValueError, match="block_rows"):
        fr.replay(q, k, v, block_rows=0, block_cols=4, causal=False)
    with pytest.raises(ValueError, match="shape"):
        fr.replay(q, k[:-1], v, block_rows=4, block_cols=4, causal=False)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        fr.replay(q[None], k, v, block_rows=4, block_cols=4, causal=False)
    bad = q.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fr.replay(bad, k, v, block_rows=4, block_cols=4, causal=False)
    with pytest.raises(ValueError):
        fm.traffic_over_n([], 16, 512)
