"""Figures: pure functions from plain data (numpy, lists) to Plotly figures.

Attention weights use one colour scale from 0 to 1 with a colour bar; masks are two-coloured.
Token labels are escaped for Plotly's text renderer, and numbered so repeated tokens stay
distinct on categorical axes. Overviews are downsampled (max over blocks, said in the title)
so a long prompt stays light to send and to draw; a single head opens at full resolution.
"""
from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

WEIGHT_SCALE = "Viridis"
MASK_COLOURS = [[0.0, "#e9e9ef"], [1.0, "#2b6cb0"]]
FONT = dict(family="Inter, 'WenQuanYi Micro Hei', sans-serif", size=12)


def safe(text: str) -> str:
    """Escape a label for Plotly, which renders a subset of HTML in text."""
    return html.escape(str(text), quote=False)


def axis_labels(labels: list[str]) -> list[str]:
    """Unique, escaped category names: '3 ␣the'."""
    return [f"{i} {safe(t)}" for i, t in enumerate(labels)]


def colour_axis(values: np.ndarray, signed: bool) -> dict:
    """Weights: 0..1 sequential. Signed implicit attention: a diverging scale symmetric about 0."""
    if not signed:
        return dict(colorscale=WEIGHT_SCALE, cmin=0, cmax=1, colorbar=dict(title="weight"))
    bound = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    return dict(colorscale="RdBu_r", cmin=-bound, cmax=bound, cmid=0, colorbar=dict(title="implicit α"))


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


def _layout(fig: go.Figure, title: str, height: int, **extra) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=14)), height=height, font=FONT,
                      margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white", **extra)
    return fig


def overview(weights: np.ndarray, title: str, *, row_names: list[str] | None = None, max_px: int = 128,
             max_cells: int = 160_000, untrained: bool = False, signed: bool = False) -> go.Figure:
    """A layer x head grid of heatmaps, drawn as one heatmap with blank gutters (fast to send and draw).

    Args:
        weights: (n_layer, nh, Tq, Tk), values 0..1 (or any sign with ``signed``: implicit attention).
        row_names: one name per layer row (default "layer i").
        max_px: at most this many cells per head side; fewer when the grid would exceed max_cells.
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
    row_names = row_names or [f"layer {i}" for i in range(L)]
    unit = f"block of {block}" if block > 1 else "token"
    ys = [f"{safe(row_names[l])} · q{i}" for l in range(L) for i in range(sq)]
    xs = [f"head {h} · k{j}" for h in range(H) for j in range(sk)]
    ys = _with_gutters(ys, sq, gap, L)
    xs = _with_gutters(xs, sk, gap, H)
    fig = go.Figure(go.Heatmap(z=grid, x=xs, y=ys, coloraxis="coloraxis", hoverongaps=False,
                               hovertemplate=f"%{{y}} → %{{x}} ({unit} indices)<br>weight %{{z:.3f}}<extra></extra>"))
    tick_y = [ys[l * (sq + gap) + sq // 2] for l in range(L)]
    tick_x = [xs[h * (sk + gap) + sk // 2] for h in range(H)]
    note = f" · {'largest |α|' if signed else 'max'} over {block}×{block} blocks" if block > 1 else ""
    status = " · UNTRAINED (random weights)" if untrained else ""
    return _layout(fig, f"{title} · {tq}×{tk} tokens{note}{status}", height=max(300, 150 * L + 90),
                   coloraxis=colour_axis(small, signed),
                   xaxis=dict(type="category", tickvals=tick_x, ticktext=[f"head {h}" for h in range(H)],
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


def head(weights: np.ndarray, q_labels: list[str], k_labels: list[str], title: str, *,
         mask: np.ndarray | None = None, untrained: bool = False, signed: bool = False) -> go.Figure:
    """One head at full resolution, tokens on both axes; masked cells left blank ("masked" on hover).

    Args:
        weights: (Tq, Tk). mask: (Tq, Tk) bool, True where attention was allowed.
    """
    z = weights.astype(np.float32)
    if mask is not None:
        z = np.where(mask, z, np.nan)
    fig = go.Figure(go.Heatmap(
        z=z, x=axis_labels(k_labels), y=axis_labels(q_labels), coloraxis="coloraxis", hoverongaps=False,
        hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>"))
    status = " · UNTRAINED (random weights)" if untrained else ""
    side = min(900, max(420, 14 * len(q_labels) + 160))
    return _layout(fig, title + status, height=side, coloraxis=colour_axis(z, signed),
                   xaxis=dict(title="key (attended to)", tickangle=-60, type="category"),
                   yaxis=dict(title="query (attending)", autorange="reversed", type="category"))


def mask(allowed: np.ndarray, q_labels: list[str], k_labels: list[str], title: str) -> go.Figure:
    """The boolean mask a layer computed with: blue may attend, grey may not. (Tq, Tk)"""
    fig = go.Figure(go.Heatmap(
        z=allowed.astype(np.int8), x=axis_labels(k_labels), y=axis_labels(q_labels), zmin=0, zmax=1,
        colorscale=MASK_COLOURS, colorbar=dict(title="mask", tickvals=[0, 1], ticktext=["blocked", "allowed"]),
        hovertemplate="query %{y}<br>key %{x}<br>allowed %{z}<extra></extra>"))
    side = min(700, max(360, 12 * len(q_labels) + 160))
    return _layout(fig, title, height=side, xaxis=dict(title="key", tickangle=-60, type="category"),
                   yaxis=dict(title="query", autorange="reversed", type="category"))


def mask_overlay(weights: np.ndarray, allowed: np.ndarray, q_labels: list[str], k_labels: list[str],
                 title: str, signed: bool = False) -> go.Figure:
    """Weights where allowed, the mask's blocked cells grey on top. (Tq, Tk)"""
    fig = head(weights, q_labels, k_labels, title, mask=allowed, signed=signed)
    blocked = np.where(allowed, np.nan, 1.0)
    fig.add_trace(go.Heatmap(z=blocked, x=axis_labels(k_labels), y=axis_labels(q_labels), showscale=False,
                             colorscale=[[0, "#bbbbbb"], [1, "#bbbbbb"]], hoverongaps=False,
                             hovertemplate="query %{y}<br>key %{x}<br>blocked by the mask<extra></extra>"))
    return fig


