"""What the page holds when it opens: the landing analysis and every tab's first view are computed while
the page is built and written into it (``ui.initial``), so a visitor's page draws them with no event; the
load events compute again only for a share link, another language or controls that changed."""
from __future__ import annotations

import collections
import json

import gradio as gr
import plotly.graph_objects as go
import pytest

from playground.ui import build_app
from playground.ui.api import Batched
from playground.ui.initial import set_initial
from playground.ui.lang import COOKIE

SKIP = gr.skip()


def request(lang: str) -> gr.Request:
    return gr.Request(headers={"cookie": f"{COOKIE}={lang}"})


@pytest.fixture(scope="module")
def page():
    return build_app(warm_up=False)


def handlers(demo: gr.Blocks, name: str) -> list:
    return [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name]


def first_views(demo: gr.Blocks) -> list:
    """The load chain's first views (``api.run_first_views``: each wraps its tab's own handler; they run in
    batches, one event each), as (fn, inputs, outputs) with those names."""
    step = collections.namedtuple("step", "fn inputs outputs")
    return [step(*s) for f in demo.fns.values() if isinstance(f.fn, Batched) for s in f.fn.steps]


def props(demo: gr.Blocks, component) -> dict:
    return next(c["props"] for c in demo.config["components"] if c["id"] == component._id)


def test_set_initial_writes_values_props_and_leaves_skipped_components():
    figure = go.Figure(go.Heatmap(z=[[0.25, 0.75]]))
    with gr.Blocks() as demo:
        plot = gr.Plot()
        picker = gr.Dropdown(["a"], value="a")
        slider = gr.Slider(0, 3, value=0, step=1)
        box = gr.Textbox("kept")
        state = gr.State(None)
        set_initial([plot, picker, slider, box, state],
                    [figure, gr.update(choices=[("Bee", "b"), ("Cee", "c")], value="c"), gr.update(maximum=11),
                     SKIP, {"key": "k1"}])
    assert json.loads(props(demo, plot)["value"]["plot"])["data"][0]["z"] == [[0.25, 0.75]]
    assert props(demo, picker)["choices"] == [("Bee", "b"), ("Cee", "c")] and props(demo, picker)["value"] == "c"
    assert props(demo, slider)["maximum"] == 11 and props(demo, slider)["value"] == 0
    assert props(demo, box)["value"] == "kept"
    assert state.value == {"key": "k1"}
    with pytest.raises(ValueError, match="2 values for 1 outputs"):
        set_initial([box], ["a", "b"])


def test_the_page_opens_with_the_default_analysis_and_every_first_view_drawn(page):
    overview = next(c["props"] for c in page.config["components"]
                    if "overview-plot" in (c["props"].get("elem_classes") or []) and c["props"].get("visible"))
    figure = json.loads(overview["value"]["plot"])
    assert figure["data"][0]["type"] == "heatmap" and figure["layout"]["meta"]["kind"] == "self"
    badges = [c["props"]["value"] for c in page.config["components"]
              if c["type"] == "html" and "class='badge'" in str(c["props"].get("value"))]
    assert len(badges) == 1 and "Kernel that ran" in badges[0]
    # every first view's outputs hold what its handler returned for the controls' defaults
    views = first_views(page)
    assert len(views) >= 5
    for f in views:
        drawn = [props(page, c).get("value") for c in f.outputs if not isinstance(c, gr.State)]
        assert any(v not in (None, "", [], {}) for v in drawn), f.fn.__wrapped__.__qualname__


def test_an_english_visitor_is_sent_nothing_again_and_a_chinese_one_gets_the_views_in_chinese(page):
    analyze, = handlers(page, "analyze_restored")
    values = [c.value for c in analyze.inputs]
    assert all(v == SKIP for v in analyze.fn(*values, request("en")))
    badge = analyze.fn(*values, request("zh-CN"))[0]
    assert "实际运行的算子" in badge, badge
    for f in first_views(page):
        values = [c.value for c in f.inputs]
        assert all(v == SKIP for v in f.fn(*values, request=request("en"))), f.fn.__wrapped__.__qualname__
    # a share link changed the prompt before the first views ran: they compute it
    generate = next(f for f in first_views(page) if f.fn.__wrapped__.__module__.endswith(".generation"))
    values = [c.value for c in generate.inputs]
    prompt_at = next(i for i, c in enumerate(generate.inputs) if isinstance(c, gr.Textbox) and c.lines == 3)
    values[prompt_at] = "Another prompt entirely"
    out = generate.fn(*values, request=request("en"))
    assert out[0] != SKIP and out[0] != props(page, generate.outputs[0])["value"]


