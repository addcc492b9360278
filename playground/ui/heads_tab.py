"""The Head insights tab: per head, entropy, distance and role scores; a click opens the head."""
from __future__ import annotations

import gradio as gr

from playground.inspect import heads
from playground import plots
from playground.ui.i18n import msg
from .attention import analysis_of, kind_labels, kind_title
from .controls import Controls
from .lang import Localized, Words, english, t

COLUMNS = ["layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "duplicate_token",
           "induction"]
HEADERS = [f"col.{c}" for c in COLUMNS]


def score_rows(state: dict | None) -> list[list]:
    if not state:
        return []
    result = state["result"]
    kind = state["kind"]
    tokens = result.source_ids if kind == "encoder_self" else result.token_ids
    rows = heads.head_table(result.weights(kind), tokens)
    return [[r[c] if c in ("layer", "head") else round(r[c], 3) for c in COLUMNS] for r in rows]


def build_heads_tab(controls: Controls, prompt: gr.Textbox, localized: Localized):
    state = gr.State(None)
    gr.Markdown(t("heads.help"))
    button = gr.Button(t("heads.score"), variant="primary")
    table = gr.Dataframe(headers=english(HEADERS), interactive=False, label=t("heads.table"), elem_id="head-table")
    localized.table(table, HEADERS)
    figure = gr.Plot(label=t("heads.selected"))

    def run(family, variant, position, task, fallback, backend, device, text, request: gr.Request):
        w = Words(request)
        choice, result = analysis_of(w, family, variant, position, task, fallback, backend, device, text)
        kind = next(k for k in result.kinds if k != "cross")  # roles are defined on self-attention
        if kind == "implicit":
            raise w.error("error.heads_implicit")
        new_state = {"result": result, "kind": kind, "untrained": choice.untrained}
        return {"headers": [w(k) for k in HEADERS], "data": score_rows(new_state)}, None, new_state

    def open_row(state: dict | None, evt: gr.SelectData, request: gr.Request):
        if not state:
            return None
        row = evt.row_value if evt.row_value is not None else None
        if row is None:
            return None
        layer, head = int(row[0]), int(row[1])
        result, kind = state["result"], state["kind"]
        m = [m for m in result.maps if m.kind == kind][layer]
        q, k = kind_labels(kind, result)
        return plots.head(m.weights[head], q, k, msg("title.head", kind=kind_title(kind, result), layer=layer, head=head),
                          mask=m.mask, untrained=state["untrained"], words=Words(request))

    button.click(run, [*controls.inputs, prompt], [table, figure, state], api_name="heads")
    table.select(open_row, state, figure, api_visibility="private")
