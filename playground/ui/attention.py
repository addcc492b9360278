"""The Attention tab: analyze a prompt, see every layer and head, open one, see its mask."""
from __future__ import annotations

import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from playground import plots
from playground.ui import service
from playground.inspect.analysis import Analysis
from playground.ui.i18n import Message, msg
from .controls import Controls, choose
from .lang import Localized, Words, t
from .scripts import page_script

FULL_RES_AUTO = 256  # longer prompts open a head only when asked
OVERVIEW_SLOTS = ("self", "decoder_self", "cross")  # encoder self-attention shares the first slot
PICK_ID = "head-pick"
# A click on an overview cell opens that head (assets/js/click_head.js): the cell becomes {kind, layer, head},
# typed into the hidden textbox PICK_ID, whose change event opens the head on the server.
CLICK_HEAD = page_script("click_head", headPickId=PICK_ID)


def kind_title(kind: str, result: Analysis) -> Message:
    if kind == "self":
        if result.config["family"] == "prefix":
            return msg("kind.self_prefix", n=result.prefix_len)
        return msg("kind.self")
    if kind == "implicit":
        if result.config["family"] == "mamba":
            cfg = result.config
            return msg("kind.implicit_mamba", channels=cfg["expand"] * cfg["d_model"] // cfg["n_heads"])
        return msg("kind.implicit_rwkv")
    return msg(f"kind.{kind}")  # encoder_self, decoder_self, cross


def kind_labels(kind: str, result: Analysis) -> tuple[list[str], list[str]]:
    """(query labels, key labels) of an attention kind."""
    if kind == "encoder_self":
        return result.source_labels, result.source_labels
    if kind == "cross":
        return result.labels, result.source_labels
    return result.labels, result.labels


def badge(w: Words, result: Analysis, choice: service.Choice) -> str:
    ran = ", ".join(w(f"kernel.{k}") for k in result.kernels)
    lines = [w("badge.ran", ran=html.escape(ran), asked=html.escape(choice.backend),
               device=html.escape(choice.device), ms=result.elapsed_ms)]
    if result.kernels == ["implicit"]:
        lines.append(w("badge.implicit", diff=result.max_abs_diff))
    elif result.recomputed:
        lines.append(w("badge.recomputed", diff=result.max_abs_diff))
    else:
        lines.append(w("badge.explicit"))
    if choice.untrained:
        lines.append(f"<span class='untrained'>{w('plot.untrained')}</span>")
    return "<div class='badge'>" + "<br>".join(lines) + "</div>"


def head_views(state: dict | None, kind: str, layer: int, head: int, request: gr.Request = None):
    return head_figures(Words(request).lang, state, kind, layer, head)


def head_figures(lang: str, state: dict | None, kind: str, layer: int, head: int):
    """(head figure, mask figure, overlay figure) for one head; empty figures before any analysis."""
    if not state:
        return None, None, None
    result: Analysis = state["result"]
    kind = kind if kind in result.kinds else result.kinds[0]
    maps = [m for m in result.maps if m.kind == kind]
    layer = min(int(layer), len(maps) - 1)
    m = maps[layer]
    head = min(int(head), m.weights.shape[0] - 1)
    q, k = kind_labels(kind, result)
    where = msg("title.head", kind=kind_title(kind, result), layer=layer, head=head)
    untrained, signed = state["untrained"], kind == "implicit"
    return (plots.head(m.weights[head], q, k, where, mask=m.mask, untrained=untrained, signed=signed, words=Words(lang=lang)),
            plots.mask(m.mask, q, k, msg("title.mask", layer=layer, kind=msg(f"kind_short.{kind}")), words=Words(lang=lang)),
            plots.mask_overlay(m.weights[head], m.mask, q, k, msg("title.overlay", layer=layer, head=head),
                               signed=signed, words=Words(lang=lang)))


def export_files(state: dict | None, request: gr.Request = None) -> list[str]:
    """The analysis as JSON (weights to 4 significant digits) and as a lossless .npz."""
    if not state:
        raise Words(request).error("error.export_first")
    result: Analysis = state["result"]
    folder = Path(tempfile.mkdtemp(prefix="attention-"))
    (folder / "attention.json").write_text(json.dumps(result.to_dict()))
    arrays = {f"{kind}_weights": result.weights(kind) for kind in result.kinds}  # (n_layer, nh, Tq, Tk)
    arrays.update({f"{kind}_mask": next(m.mask for m in result.maps if m.kind == kind) for kind in result.kinds})
    np.savez_compressed(folder / "attention.npz", token_ids=np.array(result.token_ids),
                        labels=np.array(result.labels), source_ids=np.array(result.source_ids, dtype=np.int64),
                        source_labels=np.array(result.source_labels, dtype=str),
                        config=np.array(json.dumps(result.config)), **arrays)
    return [str(folder / "attention.json"), str(folder / "attention.npz")]


@dataclass
class AttentionTab:
    """What other parts of the page (the share link) wire to."""

    analyze: object          # the handler: (*controls, prompt, prefix, window, request) -> outputs
    inputs: list
    outputs: list
    prefix_len: gr.Slider
    window: gr.Slider
    kind: gr.Dropdown
    layer: gr.Slider
    head: gr.Slider
    state: gr.State
    view_outputs: list


def analysis_of(w: Words, family, variant, position, task, fallback, backend, device, text, prefix=0, win=0):
    """Controls' values and a prompt -> (choice, analysis); bad input raises gr.Error, notes show as warnings."""
    choice, _ = choose(w, family, variant, position, task, fallback, backend, device, win)
    try:
        result, notes = service.analyze_text(choice, text, prefix)
    except ValueError as e:
        raise w.error(e) from None
    for note in notes:
        w.warn(note)
    return choice, result


def overview_figures(w: Words, state: dict) -> list:
    """Updates of the three overview slots: self (or encoder self, or implicit), decoder self, cross."""
    result, figures = state["result"], []
    for slot in OVERVIEW_SLOTS:
        kinds = [k for k in result.kinds if k == slot or (slot == "self" and k in ("encoder_self", "implicit"))]
        if kinds:
            title = w.render(kind_title(kinds[0], result))
            fig = plots.overview(result.weights(kinds[0]), title, untrained=state["untrained"],
                                 signed=kinds[0] == "implicit", words=w, kind=kinds[0])
            figures.append(gr.update(value=fig, visible=True, label=title))
        else:
            figures.append(gr.update(value=None, visible=False))
    return figures


def kind_choices(w: Words, result: Analysis, value: str):
    return gr.update(choices=[(w(f"kind_short.{k}"), k) for k in result.kinds], value=value)


def build_attention_tab(controls: Controls, prompt: gr.Textbox, localized: Localized) -> AttentionTab:
    state = gr.State(None)
    with gr.Row():
        prefix_len = gr.Slider(0, 128, value=8, step=1, label=t("attention.prefix"),
                               info=t("attention.prefix_other"), interactive=False)
        window = gr.Slider(0, 128, value=0, step=1, label=t("attention.window"), info=t("attention.window_info"))
        analyze_btn = gr.Button(t("attention.analyze"), variant="primary", scale=0, min_width=160)
    badge_html = gr.HTML()
    overviews = [gr.Plot(label=t(key), visible=i == 0, elem_classes="overview-plot") for i, key in
                 enumerate(["attention.overview", "kind.decoder_self", "kind.cross"])]
    picked = gr.Textbox(visible="hidden", elem_id=PICK_ID)  # {kind, layer, head} from a click on the overview
    gr.Markdown(t("attention.one_head"))
    with gr.Row():
        kind = gr.Dropdown([(t("kind_short.self"), "self")], value="self", label=t("attention.kind"), scale=1)
        layer = gr.Slider(0, 3, value=0, step=1, label=t("common.layer"), scale=2)
        head = gr.Slider(0, 3, value=0, step=1, label=t("common.head"), scale=2)
        open_btn = gr.Button(t("attention.open_head"), scale=0, min_width=140)
    head_plot = gr.Plot(label=t("common.head"))
    with gr.Accordion(t("attention.masks"), open=True):
        with gr.Row():
            mask_plot = gr.Plot(label=t("attention.mask"))
            overlay_plot = gr.Plot(label=t("attention.mask_and_weights"))
    with gr.Accordion(t("attention.export"), open=False):
        gr.Markdown(t("attention.export_help"))
        export_btn = gr.Button(t("attention.prepare"))
        files = gr.File(label=t("attention.data"), file_count="multiple", interactive=False)

    def analyze(family, variant, position, task, fallback, backend, device, text, prefix, win,
                request: gr.Request = None):
        w = Words(request)
        choice, result = analysis_of(w, family, variant, position, task, fallback, backend, device, text, prefix, win)
        new_state = {"result": result, "untrained": choice.untrained, "choice": choice}
        cfg = result.config
        if max(len(result.labels), len(result.source_labels)) > FULL_RES_AUTO:
            w.info("info.long_prompt")
        # the head, its mask and the overlay follow in a second step, so the overview shows first
        return (badge(w, result, choice), *overview_figures(w, new_state), kind_choices(w, result, result.kinds[0]),
                gr.update(maximum=cfg["n_layer"] - 1, value=0), gr.update(maximum=cfg["n_heads"] - 1, value=0),
                new_state)

    def first_head(state: dict | None, kind: str, request: gr.Request):
        """Layer 0, head 0 at full resolution after an analysis, unless the prompt is long."""
        result = state["result"] if state else None
        if result is None or max(len(result.labels), len(result.source_labels)) > FULL_RES_AUTO:
            return None, None, None
        return head_views(state, kind, 0, 0, request)

    inputs = [*controls.inputs, prompt, prefix_len, window]
    outputs = [badge_html, *overviews, kind, layer, head, state]
    view_outputs = [head_plot, mask_plot, overlay_plot]
    analyze_btn.click(analyze, inputs, outputs, api_name="analyze", concurrency_limit=2).then(
        first_head, [state, kind], view_outputs, api_visibility="private")
    export_btn.click(export_files, state, files, api_visibility="private")
    view_inputs = [state, kind, layer, head]
    open_btn.click(head_views, view_inputs, view_outputs, api_visibility="private")

    def open_picked(state: dict | None, picked: str, request: gr.Request):
        """The head a click on the overview named: set the pickers and open it."""
        try:
            p = json.loads(picked)
            kind_, layer_, head_ = str(p["kind"]), int(p["layer"]), int(p["head"])
        except (ValueError, TypeError, KeyError):
            return [gr.skip()] * (3 + len(view_outputs))
        if not state or kind_ not in state["result"].kinds:
            return [gr.skip()] * (3 + len(view_outputs))
        return [kind_, layer_, head_, *head_views(state, kind_, layer_, head_, request)]

    picked.change(open_picked, [state, picked], [kind, layer, head, *view_outputs], api_visibility="private")

    def relocalize(state: dict | None, kind_: str, layer_: int, head_: int, request: gr.Request):
        """After a language switch: what is on screen, drawn again from the same analysis."""
        if not state:
            return [gr.skip()] * (2 + len(overviews) + len(view_outputs))
        w = Words(request)
        return [badge(w, state["result"], state["choice"]), *overview_figures(w, state),
                kind_choices(w, state["result"], kind_), *head_views(state, kind_, layer_, head_, request)]

    localized.on_switch(relocalize, [state, kind, layer, head], [badge_html, *overviews, kind, *view_outputs])

    def head_api(family: str, variant: str, position: str, task: str, fallback: str, backend: str, device: str,
                 text: str, prefix: int, win: int, kind: str, layer: int, head: int,
                 request: gr.Request = None) -> dict[str, str]:
        """One head of an analysis, stateless for API callers: Plotly JSON of the head, its mask and the overlay."""
        w = Words(request)
        choice, result = analysis_of(w, family, variant, position, task, fallback, backend, device, text, prefix, win)
        figures = head_figures(w.lang, {"result": result, "untrained": choice.untrained}, kind, layer, head)
        return {name: fig.to_json() for name, fig in zip(("head", "mask", "overlay"), figures)}

    gr.api(head_api, api_name="head")
    gr.on([kind.input, layer.release, head.release], head_views, view_inputs, view_outputs, api_visibility="private")

    def prefix_applies(family, task, request: gr.Request):
        applies = family == "prefix" and not task
        return gr.update(interactive=applies, info=Words(request)("attention.prefix_info" if applies
                                                                  else "attention.prefix_other"))

    localized.on_switch(prefix_applies, [controls.family, controls.task], [prefix_len])
    gr.on([controls.family.change, controls.task.change], prefix_applies, [controls.family, controls.task], prefix_len,
          api_visibility="private")
    return AttentionTab(analyze, inputs, outputs, prefix_len, window, kind, layer, head, state, view_outputs)
