"""The labs: the KV-cache calculator's variants and layer kinds, and the plain matrices and lines of the
position-encoding and kernel labs."""
from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go

from .base import WORDS, ENGLISH, safe, _layout


def variant_label(row: dict, words=ENGLISH) -> str:
    """'GQA (8 K/V heads)', 'MQA (1 K/V head)', 'MLA (latent 512 + rope 64)': a row of ``cache.whatif``."""
    if row["variant"] == "MLA":
        return words("kv.mla", latent=row["d_latent"], rope=row["d_rope"])
    if row["kv_heads"] == 1:
        return words("kv.one_head", variant=row["variant"])
    return words("kv.heads", variant=row["variant"], n=row["kv_heads"])


def kv_whatif(rows: list[dict], title, words=ENGLISH) -> go.Figure:
    """Bars of cache GiB per attention variant; rows from ``cache.whatif``."""
    fig = go.Figure(go.Bar(x=[safe(variant_label(r, words)) for r in rows], y=[r["gib"] for r in rows],
                           text=[f"{r['gib']:,.2f} GiB" for r in rows], textposition="outside",
                           marker_color=["#2b6cb0", "#3182ce", "#63b3ed", "#805ad5"][: len(rows)],
                           hovertemplate="%{x}: %{y:,.3f} GiB<extra></extra>"))
    return _layout(fig, title, height=380, words=words, yaxis=dict(title="GiB", gridcolor="#eee"))


WORDS.update({
    'plot.context_tokens': 'context (tokens)',
    'plot.gib_hover': '%{x:,.0f} tokens: %{y:,.3f} GiB',
    'plot.generic_formula': 'generic formula 2·L·n_kv·hd',
})


LAYER_KIND_COLOURS = ("#2b6cb0", "#63b3ed", "#805ad5", "#38a169", "#a0aec0")  # bands; the generic line is red


def kv_by_layer_kind(context: np.ndarray, parts: dict, generic: np.ndarray | None, title,
                     words=ENGLISH) -> go.Figure:
    """Cache GiB over context length, counted layer by layer: one stacked band per kind of layer, the
    generic formula as a dashed line over them (the gap between the two is what the formula gets wrong).

    context: (n,) token counts. parts: band name (translated) -> (n,) GiB. generic: (n,) GiB, or None
    for a model the formula does not describe (no attention heads).
    """
    fig = go.Figure()
    for (name, gib), colour in zip(parts.items(), itertools.cycle(LAYER_KIND_COLOURS)):
        fig.add_trace(go.Scatter(x=context, y=gib, mode="lines", stackgroup="layers", name=safe(name),
                                 line=dict(color=colour, width=1),
                                 hovertemplate=f"{safe(name)}<br>{words('plot.gib_hover')}<extra></extra>"))
    if generic is not None:
        name = safe(words("plot.generic_formula"))
        fig.add_trace(go.Scatter(x=context, y=generic, mode="lines", name=name,
                                 line=dict(dash="dash", color="#c53030", width=2),
                                 hovertemplate=f"{name}<br>{words('plot.gib_hover')}<extra></extra>"))
    return _layout(fig, title, height=420, words=words,
                   xaxis=dict(title=words("plot.context_tokens"), gridcolor="#eee"),
                   yaxis=dict(title="GiB", gridcolor="#eee", rangemode="tozero"), legend=dict(orientation="h", y=-0.2))


def matrix(z: np.ndarray, title, *, x_title, y_title, colorscale: str = "RdBu_r",
           colorbar="", zmid: float | None = 0.0, words=ENGLISH) -> go.Figure:
    """A plain numeric matrix (position encodings, similarities)."""
    x_title, y_title, colorbar = (words.render(t) for t in (x_title, y_title, colorbar))
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), colorscale=colorscale, zmid=zmid, colorbar=dict(title=colorbar),
                               hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.3f}}<extra></extra>"))
    return _layout(fig, title, height=420, words=words, xaxis=dict(title=x_title),
                   yaxis=dict(title=y_title, autorange="reversed"))


def lines(series: dict, title, *, x_title, y_title, vline: float | None = None, vline_text="",
          log_y: bool = False, words=ENGLISH) -> go.Figure:
    """Named (x, y) series as lines; an optional vertical marker (the training length)."""
    fig = go.Figure()
    for name, (xs, ys) in series.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(words.render(name))))
    if vline is not None:
        fig.add_vline(x=vline, line=dict(dash="dash", color="#888"), annotation_text=safe(words.render(vline_text)))
    return _layout(fig, title, height=420, words=words, xaxis=dict(title=words.render(x_title), gridcolor="#eee"),
                   yaxis=dict(title=words.render(y_title), type="log" if log_y else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))
