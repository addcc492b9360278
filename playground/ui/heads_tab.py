"""The Head insights tab: per head, entropy, distance and role scores; a click opens the head.

``/heads`` takes a model spec, the prompt and the same prefix length and sliding window as the
Attention tab; the tab's button resolves the model controls to a spec and calls the same function.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import gradio as gr
import numpy as np

from playground import plots
from playground.serving.lanes import ANALYZE
from playground.ui.i18n import msg

from . import api
from .attention import prefix_and_window, wire_prefix
from .head_view import head_figures
from .session import analysis_state
from .controls import Controls, choose
from .lang import Localized, Words, english, t

COLUMNS = ["layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "duplicate_token",
           "induction"]
HEADERS = [f"col.{c}" for c in COLUMNS]


def score_rows(w: Words, state: dict | None) -> list[list]:
    if not state:
        return []
    result = state.result(w)
    kind = state.kind
    rows = result.head_stats(kind)  # streamed over the tiles during the analysis
    return [[r[c] if c in ("layer", "head") else round(r[c], 3) for c in COLUMNS] for r in rows]


def heads_state(w: Words, spec: str, prompt: str, prefix_len: int, window: int, backend: str, device: str,
                dtype: str = "auto") -> dict:
    """An analysis and the self-attention kind whose heads are scored (roles are defined on softmax attention)."""
    state = analysis_state(w, spec, prompt, prefix_len, window, backend, device, dtype)
    kind = next(k for k in state.result(w).kinds if k != "cross")
    if kind == "implicit":
        raise w.error("error.heads_implicit")
    return state.extended(kind=kind)


def distance_figure(w: Words, state: dict):
    """Attention by distance of every head of the scored kind, from the analysis' streamed statistics."""
    maps = state.result(w).of_kind(state.kind)
    profile = np.stack([m.stats.profile for m in maps])  # (n_layer, nh, nb)
    return plots.distance_profile(profile, maps[0].stats.bin_edges, msg("title.by_distance"), words=w)


def table_of(w: Words, state: dict) -> dict:
    return {"headers": [w(k) for k in HEADERS], "data": score_rows(w, state)}


def heads(spec: str, prompt: str, prefix_len: int = 0, window: int = 0, backend: str = "auto", device: str = "cpu",
          dtype: str = "auto", request: gr.Request = None) -> dict:
    """Every head's entropy, mean distance and role scores (previous-token, first-token sink, duplicate-token,
    induction) as a table {'headers': [...], 'data': [[layer, head, ...], ...]}. Transformer models only."""
    w = Words(request)
    return table_of(w, heads_state(w, spec, prompt, prefix_len, window, backend, device, dtype))


def build_heads_tab(controls: Controls, prompt: gr.Textbox,
                    localized: Localized, first_views: api.FirstViews):
    state = gr.State(None)
    gr.Markdown(t("heads.help"))
    with gr.Row():
        prefix_len, window = prefix_and_window()
        button = gr.Button(t("heads.score"), variant="primary", scale=0, min_width=160, elem_id="heads-score")
    note = gr.Markdown(elem_id="heads-note")  # what kept the table from being drawn (no GPU time left, ...)
    table = gr.Dataframe(headers=english(HEADERS), interactive=False, label=t("heads.table"), elem_id="head-table")
    localized.table(table, HEADERS)
    figure = gr.Plot(label=t("heads.selected"))
    by_distance = gr.Plot(label=t("heads.by_distance"), elem_id="by-distance")

    def run(family, variant, position, task, fallback, backend, device, dtype, text, prefix, win, request: gr.Request):
        """The button: the controls' spec through the same function as /heads."""
        w = Words(request)
        spec, _ = choose(w, family, variant, position, task, fallback)
        new_state = heads_state(w, str(spec), text, prefix, win, backend, device, dtype)
        return table_of(w, new_state), None, distance_figure(w, new_state), new_state, ""

    def open_row(state: dict | None, evt: gr.SelectData, request: gr.Request):
        if not state:
            return None
        row = evt.row_value if evt.row_value is not None else None
        if row is None:
            return None
        layer, head = int(row[0]), int(row[1])
        return head_figures(Words(request), state, state.kind, layer, head)[0]

    run_inputs, run_outputs = [*controls.inputs, prompt, prefix_len, window], [table, figure, by_distance, state, note]
    button.click(run, run_inputs, run_outputs, api_visibility="private", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    first_views.add(run, run_inputs, run_outputs)
    gr.api(heads, api_name="heads", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    table.select(open_row, state, figure, api_visibility="private")
    wire_prefix(controls, prefix_len, localized)
