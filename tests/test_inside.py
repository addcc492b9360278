"""The Inside one head tab: /step through gradio_client, and the tab's handlers on small inputs."""
import gradio as gr
import numpy as np
import pytest
from gradio_client import Client

from playground import plots
from playground.inspect import flash_memory as fm
from playground.ui import inside_tab as inside
from playground.ui.lang import Words

PROMPT = "To be, or not to be, that is the question"
EN, ZH = Words(lang="en"), Words(lang="zh-CN")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def gqa():
    return inside.step_data(EN, "untrained:decoder/GQA/alibi", PROMPT, 1, 3, 4, 0)


def test_step_endpoint_returns_every_step_of_the_head(client):
    out = client.predict(spec="zoo:baseline", prompt=PROMPT, layer=1, head=2, query=3, api_name="/step")
    names = [s["name"] for s in out["steps"]]
    assert names[:4] == ["x", "q", "k", "v"] and names[-4:] == ["masked", "weights", "output", "write"]
    t = len(out["query_labels"])
    assert t == len(out["query_tokens"]) > 5 and out["query"] == 3 and out["layer"] == 1 and out["head"] == 2
    steps = {s["name"]: s for s in out["steps"]}
    weights = np.array(steps["weights"]["array"])
    assert weights.shape == (t, t) and np.allclose(weights.sum(axis=1), 1)
    assert np.allclose(np.triu(weights, 1), 0)  # the baseline is causal
    masked = steps["masked"]["array"]
    assert masked[0][1] is None and masked[1][0] is not None  # -inf travels as null
    assert steps["scaled"]["formula"].startswith("s / √") and steps["write"]["axes"] == ["query token",
                                                                                       "model dimension"]


def test_flash_replay_endpoint_says_how_far_it_is_from_standard_attention(client):
    out = client.predict(spec="zoo:baseline", prompt=PROMPT, layer=1, head=0, gpu="A100 40GB", shrink=9,
                         causal=True, api_name="/flash_replay")
    assert out["budget"] == fm.gpu("A100 40GB").budget() >> 9 and out["max_abs_diff"] < 1e-9
    assert (out["block_rows"], out["block_cols"]) == fm.block_sizes(out["budget"], out["head_dim"])
    skipped = [s for s in out["steps"] if s["skipped"]]
    assert skipped and all(not s["reads"] and s["cols"][0] > s["rows"][1] - 1 for s in skipped)
    assert out["hbm_elements"] == sum(t["elements"] for s in out["steps"] for t in s["reads"] + s["writes"])
    assert out["steps"][0]["placement"]["S_ij"] == "registers"


def test_step_endpoint_rejects_a_layer_that_does_not_exist(client):
    with pytest.raises(Exception, match="Layer 99 does not exist"):
        client.predict(spec="zoo:baseline", prompt=PROMPT, layer=99, api_name="/step")


def test_gqa_head_names_the_query_heads_that_share_its_kv_head(gqa):
    assert gqa["n_heads"] == 4 and gqa["n_kv_heads"] == 2
    assert gqa["kv_head"] == 1 and gqa["shared_by"] == [2, 3]
    assert "biased" in [s["name"] for s in gqa["steps"]]  # ALiBi adds its bias as a step of its own
    note = inside.head_note(EN, gqa)
    assert "K/V head 1" in note and "2, 3" in note and "UNTRAINED" in note


def test_long_prompt_is_cut_with_a_note():
    result = inside.step_data(EN, "zoo:baseline", "one two three four five six seven eight " * 20, 0, 0, 0, 0)
    assert len(result["query_labels"]) == inside.MAX_TOKENS == len(result["steps"][0]["array"])
    assert f"the first {inside.MAX_TOKENS}" in result["note"]


def test_recurrent_model_has_no_head_to_step_through():
    with pytest.raises(gr.Error, match="needs a Transformer"):
        inside.step_data(EN, "untrained:rwkv", PROMPT, 0, 0, 0, 0)


def test_each_step_is_a_labelled_figure_with_its_formula(gqa):
    updates = inside.step_figures(EN, gqa)
    shown = [u for u in updates if u.get("visible")]
    assert len(shown) == 2 * len(gqa["steps"]) and len(updates) == 2 * inside.SLOTS
    by_name = {s["name"]: (updates[2 * i], updates[2 * i + 1]) for i, s in enumerate(gqa["steps"])}
    formula, figure = by_name["weights"]
    assert "softmax" in formula["value"]
    fig = figure["value"]
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 1  # weights on the 0..1 scale
    assert list(fig.data[0].y) == plots.axis_labels(gqa["query_labels"])  # token labels on the axes
    frame = fig.layout.shapes[0]
    assert (frame.y0, frame.y1) == (3.5, 4.5)  # the query token's row is framed
    _, q = by_name["q"]
    assert q["value"].data[0].x[0] == "0 dim 0" and q["value"].layout.coloraxis.colorbar.title.text == "value"
    _, masked = by_name["masked"]
    assert len(masked["value"].data) == 2  # the -inf cells drawn grey on top
    assert "第 1 层" in inside.step_figures(ZH, gqa)[1]["value"].layout.title.text


