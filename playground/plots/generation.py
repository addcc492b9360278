"""Generation and its cache: the KV cache (or recurrent state) growing token by token, measured against
the formula, and each decoding step's attention over the cache."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import ENGLISH, safe, axis_labels, colour_axis, _status, _layout


def kv_growth(tokens: list[int], measured_bytes: list[int], formulas: dict, *, label,
              allocated_bytes: list[int] | None = None, log: bool = False, max_tokens: int | None = None,
              words=ENGLISH) -> go.Figure:
    """Cache bytes against tokens so far: measured from the model, and by formula for each variant.

    measured_bytes: the positions the cache holds. allocated_bytes: its tensors as allocated (a cache
        without a window preallocates every position); drawn before the bytes in use, which come last.
    formulas: name -> {"per_token": bytes, "fixed": bytes, optional "cap": tokens} (fixed: recurrent
        state; cap: a sliding window, the cache stops growing at that many positions), or {"layers": [such dicts]}
        for a model whose layers cache differently (a window on some, a state on others): their sum.
    """
    span = max_tokens or (max(tokens) if tokens else 1)
    xs = np.linspace(1, span, 64)
    fig = go.Figure()
    for name, f in formulas.items():
        name = words.render(name)
        parts = f.get("layers", [f])
        dash = "dot" if all(p["fixed"] for p in parts) else "dash" if "layers" not in f else "dashdot"
        ys = sum(p["fixed"] + p["per_token"] * (np.minimum(xs, p["cap"]) if p.get("cap") else xs) for p in parts)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=safe(name),
                                 line=dict(dash=dash, width=1.5),
                                 hovertemplate=f"{safe(name)}<br>{words('plot.formula_hover')}<extra></extra>"))
    if allocated_bytes is not None:
        fig.add_trace(go.Scatter(x=tokens, y=allocated_bytes, mode="lines", line_shape="hv",
                                 name=words("plot.allocated", label=safe(words.render(label))),
                                 line=dict(width=2.5, color="#c53030"),
                                 hovertemplate=f"{words('plot.allocated_hover')}<extra></extra>"))
    fig.add_trace(go.Scatter(x=tokens, y=measured_bytes, mode="lines+markers",
                             name=words("plot.measured", label=safe(words.render(label))),
                             line=dict(width=3, color="black"), marker=dict(size=5),
                             hovertemplate=f"{words('plot.measured_hover')}<extra></extra>"))
    return _layout(fig, words("plot.kv_title"), height=440, words=words,
                   xaxis=dict(title=words("plot.tokens_in_cache"), gridcolor="#eee"),
                   yaxis=dict(title=words("plot.bytes"), type="log" if log else "linear", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.2))


def step_rows(rows: np.ndarray, k_labels: list[str], title, *, new_token: str = "",
              untrained: bool = False, signed: bool = False, words=ENGLISH, key_start: int = 0,
              numbered: bool = True, filled: bool = False) -> go.Figure:
    """One decode step: the new query's attention over every cached key, one row per layer/head.

    rows: (n_layer, nh, Tk). key_start: the position of the first key (a sliding window drops older ones).
    numbered: False when the columns are pooled key ranges already labelled.
    filled: the row of a masked position an encoder-only model filled (keys: the whole prompt, no cache).
    """
    L, H, tk = rows.shape
    names = [f"L{l} H{h}" for l in range(L) for h in range(H)]
    xs = axis_labels(k_labels, key_start) if numbered else [safe(label) for label in k_labels]
    fig = go.Figure(go.Heatmap(z=rows.reshape(L * H, tk), x=xs, y=names, coloraxis="coloraxis",
                               hovertemplate=(f"%{{y}}<br>{words('plot.key')} %{{x}}<br>"
                                              f"{words('plot.weight')} %{{z:.4f}}<extra></extra>")))
    predicted = words("plot.filled_token" if filled else "plot.next_token", token=safe(new_token))
    title = f"{words.render(title)} → {predicted}{_status(untrained, words)}"
    return _layout(fig, title, height=max(300, 22 * L * H + 160), words=words,
                   coloraxis=colour_axis(rows, signed=signed, words=words),
                   xaxis=dict(title=words("plot.key_in_prompt" if filled else "plot.key_in_cache"), tickangle=-60,
                              type="category"),
                   yaxis=dict(autorange="reversed", type="category"))
