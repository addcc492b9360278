import math

import pytest
import torch

from playground.nn import masks
from playground.nn.position import alibi_bias, alibi_slopes, apply_rope, rope_angles, sinusoidal_table

from conftest import tiny_model


def pos(n, start=0):
    return masks.positions(start, n)


def test_causal_and_bidirectional():
    m = masks.causal(pos(5), pos(5))
    assert torch.equal(m, torch.ones(5, 5, dtype=torch.bool).tril())
    assert masks.bidirectional(pos(3), pos(4)).all()


def test_prefix_mask_is_bidirectional_over_prefix_then_causal():
    m = masks.prefix(pos(6), pos(6), prefix_len=3)
    assert m[:3, :3].all()                # prefix sees the whole prefix
    assert not m[:3, 3:].any()            # but not what follows
    assert torch.equal(m[3:, :], masks.causal(pos(3, 3), pos(6)) | (pos(6) < 3))
    assert torch.equal(masks.prefix(pos(6), pos(6), 0), masks.causal(pos(6), pos(6)))


def test_sliding_window_limits_lookback():
    m = masks.self_attention("causal", pos(8), pos(8), window=3)
    assert m.sum(-1).tolist() == [1, 2, 3, 3, 3, 3, 3, 3]
    assert not m[7, :5].any() and m[7, 5:].all()


def test_decode_step_mask_is_the_last_row_of_the_full_mask():
    full = masks.self_attention("prefix", pos(10), pos(10), prefix_len=4, window=5)
    step = masks.self_attention("prefix", pos(1, 9), pos(10), prefix_len=4, window=5)
    assert torch.equal(step[0], full[9])


def test_cross_and_padding_masks():
    valid = torch.tensor([[True, True, False], [True, True, True]])
    c = masks.cross(4, valid)
    assert c.shape == (2, 1, 4, 3) and not c[0, 0, :, 2].any() and c[1].all()
    m = masks.self_attention("bidirectional", pos(3), pos(3), key_valid=valid)
    assert m.shape == (2, 1, 3, 3) and not m[0, 0, :, 2].any()
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.self_attention("diagonal", pos(3), pos(3))


def test_sinusoidal_matches_the_paper_formula():
    table = sinusoidal_table(pos(50), 16)
    p, i = 37, 3
    assert table[p, 2 * i].item() == pytest.approx(math.sin(p / 10000 ** (2 * i / 16)), abs=1e-5)
    assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(p / 10000 ** (2 * i / 16)), abs=1e-5)


def test_rope_scores_depend_only_on_relative_offset():
    hs = 16
    q, k = torch.randn(1, 1, 1, hs), torch.randn(1, 1, 1, hs)

    def score(m, n):
        qm = apply_rope(q, *rope_angles(torch.tensor([m]), hs))
        kn = apply_rope(k, *rope_angles(torch.tensor([n]), hs))
        return (qm * kn).sum().item()

    for m, n in [(5, 2), (40, 3), (7, 7)]:
        for shift in (1, 13, 1000):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert score(9, 2) != pytest.approx(score(9, 5), abs=1e-3)  # and it does depend on the offset


def test_rope_preserves_norm():
    x = torch.randn(2, 3, 10, 8)
    y = apply_rope(x, *rope_angles(pos(10), 8))
    assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1), atol=1e-5)