def test_replay_runs_the_stepped_heads_own_q_k_v_and_matches_standard_attention(gqa):
    q, k, v, from_model = inside.head_qkv(gqa)
    steps = {s["name"]: np.array(s["array"], dtype=float) for s in gqa["steps"]}
    assert from_model and np.array_equal(q, steps["q"]) and np.array_equal(v, steps["v"])  # ALiBi: no rotation
    st = inside.flash_state(EN, gqa, "H100 SXM", 8, True, "fa2")
    rep = st["replay"]
    d = q.shape[1]
    assert st["budget"] == fm.gpu("H100 SXM").budget() >> 8
    assert (rep.block_rows, rep.block_cols) == fm.block_sizes(st["budget"], d)
    assert rep.max_abs_diff < 1e-9 and rep.skipped > 0 and len({s.i for s in rep.steps}) > 1
    summary = inside.flash_summary(EN, st, gqa)
    assert "layer 1, head 3" in summary and f"Br = {rep.block_rows}" in summary and "max |Δ|" in summary
    # the full budget of a real GPU: one key block covers this short prompt
    whole = inside.flash_state(EN, gqa, "H100 SXM", 0, True, "fa2")["replay"]
    assert len({s.j for s in whole.steps}) == 1


def test_replay_before_any_step_through_is_random_and_says_so():
    st = inside.flash_state(EN, None, "A100 40GB", 12, False, "fa1")
    assert not st["from_model"] and st["replay"].output.shape == inside.RANDOM_SHAPE
    assert "random q, k and v" in inside.flash_summary(EN, st, None)
    with pytest.raises(gr.Error, match="Unknown GPU"):
        inside.flash_state(EN, None, "B200", 0, False, "fa2")


def test_the_slider_moves_through_the_replay(gqa):
    st = inside.flash_state(EN, gqa, "H100 SXM", 8, True, "fa2")
    rep = st["replay"]
    live = next(s for s in rep.steps if not s.skipped and s.index > 0)
    skipped = next(s for s in rep.steps if s.skipped)
    text, tiles, figure, hierarchy = inside.flash_views(EN, st, live.index)
    assert f"**Step {live.index}**" in text and "Read from HBM: " in text and "K[" in text
    grid = np.array(tiles.data[0].z)
    assert grid[live.i, live.j] == 3 and (grid == 3).sum() == 1  # current
    assert (grid == 2).sum() == sum(not s.skipped for s in rep.steps[:live.index])  # done
    assert (grid == 1).sum() == rep.skipped  # known from the loop bounds before the kernel starts
    assert (grid == 0).sum() == sum(not s.skipped for s in rep.steps[live.index + 1:])  # pending
    m_trace, o_trace = figure.data[1], figure.data[3]
    assert np.allclose(np.array(m_trace.z)[:, 0], live.m) and np.allclose(o_trace.z, live.output)
    boxes = [a.text for a in hierarchy.layout.annotations]
    assert "S_ij" in boxes[0] and "Q_i" in boxes[1] and "HBM" in boxes[2] and "3.35 TB/s" in boxes[2]
    text, _, figure, _ = inside.flash_views(EN, st, skipped.index)
    assert figure is None and "skips it" in text
    traffic = inside.flash_state(EN, gqa, "H100 SXM", 0, False, "fa1")["traffic"]
    fig = plots.traffic(traffic, EN, head_dim=d_of(gqa), budget=fm.gpu("H100 SXM").budget())
    assert [t.name for t in fig.data] == ["standard (counted)", "Θ(N d + N²)", "FlashAttention (counted)",
                                          "Θ(N² d² / M)"]
    assert fig.data[2].y[-1] < fig.data[0].y[-1]  # at long N the tiled kernel moves less


def d_of(result):
    return len(next(s for s in result["steps"] if s["name"] == "q")["array"][0])


def test_tile_states():
    steps = [dict(i=0, j=0, skipped=False), dict(i=0, j=1, skipped=True), dict(i=1, j=0, skipped=False),
             dict(i=1, j=1, skipped=False)]
    assert plots.tile_states(2, 2, steps, 2).tolist() == [[2, 1], [3, 0]]
    assert plots.tile_states(2, 2, steps, 1).tolist() == [[2, 1], [0, 0]]  # a skipped step: nothing current
    assert plots.tile_states(2, 2, steps, 0).tolist() == [[3, 1], [0, 0]]
