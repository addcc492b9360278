"""The Attention tab: analyze a prompt, see every layer and head, open one, see its mask."""
from __future__ import annotations

import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from .. import plots, service
from ..analysis import Analysis
from ..kernels import KERNEL_LABELS
from .controls import Controls, choose

FULL_RES_AUTO = 256  # longer prompts open a head only when asked
OVERVIEW_SLOTS = ("self", "decoder_self", "cross")  # encoder self-attention shares the first slot


def kind_title(kind: str, result: Analysis) -> str:
    if kind == "self":
        if result.config["family"] == "prefix":
            return f"Self-attention: bidirectional over the first {result.prefix_len} tokens, causal after"
        return "Self-attention (causal)"
    if kind == "implicit":
        if result.config["family"] == "mamba":
            return ("Mamba implicit attention (Ali et al. 2024): mean over each group of "
                    f"{result.config['expand'] * result.config['d_model'] // result.config['n_heads']} channels; "
                    "signed")
        return "RWKV-5 implicit attention per head: exact, signed, not normalised"
    return {"encoder_self": "Encoder self-attention (bidirectional)",
            "decoder_self": "Decoder masked self-attention",
            "cross": "Cross-attention (Q: decoder, K/V: encoder)"}[kind]


def kind_labels(kind: str, result: Analysis) -> tuple[list[str], list[str]]:
    """(query labels, key labels) of an attention kind."""
    if kind == "encoder_self":
        return result.source_labels, result.source_labels
    if kind == "cross":
        return result.labels, result.source_labels
    return result.labels, result.labels


def badge(result: Analysis, choice: service.Choice) -> str:
    ran = ", ".join(KERNEL_LABELS[k] for k in result.kernels)
    lines = [f"<b>Kernel that ran:</b> {html.escape(ran)} (asked: {html.escape(choice.backend)}) on "
             f"<b>{html.escape(choice.device)}</b> · forward {result.elapsed_ms:.1f} ms"]
    if result.kernels == ["implicit"]:
        lines.append(f"Implicit attention applied to the values reproduces the mixer's output: "
                     f"max |Δ| = {result.max_abs_diff:.1e}. Red: positive, blue: negative.")
    elif result.recomputed:
        lines.append(f"Weights recomputed with the explicit path (SDPA kernels never return them) · "
                     f"max |Δ output| = {result.max_abs_diff:.1e}")
    else:
        lines.append("Weights from the same explicit softmax(QKᵀ/√d)V that produced the output.")
    if choice.untrained:
        lines.append("<span class='untrained'>UNTRAINED (random weights)</span>")
    return "<div class='badge'>" + "<br>".join(lines) + "</div>"


def head_views(state: dict | None, kind: str, layer: int, head: int):
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
    where = f"{kind_title(kind, result)} · layer {layer}, head {head}"
    untrained, signed = state["untrained"], kind == "implicit"
    return (plots.head(m.weights[head], q, k, where, mask=m.mask, untrained=untrained, signed=signed),
            plots.mask(m.mask, q, k, f"Mask used by layer {layer} ({kind.replace('_', ' ')})"),
            plots.mask_overlay(m.weights[head], m.mask, q, k, f"Mask over the weights · layer {layer}, head {head}",
                               signed=signed))


def export_files(state: dict | None) -> list[str]:
    """The analysis as JSON (weights to 4 significant digits) and as a lossless .npz."""
    if not state:
        raise gr.Error("Analyze a prompt first; then its data can be downloaded.")
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

    analyze: object          # the handler: (*controls, prompt, prefix, window) -> outputs
    inputs: list
    outputs: list
    prefix_len: gr.Slider
    window: gr.Slider
    kind: gr.Dropdown
    layer: gr.Slider
    head: gr.Slider
    state: gr.State
    view_outputs: list


