"""Figures: pure functions from plain data (numpy, lists) to Plotly figures.

Attention weights use one colour scale from 0 to 1 with a colour bar; masks are two-coloured.
Token labels are escaped for Plotly's text renderer, and numbered so repeated tokens stay
distinct on categorical axes. Overviews are downsampled (max over blocks, said in the title)
so a long prompt stays light to send and to draw; a single head opens at full resolution.

Every builder takes ``lang`` ('en' or 'zh-CN') for the words it writes itself (axis titles, hover
text); titles and series names may be plain strings or ``i18n.Message`` values, rendered in ``lang``.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from .i18n import render, text

WEIGHT_SCALE = "Viridis"
MASK_COLOURS = [[0.0, "#e9e9ef"], [1.0, "#2b6cb0"]]
FONT = dict(family="Inter, 'WenQuanYi Micro Hei', sans-serif", size=12)


def safe(label) -> str:
    """Escape a label for Plotly, which renders a subset of HTML in text."""
    return html.escape(str(label), quote=False)


def axis_labels(labels: list[str], start: int = 0) -> list[str]:
    """Unique, escaped category names numbered by position from ``start``: '3 ␣the'."""
    return [f"{i} {safe(t)}" for i, t in enumerate(labels, start)]


def colour_axis(values: np.ndarray, signed: bool, lang: str = "en", scale_title=None) -> dict:
    """Weights: 0..1 sequential. Signed values (implicit attention, differences): a diverging scale
    symmetric about 0. ``scale_title`` names the colour bar (default: weight, or implicit α when signed)."""
    title = render(scale_title, lang) if scale_title else text(lang, "plot.implicit" if signed else "plot.weight")
    if not signed:
        return dict(colorscale=WEIGHT_SCALE, cmin=0, cmax=1, colorbar=dict(title=title))
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    return dict(colorscale="RdBu_r", cmin=-bound, cmax=bound, cmid=0, colorbar=dict(title=title))


def downsample_max(a: np.ndarray, size: int, signed: bool = False) -> tuple[np.ndarray, int]:
    """Max-pool the last two axes so neither exceeds ``size`` (signed: keep the value of largest
    magnitude in each block). Returns (array, block)."""
    block = int(np.ceil(max(a.shape[-2:]) / size)) if max(a.shape[-2:]) > size else 1
    if block == 1:
        return a, 1
    tq, tk = a.shape[-2:]
    pad = ((0, 0),) * (a.ndim - 2) + ((0, (-tq) % block), (0, (-tk) % block))
    padded = np.pad(a, pad, constant_values=0)
    shape = padded.shape[:-2] + (padded.shape[-2] // block, block, padded.shape[-1] // block, block)
    blocks = padded.reshape(shape)
    if not signed:
        return blocks.max(axis=(-3, -1)), block
    hi, lo = blocks.max(axis=(-3, -1)), blocks.min(axis=(-3, -1))
    return np.where(np.abs(hi) >= np.abs(lo), hi, lo), block


def _status(untrained: bool, lang: str) -> str:
    return " · " + text(lang, "plot.untrained") if untrained else ""


def _layout(fig: go.Figure, title, height: int, lang: str = "en", **extra) -> go.Figure:
    fig.update_layout(title=dict(text=render(title, lang), x=0.01, font=dict(size=14)), height=height, font=FONT,
                      margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white", **extra)
    return fig


def overview(weights: np.ndarray, title, *, row_names: list[str] | None = None, max_px: int = 128,
             max_cells: int = 160_000, untrained: bool = False, signed: bool = False, lang: str = "en",
             kind: str = "") -> go.Figure:
    """A layer x head grid of heatmaps, drawn as one heatmap with blank gutters (fast to send and draw).

    Args:
        weights: (n_layer, nh, Tq, Tk), values 0..1 (or any sign with ``signed``: implicit attention).
        row_names: one name per layer row (default "layer i").
        max_px: at most this many cells per head side; fewer when the grid would exceed max_cells.
        kind: the attention kind, written into ``layout.meta`` with the grid's geometry
            ({"kind", "rows", "cols", "gap"}: a head's cells and the gutter after them), so a click
            on a cell can name its layer (row // (rows + gap)) and head (col // (cols + gap)).
    Hover names the layer, head, query and key (block indices when downsampled).
    """
    L, H, tq, tk = weights.shape
    side = max(16, min(max_px, int(np.sqrt(max_cells / (L * H)))))
    small, block = downsample_max(weights.astype(np.float32), side, signed)
    sq, sk = small.shape[-2:]
    gap = max(1, sk // 12)
    grid = np.full((L * (sq + gap) - gap, H * (sk + gap) - gap), np.nan, dtype=np.float32)
    for l in range(L):
        for h in range(H):
            grid[l * (sq + gap): l * (sq + gap) + sq, h * (sk + gap): h * (sk + gap) + sk] = small[l, h]
    row_names = row_names or [text(lang, "plot.layer", i=i) for i in range(L)]
    unit = text(lang, "plot.block_unit", block=block) if block > 1 else text(lang, "plot.token_unit")
    head_name = [text(lang, "plot.head", h=h) for h in range(H)]
    ys = [f"{safe(row_names[l])} · q{i}" for l in range(L) for i in range(sq)]
    xs = [f"{head_name[h]} · k{j}" for h in range(H) for j in range(sk)]
    ys = _with_gutters(ys, sq, gap, L)
    xs = _with_gutters(xs, sk, gap, H)
    fig = go.Figure(go.Heatmap(z=grid, x=xs, y=ys, coloraxis="coloraxis", hoverongaps=False,
                               hovertemplate=f"%{{y}} → %{{x}} ({unit})<br>{text(lang, 'plot.weight')} %{{z:.3f}}<extra></extra>"))
    tick_y = [ys[l * (sq + gap) + sq // 2] for l in range(L)]
    tick_x = [xs[h * (sk + gap) + sk // 2] for h in range(H)]
    note = " · " + text(lang, "plot.pooled_signed" if signed else "plot.pooled", block=block) if block > 1 else ""
    title = f"{render(title, lang)} · {text(lang, 'plot.tokens_grid', tq=tq, tk=tk)}{note}{_status(untrained, lang)}"
    return _layout(fig, title, height=max(300, 150 * L + 90), lang=lang,
                   coloraxis=colour_axis(small, signed, lang), meta=dict(kind=kind, rows=sq, cols=sk, gap=gap),
                   xaxis=dict(type="category", tickvals=tick_x, ticktext=head_name,
                              side="top", showgrid=False),
                   yaxis=dict(type="category", tickvals=tick_y, ticktext=[safe(n) for n in row_names],
                              autorange="reversed", showgrid=False, scaleanchor="x"))


def _with_gutters(names: list[str], size: int, gap: int, count: int) -> list[str]:
    """Insert ``gap`` unique blank category names after every ``size`` names."""
    out = []
    for c in range(count):
        out.extend(names[c * size:(c + 1) * size])
        if c < count - 1:
            out.extend("\u2009" * (c * gap + g + 1) for g in range(gap))
    return out


def head(weights: np.ndarray, q_labels: list[str], k_labels: list[str], title, *,
         mask: np.ndarray | None = None, untrained: bool = False, signed: bool = False, lang: str = "en",
         scale_title=None) -> go.Figure:
    """One head at full resolution, tokens on both axes; masked cells left blank ("masked" on hover).

    Args:
        weights: (Tq, Tk). mask: (Tq, Tk) bool, True where attention was allowed.
    """
    z = weights.astype(np.float32)
    if mask is not None:
        z = np.where(mask, z, np.nan)
    fig = go.Figure(go.Heatmap(
        z=z, x=axis_labels(k_labels), y=axis_labels(q_labels), coloraxis="coloraxis", hoverongaps=False,
        hovertemplate=_hover(lang, "plot.weight", ":.4f")))
    side = min(900, max(420, 14 * len(q_labels) + 160))
    return _layout(fig, render(title, lang) + _status(untrained, lang), height=side, lang=lang,
                   coloraxis=colour_axis(z, signed, lang, scale_title),
                   xaxis=dict(title=text(lang, "plot.key_axis"), tickangle=-60, type="category"),
                   yaxis=dict(title=text(lang, "plot.query_axis"), autorange="reversed", type="category"))


def _hover(lang: str, value_key: str, fmt: str = "") -> str:
    """'query <q><br>key <k><br><value word> <z>' in ``lang``."""
    return (f"{text(lang, 'plot.query')} %{{y}}<br>{text(lang, 'plot.key')} %{{x}}<br>"
            f"{text(lang, value_key)} %{{z{fmt}}}<extra></extra>")


def mask(allowed: np.ndarray, q_labels: list[str], k_labels: list[str], title, lang: str = "en") -> go.Figure:
    """The boolean mask a layer computed with: blue may attend, grey may not. (Tq, Tk)"""
    fig = go.Figure(go.Heatmap(
        z=allowed.astype(np.int8), x=axis_labels(k_labels), y=axis_labels(q_labels), zmin=0, zmax=1,
        colorscale=MASK_COLOURS, colorbar=dict(title=text(lang, "plot.mask"), tickvals=[0, 1],
                                               ticktext=[text(lang, "plot.blocked"), text(lang, "plot.allowed")]),
        hovertemplate=_hover(lang, "plot.allowed")))
    side = min(700, max(360, 12 * len(q_labels) + 160))
    return _layout(fig, title, height=side, lang=lang,
                   xaxis=dict(title=text(lang, "plot.key"), tickangle=-60, type="category"),
                   yaxis=dict(title=text(lang, "plot.query"), autorange="reversed", type="category"))


def mask_overlay(weights: np.ndarray, allowed: np.ndarray, q_labels: list[str], k_labels: list[str],
                 title, signed: bool = False, lang: str = "en") -> go.Figure:
    """Weights where allowed, the mask's blocked cells grey on top. (Tq, Tk)"""
    fig = head(weights, q_labels, k_labels, title, mask=allowed, signed=signed, lang=lang)
    blocked = np.where(allowed, np.nan, 1.0)
    fig.add_trace(go.Heatmap(z=blocked, x=axis_labels(k_labels), y=axis_labels(q_labels), showscale=False,
                             colorscale=[[0, "#bbbbbb"], [1, "#bbbbbb"]], hoverongaps=False,
                             hovertemplate=(f"{text(lang, 'plot.query')} %{{y}}<br>{text(lang, 'plot.key')} %{{x}}<br>"
                                            f"{text(lang, 'plot.blocked_by_mask')}<extra></extra>")))
    return fig


def kv_growth(tokens: list[int], measured_bytes: list[int], formulas: dict, *, label,
              log: bool = False, max_tokens: int | None = None, lang: str = "en") -> go.Figure:
    """Cache bytes against tokens held: measured from the model, and by formula for each variant.

    formulas: name -> {"per_token": bytes, "fixed": bytes, optional "cap": tokens} (fixed: recurrent
        state; cap: a sliding window, the cache stops growing at that many positions).
    """
    span = max_tokens or (max(tokens) if tokens else 1)
    xs = np.linspace(1, span, 64)
    fig = go.Figure()
    for name, f in formulas.items():
        name = render(name, lang)
        dash = "dot" if f["fixed"] else "dash"
        held = np.minimum(xs, f["cap"]) if f.get("cap") else xs
        fig.add_trace(go.Scatter(x=xs, y=f["fixed"] + f["per_token"] * held, mode="lines", name=safe(name),
                                 line=dict(dash=dash, width=1.5),
                                 hovertemplate=f"{safe(name)}<br>{text(lang, 'plot.formula_hover')}<extra></extra>"))
    fig.add_trace(go.Scatter(x=tokens, y=measured_bytes, mode="lines+markers",
                             name=text(lang, "plot.measured", label=safe(render(label, lang))),
                             line=dict(width=3, color="black"), marker=dict(size=5),
                             hovertemplate=f"{text(lang, 'plot.measured_hover')}<extra></extra>"))
    return _layout(fig, text(lang, "plot.kv_title"), height=440, lang=lang,
                   xaxis=dict(title=text(lang, "plot.tokens_in_cache"), gridcolor="#eee"),
                   yaxis=dict(title=text(lang, "plot.bytes"), type="log" if log else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))


def step_rows(rows: np.ndarray, k_labels: list[str], title, *, new_token: str = "",
              untrained: bool = False, signed: bool = False, lang: str = "en", key_start: int = 0) -> go.Figure:
    """One decode step: the new query's attention over every cached key, one row per layer/head.

    rows: (n_layer, nh, Tk). key_start: the position of the first key (a sliding window drops older ones).
    """
    L, H, tk = rows.shape
    names = [f"L{l} H{h}" for l in range(L) for h in range(H)]
    fig = go.Figure(go.Heatmap(z=rows.reshape(L * H, tk), x=axis_labels(k_labels, key_start), y=names, coloraxis="coloraxis",
                               hovertemplate=(f"%{{y}}<br>{text(lang, 'plot.key')} %{{x}}<br>"
                                              f"{text(lang, 'plot.weight')} %{{z:.4f}}<extra></extra>")))
    title = f"{render(title, lang)} → {text(lang, 'plot.next_token', token=safe(new_token))}{_status(untrained, lang)}"
    return _layout(fig, title, height=max(300, 22 * L * H + 160), lang=lang,
                   coloraxis=colour_axis(rows, signed=signed, lang=lang),
                   xaxis=dict(title=text(lang, "plot.key_in_cache"), tickangle=-60, type="category"),
                   yaxis=dict(autorange="reversed", type="category"))


def kv_whatif(rows: list[dict], title, lang: str = "en") -> go.Figure:
    """Bars of cache GiB per attention variant; rows from ``cache.whatif``."""
    fig = go.Figure(go.Bar(x=[safe(render(r["variant"], lang)) for r in rows], y=[r["gib"] for r in rows],
                           text=[f"{r['gib']:,.2f} GiB" for r in rows], textposition="outside",
                           marker_color=["#2b6cb0", "#3182ce", "#63b3ed", "#805ad5"][: len(rows)],
                           hovertemplate="%{x}: %{y:,.3f} GiB<extra></extra>"))
    return _layout(fig, title, height=380, lang=lang, yaxis=dict(title="GiB", gridcolor="#eee"))


def matrix(z: np.ndarray, title, *, x_title, y_title, colorscale: str = "RdBu_r",
           colorbar="", zmid: float | None = 0.0, lang: str = "en") -> go.Figure:
    """A plain numeric matrix (position encodings, similarities)."""
    x_title, y_title, colorbar = (render(t, lang) for t in (x_title, y_title, colorbar))
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), colorscale=colorscale, zmid=zmid, colorbar=dict(title=colorbar),
                               hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.3f}}<extra></extra>"))
    return _layout(fig, title, height=420, lang=lang, xaxis=dict(title=x_title),
                   yaxis=dict(title=y_title, autorange="reversed"))


def lines(series: dict, title, *, x_title, y_title, vline: float | None = None, vline_text="",
          log_y: bool = False, lang: str = "en") -> go.Figure:
    """Named (x, y) series as lines; an optional vertical marker (the training length)."""
    fig = go.Figure()
    for name, (xs, ys) in series.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(render(name, lang))))
    if vline is not None:
        fig.add_vline(x=vline, line=dict(dash="dash", color="#888"), annotation_text=safe(render(vline_text, lang)))
    return _layout(fig, title, height=420, lang=lang, xaxis=dict(title=render(x_title, lang), gridcolor="#eee"),
                   yaxis=dict(title=render(y_title, lang), type="log" if log_y else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))