def kv_growth(tokens: list[int], measured_bytes: list[int], formulas: dict[str, dict], *, label: str,
              log: bool = False, max_tokens: int | None = None) -> go.Figure:
    """Cache bytes against tokens held: measured from the model, and by formula for each variant.

    formulas: name -> {"per_token": bytes, "fixed": bytes} (fixed for recurrent state).
    """
    span = max_tokens or (max(tokens) if tokens else 1)
    xs = np.linspace(1, span, 64)
    fig = go.Figure()
    for name, f in formulas.items():
        dash = "dot" if f["fixed"] else "dash"
        fig.add_trace(go.Scatter(x=xs, y=f["fixed"] + f["per_token"] * xs, mode="lines", name=safe(name),
                                 line=dict(dash=dash, width=1.5),
                                 hovertemplate=f"{safe(name)}<br>%{{x:.0f}} tokens: %{{y:,.0f}} bytes<extra></extra>"))
    fig.add_trace(go.Scatter(x=tokens, y=measured_bytes, mode="lines+markers", name=f"measured: {safe(label)}",
                             line=dict(width=3, color="black"), marker=dict(size=5),
                             hovertemplate="%{x} tokens in cache: %{y:,} bytes (measured)<extra></extra>"))
    return _layout(fig, "KV cache (or recurrent state) bytes vs tokens held", height=440,
                   xaxis=dict(title="tokens in the cache", gridcolor="#eee"),
                   yaxis=dict(title="bytes", type="log" if log else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))


def step_rows(rows: np.ndarray, k_labels: list[str], title: str, *, new_token: str = "",
              untrained: bool = False, signed: bool = False) -> go.Figure:
    """One decode step: the new query's attention over every cached key, one row per layer/head.

    rows: (n_layer, nh, Tk).
    """
    L, H, tk = rows.shape
    names = [f"L{l} H{h}" for l in range(L) for h in range(H)]
    fig = go.Figure(go.Heatmap(z=rows.reshape(L * H, tk), x=axis_labels(k_labels), y=names, coloraxis="coloraxis",
                               hovertemplate="%{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>"))
    status = " · UNTRAINED (random weights)" if untrained else ""
    return _layout(fig, f"{title} → next token {safe(new_token)}{status}", height=max(300, 22 * L * H + 160),
                   coloraxis=colour_axis(rows, signed=signed),
                   xaxis=dict(title="key in the cache", tickangle=-60, type="category"),
                   yaxis=dict(autorange="reversed", type="category"))


def kv_whatif(rows: list[dict], title: str) -> go.Figure:
    """Bars of cache GiB per attention variant; rows from ``cache.whatif``."""
    fig = go.Figure(go.Bar(x=[safe(r["variant"]) for r in rows], y=[r["gib"] for r in rows],
                           text=[f"{r['gib']:,.2f} GiB" for r in rows], textposition="outside",
                           marker_color=["#2b6cb0", "#3182ce", "#63b3ed", "#805ad5"][: len(rows)],
                           hovertemplate="%{x}: %{y:,.3f} GiB<extra></extra>"))
    return _layout(fig, title, height=380, yaxis=dict(title="GiB", gridcolor="#eee"))


def matrix(z: np.ndarray, title: str, *, x_title: str, y_title: str, colorscale: str = "RdBu_r",
           colorbar: str = "", zmid: float | None = 0.0) -> go.Figure:
    """A plain numeric matrix (position encodings, similarities)."""
    fig = go.Figure(go.Heatmap(z=z.astype(np.float32), colorscale=colorscale, zmid=zmid, colorbar=dict(title=colorbar),
                               hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{z:.3f}}<extra></extra>"))
    return _layout(fig, title, height=420, xaxis=dict(title=x_title), yaxis=dict(title=y_title, autorange="reversed"))


def lines(series: dict[str, tuple[list, list]], title: str, *, x_title: str, y_title: str,
          vline: float | None = None, vline_text: str = "", log_y: bool = False) -> go.Figure:
    """Named (x, y) series as lines; an optional vertical marker (the training length)."""
    fig = go.Figure()
    for name, (xs, ys) in series.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(name)))
    if vline is not None:
        fig.add_vline(x=vline, line=dict(dash="dash", color="#888"), annotation_text=safe(vline_text))
    return _layout(fig, title, height=420, xaxis=dict(title=x_title, gridcolor="#eee"),
                   yaxis=dict(title=y_title, type="log" if log_y else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))
