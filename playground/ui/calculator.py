"""The KV-cache calculator tab: cache size of real models, by formula for every attention variant, and
counted layer by layer from a real ``config.json`` (a Hub id or pasted JSON) next to the generic formula."""
from __future__ import annotations

import json
import re

import gradio as gr
import numpy as np

from playground import plots
from playground.nn.cache import PUBLISHED, whatif
from playground.nn.kv_config import EXAMPLES, KVReport, LayerKV, kv_from_config
from playground.errors import InputError
from .lang import Localized, Words, english, t

HEADERS = ["calc.col_variant", "calc.col_bytes", "calc.col_gib"]
CONFIG_HEADERS = ["calc.cfg_col_kind", "calc.cfg_col_layers", "calc.cfg_col_bytes", "calc.cfg_col_cap",
                  "calc.cfg_col_fixed", "calc.cfg_col_total"]
KIND_KEYS = {"attention": "calc.kind_attention", "sliding": "calc.kind_sliding", "mla": "calc.kind_mla",
             "recurrent": "calc.kind_recurrent", "none": "calc.kind_none"}
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


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


def read_config(source: str, w: Words) -> dict:
    """Pasted JSON, parsed; or a Hub id (owner/name), its config.json fetched. gr.Error saying what is wrong."""
    text = (source or "").strip()
    if not text:
        raise w.error("error.config_empty")
    if text[0] in "{[":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise w.error("error.config_json", reason=e.msg, line=e.lineno, column=e.colno) from None
        except RecursionError:
            raise w.error("error.config_json", reason="nested too deeply", line=1, column=1) from None
    text = text.removeprefix("hf:")  # the page's model spec for a Hub model
    if not HUB_ID.fullmatch(text):
        raise w.error("error.config_source", text=text[:80])
    try:
        from playground.models.pretrained.hub import fetch_config, server_token
    except ImportError:
        raise w.error("error.hub_unavailable") from None
    try:
        return fetch_config(text, token=server_token(text.strip()))
    except (ValueError, OSError) as e:  # offline, an unknown id, a gated model: the loader's own message
        raise w.error(e) from None


def layer_ranges(indices: tuple[int, ...]) -> str:
    """(0, 1, 2, 4, 6, 7) -> '0–2, 4, 6–7'."""
    runs, start = [], indices[0]
    for prev, here in zip(indices, indices[1:] + (None,)):
        if here != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = here
    return ", ".join(runs)


