"""Views that ask for tiles (``inspect.tiles``) against the dense weights, and the server's analysis store.

Pooled cells equal the max and the mean of the dense tensor's blocks; streamed head statistics equal
``inspect.heads`` on the dense weights; the attention-by-distance profile equals a brute-force mean; the
store evicts least recently used analyses under its budget, recomputes an evicted one (saying so), and
two sessions asking the same share one analysis.
"""
import numpy as np
import pytest
import torch

from playground.inspect import heads, tiles
from playground.inspect.analysis import analyze
from playground.models.weight_cache import WeightCache
from playground.nn.masks import MaskRule
from playground.nn.rebuild import AttentionSource, StoredWeights
from playground.ui import service
from playground.zoo import ModelSpec

from conftest import tiny_model

RULES = [MaskRule("causal"), MaskRule("prefix", prefix_len=37), MaskRule("causal", window=19),
         MaskRule("bidirectional")]


def source(rule: MaskRule, T: int = 203, nh: int = 6, n_kv: int = 2, seed: int = 0) -> AttentionSource:
    g = torch.Generator().manual_seed(seed)
    return AttentionSource(torch.randn(1, nh, T, 16, generator=g) * 2, torch.randn(1, n_kv, T, 16, generator=g) * 2,
                           None, rule)


