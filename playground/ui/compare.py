"""The Compare tab: one prompt through two models, side by side, and their difference where it means one.

A difference A − B is drawn only when both sides are softmax weights of the same attention kind over
the same tokens. RWKV and Mamba's implicit attention is signed and unnormalised, a different
quantity from softmax weights: with one of them on either side, the two are shown side by side and
a note says why there is no difference map. ``/compare`` takes two model specs, the prompt, the
layer and head, and the same prefix length and sliding window as the Attention tab.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import gradio as gr

from playground import plots, zoo
from playground.inspect import tiles
from playground.ui import service
from playground.serving.lanes import ANALYZE
from playground.ui.i18n import Message, msg
from playground.zoo import ModelSpec, hub_source
from . import api
from .cancels import cancel, visitor_job
from .attention import prefix_and_window
from .head_view import HEAD_CELLS, cell_labels, head_figures
from .session import analysis_state, kind_labels
from .controls import index_range, pretrained_choices
from .lang import Localized, Words, english, t, visitor_error

SUMMARY = ["model", "layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "induction"]
SUMMARY_HEADERS = [f"col.{c}" for c in SUMMARY]


def text_models() -> list[str]:
    return [n for n in zoo.available() if not zoo.ZOO[n].get("task")]


def _self_kind(result) -> str:
    return next(k for k in result.kinds if k != "cross")


def why_no_difference(sides: list[dict]) -> Message | None:
    """None when A − B is a meaningful difference; else the reason it is not drawn. A side's "vocabulary" is
    its tokenizer's fingerprint: two tokenizers split one prompt into different tokens."""
    (a, b) = sides
    if a.get("vocabulary") != b.get("vocabulary"):
        return msg("compare.note_tokenizers", a=str(a["spec"]), b=str(b["spec"]))
    implicit = [str(s["spec"]) for s in sides if s["kind"] == "implicit"]
    if implicit:
        return msg("compare.note_implicit", models=", ".join(implicit))
    if a["kind"] != b["kind"]:
        return msg("compare.note_kinds", a=msg(f"kind_short.{a['kind']}"), b=msg(f"kind_short.{b['kind']}"))
    if a["cells"].mean.shape != b["cells"].mean.shape or a["cells"].cell != b["cells"].cell:
        return msg("warning.compare_shapes")
    return None


def compare_views(w: Words, spec_a: str, spec_b: str, prompt: str, layer: int, head: int, prefix_len: int,
                  window: int, backend: str, device: str, dtype: str = "auto", cancelled=None) -> tuple:
    """(figure A, figure B, difference figure or None, summary table, note) for two specs; ``cancelled()``
    returning True stops either analysis between layers."""
    sides = []
    for spec in (spec_a, spec_b):
        state = analysis_state(w, spec, prompt, prefix_len, window, backend, device, dtype, where=spec,
                               cancelled=cancelled)
        result = state.result(w)
        kind = _self_kind(result)
        try:
            m, h = service.attention_map(result, kind, layer, head)
        except ValueError as e:
            raise visitor_error(f"{state.spec}: {w.render(e)}") from None
        _, Tq, Tk = m.shape
        cells = tiles.pool(m.source, (0, Tq), (0, Tk), HEAD_CELLS, heads=[h])  # exact up to HEAD_CELLS tokens
        figure = head_figures(w, state, kind, layer, head)[0]
        figure.layout.title.text = w.render(msg("compare.title", name=str(state.spec), head=figure.layout.title.text))
        sides.append({"result": result, "spec": state.spec, "kind": kind, "cells": cells, "figure": figure,
                      "labels": cell_labels(w, cells, *kind_labels(kind, result)),
                      "vocabulary": state.spec.tokenizer().fingerprint})
    summary = []
    for side in sides:
        if side["kind"] != "implicit":  # role scores are shares of softmax attention
            result = side["result"]
            summary += [[str(side["spec"])] + [r[c] if c in ("layer", "head") else round(r[c], 3) for c in SUMMARY[1:]]
                        for r in result.head_stats(side["kind"])]
    reason = why_no_difference(sides)
    a, b = sides
    # past HEAD_CELLS tokens each cell is the mean of A - B over the weights it covers (the mean is linear)
    q, k, look = a["labels"]
    diff = None if reason else plots.head(a["cells"].mean[0] - b["cells"].mean[0], q, k,
                                          msg("compare.diff_title", a=str(a["spec"]), b=str(b["spec"])), signed=True,
                                          words=w, scale_title=msg("compare.diff_scale"), **look)
    table = {"headers": [w(k) for k in SUMMARY_HEADERS], "data": summary}
    return a["figure"], b["figure"], diff, table, w.render(reason) if reason else ""