def size(n: float) -> str:
    """Bytes in the largest unit that keeps a number >= 1: '512.00 MiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n:,.0f} B"


def kind_name(layer: LayerKV, w: Words) -> str:
    if layer.kind == "recurrent":
        return w("calc.kind_recurrent", state=layer.state) if layer.state else w("calc.kind_unsized")
    return w(KIND_KEYS[layer.kind])


def config_rows(report: KVReport, context: int, batch: int, w: Words) -> list[list[str]]:
    """One row per group of alike layers: its kind, which layers, bytes per token, cap, fixed bytes, total."""
    rows = []
    for group in report.groups():
        layer = group.layer
        fixed = w("calc.cfg_unsized") if layer.fixed is None else (f"{layer.fixed:,.0f}" if layer.fixed else "—")
        rows.append([kind_name(layer, w), f"{len(group.indices)}: {layer_ranges(group.indices)}",
                     f"{layer.per_token:,.0f}" if layer.per_token else "—",
                     f"{layer.cap:,}" if layer.cap is not None else "—", fixed,
                     size(batch * len(group.indices) * layer.bytes_at(context))])
    return rows


def summary(report: KVReport, context: int, batch: int, w: Words) -> str:
    """The count layer by layer, and what the generic formula says next to it."""
    total = report.bytes_at(context, batch)
    windowed = any(layer.cap is not None for layer in report.layers)
    lines = [w("calc.cfg_counted_window" if windowed else "calc.cfg_counted", per_token=report.bytes_per_token,
               fixed=size(report.fixed_bytes), context=context, batch=batch, total=size(total))]
    if report.uncounted_layers:
        lines.append(w("calc.cfg_uncounted", n=report.uncounted_layers))
    if report.generic_per_token is None:
        lines.append(w("calc.cfg_no_generic"))
    else:
        generic = report.generic_at(context, batch)
        ratio = f"{generic / total:,.2f}×" if total else "∞"
        lines.append(w("calc.cfg_generic", **report.generic_terms, per_token=report.generic_per_token,
                       total=size(generic), ratio=ratio))
    return "\n\n".join(lines)


def curves(report: KVReport, context: int, batch: int, w: Words) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """GiB over 0..context tokens, per kind of layer, with the knee of every window inside the range."""
    caps = {layer.cap for layer in report.layers if layer.cap is not None and layer.cap < context}
    xs = np.unique(np.concatenate([np.linspace(0, context, 129).round(), sorted(caps)])).astype(np.int64)
    parts: dict[str, np.ndarray] = {}
    for layer in report.layers:
        name = kind_name(layer, w) + (f" ({layer.cap:,})" if layer.cap is not None else "")
        held = xs if layer.cap is None else np.minimum(xs, layer.cap)
        parts[name] = parts.get(name, 0) + batch * (held * layer.per_token + (layer.fixed or 0.0)) / 2**30
    parts = {name: gib for name, gib in parts.items() if np.any(gib)}
    generic = None if report.generic_per_token is None else batch * xs * report.generic_per_token / 2**30
    return xs, parts, generic


def from_config(source, dtype, context, batch, request: gr.Request = None):
    """A config.json (pasted, or a Hub id) counted layer by layer: table, comparison with the generic formula, chart."""
    w = Words(request)
    config = read_config(source, w)
    try:
        report = kv_from_config(config, dtype)
        context, batch = int(context), int(batch)
        report.bytes_at(context, batch)  # checks context >= 0 and batch >= 1
    except InputError as e:
        raise w.error("error.config_read", reason=w.render(e)) from None
    except (ValueError, TypeError) as e:
        raise w.error("error.config_read", reason=str(e)) from None
    xs, parts, generic = curves(report, max(context, 1), batch, w)
    title = w("calc.cfg_title", model=report.model_type or "config.json", batch=batch, dtype=dtype)
    table = {"headers": [w(k) for k in CONFIG_HEADERS], "data": config_rows(report, context, batch, w)}
    return table, summary(report, context, batch, w), plots.kv_by_layer_kind(xs, parts, generic, title, words=w)


def empty_table(request: gr.Request = None) -> dict:
    """The config table before anything is read: its column names in the page's language."""
    w = Words(request)
    return {"headers": [w(k) for k in CONFIG_HEADERS], "data": []}


def redraw_config(source, dtype, context, batch, request: gr.Request = None):
    """After a language switch: the config's table, line and chart again; with nothing read yet, the column names."""
    try:
        return from_config(source, dtype, context, batch, request)
    except gr.Error:
        return (empty_table(request) if not (source or "").strip() else gr.skip()), gr.skip(), gr.skip()


def size_controls(context: int, action: str) -> tuple:
    """One row: cache dtype, context length, batch and the button that computes (both calculators have it)."""
    with gr.Row():
        dtype = gr.Dropdown(["fp32", "bf16", "fp16", "fp8", "int4"], value="bf16", label=t("calc.dtype"))
        length = gr.Number(context, precision=0, label=t("calc.context"))
        batch = gr.Number(1, precision=0, label=t("calc.batch"))
        button = gr.Button(t(action), variant="primary")
    return dtype, length, batch, button


def build_config_section(demo: gr.Blocks, localized: Localized):
    """From a config.json: a Hub id or pasted JSON in, each layer's cache out, next to the generic formula."""
    gr.Markdown(t("calc.cfg_heading"))
    with gr.Row():
        example = gr.Dropdown(list(EXAMPLES), value=None, label=t("calc.cfg_example"), scale=1)
        source = gr.Textbox(lines=4, max_lines=16, label=t("calc.cfg_source"), placeholder=t("calc.cfg_placeholder"),
                            scale=3, elem_id="calc-config-source")
    dtype, context, batch, button = size_controls(32768, "calc.cfg_read")
    table = gr.Dataframe(headers=english(CONFIG_HEADERS), interactive=False, elem_id="calc-config-table")
    line = gr.Markdown(elem_id="calc-config-summary")
    chart = gr.Plot(show_label=False)
    inputs, outputs = [source, dtype, context, batch], [table, line, chart]
    example.input(lambda name: json.dumps(EXAMPLES[name], indent=1), example, source,
                  api_visibility="private").then(from_config, inputs, outputs, api_visibility="private")
    button.click(from_config, inputs, outputs, api_name="kv_config")
    demo.load(empty_table, None, table, api_visibility="private")
    localized.on_switch(redraw_config, inputs, outputs)


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
    dtype, context, batch, button = size_controls(8192, "calc.compute")
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
    build_config_section(demo, localized)
    return button, inputs, [table, chart]