def blocks(dense: np.ndarray, rows, cols, cell) -> np.ndarray:
    """(h, n_rows, cr, n_cols, cc) of a window, padded with zeros: the reference for pooled cells."""
    w = dense[:, rows[0]:rows[1], cols[0]:cols[1]]
    padded = np.pad(w, ((0, 0), (0, (-w.shape[1]) % cell[0]), (0, (-w.shape[2]) % cell[1])))
    return padded.reshape(w.shape[0], padded.shape[1] // cell[0], cell[0], padded.shape[2] // cell[1], cell[1])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}-{r.prefix_len}-{r.window}")
@pytest.mark.parametrize("window,cells", [(((0, 203), (0, 203)), 16), (((50, 181), (3, 77)), 20),
                                          (((10, 30), (0, 20)), 64)])
def test_pooled_cells_are_the_max_and_mean_of_the_dense_weights(rule, window, cells):
    src = source(rule)
    dense = src.dense(0).numpy()
    rows, cols = window
    pooled = tiles.pool(src, rows, cols, cells)
    b = blocks(dense, rows, cols, pooled.cell)
    area = np.outer(np.diff(pooled.row_edges()), np.diff(pooled.col_edges()))
    np.testing.assert_allclose(pooled.max, b.max((2, 4)), atol=1e-6)
    np.testing.assert_allclose(pooled.mean, b.sum((2, 4)) / area, atol=1e-6)
    assert pooled.max.shape[1] <= cells and pooled.max.shape[2] <= cells
    assert pooled.exact == (pooled.cell == (1, 1))
    mask = src.dense_mask().numpy().astype(np.float32)[None]
    np.testing.assert_allclose(tiles.pool_mask(src, rows, cols, cells), (blocks(mask, rows, cols, pooled.cell)
                                                                          .sum((2, 4)) / area)[0], atol=1e-6)
    one = tiles.pool(src, rows, cols, cells, heads=[4])
    np.testing.assert_allclose(one.max[0], pooled.max[4], atol=1e-6)


def test_a_small_window_is_exact_and_signed_weights_pool_by_magnitude():
    src = source(MaskRule("causal"))
    exact = tiles.pool(src, (100, 140), (60, 101), 512, heads=[2])
    assert exact.exact and exact.max.shape == (1, 40, 41)
    np.testing.assert_allclose(exact.max[0], src.dense(0)[2, 100:140, 60:101].numpy(), atol=1e-6)
    signed = torch.randn(1, 2, 50, 50)
    stored = StoredWeights(signed.tril())
    pooled = tiles.pool(stored, (0, 50), (0, 50), 10)
    b = blocks(signed.tril()[0].numpy(), (0, 50), (0, 50), pooled.cell)
    hi, lo = b.max((2, 4)), b.min((2, 4))
    np.testing.assert_allclose(pooled.max, np.where(np.abs(hi) >= np.abs(lo), hi, lo), atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        tiles.pool(src, (0, 10), (200, 210), 8)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.kind}-{r.prefix_len}-{r.window}")
def test_streamed_statistics_equal_the_dense_definitions(rule):
    src = source(rule, T=230)
    tokens = np.random.default_rng(1).integers(0, 25, 230)  # many repeats: duplicate and induction pairs
    dense = src.dense(0).double().numpy()
    swept = tiles.sweep(src, 32, tokens)
    for h, expected in enumerate(heads.head_table(dense[None], tokens)):
        for name in tiles.STATS:
            assert swept.stats.values[name][h] == pytest.approx(expected[name], rel=1e-4, abs=1e-6), (name, h)
    mask = src.dense_mask().numpy()
    distance = np.abs(np.arange(230)[:, None] - np.arange(230)[None, :])
    edges = swept.stats.bin_edges
    for b in range(len(edges) - 1):
        pairs = (distance >= edges[b]) & (distance < edges[b + 1]) & mask
        if pairs.any():
            np.testing.assert_allclose(swept.stats.profile[:, b], dense[:, pairs].mean(-1), rtol=1e-4, atol=1e-7)
        else:
            assert np.isnan(swept.stats.profile[:, b]).all()
    np.testing.assert_allclose(swept.overview.max, tiles.pool(src, (0, 230), (0, 230), 32).max, atol=1e-6)


def test_an_analysis_keeps_no_square_matrix_and_its_statistics_match_the_weights():
    model = tiny_model(family="decoder", position="rope", n_kv_heads=2)
    ids = torch.randint(0, 20, (150,), generator=torch.Generator().manual_seed(0)).tolist()
    seen = []
    result = analyze(model, ids, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    T, cfg = len(ids), model.cfg
    per_layer = (cfg.n_heads + cfg.n_kv_heads) * T * cfg.head_dim * 4 + cfg.n_heads * T * 4
    pooled = sum(m.overview.nbytes for m in result.maps)
    assert result.nbytes == cfg.n_layer * per_layer + pooled  # q, k (per K/V head), lse and the cells: no T x T
    assert all(m.overview.max.shape[1:] == (75, 75) for m in result.maps)  # 128 cells a side at most: 2 x 2 here
    for row, expected in zip(result.head_stats("self"), heads.head_table(result.weights("self"), ids)):
        for name in tiles.STATS:
            assert row[name] == pytest.approx(expected[name], rel=1e-4, abs=1e-6)
    assert result.max_abs_diff < 1e-5


def test_cancel_stops_an_analysis_after_the_current_layer():
    from playground.inspect.analysis import Cancelled

    model = tiny_model(family="decoder", position="rope")
    with pytest.raises(Cancelled, match="after 1 of 2"):
        analyze(model, list(range(1, 40)), cancelled=lambda: True)


@pytest.fixture
def store(monkeypatch):
    cache = WeightCache(env=service.ANALYSIS_BUDGET_ENV, share=service.ANALYSIS_SHARE,
                        too_large="error.analysis_too_large")
    monkeypatch.setattr(service.analyses, "ANALYSES", cache)
    return cache


def test_the_store_shares_evicts_recomputes_and_counts_bytes(store, monkeypatch):
    spec = ModelSpec.parse("zoo:baseline")
    long, short = "Now is the winter of our discontent", "To be"
    first, notes = service.analyze_text(spec, long)
    again, _ = service.analyze_text(spec, long)
    assert again is first and not any(n.key == "note.analysis_recomputed" for n in notes)  # one copy, shared
    assert store.held() == first.nbytes
    # a budget that holds one analysis: the second evicts the first, asking for the first again recomputes it
    store.budget = first.nbytes + 1
    service.analyze_text(spec, short)
    assert [name for name, _ in store.contents()] == [f"{spec} · {len(short)} characters"]
    back, notes = service.analyze_text(spec, long)
    assert back is not first and any(n.key == "note.analysis_recomputed" for n in notes)
    np.testing.assert_array_equal(back.pooled("self")[0], first.pooled("self")[0])  # deterministic
    assert store.held() == back.nbytes <= store.limit()
    store.budget = None
    monkeypatch.setenv(service.ANALYSIS_BUDGET_ENV, "0.000001")  # 1 kB: no analysis fits
    with pytest.raises(ValueError, match="budget for analyses"):
        service.analyze_text(spec, "A horse! a horse! my kingdom for a horse!")


def test_a_session_keeps_a_reference_not_the_analysis(store, monkeypatch):
    """A session holds the request; ``result(w)`` reads the store and, when the store let the analysis go, computes
    it again as Analyze does: with its progress bar, stoppable by Cancel, and in the reader's language."""
    import gradio as gr

    from playground.ui.session import AnalysisRef, analysis_state
    from playground.ui.lang import Words

    a = analysis_state(Words(), "zoo:baseline", "Friends, Romans, countrymen")
    b = analysis_state(Words(), "zoo:baseline", "Friends, Romans, countrymen")
    first = a.result()
    assert isinstance(a, AnalysisRef) and first is b.result()
    assert "result" not in vars(a) and a.extended(kind="self").result() is first  # a request, not the analysis
    # another analysis pushes it out of a store that holds one: the session's next view computes it again
    store.budget = first.nbytes + 1
    analysis_state(Words(), "zoo:baseline", "Romans")
    with pytest.raises(gr.Error, match="分析已取消"):  # Cancel during the recompute, said in the reader's language
        a.result(Words(lang="zh-CN"), cancelled=lambda: True)
    seen = []
    with pytest.warns(UserWarning, match="computed again"):  # the reader is told (gr.Warning outside a request)
        again = a.result(Words(), progress=lambda done, total: seen.append((done, total)))
    assert again is not first and seen[-1] == (4, 4)  # the recompute reported its layers
    assert a.result() is again  # stored again: no second recompute
    np.testing.assert_array_equal(again.pooled("self")[0], first.pooled("self")[0])


def test_export_refuses_a_prompt_whose_weights_it_cannot_write(store):
    import gradio as gr

    from playground.ui.attention import EXPORT_MAX_WEIGHTS, export_files
    from playground.ui.session import analysis_state
    from playground.ui.lang import Words

    state = analysis_state(Words(), "zoo:baseline", "all the world's a stage " * 300)
    result = state.result()
    weights = sum(int(np.prod(m.shape)) for m in result.maps)
    assert weights > EXPORT_MAX_WEIGHTS
    with pytest.raises(gr.Error, match="more than an export writes"):
        export_files(state)


def test_cross_attention_has_no_distances_and_no_token_roles():
    """A decoder index and an encoder index are no distance apart: cross-attention's mean distance, previous-token
    share, duplicate / induction shares and distance profile are NaN (not numbers that mean nothing)."""
    import numpy as np
    import torch

    from playground.inspect.tiles import sweep
    from playground.nn.masks import MaskRule
    from playground.nn.rebuild import AttentionSource

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 5, 8, generator=g), torch.randn(1, 2, 9, 8, generator=g)
    cross = sweep(AttentionSource(q, k, None, MaskRule("cross")), 16, tokens=list(range(5))).stats
    for name in ("mean_distance", "previous_token", "duplicate_token", "induction"):
        assert np.isnan(cross.values[name]).all(), name
    assert np.isnan(cross.profile).all() and np.isfinite(cross.values["entropy"]).all()
    causal = sweep(AttentionSource(q, q[:, :, :, :], None, MaskRule("causal")), 16).stats
    assert np.isfinite(causal.values["mean_distance"]).all()