def compare(spec_a: str, spec_b: str, prompt: str, layer: int = 0, head: int = 0, prefix_len: int = 0,
            window: int = 0, backend: str = "auto", device: str = "cpu", dtype: str = "auto",
            request: gr.Request = None) -> tuple[dict, dict, dict | None, dict, str]:
    """One head of two models on the same prompt: figure A, figure B, the difference A − B (None where the two
    are not the same quantity; the note says why), both models' per-head summaries, and the note."""
    w = Words(request)
    with visitor_job(w, request) as cancelled:  # /cancel from the same client stops it
        a, b, diff, table, note = compare_views(w, spec_a, spec_b, prompt, layer, head, prefix_len, window,
                                                backend, device, dtype, cancelled)
    return api.plot(a), api.plot(b), api.plot(diff), table, note


def depth(spec_a: str, spec_b: str) -> tuple[int, int]:
    """The last layer and head both models have (the sliders' range), from their configs; a Hub model not yet
    downloaded counts as 3 (its config comes with it, at Compare)."""
    layers, heads_ = [], []
    for text in (spec_a, spec_b):
        try:
            spec = ModelSpec.parse(text)
            if spec.scheme == "hf" and not hub_source.is_prepared(spec.scheme, spec.name):
                continue
            cfg = spec.config()
        except ValueError:  # a typed spec with a mistake: Compare says what is wrong
            continue
        layers.append(cfg.n_layer - 1)
        heads_.append(cfg.n_heads - 1)
    return min(layers, default=3), min(heads_, default=3)


def build_compare_tab(prompt: gr.Textbox, device: gr.Dropdown, dtype: gr.Dropdown,
                      localized: Localized, first_views: api.FirstViews):
    names = [(f"{n}: " + t(f"zoo.about.{n}"), f"zoo:{n}") for n in text_models()]
    gr.Markdown(t("compare.help"))
    with gr.Row():
        # any spec may be typed: a pretrained model (hf:owner/name, local:name) or one trained in the page
        model_a = gr.Dropdown(names + pretrained_choices(), value=names[0][1] if names else None,
                              label=t("compare.model_a"), allow_custom_value=True)
        model_b = gr.Dropdown(names + pretrained_choices(), value=names[1][1] if len(names) > 1 else None,
                              label=t("compare.model_b"), allow_custom_value=True)
        layer = gr.Slider(0, 3, value=0, step=1, label=t("common.layer"))
        head = gr.Slider(0, 3, value=0, step=1, label=t("common.head"))

    def ranges(spec_a, spec_b):
        last_layer, last_head = depth(spec_a, spec_b)
        return index_range(last_layer + 1), index_range(last_head + 1)

    gr.on([model_a.change, model_b.change], ranges, [model_a, model_b], [layer, head], api_visibility="private")
    with gr.Row():
        prefix_len, window = prefix_and_window(prefix_applies=True)  # either model may be a prefix decoder
        button = gr.Button(t("compare.compare"), variant="primary", scale=0, min_width=160, elem_id="compare-run")
        cancel_btn = gr.Button(t("attention.cancel"), variant="stop", scale=0, min_width=100, elem_id="cancel-compare")
    note = gr.Markdown()
    with gr.Row():
        plot_a = gr.Plot(label="A")
        plot_b = gr.Plot(label="B")
    diff_plot = gr.Plot(label=t("compare.difference"))
    table = gr.Dataframe(headers=english(SUMMARY_HEADERS), interactive=False, label=t("compare.table"))
    localized.table(table, SUMMARY_HEADERS)

    def run(spec_a, spec_b, text, layer_, head_, prefix, win, device_, dtype_, request: gr.Request):
        """The Compare button: the same function as /compare."""
        w = Words(request)
        if not spec_a or not spec_b:
            raise w.error("error.pick_two")
        with visitor_job(w, request) as cancelled:
            a, b, diff, rows, why = compare_views(w, spec_a, spec_b, text, layer_, head_, prefix, win, "auto",
                                                  device_, dtype_, cancelled)
        return a, b, gr.update(value=diff, visible=diff is not None), rows, why

    run_inputs = [model_a, model_b, prompt, layer, head, prefix_len, window, device, dtype]
    run_outputs = [plot_a, plot_b, diff_plot, table, note]
    comparing = button.click(run, run_inputs, run_outputs, api_visibility="private",
                             concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    # Cancel takes a queued comparison out of the queue (Gradio's cancels) and stops a running one after its layer
    cancel_btn.click(cancel, None, None, api_visibility="private", queue=False, cancels=[comparing])
    first_views.add(run, run_inputs, run_outputs)
    gr.api(compare, api_name="compare", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
