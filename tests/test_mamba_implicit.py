"""Mamba's implicit attention, built one channel group and chunk of query rows at a time: every block
equals the direct double loop over (t, s), whatever the group, the chunk, the start position or the
decay; the faithfulness check still sees every channel; a mamba-130m-shaped layer never holds its
(T, T, d_in) alpha at once."""
import pytest
import torch

import playground.models.mamba as mamba
import playground.models.mamba_implicit as chunked
from playground.nn.timing import MIB, PeakRSS
from playground.config import ModelConfig
from playground.models import build_model

from conftest import assert_badge_catches, implicit_records
from test_mamba import config, randomize


def brute_force(delta, B, C, A, start):
    """alpha[b, t, s, c] = sum_n C_t[n] exp(A[c, n] (delta_{s+1} + ... + delta_t)[c]) delta_s[c] B_s[n], t >= s,
    one (query, key) pair at a time, in float64. Returns (B, Tq, Tk, d_in)."""
    delta, B, C, A = (x.double() for x in (delta, B, C, A))
    Bt, Tk, d_in = delta.shape
    alpha = torch.zeros(Bt, C.shape[1], Tk, d_in, dtype=torch.float64)
    for q in range(C.shape[1]):
        t = start + q
        for s in range(t + 1):
            decay = torch.exp(A * delta[:, s + 1:t + 1].sum(1)[..., None])  # (B, d_in, n)
            alpha[:, q, s] = (decay * B[:, s, None, :] * C[:, q, None, :]).sum(-1) * delta[:, s]
    return alpha


def inputs(Tk: int, d_in: int = 6, n: int = 3, seed: int = 0, strength: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    delta = torch.rand(1, Tk, d_in, generator=g) * strength  # up to `strength` per token
    B, C = torch.randn(1, Tk, n, generator=g), torch.randn(1, Tk, n, generator=g)
    A = -torch.rand(d_in, n, generator=g) * 4 - 0.1  # up to 4.1: exp(A delta) down to e^-4 per token
    return delta, B, C, A


def assemble(blocks, shape):
    """The (B, Tq, Tk, d_in) alpha put together from the yielded (channels, rows, (B, g, tq, end)) blocks,
    checking on the way that the blocks tile it exactly once and never span every channel and row."""
    alpha = torch.full(shape, float("nan"))
    Bt, Tq, Tk, d_in = shape
    for channels, rows, block in blocks:
        assert block.shape[:3] == (Bt, channels.stop - channels.start, rows.stop - rows.start)
        assert torch.isnan(alpha[:, rows, :, channels]).all(), "a block was yielded twice"
        alpha[:, rows, :, channels] = 0
        alpha[:, rows, :block.shape[-1], channels] = block.permute(0, 2, 3, 1)
    assert not torch.isnan(alpha).any(), "some channels or rows were never yielded"
    return alpha


@pytest.mark.parametrize("Tk,start,group,budget,blocks", [
    (37, 0, 6, 1 << 22, (16, 4)),    # one chunk, one group, keys padded to whole blocks
    (37, 0, 2, 1 << 22, (16, 4)),    # three channel groups
    (64, 0, 3, 16 * 64 * 3 * 2, (16, 4)),  # chunks of 2 blocks of rows: 2 groups x 2 chunks
    (50, 21, 1, 16 * 64, (16, 4)),   # queries from position 21 (a prefix already in the state), a chunk per block
    (50, 49, 6, 1 << 22, (16, 4)),   # one token decoded after 49
    (45, 0, 6, 1 << 22, (8, 4, 2)),  # three levels of blocks
    (12, 0, 6, 1 << 22, (16, 4)),    # shorter than one block
])
def test_every_block_equals_the_double_loop(monkeypatch, Tk, start, group, budget, blocks):
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", budget)
    monkeypatch.setattr(chunked, "BLOCKS", blocks)
    delta, B, C, A = inputs(Tk)
    C = C[:, start:]
    expected = brute_force(delta, B, C, A, start)
    got = assemble(chunked.implicit_attention_blocks(delta, B, C, A, start, group), tuple(expected.shape))
    assert (got.double() - expected).abs().max() < 1e-5 * expected.abs().max()
    assert (got.double() - expected).abs().max() < 1e-5


def test_strong_decay_underflows_to_zero_and_never_overflows():
    """delta up to 40 per token and A down to -4.1: exponents far below float32's range. The blocks'
    factors are all <= 1, so alpha stays finite and equals the float64 double loop."""
    delta, B, C, A = inputs(40, strength=40.0, seed=1)
    expected = brute_force(delta, B, C, A, 0)
    got = chunked.implicit_attention(delta, B, C, A)
    assert torch.isfinite(got).all()
    assert (got.double() - expected).abs().max() < 1e-5 * expected.abs().max()


def test_a_group_must_divide_the_channels():
    delta, B, C, A = inputs(8)
    with pytest.raises(ValueError, match="must divide the 6 channels"):
        next(chunked.implicit_attention_blocks(delta, B, C, A, 0, group=4))


def test_channel_groups_stay_inside_a_head_and_fit_the_budget():
    # mamba-130m: 1,536 channels as 12 heads of 128; 256 tokens x 16 states fit a whole head
    assert chunked.channel_group(1536, 12, 256, 16) == 128
    # 4,096 tokens do not: the largest divisor of 128 whose block of rows fits
    g = chunked.channel_group(1536, 12, 4096, 16)
    assert g == 64 and g * 4096 * 16 <= chunked.BLOCK_ELEMENTS
    assert chunked.channel_group(64, 4, 20, 16) == 16
    assert chunked.channel_group(1536, 12, 256, 16, batch=16) == 64  # a batch of 16 takes 16 times the room


@pytest.fixture(scope="module")
def model():
    return randomize(build_model(config()))


def test_recorded_heads_equal_the_double_loop_in_small_groups_and_chunks(model, monkeypatch):
    """Groups of 2 channels (8 per head) and chunks of one block of rows: the record is still the mean
    of the double loop's alpha over each head's channels, for the prompt and for a decoded token."""
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 2 * 32 * 16)
    assert chunked.channel_group(64, 4, 20, 16) == 2
    captured = {}

    def keep(self, state, history, delta, B, C, xf, y):
        captured[self.layer] = (delta, B, C, -torch.exp(self.A_log))
        return implicit(self, state, history, delta, B, C, xf, y)

    implicit = mamba.MambaMixer._implicit
    monkeypatch.setattr(mamba.MambaMixer, "_implicit", keep)
    ids = torch.randint(0, model.cfg.vocab_size, (2, 20), generator=torch.Generator().manual_seed(5))
    for layer, (rec, _) in enumerate(implicit_records(model, ids, "mixer")):
        delta, B, C, A = captured[layer]
        alpha = brute_force(delta, B, C, A, 0)  # (B, T, T, d_in)
        heads = alpha.view(2, 20, 20, 4, 16).mean(-1).permute(0, 3, 1, 2)  # (B, H, T, T)
        assert (rec.weights.double() - heads).abs().max() < 1e-5


