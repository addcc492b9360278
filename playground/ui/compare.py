"""The Compare tab: one prompt through two shipped models, side by side, and their difference."""
from __future__ import annotations

import gradio as gr

from .. import heads, plots, service, zoo
from .attention import kind_labels, kind_title

SUMMARY = ["model", "layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "induction"]


def text_models() -> list[str]:
    return [n for n in zoo.available() if not zoo.ZOO[n].get("task")]


def _self_kind(result) -> str:
    return next(k for k in result.kinds if k != "cross")


def compare(name_a: str, name_b: str, text: str, layer: int, head: int, device: str = "cpu"):
    if not name_a or not name_b:
        raise gr.Error("Pick two models.")
    results = []
    for name in (name_a, name_b):
        cfg = zoo.entry_configs(name)[0]
        choice = service.Choice(cfg.family, cfg.variant, cfg.position, name=name, device=device)
        try:
            result, notes = service.analyze_text(choice, text)
        except ValueError as e:
            raise gr.Error(f"{name}: {e}") from None
        for note in notes:
            gr.Warning(f"{name}: {note}")
        results.append(result)
    figures, summary = [], []
    weights = []
    for name, result in zip((name_a, name_b), results):
        kind = _self_kind(result)
        w = result.weights(kind)  # (L, nh, T, T)
        l, h = min(int(layer), w.shape[0] - 1), min(int(head), w.shape[1] - 1)
        q, k = kind_labels(kind, result)
        figures.append(plots.head(w[l, h], q, k, f"{name}: {kind_title(kind, result)} · layer {l}, head {h}",
                                  mask=[m for m in result.maps if m.kind == kind][l].mask, signed=kind == "implicit"))
        weights.append((w[l, h], q, k))
        tokens = result.source_ids if kind == "encoder_self" else result.token_ids
        if kind != "implicit":  # role scores are shares of softmax attention
            summary += [[name] + [r[c] if c in ("layer", "head") else round(r[c], 3) for c in SUMMARY[1:]]
                        for r in heads.head_table(w, tokens)]
    (wa, qa, ka), (wb, _, _) = weights
    if wa.shape != wb.shape:
        diff_fig = None
        gr.Warning("The two models saw different token sequences (an encoder-decoder's decoder side differs): "
                   "no difference map.")
    else:
        diff = wa - wb
        diff_fig = plots.head(diff, qa, ka, f"{name_a} − {name_b} (same layer and head)", signed=True)
    return figures[0], figures[1], diff_fig, summary


def build_compare_tab(prompt: gr.Textbox, device: gr.Dropdown):
    names = text_models()
    gr.Markdown("The same prompt through two shipped models that differ in one choice (the zoo changes one "
                "factor at a time). Blue in the difference map: more attention in the first model.")
    with gr.Row():
        model_a = gr.Dropdown(names, value=names[0] if names else None, label="Model A")
        model_b = gr.Dropdown(names, value=names[1] if len(names) > 1 else None, label="Model B")
        layer = gr.Slider(0, 3, value=0, step=1, label="Layer")
        head = gr.Slider(0, 3, value=0, step=1, label="Head")
        button = gr.Button("Compare", variant="primary")
    with gr.Row():
        plot_a = gr.Plot(label="A")
        plot_b = gr.Plot(label="B")
    diff_plot = gr.Plot(label="Difference")
    table = gr.Dataframe(headers=SUMMARY, interactive=False, label="Per-head summaries of both models")
    button.click(compare, [model_a, model_b, prompt, layer, head, device], [plot_a, plot_b, diff_plot, table],
                 api_name="compare")
