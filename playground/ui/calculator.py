"""The KV-cache calculator tab: cache size of real models, by formula, for every attention variant."""
from __future__ import annotations

import gradio as gr

from playground import plots
from playground.nn.cache import PUBLISHED, whatif
from playground.errors import InputError
from .lang import Localized, Words, english, t

HEADERS = ["calc.col_variant", "calc.col_bytes", "calc.col_gib"]


def calculate(n_layer, n_heads, n_kv_heads, head_dim, d_latent, d_rope, dtype, context, batch,
              request: gr.Request = None):
    w = Words(request)
    try:
        rows = whatif(int(n_layer), int(n_heads), int(n_kv_heads), int(head_dim), d_latent=int(d_latent),
                      d_rope=int(d_rope), dtype=dtype, context=int(context), batch=int(batch))
    except InputError as e:
        raise w.error("error.calculator", reason=w.render(e)) from None
    except (ValueError, TypeError) as e:
        raise w.error("error.calculator", reason=str(e)) from None
    table = [[plots.variant_label(r, w), f"{r['bytes_per_token']:,.0f}", f"{r['gib']:,.2f}"] for r in rows]
    title = w("calc.title", batch=int(batch), context=int(context), dtype=dtype)
    return {"headers": [w(k) for k in HEADERS], "data": table}, plots.kv_whatif(rows, title, words=w)


def redraw(n_layer, n_heads, n_kv_heads, head_dim, d_latent, d_rope, dtype, context, batch,
           request: gr.Request = None):
    """After a language switch: the table and chart again in the new language; nothing if the inputs are invalid."""
    try:
        return calculate(n_layer, n_heads, n_kv_heads, head_dim, d_latent, d_rope, dtype, context, batch, request)
    except gr.Error:
        return gr.skip(), gr.skip()


def build_calculator_tab(demo: gr.Blocks, localized: Localized):
    """The calculator, with the default preset's table and chart computed when the page loads (a few ms)."""
    names = list(PUBLISHED)
    preset = gr.Dropdown(names, value=names[1], label=t("calc.preset"))
    first = PUBLISHED[names[1]]
    with gr.Row():
        n_layer = gr.Number(first["n_layer"], precision=0, label=t("calc.layers"))
        n_heads = gr.Number(first["n_heads"], precision=0, label=t("calc.query_heads"))
        n_kv = gr.Number(first["n_kv_heads"], precision=0, label=t("calc.kv_heads"))
        head_dim = gr.Number(first["head_dim"], precision=0, label=t("calc.head_dim"))
        d_latent = gr.Number(first["d_latent"], precision=0, label=t("calc.latent"))
        d_rope = gr.Number(first["d_rope"], precision=0, label=t("calc.rope_dim"))
    with gr.Row():
        dtype = gr.Dropdown(["fp32", "bf16", "fp16", "fp8", "int4"], value="bf16", label=t("calc.dtype"))
        context = gr.Number(8192, precision=0, label=t("calc.context"))
        batch = gr.Number(1, precision=0, label=t("calc.batch"))
        button = gr.Button(t("calc.compute"), variant="primary")
    table = gr.Dataframe(headers=english(HEADERS), interactive=False, elem_id="calc-table")
    chart = gr.Plot(show_label=False)
    fields = [n_layer, n_heads, n_kv, head_dim, d_latent, d_rope]
    inputs = [*fields, dtype, context, batch]
    preset.change(lambda name: [PUBLISHED[name][k] for k in ("n_layer", "n_heads", "n_kv_heads", "head_dim",
                                                               "d_latent", "d_rope")], preset, fields,
                  api_visibility="private").then(calculate, inputs, [table, chart], api_visibility="private")
    button.click(calculate, inputs, [table, chart], api_name="kv_cache")
    demo.load(calculate, inputs, [table, chart], api_visibility="private")
    localized.on_switch(redraw, inputs, [table, chart])
    return button, inputs, [table, chart]
