import numpy as np
import pytest

from playground import plots


def test_overview_grid_axes_colour_range_and_downsampling():
    w = np.random.default_rng(0).random((4, 8, 300, 300)).astype(np.float32)
    fig = plots.overview(w, "self")
    heat = fig.data[0]
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1
    assert list(fig.layout.xaxis.ticktext) == [f"head {h}" for h in range(8)]
    assert list(fig.layout.yaxis.ticktext) == [f"layer {l}" for l in range(4)]
    assert "max over" in fig.layout.title.text
    rows, cols = np.asarray(heat.z).shape
    assert rows <= 4 * 129 and cols <= 8 * 129
    assert len(fig.to_json()) < 2_000_000


@pytest.mark.parametrize("shape", [(4, 4, 13, 13), (2, 8, 300, 300), (3, 2, 24, 9)])
def test_overview_meta_maps_every_cell_back_to_its_layer_and_head(shape):
    """The page turns a clicked cell into (layer, head) with layout.meta: check that arithmetic on the grid."""
    w = np.random.default_rng(1).random(shape).astype(np.float32)
    fig = plots.overview(w, "t", kind="self")
    meta, z = fig.layout.meta, np.asarray(fig.data[0].z, dtype=np.float32)
    small, _ = plots.downsample_max(w, meta["rows"] if shape[2] >= shape[3] else meta["cols"])
    assert meta["kind"] == "self" and small.shape[-2:] == (meta["rows"], meta["cols"])
    down, across = meta["rows"] + meta["gap"], meta["cols"] + meta["gap"]
    for row in range(z.shape[0]):
        for col in range(z.shape[1]):
            if row % down >= meta["rows"] or col % across >= meta["cols"]:
                assert np.isnan(z[row, col])  # a gutter: nothing to open
            else:
                layer, head = row // down, col // across
                assert z[row, col] == small[layer, head, row % down, col % across]


@pytest.mark.parametrize("groups", [[[0, 1], [2, 3], [4, 5]], [[0, 3], [1, 4], [2, 5]], [[0, 1, 2, 3, 4, 5]]])
def test_overview_grouped_by_kv_head_orders_labels_and_separates_the_columns(groups):
    """GQA / MQA: columns in group order, one label per K/V group, a line between groups; a click still names the
    right head through meta['heads']."""
    w = np.random.default_rng(2).random((3, 6, 20, 20)).astype(np.float32)
    fig = plots.overview(w, "t", kind="self", groups=groups)
    meta, z = fig.layout.meta, np.asarray(fig.data[0].z, dtype=np.float32)
    order = [h for g in groups for h in g]
    assert meta["heads"] == order
    assert list(fig.layout.xaxis.ticktext) == ["kv%d: %s" % (g, " ".join(f"h{h}" for h in members))
                                               for g, members in enumerate(groups)]
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == len(groups) - 1
    across = meta["cols"] + meta["gap"]
    for line, boundary in zip(lines, np.cumsum([len(g) for g in groups])[:-1]):
        col = int(np.ceil(line.x0))  # the line sits in the gutter just before the next group's first column
        assert boundary * across - meta["gap"] <= col < boundary * across and np.isnan(z[:, col]).all()
    for slot, h in enumerate(order):
        np.testing.assert_array_equal(z[:meta["rows"], slot * across: slot * across + meta["cols"]], w[0, h])
        assert fig.data[0].x[slot * across].startswith(f"kv{[h in g for g in groups].index(True)} · head {h} · ")
    assert "grouped by K/V head" in fig.layout.title.text


def test_overview_grouping_is_a_no_op_for_mha_and_refuses_groups_that_miss_a_head():
    w = np.random.default_rng(3).random((2, 4, 8, 8)).astype(np.float32)
    assert plots.overview(w, "t", groups=[[0], [1], [2], [3]]).to_json() == plots.overview(w, "t").to_json()
    for bad in ([[0, 1], [2]], [[0, 1], [1, 2, 3]], [[0, 1, 2, 3], []]):
        with pytest.raises(ValueError, match="each of the 4 heads exactly once"):
            plots.overview(w, "t", groups=bad)


def test_overview_of_a_gpt2_small_shaped_model_stays_under_2_mb():
    """12 layers x 12 heads x 128 tokens: the figure the page sends is under 2 MB and as tall as it is wide."""
    import torch
    from playground import ModelConfig, analyze, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(family="decoder", n_layer=12, n_heads=12, n_kv_heads=12, d_model=768,
                                    position="learned", context_length=1024, vocab_size=2048))
    result = analyze(model, torch.randint(0, 2048, (128,)).tolist())
    size = plots.overview_bytes(result)
    assert 144 * 32 * 32 * 4 < size <= 2_000_000  # at least the thumbnails' float32 cells
    fig = plots.overview(result.weights("self"), "self")
    assert fig.layout.meta["rows"] == fig.layout.meta["cols"] == 32  # 4x4 blocks of 128 tokens
    assert fig.layout.height <= plots.OVERVIEW_WIDTH + 90  # no blank band above and below a square grid
    grouped = plots.overview_bytes(result, groups=[[h, h + 1] for h in range(0, 12, 2)])
    assert abs(grouped - size) < 0.05 * size


