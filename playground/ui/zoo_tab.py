"""The Zoo tab: every shipped model, what it changes, how well it does, what its cache costs."""
from __future__ import annotations

import gradio as gr

from .. import zoo


def zoo_rows() -> list[list]:
    rows = []
    for r in zoo.table():
        score = (f"{r['val_bits_per_char']:.3f}" if r["val_bits_per_char"] is not None else
                 f"accuracy {r['task_accuracy']:.1%}" if r["task_accuracy"] is not None else "")
        at_4x = f"{r['val_bits_per_char_4x']:.3f}" if r["val_bits_per_char_4x"] is not None else "n/a"
        rows.append([r["name"], r["about"], f"{r['parameters']:,}", score,
                     at_4x if r["val_bits_per_char"] is not None else "", f"{r['wall_time_s'] or 0:.0f}",
                     r["kv_bytes_per_token_fp32"]])
    return rows


def build_zoo_tab():
    gr.Markdown("Every model shares the tokenizer, the held-out works and the training budget, and differs from "
                "`baseline` in one choice. Validation is in bits per character on four Shakespeare works "
                "never seen in training, at the training length (128 tokens) and at 4× that length.")
    gr.Dataframe(zoo_rows(), headers=["model", "what differs", "parameters", "val bits/char (or task accuracy)",
                                      "at 4× length", "train s", "KV bytes/token or state (fp32)"], interactive=False,
                 wrap=True)
    gr.api(zoo.table, api_name="models")
