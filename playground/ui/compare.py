"""The Compare tab: one prompt through two shipped models, side by side, and their difference."""
from __future__ import annotations

import gradio as gr

from playground.inspect import heads
from playground import plots
from playground.ui import service
from playground import zoo
from playground.ui.i18n import msg
from .attention import kind_labels, kind_title
from .lang import Localized, Words, english, t

SUMMARY = ["model", "layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "induction"]
SUMMARY_HEADERS = [f"col.{c}" for c in SUMMARY]


def text_models() -> list[str]:
    return [n for n in zoo.available() if not zoo.ZOO[n].get("task")]


def _self_kind(result) -> str:
    return next(k for k in result.kinds if k != "cross")


def compare(name_a: str, name_b: str, text: str, layer: int, head: int, device: str = "cpu",
            request: gr.Request = None):
    w = Words(request)
    if not name_a or not name_b:
        raise w.error("error.pick_two")
    results = []
    for name in (name_a, name_b):
        cfg = zoo.entry_configs(name)[0]
        choice = service.Choice(cfg.family, cfg.variant, cfg.position, name=name, device=device)
        try:
            result, notes = service.analyze_text(choice, text)
        except ValueError as e:
            raise gr.Error(f"{name}: {w.render(e)}") from None
        for note in notes:
            gr.Warning(f"{name}: {w.render(note)}")
        results.append(result)
    figures, summary = [], []
    weights = []
    for name, result in zip((name_a, name_b), results):
        kind = _self_kind(result)
        a = result.weights(kind)  # (L, nh, T, T)
        l, h = min(int(layer), a.shape[0] - 1), min(int(head), a.shape[1] - 1)
        q, k = kind_labels(kind, result)
        title = msg("compare.title", name=name, head=msg("title.head", kind=kind_title(kind, result), layer=l, head=h))
        figures.append(plots.head(a[l, h], q, k, title, mask=[m for m in result.maps if m.kind == kind][l].mask,
                                  signed=kind == "implicit", words=w))
        weights.append((a[l, h], q, k))
        tokens = result.source_ids if kind == "encoder_self" else result.token_ids
        if kind != "implicit":  # role scores are shares of softmax attention
            summary += [[name] + [r[c] if c in ("layer", "head") else round(r[c], 3) for c in SUMMARY[1:]]
                        for r in heads.head_table(a, tokens)]
    (wa, qa, ka), (wb, _, _) = weights
    if wa.shape != wb.shape:
        diff_fig = None
        gr.Warning(w("warning.compare_shapes"))
    else:
        diff_fig = plots.head(wa - wb, qa, ka, msg("compare.diff_title", a=name_a, b=name_b), signed=True, words=w,
                              scale_title=msg("compare.diff_scale"))
    return figures[0], figures[1], diff_fig, {"headers": [w(k) for k in SUMMARY_HEADERS], "data": summary}


def build_compare_tab(prompt: gr.Textbox, device: gr.Dropdown, localized: Localized):
    names = [(f"{n}: " + t(f"zoo.about.{n}"), n) for n in text_models()]
    gr.Markdown(t("compare.help"))
    with gr.Row():
        model_a = gr.Dropdown(names, value=names[0][1] if names else None, label=t("compare.model_a"))
        model_b = gr.Dropdown(names, value=names[1][1] if len(names) > 1 else None, label=t("compare.model_b"))
        layer = gr.Slider(0, 3, value=0, step=1, label=t("common.layer"))
        head = gr.Slider(0, 3, value=0, step=1, label=t("common.head"))
        button = gr.Button(t("compare.compare"), variant="primary")
    with gr.Row():
        plot_a = gr.Plot(label="A")
        plot_b = gr.Plot(label="B")
    diff_plot = gr.Plot(label=t("compare.difference"))
    table = gr.Dataframe(headers=english(SUMMARY_HEADERS), interactive=False, label=t("compare.table"))
    localized.table(table, SUMMARY_HEADERS)
    button.click(compare, [model_a, model_b, prompt, layer, head, device], [plot_a, plot_b, diff_plot, table],
                 api_name="compare")