def test_alibi_slopes_equal_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -i for i in range(1, 9)])
    expected_12 = [2 ** -i for i in range(1, 9)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    assert alibi_slopes(12).tolist() == pytest.approx(expected_12)
    assert alibi_slopes(4).tolist() == pytest.approx([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8])


def test_alibi_bias_is_minus_slope_times_distance():
    b = alibi_bias(alibi_slopes(2), pos(4), pos(4))
    assert b.shape == (2, 4, 4)
    assert b[0, 3, 1].item() == pytest.approx(-0.0625 * 2)  # slope 2^-4 for head 0 of 2
    assert (b.diagonal(dim1=1, dim2=2) == 0).all()


@pytest.mark.parametrize("family,kind", [("decoder", "self"), ("prefix", "self"), ("encdec", "decoder_self")])
@pytest.mark.parametrize("window", [0, 3])
def test_captured_mask_is_the_mask_the_model_used(family, kind, window):
    model = tiny_model(family=family, sliding_window=window, backend="explicit")
    x = torch.randint(0, 97, (1, 9))
    out = model(x, x, capture=True) if family == "encdec" else model(x, prefix_len=4 if family == "prefix" else 0, capture=True)
    rec = next(r for r in out.attentions if r.kind == kind)
    mask_kind = {"decoder": "causal", "prefix": "prefix", "encdec": "causal"}[family]
    expected = masks.self_attention(mask_kind, pos(9), pos(9), prefix_len=4 if family == "prefix" else 0, window=window)
    assert torch.equal(rec.mask, expected)
    assert (rec.weights[0][:, ~expected] == 0).all()


def brute_force(kind, prefix_len, window, q_pos, k_pos):
    """The rule written out pair by pair, from its definition."""
    out = torch.zeros(len(q_pos), len(k_pos), dtype=torch.bool)
    for i, q in enumerate(q_pos.tolist()):
        for j, k in enumerate(k_pos.tolist()):
            seen = kind in ("bidirectional", "cross") or k <= q or (kind == "prefix" and k < prefix_len)
            out[i, j] = seen and (window == 0 or abs(q - k) < window)
    return out


@pytest.mark.parametrize("kind,prefix_len,window", [
    ("causal", 0, 0), ("causal", 0, 3), ("bidirectional", 0, 0), ("bidirectional", 0, 2),
    ("prefix", 4, 0), ("prefix", 4, 2), ("prefix", 0, 0), ("cross", 0, 0),
])
@pytest.mark.parametrize("q_start,n_q,k_start,n_k", [(0, 9, 0, 9), (6, 3, 2, 7), (8, 1, 0, 9)])
def test_mask_rule_is_its_definition_at_any_offset(kind, prefix_len, window, q_start, n_q, k_start, n_k):
    rule = masks.MaskRule(kind, prefix_len, window)
    q_pos, k_pos = pos(n_q, q_start), pos(n_k, k_start)
    expected = brute_force(kind, prefix_len, window, q_pos, k_pos)
    assert torch.equal(rule.dense(q_pos, k_pos), expected)
    assert torch.equal(rule.allows(q_pos[:, None], k_pos[None, :]), expected)
    assert rule.allows(torch.tensor(q_start), torch.tensor(k_start)).item() == expected[0, 0].item()
    valid = torch.ones(2, n_k, dtype=torch.bool)
    valid[1, -2:] = False
    padded = rule.dense(q_pos, k_pos, valid)
    assert padded.shape == (2, 1, n_q, n_k)
    assert torch.equal(padded[0, 0], expected) and torch.equal(padded[1, 0], expected & valid[1])
    if kind != "cross":
        assert torch.equal(masks.self_attention(kind, q_pos, k_pos, prefix_len=prefix_len, window=window), expected)


def test_masks_are_built_by_the_rule():
    valid = torch.tensor([[True, True, False], [True, True, True]])
    assert torch.equal(masks.cross(4, valid), masks.MaskRule("cross").dense(pos(4), pos(3), valid))
    assert torch.equal(masks.prefix(pos(6), pos(6), 3), masks.MaskRule("prefix", 3).dense(pos(6), pos(6)))
    # a prefix length given with another kind is ignored by self_attention, as the model passes it
    assert torch.equal(masks.self_attention("causal", pos(5), pos(5), prefix_len=3), masks.causal(pos(5), pos(5)))


@pytest.mark.parametrize("args,match", [
    (("diagonal",), "unknown mask kind"), (("prefix", -1), "prefix_len"), (("causal", 0, -2), "window"),
    (("causal", 3), "needs kind 'prefix'"), (("cross", 0, 4), "no sliding window"),
])
def test_mask_rule_refuses_what_it_cannot_mean(args, match):
    with pytest.raises(ValueError, match=match):
        masks.MaskRule(*args)
