"""The Head insights tab: per head, entropy, distance and role scores; a click opens the head."""
from __future__ import annotations

import gradio as gr

from .. import heads, plots, service
from .attention import kind_labels, kind_title
from .controls import Controls, choose

COLUMNS = ["layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink", "duplicate_token",
           "induction"]
HELP = """Scores are shares of a head's attention on the pairs a role expects (TransformerLens `detect_head`,
"mul"): **previous-token** (i → i−1), **duplicate-token** (earlier copies of the same token), **induction**
(the token after an earlier copy of the current token), **first-token sink** (mean attention on token 0,
a sink when > 0.3). **Entropy** in nats (low: focused); **mean distance** in tokens. Repeat a phrase in the
prompt to give induction heads something to find. Click a row to open that head."""


def score_rows(state: dict | None) -> list[list]:
    if not state:
        return []
    result = state["result"]
    kind = state["kind"]
    tokens = result.source_ids if kind == "encoder_self" else result.token_ids
    rows = heads.head_table(result.weights(kind), tokens)
    return [[r[c] if c in ("layer", "head") else round(r[c], 3) for c in COLUMNS] for r in rows]


def build_heads_tab(controls: Controls, prompt: gr.Textbox):
    state = gr.State(None)
    gr.Markdown(HELP)
    button = gr.Button("Score every head", variant="primary")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Heads (click a column header to sort)",
                         elem_id="head-table")
    figure = gr.Plot(label="Selected head")

    def run(family, variant, position, task, fallback, backend, device, text):
        choice, _ = choose(family, variant, position, task, fallback, backend, device)
        try:
            result, notes = service.analyze_text(choice, text)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        for note in notes:
            gr.Warning(note)
        kind = next(k for k in result.kinds if k != "cross")  # roles are defined on self-attention
        if kind == "implicit":
            raise gr.Error("Head roles are shares of softmax attention (rows summing to 1); RWKV and Mamba's "
                           "implicit attention is signed and unnormalised. Pick a Transformer architecture.")
        new_state = {"result": result, "kind": kind, "untrained": choice.untrained}
        return score_rows(new_state), None, new_state

    def open_row(state: dict | None, evt: gr.SelectData):
        if not state:
            return None
        row = evt.row_value if evt.row_value is not None else None
        if row is None:
            return None
        layer, head = int(row[0]), int(row[1])
        result, kind = state["result"], state["kind"]
        m = [m for m in result.maps if m.kind == kind][layer]
        q, k = kind_labels(kind, result)
        return plots.head(m.weights[head], q, k, f"{kind_title(kind, result)} · layer {layer}, head {head}",
                          mask=m.mask, untrained=state["untrained"])

    button.click(run, [*controls.inputs, prompt], [table, figure, state], api_name="heads")
    table.select(open_row, state, figure, api_visibility="private")
