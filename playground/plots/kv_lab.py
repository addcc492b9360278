"""The KV-cache lab: what each cache policy holds against what the model loses for it, how its cache grows, and
which keys it kept at one step."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import ENGLISH, WORDS, _layout, axis_labels, safe

WORDS.update({
    "plot.kv_share": "cache held (share of the full cache's bytes, mean over the text)",
    "plot.nll_increase": "next-token loss increase (nats)",
    "plot.kv_point_hover": "%{text}<br>cache %{x:.0%} of full<br>loss +%{y:.4f} nats<br>%{customdata}<extra></extra>",
    "plot.kl_agree": "KL {kl:.4f} nats · same top token {agree:.0%}",
    "plot.step_axis": "tokens read",
    "plot.formula_of": "{name}, by formula",
    "plot.full_cache": "full cache",
    "plot.kept_hover": "%{y}<br>key %{x}<br>full cache's weight %{z:.4f}<extra></extra>",
})
POLICY_COLOURS = ("#1a202c", "#2b6cb0", "#38a169", "#d69e2e", "#805ad5", "#c53030", "#dd6b20", "#319795")


def kv_tradeoff(points: list[dict], title, words=ENGLISH, family_names: dict | None = None) -> go.Figure:
    """Bytes against loss: the share of the full cache's bytes each run held (x) against the increase of the text's
    next-token loss (y), one curve per family (a policy at each knob setting, or another architecture: one point).
    points: ``PolicyRun.summary`` dicts (policy, family, bytes_share, nll_increase, kl, top1_agreement);
    family_names: what the legend calls each family (default: the family)."""
    fig = go.Figure()
    families = list(dict.fromkeys(p["family"] for p in points))
    for family, colour in zip(families, POLICY_COLOURS * (1 + len(families) // len(POLICY_COLOURS))):
        mine = sorted((p for p in points if p["family"] == family), key=lambda p: p["bytes_share"])
        fig.add_trace(go.Scatter(
            x=[p["bytes_share"] for p in mine], y=[p["nll_increase"] for p in mine],
            mode="lines+markers+text" if len(mine) > 1 else "markers+text", name=safe((family_names or {}).get(
                family, family)), text=[safe(p["policy"]) for p in mine], textposition="top center",
            customdata=[words("plot.kl_agree", kl=p["kl"], agree=p["top1_agreement"]) for p in mine],
            marker=dict(size=13, color=colour), line=dict(color=colour, width=2),
            hovertemplate=words("plot.kv_point_hover")))
    return _layout(fig, title, height=440, words=words,
                   xaxis=dict(title=words("plot.kv_share"), tickformat=".0%", gridcolor="#eee", rangemode="tozero"),
                   yaxis=dict(title=words("plot.nll_increase"), gridcolor="#eee", zeroline=True, zerolinecolor="#999"),
                   legend=dict(orientation="h", y=-0.2))


def kv_policy_growth(series: dict, formulas: dict, title, words=ENGLISH) -> go.Figure:
    """Bytes every layer's cache holds after each token read, measured (solid) and by formula (dashed), one
    colour per policy. series, formulas: name -> (tokens read, bytes)."""
    fig = go.Figure()
    for (name, (xs, ys)), colour in zip(series.items(), POLICY_COLOURS * 4):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(name), line=dict(color=colour, width=3),
                                 legendgroup=safe(name)))
        if name in formulas:
            fx, fy = formulas[name]
            fig.add_trace(go.Scatter(x=fx, y=fy, mode="lines", name=words("plot.formula_of", name=safe(name)),
                                     line=dict(color=colour, width=1.5, dash="dash"), legendgroup=safe(name),
                                     showlegend=False))
    return _layout(fig, title, height=440, words=words,
                   xaxis=dict(title=words("plot.step_axis"), gridcolor="#eee"),
                   yaxis=dict(title=words("plot.bytes"), gridcolor="#eee", rangemode="tozero"),
                   legend=dict(orientation="h", y=-0.2))


def kv_kept_map(row: np.ndarray, kept: dict, labels: list[str], title, words=ENGLISH) -> go.Figure:
    """At one step, the full cache's attention of one head over every key (the first row), and below it, per
    policy, the same weights where that policy's cache kept the key and blank where it had dropped it.
    row: (Tk,) the full cache's weights; kept: policy name -> positions kept (ints < Tk); labels: Tk tokens."""
    names = [safe(words("plot.full_cache"))] + [safe(name) for name in kept]
    z = np.full((len(names), len(row)), np.nan, dtype=np.float32)
    z[0] = row
    for i, positions in enumerate(kept.values(), 1):
        z[i, np.asarray(positions, dtype=np.int64)] = row[np.asarray(positions, dtype=np.int64)]
    fig = go.Figure(go.Heatmap(z=z, x=axis_labels(labels), y=names, colorscale="Blues", zmin=0,
                               zmax=float(max(row.max(), 1e-6)), colorbar=dict(title=words("plot.weight")),
                               hovertemplate=words("plot.kept_hover"), xgap=1, ygap=2))
    fig = _layout(fig, title, height=max(260, 46 * len(names) + 170), words=words,
                  xaxis=dict(type="category", tickangle=-60, title=words("plot.key")),
                  yaxis=dict(autorange="reversed", type="category"))
    return fig.update_layout(plot_bgcolor="#e2e2e2")  # a dropped key: the grey between the kept ones