def build_attention_tab(controls: Controls, prompt: gr.Textbox) -> AttentionTab:
    state = gr.State(None)
    with gr.Row():
        prefix_len = gr.Slider(0, 128, value=8, step=1, label="Prefix length (GLM prefix decoder)",
                               info="Only the prefix decoder uses it", interactive=False)
        window = gr.Slider(0, 128, value=0, step=1, label="Sliding window (0 = off)",
                           info="Each query sees at most this many keys back")
        analyze_btn = gr.Button("Analyze", variant="primary", scale=0, min_width=160)
    badge_html = gr.HTML()
    overviews = [gr.Plot(label=label, visible=i == 0) for i, label in
                 enumerate(["Attention overview", "Decoder self-attention", "Cross-attention"])]
    gr.Markdown("### One head at full resolution\nPick an attention kind, a layer and a head; "
                "hover a cell for the query token, key token and weight.")
    with gr.Row():
        kind = gr.Dropdown(["self"], value="self", label="Attention kind", scale=1)
        layer = gr.Slider(0, 3, value=0, step=1, label="Layer", scale=2)
        head = gr.Slider(0, 3, value=0, step=1, label="Head", scale=2)
        open_btn = gr.Button("Open head", scale=0, min_width=140)
    head_plot = gr.Plot(label="Head")
    with gr.Accordion("Masks: the tensor each layer computed with", open=True):
        with gr.Row():
            mask_plot = gr.Plot(label="Mask")
            overlay_plot = gr.Plot(label="Mask and weights")
    with gr.Accordion("Export", open=False):
        gr.Markdown("Every plot downloads as PNG from the camera icon in its toolbar. The data behind the "
                    "analysis: JSON (weights to 4 significant digits) and NumPy `.npz` (exact float32).")
        export_btn = gr.Button("Prepare data files")
        files = gr.File(label="Data", file_count="multiple", interactive=False)

    def analyze(family, variant, position, task, fallback, backend, device, text, prefix, win):
        choice, _ = choose(family, variant, position, task, fallback, backend, device, win)
        try:
            result, notes = service.analyze_text(choice, text, prefix)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        for note in notes:
            gr.Warning(note)
        new_state = {"result": result, "untrained": choice.untrained}
        figures = []
        for slot in OVERVIEW_SLOTS:
            kinds = [k for k in result.kinds if k == slot or (slot == "self" and k in ("encoder_self", "implicit"))]
            if kinds:
                fig = plots.overview(result.weights(kinds[0]), kind_title(kinds[0], result), untrained=choice.untrained,
                                     signed=kinds[0] == "implicit")
                figures.append(gr.update(value=fig, visible=True, label=kind_title(kinds[0], result)))
            else:
                figures.append(gr.update(value=None, visible=False))
        cfg = result.config
        if max(len(result.labels), len(result.source_labels)) > FULL_RES_AUTO:
            gr.Info("Long prompt: the overview is downsampled; press 'Open head' for one head at full resolution.")
        # the head, its mask and the overlay follow in a second step, so the overview shows first
        return (badge(result, choice), *figures,
                gr.update(choices=result.kinds, value=result.kinds[0]),
                gr.update(maximum=cfg["n_layer"] - 1, value=0), gr.update(maximum=cfg["n_heads"] - 1, value=0),
                new_state)

    def first_head(state: dict | None, kind: str):
        """Layer 0, head 0 at full resolution after an analysis, unless the prompt is long."""
        result = state["result"] if state else None
        if result is None or max(len(result.labels), len(result.source_labels)) > FULL_RES_AUTO:
            return None, None, None
        return head_views(state, kind, 0, 0)

    inputs = [*controls.inputs, prompt, prefix_len, window]
    outputs = [badge_html, *overviews, kind, layer, head, state]
    view_outputs = [head_plot, mask_plot, overlay_plot]
    analyze_btn.click(analyze, inputs, outputs, api_name="analyze", concurrency_limit=2).then(
        first_head, [state, kind], view_outputs, api_visibility="private")
    export_btn.click(export_files, state, files, api_visibility="private")
    view_inputs = [state, kind, layer, head]
    open_btn.click(head_views, view_inputs, view_outputs, api_visibility="private")

    def head_api(family: str, variant: str, position: str, task: str, fallback: str, backend: str, device: str,
                 text: str, prefix: int, win: int, kind: str, layer: int, head: int) -> dict[str, str]:
        """One head of an analysis, stateless for API callers: Plotly JSON of the head, its mask and the overlay."""
        choice, _ = choose(family, variant, position, task, fallback, backend, device, win)
        try:
            result, _ = service.analyze_text(choice, text, prefix)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        figures = head_views({"result": result, "untrained": choice.untrained}, kind, layer, head)
        return {name: fig.to_json() for name, fig in zip(("head", "mask", "overlay"), figures)}

    gr.api(head_api, api_name="head")
    gr.on([kind.input, layer.release, head.release], head_views, view_inputs, view_outputs, api_visibility="private")

    def prefix_applies(family, task):
        applies = family == "prefix" and not task
        return gr.update(interactive=applies, info="Bidirectional over the first P tokens" if applies
                         else "Only the prefix decoder (GLM) has a prefix")

    gr.on([controls.family.change, controls.task.change], prefix_applies, [controls.family, controls.task], prefix_len,
          api_visibility="private")
    return AttentionTab(analyze, inputs, outputs, prefix_len, window, kind, layer, head, state, view_outputs)