def test_a_wrong_channel_group_alone_shows_in_max_abs_diff(model, monkeypatch):
    """The check covers every channel: alpha 1% off in the last group of channels only (the other
    groups honest) still moves max_abs_diff far above rounding, for the prompt and a decoded token."""
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 4 * 32 * 16)  # groups of 4 channels: 16 groups
    right = mamba.implicit_attention_blocks

    def wrong_last_group(delta, *args, **kwargs):
        for channels, rows, alpha in right(delta, *args, **kwargs):
            yield channels, rows, alpha * 1.01 if channels.stop == delta.shape[-1] else alpha

    x = torch.randint(0, model.cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(6))
    assert_badge_catches(model, x, lambda: monkeypatch.setattr(mamba, "implicit_attention_blocks", wrong_last_group))


def test_a_130m_shaped_layer_never_holds_its_whole_alpha():
    """One layer of mamba-130m's shape (1,536 channels, 16 states, 12 heads) over 256 tokens: its
    per-channel alpha would be 256 x 256 x 1,536 float32 = 384 MiB; recording it raises the process's
    resident memory by far less, and the check stays at rounding."""
    cfg = ModelConfig(family="mamba", position="none", d_model=768, n_layer=1, d_state=16, expand=2, d_conv=4,
                      vocab_size=64, n_heads=12, n_kv_heads=12)
    torch.manual_seed(0)
    mixer = build_model(cfg).blocks[0].mixer
    hidden = torch.randn(1, 256, cfg.d_model)
    with torch.no_grad():
        mixer(hidden)  # the scan's own buffers, allocated once
        with PeakRSS() as rss, mixer.recorder.capture() as records:
            mixer(hidden)
    whole = 256 * 256 * 1536 * 4
    assert records[0].weights.shape == (1, 12, 256, 256) and records[0].max_abs_diff < 1e-5
    assert rss.rise < whole / 3, f"rose {rss.rise / MIB:.0f} MiB; the whole alpha is {whole / MIB:.0f} MiB"


def test_the_benchmark_reports_time_memory_and_the_check():
    from playground.bench.pretrained import MAMBA_130M, mamba_implicit

    assert (MAMBA_130M["n_layer"], MAMBA_130M["d_model"] * MAMBA_130M["expand"], MAMBA_130M["n_heads"]) == (24, 1536, 12)
    report = mamba_implicit(20, n_layer=2, d_model=64, n_heads=2, n_kv_heads=2, vocab_size=100)
    assert (report["tokens"], report["layers"], report["channels"], report["heads"]) == (20, 2, 128, 2)
    assert report["seconds"] > 0 and report["forward_s"] > 0 and report["peak_rss_mib"] > 0
    assert 0 <= report["max_abs_diff"] < 1e-4
    with pytest.raises(ValueError, match="positive number of tokens"):
        mamba_implicit(0)