def test_the_static_parts_are_written_in_english_and_sent_in_chinese_only_to_a_chinese_page(page):
    fill, = handlers(page, "fill_on_open")
    assert all(v == SKIP for v in fill.fn(request("en")))
    chinese = fill.fn(request("zh-CN"))
    assert len(chinese) == len(fill.outputs) and not any(v == SKIP for v in chinese)
    english = [props(page, c).get("value") for c in fill.outputs]
    assert all(v not in (None, "") for v in english)


def test_without_landing_the_page_is_built_empty_and_asks_on_load():
    """ZeroGPU's way (``app.py``: nothing may touch the device at start-up): the load events compute it all."""
    demo = build_app(warm_up=False, landing=False)
    overviews = [c["props"] for c in demo.config["components"]
                 if "overview-plot" in (c["props"].get("elem_classes") or [])]
    assert overviews and all(p.get("value") is None for p in overviews)
    analyze, = handlers(demo, "analyze_restored")
    badge = analyze.fn(*[c.value for c in analyze.inputs], request("en"))[0]
    assert "Kernel that ran" in badge
    tabs = [f for f in first_views(demo) if f.fn.__wrapped__.__name__ == "run"]  # each tab's button handler
    assert {f.fn.__wrapped__.__module__.rsplit(".", 1)[1] for f in tabs} == {"inside_tab", "generation", "heads_tab",
                                                                             "compare"}
    for f in tabs:
        assert not all(v == SKIP for v in f.fn(*[c.value for c in f.inputs], request=request("en"))), \
            f.fn.__wrapped__.__qualname__


def test_the_model_note_describes_the_readers_edits_and_every_event_that_sets_the_controls(page):
    """A share link (or Open, a tour step, a training) sets several controls at once, and the page sends one change
    per control, the first ones with the others still old: a description answering such a change could land last
    and leave the note on another model. So the note follows the reader's own edits (``input``) and, after each
    event that writes the model controls, a description of its own that runs once they are set."""
    describes = {f._id: f for f in page.fns.values() if getattr(f.fn, "__name__", "") == "describe"}
    deps = {d["id"]: d for d in page.config["dependencies"]}
    on_edit = [f for f in describes.values() if any(t[1] == "input" for t in f.targets)]
    assert len(on_edit) == 1 and {t[1] for t in on_edit[0].targets} == {"input"}
    model_ids = {c._id for c in on_edit[0].inputs[:5]}  # family, variant, position, task, fallback
    writers = [f for f in page.fns.values() if f._id not in describes and model_ids & {c._id for c in f.outputs}]
    assert len(writers) >= 4  # the link's restore, Open, each tour step, the training
    for f in writers:
        after = [d for d in deps.values() if d.get("trigger_after") == f._id]
        assert any(d["id"] in describes for d in after), getattr(f.fn, "__qualname__", f.fn)


def test_the_first_views_run_in_two_events_and_each_handler_gets_its_own_inputs(page):
    """Every tab's first view in one event, their follow-ups (the inside tab's replay) in a second: each event
    costs the browser a round trip and a pass over the page's state. Called as Gradio calls it, the batch gives
    each handler its own slice of the inputs and returns their outputs in order."""
    batches = [f for f in page.fns.values() if isinstance(f.fn, Batched)]
    assert len(batches) == 2 and len(batches[0].fn.steps) >= 4 and len(batches[1].fn.steps) == 1
    for f in batches:
        assert [c._id for c in f.inputs] == [c._id for c in f.fn.inputs]
        assert [c._id for c in f.outputs] == [c._id for c in f.fn.outputs]
    first = batches[0]
    values = [c.value for c in first.inputs]
    out = first.fn(request("en"), None, *values)  # the page's own language: every view is already drawn
    assert len(out) == len(first.outputs) and all(v == SKIP for v in out)
    chinese = first.fn(request("zh-CN"), gr.Progress(), *values)
    at = 0
    for fn, inputs, outputs in first.fn.steps:  # each handler's slice: what it returns alone
        alone = fn(*[c.value for c in inputs], request=request("zh-CN"))
        assert len(alone) == len(outputs)
        assert [type(v) for v in chinese[at:at + len(outputs)]] == [type(v) for v in alone], fn.__wrapped__.__qualname__
        at += len(outputs)
