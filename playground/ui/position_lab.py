"""The Position-encoding lab: the encodings themselves, and "train short, test long"."""
from __future__ import annotations

from functools import lru_cache

import gradio as gr
import numpy as np

from playground.inspect import positions as pe_lab
from playground import plots
from playground import zoo
from playground.ui.i18n import msg
from .lang import Localized, Words, t


@lru_cache(maxsize=4)
def extrapolation_figure(lang: str = "en"):
    """Each position-encoding model's validation loss by position (smoothed over 8), and notes on those without."""
    curves = pe_lab.loss_by_position()
    series, notes = {}, []
    for pe, c in curves.items():
        if c["loss"]:
            loss = np.convolve(np.asarray(c["loss"]), np.ones(8) / 8, mode="valid")
            series[f"{pe} ({c['model']})"] = (list(range(4, 4 + len(loss))), loss.tolist())
        elif c["note"]:
            notes.append(msg("positions.no_curve", pe=pe, model=c["model"], train=c["train_length"], reason=c["note"]))
    if not series:
        return None, [msg("positions.none_installed")]
    train_length = next(iter(curves.values()))["train_length"]
    fig = plots.lines(series, msg("positions.extrapolation_title", train=train_length, test=4 * train_length),
                      x_title=msg("positions.position_axis"), y_title=msg("positions.loss_axis"), vline=train_length,
                      vline_text=msg("positions.training_length"), words=Words(lang=lang))
    return fig, notes


@lru_cache(maxsize=4)
def encoding_figures(lang: str = "en") -> dict:
    """The encodings themselves: name -> figure."""
    offsets = pe_lab.rope_score_by_offset()
    figures = {
        "sinusoidal": plots.matrix(pe_lab.sinusoidal_matrix(), msg("positions.sinusoidal"),
                                   x_title=msg("positions.dimension"), y_title=msg("positions.position"),
                                   colorbar=msg("positions.value"), words=Words(lang=lang)),
        "rope_angles": plots.matrix(pe_lab.rope_angle_matrix(), msg("positions.rope_angles"),
                                    x_title=msg("positions.pair_axis"), y_title=msg("positions.position"),
                                    colorscale="Twilight", colorbar=msg("positions.radians"), zmid=None, words=Words(lang=lang)),
        "rope_offset": plots.lines({msg("positions.rope_series"): (list(range(len(offsets))), offsets.tolist())},
                                   msg("positions.rope_offset"), x_title=msg("positions.offset_axis"),
                                   y_title="q·k", words=Words(lang=lang)),
        "alibi": plots.matrix(pe_lab.alibi_matrix(), msg("positions.alibi"), x_title=msg("positions.key_position"),
                              y_title=msg("positions.query_position"), colorscale="Blues_r",
                              colorbar=msg("positions.bias"), zmid=None, words=Words(lang=lang)),
    }
    if "learned" in zoo.available():
        figures["learned"] = plots.matrix(pe_lab.learned_similarity(), msg("positions.learned"),
                                          x_title=msg("positions.position"), y_title=msg("positions.position"),
                                          colorbar=msg("positions.cosine"), words=Words(lang=lang))
    return figures


def build_position_lab_tab(localized: Localized):
    gr.Markdown(t("positions.help"))
    curve = gr.Plot(label=t("positions.train_short"))
    notes = gr.Markdown()
    localized.add(curve, lambda w, _: extrapolation_figure(w.lang)[0])
    localized.add(notes, lambda w, _: "\n".join(f"- {w.render(n)}" for n in extrapolation_figure(w.lang)[1]))
    names = list(encoding_figures())
    rows = [names[i:i + 2] for i in range(0, len(names), 2)]
    for row in rows:
        with gr.Row():
            for name in row:
                plot = gr.Plot(show_label=False)
                localized.add(plot, lambda w, _, name=name: encoding_figures(w.lang)[name])
