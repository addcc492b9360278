"""The Position-encoding lab: the encodings themselves, and "train short, test long"."""
from __future__ import annotations

import gradio as gr
import numpy as np

from .. import pe_lab, plots, zoo

HELP = """Each shipped position-encoding model was trained on 128-token windows. Past 128 tokens, learned
positions do not exist, sinusoidal and RoPE meet rotations they never saw, ALiBi only extends its linear
penalty, and NoPE has nothing to extend. The curves are each model's loss per position on the held-out works,
averaged over windows of 512 tokens (smoothed over 8 positions)."""


def extrapolation_figure():
    curves = pe_lab.loss_by_position()
    series, notes = {}, []
    for pe, c in curves.items():
        if c["loss"]:
            loss = np.convolve(np.asarray(c["loss"]), np.ones(8) / 8, mode="valid")
            series[f"{pe} ({c['model']})"] = (list(range(4, 4 + len(loss))), loss.tolist())
        elif c["note"]:
            notes.append(f"{pe}: {c['note']}")
    if not series:
        return None, "No position-encoding models are installed yet (python -m playground.train --zoo)."
    train_length = next(iter(curves.values()))["train_length"]
    fig = plots.lines(series, "Validation loss by position: train at 128, test up to 512",
                      x_title="position in the window", y_title="loss (nats/token)", vline=train_length,
                      vline_text="training length")
    return fig, "\n".join(f"- {n}" for n in notes)


def build_position_lab_tab():
    gr.Markdown(HELP)
    fig, notes = extrapolation_figure()
    gr.Plot(fig, label="Train short, test long")
    gr.Markdown(notes)
    with gr.Row():
        gr.Plot(plots.matrix(pe_lab.sinusoidal_matrix(), "Sinusoidal table (Vaswani et al. 2017)",
                             x_title="dimension", y_title="position", colorbar="value"))
        gr.Plot(plots.matrix(pe_lab.rope_angle_matrix(), "RoPE rotation angle per dimension pair (mod 2π)",
                             x_title="dimension pair i (θ_i = 10000^(-2i/d))", y_title="position",
                             colorscale="Twilight", colorbar="radians", zmid=None))
    with gr.Row():
        offsets = pe_lab.rope_score_by_offset()
        gr.Plot(plots.lines({"q·k (all-ones q, k)": (list(range(len(offsets))), offsets.tolist())},
                            "RoPE: q·k depends only on the offset m − n", x_title="offset m − n",
                            y_title="q·k"))
        gr.Plot(plots.matrix(pe_lab.alibi_matrix(), "ALiBi bias of head 0 (slope 1/4 of 4 heads), causal",
                             x_title="key position", y_title="query position", colorscale="Blues_r",
                             colorbar="bias", zmid=None))
    if "learned" in zoo.available():
        gr.Plot(plots.matrix(pe_lab.learned_similarity(), "Learned position embeddings: cosine similarity (zoo 'learned')",
                             x_title="position", y_title="position", colorbar="cosine"))
