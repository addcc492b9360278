"""RWKV's and Mamba's implicit attention rebuilt tile by tile (``RWKVSource``, ``MambaSource``): every tile,
including tiles the diagonal crosses, tiles wholly above it, a subset of heads and queries that are the newest
of a longer history, equals the whole matrix of the models' own unrolling; and both families analyze prompts
past the 512 tokens implicit attention used to stop at, with memory linear in T."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from playground import zoo
from playground.inspect import tiles
from playground.inspect.analysis import analyze
from playground.models.mamba_implicit import MambaSource, implicit_attention as mamba_alpha
from playground.models.rwkv import RWKVSource, implicit_attention as rwkv_alpha
from playground.nn.rebuild import MAX_DENSE, max_output_diff
from playground.ui import service

WINDOWS = [(0, None, 0, None), (3, 9, 0, 5), (5, 12, 0, 7), (10, None, 3, 40), (0, 5, 50, None), (7, 19, 2, 56),
           (16, 17, 0, None)]


def _windows(Tq: int, Tk: int):
    for r0, r1, c0, c1 in WINDOWS:
        yield r0, r1 or Tq, c0, c1 or Tk


@pytest.mark.parametrize("Tq", [60, 17, 1])
def test_rwkv_tiles_equal_the_unrolled_matrix(Tq):
    torch.manual_seed(Tq)
    H, Tk, N = 3, 60, 8
    r, k = torch.randn(2, H, Tq, N), torch.randn(2, H, Tk, N)
    log_w, u = -torch.exp(torch.randn(H, N)), torch.randn(H, N)
    whole = rwkv_alpha(r, k, log_w, u, start=Tk - Tq)  # (B, H, Tq, Tk)
    src = RWKVSource(r, k, log_w, u)
    assert src.shape == (2, H, Tq, Tk)
    for batch in (0, 1):
        for r0, r1, c0, c1 in _windows(Tq, Tk):
            if r1 > Tq or r0 >= r1:
                continue
            got = src.tile(r0, r1, c0, c1, batch=batch)
            torch.testing.assert_close(got, whole[batch, :, r0:r1, c0:c1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(src.tile(0, Tq, 0, Tk, heads=[2, 0], batch=1), whole[1, [2, 0]], atol=1e-5, rtol=1e-5)
    assert src.nbytes == r.nbytes + k.nbytes + log_w.nbytes + u.nbytes


@pytest.mark.parametrize("Tq", [70, 23, 1])
def test_mamba_tiles_equal_the_mean_of_the_per_channel_alpha(Tq):
    torch.manual_seed(Tq)
    Bt, Tk, d_in, n, H = 2, 70, 32, 4, 4
    delta = F.softplus(torch.randn(Bt, Tk, d_in))
    B, C, A = torch.randn(Bt, Tk, n), torch.randn(Bt, Tq, n), -torch.rand(d_in, n) * 3
    whole = mamba_alpha(delta, B, C, A, Tk - Tq)  # (B, Tq, Tk, d_in)
    heads = whole.view(Bt, Tq, Tk, H, d_in // H).mean(-1).permute(0, 3, 1, 2)  # (B, H, Tq, Tk)
    src = MambaSource(delta, B, C, A, H)
    for batch in (0, 1):
        for r0, r1, c0, c1 in _windows(Tq, Tk):
            if r1 > Tq or r0 >= r1:
                continue
            torch.testing.assert_close(src.tile(r0, r1, c0, c1, batch=batch), heads[batch, :, r0:r1, c0:c1],
                                       atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(src.tile(0, Tq, 0, Tk, heads=[3, 1]), heads[0, [3, 1]], atol=1e-5, rtol=1e-4)


def test_mamba_tiles_stay_exact_far_into_a_long_sequence():
    """Far from the start P (the running sum of delta) is large; its differences are taken in float64, so a
    tile of a 3,000-token sequence equals the unrolled alpha of the same tokens as exactly as one near the start."""
    torch.manual_seed(0)
    Tk, d_in, n, H = 3000, 8, 4, 2
    delta = F.softplus(torch.randn(1, Tk, d_in)) * 0.05
    B, C, A = torch.randn(1, Tk, n), torch.randn(1, Tk, n), -torch.rand(d_in, n)
    src = MambaSource(delta, B, C, A, H)
    r0, c0 = 2900, 2700  # 100 queries over 200 earlier keys and their own square
    window = slice(c0, 3000)
    alpha = mamba_alpha(delta[:, window], B[:, window], C[:, r0:3000], A, r0 - c0)  # translation invariant
    heads = alpha.view(1, 100, 300, H, d_in // H).mean(-1).permute(0, 3, 1, 2)[0]
    torch.testing.assert_close(src.tile(r0, 3000, c0, 3000), heads, atol=1e-6, rtol=1e-4)
    assert float(src.tile(r0, 3000, c0, 3000).abs().max()) > 1e-3  # the window holds real weights, not zeros


def test_a_dense_implicit_matrix_is_refused_past_the_limit():
    Tk = int(MAX_DENSE ** 0.5) + 1
    src = RWKVSource(torch.zeros(1, 1, Tk, 1), torch.zeros(1, 1, Tk, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="too many"):
        src.dense()


@pytest.mark.parametrize("family", ["rwkv", "mamba"])
def test_recurrent_models_analyze_past_512_tokens_with_linear_memory(family):
    """The shipped RWKV and Mamba take the page's own limit now, not 512; an analysis of 1,200 tokens keeps
    the per-token quantities (linear in T) and overview cells, and its check stays at rounding."""
    spec = zoo.ModelSpec.parse(f"zoo:{family}")
    cfg = spec.config()
    limit, _ = service.token_limit(cfg)
    assert limit == service.MAX_PROMPT_TOKENS["cpu"]
    model = spec.load().eval()
    ids = torch.randint(4, cfg.vocab_size, (1200,), generator=torch.Generator().manual_seed(1)).tolist()
    result = analyze(model, ids)
    assert result.kinds == ["implicit"] and result.maps[0].shape == (cfg.n_heads, 1200, 1200)
    if family == "mamba":
        assert result.max_abs_diff < 1e-3
    else:  # RWKV's outputs reach 1e4-1e5 over 1,200 tokens: the check is rounding relative to them
        with torch.no_grad():
            records = model(torch.tensor([ids]), capture=True).attentions
        for rec in records:
            v, out = rec.check
            assert max_output_diff(rec.source, v, out) <= 1e-5 * float(out.abs().max())
        assert result.max_abs_diff == pytest.approx(max(max_output_diff(r.source, *r.check) for r in records), rel=0.1)
    sources = sum(m.source.nbytes for m in result.maps)
    assert sources == service.analysis_bytes(cfg, 1200) - sum(m.overview.nbytes for m in result.maps)
    assert sources < cfg.n_layer * cfg.n_heads * 1200 * 1200 * 4 / 10  # far below the whole matrices
    m = result.maps[-1]
    exact = tiles.pool(m.source, (1100, 1164), (1000, 1064), 64, heads=[1])
    assert exact.exact
    np.testing.assert_allclose(exact.max[0], m.source.tile(1100, 1164, 1000, 1064, heads=[1])[0].numpy())
    assert np.abs(exact.max).max() > 0