def test_downsample_keeps_the_maximum():
    a = np.zeros((1, 1, 10, 10))
    a[0, 0, 7, 3] = 0.9
    small, block = plots.downsample_max(a, 5)
    assert block == 2 and small.shape == (1, 1, 5, 5) and small[0, 0, 3, 1] == 0.9


def test_head_figure_labels_hover_and_mask():
    w = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    mask = np.tril(np.ones((3, 3), bool))
    fig = plots.head(w, ["a", "a", "<b>"], ["a", "a", "<b>"], "t", mask=mask)
    heat = fig.data[0]
    assert list(heat.x) == ["0 a", "1 a", "2 &lt;b&gt;"]  # repeated tokens stay distinct, HTML escaped
    assert np.isnan(np.asarray(heat.z, dtype=float)[0, 2])
    assert "weight" in heat.hovertemplate and fig.layout.coloraxis.cmax == 1


def test_mask_and_kv_growth():
    fig = plots.mask(np.tril(np.ones((4, 4), bool)), list("abcd"), list("abcd"), "m")
    assert list(fig.data[0].colorbar.ticktext) == ["blocked", "allowed"]
    growth = plots.kv_growth([1, 2, 3], [10, 20, 30], {"MHA": {"per_token": 10, "fixed": 0},
                                                     "Mamba": {"per_token": 0, "fixed": 50}}, label="m", log=True)
    assert growth.layout.yaxis.type == "log" and len(growth.data) == 3
    assert set(np.round(growth.data[1].y, 6)) == {50}  # recurrent state is flat


def test_signed_implicit_attention_uses_a_diverging_scale():
    w = np.zeros((1, 1, 40, 40))
    w[0, 0, 30, 2] = -0.7
    w[0, 0, 10, 1] = 0.2
    fig = plots.overview(w, "implicit", signed=True, max_px=20)
    axis = fig.layout.coloraxis
    assert axis.cmid == 0 and axis.cmin == pytest.approx(-0.7) and axis.cmax == pytest.approx(0.7)
    assert np.nanmin(np.asarray(fig.data[0].z, dtype=float)) == np.float32(-0.7)  # magnitude kept through pooling


def test_step_rows_number_keys_by_position_and_formulas_respect_a_window_cap():
    fig = plots.step_rows(np.full((2, 2, 3), 1 / 3), ["a", "b", "c"], "t", key_start=41)
    assert list(fig.data[0].x) == ["41 a", "42 b", "43 c"]
    growth = plots.kv_growth([4, 5, 6], [10, 20, 20], {"w": {"per_token": 2.0, "fixed": 0.0, "cap": 8},
                                                        "full": {"per_token": 2.0, "fixed": 0.0}},
                             label="m", max_tokens=64)
    capped, full = np.asarray(growth.data[0].y), np.asarray(growth.data[1].y)
    assert capped.max() == 16 and full.max() == 128


def test_kv_growth_draws_allocated_bytes_beside_bytes_in_use():
    growth = plots.kv_growth([4, 5, 6], [10, 20, 20], {"w": {"per_token": 2.0, "fixed": 0.0, "cap": 8}},
                             label="m", allocated_bytes=[40, 20, 20])
    formula, allocated, used = growth.data
    assert list(allocated.y) == [40, 20, 20] and allocated.name == "measured, allocated: m"
    assert list(used.y) == [10, 20, 20] and used.name == "measured, in use: m"  # in use stays the last trace
    assert "allocated" in allocated.hovertemplate and "held" in used.hovertemplate


def test_block_grid_colours_each_tile_state_and_names_its_tokens():
    grid = np.array([[2, 0, 0], [1, 2, 0], [0, 1, 1]], dtype=np.int8)  # a sliding window over 3 blocks
    fig = plots.block_grid(grid, "block mask", block=(128, 128), n_queries=300, n_keys=300)
    heat = fig.data[0]
    assert np.array_equal(np.asarray(heat.z), grid)
    assert list(heat.colorbar.ticktext) == ["skipped", "computed, mask applied", "computed in full"]
    assert list(heat.colorbar.tickvals) == [0, 1, 2]
    # each code falls in a colour band of its own
    scale = [tuple(c) for c in heat.colorscale]
    colour_of = {code: next(colour for edge, colour in scale if edge > (code + 0.5) / 3) for code in range(3)}
    assert len(set(colour_of.values())) == 3
    assert fig.layout.meta["skipped_share"] == pytest.approx(4 / 9)
    assert "44% of tiles skipped" in fig.layout.title.text
    assert heat.text[2][1] == "query tokens 256..299<br>key tokens 128..255<br>computed, mask applied"
    assert heat.text[0][0].endswith("computed in full") and heat.text[0][2].endswith("skipped")
    assert fig.layout.xaxis.title.text == "key block" and fig.layout.yaxis.title.text == "query block"


@pytest.mark.parametrize("bad", [np.zeros((0, 0)), np.array([[0, 3]]), np.zeros(4)])
def test_block_grid_refuses_what_is_not_a_grid(bad):
    with pytest.raises(ValueError):
        plots.block_grid(bad, "t")
