"""The Zoo tab: every shipped model, what it changes, how well it does, what its cache costs."""
from __future__ import annotations

import gradio as gr

from playground import zoo
from playground.ui import service
from .lang import Localized, Words, english, t

HEADERS = ["zoo.col_model", "zoo.col_about", "zoo.col_parameters", "zoo.col_score", "zoo.col_4x", "zoo.col_seconds",
           "zoo.col_kv"]


def zoo_rows(w: Words) -> list[list]:
    rows = []
    for r in zoo.table():
        score = (f"{r['val_bits_per_char']:.3f}" if r["val_bits_per_char"] is not None else
                 w("zoo.accuracy", accuracy=r["task_accuracy"]) if r["task_accuracy"] is not None else "")
        at_4x = f"{r['val_bits_per_char_4x']:.3f}" if r["val_bits_per_char_4x"] is not None else w("zoo.na")
        kv = w("zoo.fixed", bytes=f"{r['kv_bytes_fp32']:,}") if r["state_fixed"] else f"{r['kv_bytes_fp32']:,}"
        rows.append([r["name"], w.render(service.about(r["name"])), f"{r['parameters']:,}", score,
                     at_4x if r["val_bits_per_char"] is not None else "", f"{r['wall_time_s'] or 0:.0f}", kv])
    return rows


def build_zoo_tab(localized: Localized):
    gr.Markdown(t("zoo.help"))
    table = gr.Dataframe(headers=english(HEADERS), interactive=False, wrap=True)
    localized.add(table, lambda w, _: {"headers": [w(k) for k in HEADERS], "data": zoo_rows(w)})
    gr.api(zoo.table, api_name="models")
