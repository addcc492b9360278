"""Attention as the page draws it: the overview of every layer and head, one head, its mask and overlay,
the block mask FlexAttention computes with, attention by distance, and the views beyond raw weights
(logit lens, head ablation)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import (ENGLISH, MASK_COLOURS, WEIGHT_SCALE, _hover, _layout, _status, axis_labels, colour_axis,
                   downsample_max, safe)


def overview(weights: np.ndarray, title, *, row_names: list[str] | None = None, max_px: int = 128,
             max_cells: int = 160_000, untrained: bool = False, signed: bool = False, words=ENGLISH,
             kind: str = "", col_names: list[str] | None = None, scale_title=None,
             groups: list[list[int]] | None = None, cells: dict | None = None, fit: bool = False) -> go.Figure:
    """A layer x head grid of heatmaps, drawn as one heatmap with blank gutters (fast to send and draw).

    Args:
        weights: (n_layer, nh, Tq, Tk), values 0..1 (or any sign with ``signed``: implicit attention).
        row_names: one name per layer row (default "layer i"); col_names: one per head column (default "head h").
        scale_title: the colour bar's name for values that are not weights (value-weighted norms, rollout);
            the scale then runs from 0 to their maximum.
        max_px: at most this many cells per head side; fewer when the grid would exceed max_cells.
        kind: the attention kind, written into ``layout.meta`` with the grid's geometry
            ({"kind", "rows", "cols", "gap", "heads"}: a head's cells, the gutter after them, and the head
            drawn in each column slot), so a click on a cell can name its layer (row // (rows + gap)) and
            head (heads[col // (cols + gap)]).
        groups: the query heads each K/V head serves (``inspect.step_through.kv_groups``): the columns are
            ordered group by group, labelled once per group ("kv0: h0 h1") and separated by a line. Groups
            of one head each (MHA) change nothing.
        cells: ``weights`` are already pooled (``inspect.tiles``): {"tokens": (Tq, Tk), "rows": row edges,
            "cols": key edges (token indices, n + 1 each), "cell": (cr, cc), "how": "max" | "mean"}.
        fit: colours from 0 to the largest value drawn (a long prompt's weights are small), said in the title.
    Hover names the layer, head, query and key (block indices when downsampled; with ``cells``, the rows
    and keys each cell pools, and max or mean of how many weights).
    """
    if cells is not None:
        L, H = weights.shape[:2]
        (tq, tk), small, block = cells["tokens"], weights.astype(np.float32), 1
    else:
        L, H, tq, tk = weights.shape
        side = max(16, min(max_px, int(np.sqrt(max_cells / (L * H)))))
        small, block = downsample_max(weights.astype(np.float32), side, signed)
    order, groups = _column_order(groups, H)
    small = small[:, order]
    sq, sk = small.shape[-2:]
    gap = max(1, sk // 12)
    grid = np.full((L * (sq + gap) - gap, H * (sk + gap) - gap), np.nan, dtype=np.float32)
    for l in range(L):
        for h in range(H):
            grid[l * (sq + gap): l * (sq + gap) + sq, h * (sk + gap): h * (sk + gap) + sk] = small[l, h]
    row_names = row_names or [words("plot.layer", i=i) for i in range(L)]
    unit = words("plot.block_unit", block=block) if block > 1 else words("plot.token_unit")
    head_name = col_names or [words("plot.head", h=h) for h in range(H)]
    slot_name = [head_name[h] for h in order]
    if groups:
        group_of = {h: g for g, members in enumerate(groups) for h in members}
        slot_name = [f"{words('plot.kv_short', g=group_of[h])} · {head_name[h]}" for h in order]
    if cells is not None:  # each cell says which rows and keys it pools
        r_edges, c_edges = cells["rows"], cells["cols"]
        ys = [f"{safe(row_names[l])} · {words('plot.cell_rows', a=r_edges[i], b=r_edges[i + 1] - 1)}"
              for l in range(L) for i in range(sq)]
        xs = [f"{slot_name[c]} · {words('plot.cell_keys', a=c_edges[j], b=c_edges[j + 1] - 1)}"
              for c in range(H) for j in range(sk)]
        unit = words(f"plot.cells_{cells['how']}", cr=cells["cell"][0], cc=cells["cell"][1])
    else:
        ys = [f"{safe(row_names[l])} · q{i}" for l in range(L) for i in range(sq)]
        xs = [f"{slot_name[c]} · k{j}" for c in range(H) for j in range(sk)]
    ys = _with_gutters(ys, sq, gap, L)
    xs = _with_gutters(xs, sk, gap, H)
    value = words.render(scale_title) if scale_title else words("plot.weight")
    fig = go.Figure(go.Heatmap(z=grid, x=xs, y=ys, coloraxis="coloraxis", hoverongaps=False,
                               hovertemplate=f"%{{y}} → %{{x}} ({unit})<br>{safe(value)} %{{z:.3f}}<extra></extra>"))
    tick_y = [ys[l * (sq + gap) + sq // 2] for l in range(L)]
    if groups:  # one label per K/V group, centred over its columns; a line in the gutter between two groups
        spans, first = [], 0
        for members in groups:
            spans.append((first, first + len(members)))
            first += len(members)
        tick_x = [xs[(a * (sk + gap) + b * (sk + gap) - gap) // 2] for a, b in spans]
        tick_text = [words("plot.kv_group", g=g, heads=_head_list(members)) for g, members in enumerate(groups)]
        for _, b in spans[:-1]:
            x = b * (sk + gap) - gap / 2 - 0.5  # the middle of the gutter, in category positions
            fig.add_shape(type="line", xref="x", yref="paper", x0=x, x1=x, y0=0, y1=1,
                          line=dict(color="#2d3748", width=3))
    else:
        tick_x = [xs[h * (sk + gap) + sk // 2] for h in range(H)]
        tick_text = head_name
    note = " · " + words("plot.pooled_signed" if signed else "plot.pooled", block=block) if block > 1 else ""
    if cells is not None and cells["cell"] != (1, 1):
        note = " · " + unit
    if groups:
        note += " · " + words("plot.grouped_kv", n=len(groups))
    top = float(np.nanmax(small)) if np.isfinite(small).any() else 1.0
    fit = fit and not signed and 0 < top < 1
    if fit:
        note += " · " + words("plot.fitted_scale", zmax=top)
    title = f"{words.render(title)} · {words('plot.tokens_grid', tq=tq, tk=tk)}{note}{_status(untrained, words)}"
    # as tall as the grid is at ~OVERVIEW_WIDTH px wide (cells stay square), so a wide grid leaves no blank band
    height = max(300, min(150 * L, round(OVERVIEW_WIDTH * grid.shape[0] / grid.shape[1])) + 90)
    return _layout(fig, title, height=height, words=words,
                   coloraxis=colour_axis(small, signed, words, scale_title,
                                         zmax=(top or 1.0) if scale_title or fit else 1.0),
                   meta=dict(kind=kind, rows=sq, cols=sk, gap=gap, heads=order),
                   xaxis=dict(type="category", tickvals=tick_x, ticktext=tick_text,
                              side="top", showgrid=False),
                   yaxis=dict(type="category", tickvals=tick_y, ticktext=[safe(n) for n in row_names],
                              autorange="reversed", showgrid=False, scaleanchor="x"))


FIT_SCALE_KEYS = 256  # past this many keys an overview's colours run from 0 to its largest value
OVERVIEW_WIDTH = 1100  # px: about the plot area's width on the page


def _column_order(groups: list[list[int]] | None, n_heads: int) -> tuple[list[int], list[list[int]] | None]:
    """(the head drawn in each column slot, the groups to label or None). Groups must hold every head once;
    groups of one head each leave the columns as they are."""
    if groups is None:
        return list(range(n_heads)), None
    order = [int(h) for members in groups for h in members]
    if sorted(order) != list(range(n_heads)) or any(not members for members in groups):
        raise ValueError(f"groups must hold each of the {n_heads} heads exactly once, got {groups}")
    if all(len(members) == 1 for members in groups):
        return list(range(n_heads)), None
    return order, [[int(h) for h in members] for members in groups]


def _head_list(heads: list[int]) -> str:
    """'h0 h1 h2', or 'h0–h13' for a long run of consecutive heads."""
    if len(heads) > 6 and heads == list(range(heads[0], heads[-1] + 1)):
        return f"h{heads[0]}–h{heads[-1]}"
    return " ".join(f"h{h}" for h in heads)


def pooled_overview(result, kind: str, title, how: str = "max", **kwargs) -> go.Figure:
    """The overview of one attention kind of an analysis (an ``inspect.analysis.Analysis``) from the cells its
    pass over the tiles pooled (max or mean)."""
    grid, geometry = result.pooled(kind, how)
    cells = {"tokens": (geometry.rows[1], geometry.cols[1]), "rows": geometry.row_edges().tolist(),
             "cols": geometry.col_edges().tolist(), "cell": geometry.cell, "how": how}
    return overview(grid, title, signed=kind == "implicit", kind=kind, cells=cells,
                    fit=geometry.cols[1] > FIT_SCALE_KEYS, **kwargs)


def overview_bytes(result, groups: list[list[int]] | None = None, how: str = "max") -> int:
    """Bytes of the overview figures the page sends for an analysis (an ``inspect.analysis.Analysis``): one
    figure per attention kind, its Plotly JSON encoded as UTF-8. ``groups``: columns grouped by K/V head, as
    the page draws them when asked (not applied to implicit attention, which has no K/V heads)."""
    total = 0
    for kind in result.kinds:
        implicit = kind == "implicit"
        figure = pooled_overview(result, kind, kind, how, groups=None if implicit else groups)
        total += len(figure.to_json().encode("utf-8"))
    return total


def _with_gutters(names: list[str], size: int, gap: int, count: int) -> list[str]:
    """Insert ``gap`` unique blank category names after every ``size`` names."""
    out = []
    for c in range(count):
        out.extend(names[c * size:(c + 1) * size])
        if c < count - 1:
            out.extend("\u2009" * (c * gap + g + 1) for g in range(gap))
    return out


def head(weights: np.ndarray, q_labels: list[str], k_labels: list[str], title, *,
         mask: np.ndarray | None = None, untrained: bool = False, signed: bool = False, words=ENGLISH,
         scale_title=None, start: tuple[int, int] = (0, 0), numbered: bool = True, meta: dict | None = None,
         value_key: str = "plot.weight", zmax: float = 1.0, sink: np.ndarray | None = None) -> go.Figure:
    """One head (or a window of it), tokens on both axes; masked cells left blank ("masked" on hover).

    Args:
        weights: (Tq, Tk). mask: (Tq, Tk) bool, True where attention was allowed.
        start: the index of the first query and key shown (a window of a longer prompt).
        numbered: number the labels by position (tokens); False for labels that are already unique (cells).
        meta: written into ``layout.meta`` (the window a zoom reads: ``assets/js/zoom_head.js``).
        zmax: the top of the colour scale (a long prompt's weights are small: the page fits it to the window).
        sink: (Tq,) or None: each row's weight on a sink logit (gpt-oss), drawn as one more column at the right, on
            an axis of its own (the keys' axis stays the keys'); the row's key weights sum to 1 minus it.
    """
    z = weights.astype(np.float32)
    if mask is not None:
        z = np.where(mask, z, np.nan)
    xs = axis_labels(k_labels, start[1]) if numbered else [safe(label) for label in k_labels]
    ys = axis_labels(q_labels, start[0]) if numbered else [safe(label) for label in q_labels]
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, coloraxis="coloraxis", hoverongaps=False,
        hovertemplate=_hover(words, value_key, ":.4f")))
    side = min(900, max(420, 14 * len(q_labels) + 160))
    extra = {}
    if sink is not None:
        sink_name = words("plot.sink")
        fig.add_trace(go.Heatmap(z=np.asarray(sink, np.float32)[:, None], x=[sink_name], y=ys, xaxis="x2",
                                 coloraxis="coloraxis", hovertemplate=f"%{{y}}<br>{sink_name} %{{z:.4f}}<extra></extra>"))
        extra = dict(xaxis=dict(title=words("plot.key_axis"), tickangle=-60, type="category", domain=[0, 0.93]),
                     xaxis2=dict(type="category", domain=[0.95, 1.0], tickangle=-60))
    axes = extra or dict(xaxis=dict(title=words("plot.key_axis"), tickangle=-60, type="category"))
    return _layout(fig, words.render(title) + _status(untrained, words), height=side, words=words,
                   coloraxis=colour_axis(z, signed, words, scale_title, zmax=zmax), meta=meta or {},
                   yaxis=dict(title=words("plot.query_axis"), autorange="reversed", type="category"), **axes)


def mask(allowed: np.ndarray, q_labels: list[str], k_labels: list[str], title, words=ENGLISH,
         start: tuple[int, int] = (0, 0), numbered: bool = True) -> go.Figure:
    """The boolean mask a layer computed with: blue may attend, grey may not. (Tq, Tk); pooled cells (numbered
    False) hold the share of their pairs the mask allows, 0..1."""
    xs = axis_labels(k_labels, start[1]) if numbered else [safe(label) for label in k_labels]
    ys = axis_labels(q_labels, start[0]) if numbered else [safe(label) for label in q_labels]
    z = allowed.astype(np.int8) if allowed.dtype == bool else allowed.astype(np.float32)
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, zmin=0, zmax=1,
        colorscale=MASK_COLOURS, colorbar=dict(title=words("plot.mask"), tickvals=[0, 1],
                                               ticktext=[words("plot.blocked"), words("plot.allowed")]),
        hovertemplate=_hover(words, "plot.allowed")))
    side = min(700, max(360, 12 * len(q_labels) + 160))
    return _layout(fig, title, height=side, words=words,
                   xaxis=dict(title=words("plot.key"), tickangle=-60, type="category"),
                   yaxis=dict(title=words("plot.query"), autorange="reversed", type="category"))


BLOCK_STATES = ("plot.block_skipped", "plot.block_partial", "plot.block_full")  # block_grid's codes 0, 1, 2
BLOCK_COLOURS = ("#e9e9ef", "#90cdf4", "#2b6cb0")


def block_grid(grid: np.ndarray, title, *, block: tuple[int, int] = (128, 128), n_queries: int | None = None,
               n_keys: int | None = None, words=ENGLISH) -> go.Figure:
    """The tiles of a block-sparse attention kernel: (query block, key block) -> 0 skipped, 1 computed with the
    mask applied, 2 computed in full (``nn.flex.block_grid``). One colour per state with a legend; hover names
    the tokens a tile covers (clipped to ``n_queries`` / ``n_keys``) and its state; the title gives the share
    skipped. (n_q_blocks, n_k_blocks)"""
    grid = np.asarray(grid)
    if grid.ndim != 2 or grid.size == 0 or not np.isin(grid, (0, 1, 2)).all():
        raise ValueError(f"a block grid is a non-empty 2-D array of 0, 1 and 2, got shape {grid.shape}")
    (bq, bk), (nq, nk) = block, grid.shape
    n_queries, n_keys = n_queries or nq * bq, n_keys or nk * bk
    names = [words(key) for key in BLOCK_STATES]
    hover = [[words("plot.block_hover", q0=i * bq, q1=min((i + 1) * bq, n_queries) - 1, k0=j * bk,
                    k1=min((j + 1) * bk, n_keys) - 1, state=names[grid[i, j]]) for j in range(nk)] for i in range(nq)]
    # a discrete colour scale: each code a band of its own colour
    scale = [[edge, BLOCK_COLOURS[code]] for code in range(3) for edge in (code / 3, (code + 1) / 3)]
    fig = go.Figure(go.Heatmap(z=grid.astype(np.int8), zmin=-0.5, zmax=2.5, colorscale=scale, text=hover,
                               hovertemplate="%{text}<extra></extra>", xgap=1, ygap=1,
                               colorbar=dict(title=words("plot.block_state"), tickvals=[0, 1, 2], ticktext=names)))
    share = float((grid == 0).mean())
    side = min(600, max(340, 24 * nq + 180))
    title = f"{words.render(title)}<br>{words('plot.block_share', share=share)}"
    _layout(fig, title, height=side, words=words, meta=dict(skipped_share=share),
                   xaxis=dict(title=words("plot.key_block"), dtick=1 if nk <= 32 else None),
                   yaxis=dict(title=words("plot.query_block"), autorange="reversed", dtick=1 if nq <= 32 else None))
    return fig.update_layout(margin=dict(l=10, r=10, t=90, b=40))  # room for the two-line title and the key axis


def mask_overlay(weights: np.ndarray, allowed: np.ndarray, q_labels: list[str], k_labels: list[str],
                 title, signed: bool = False, words=ENGLISH, start: tuple[int, int] = (0, 0),
                 numbered: bool = True, zmax: float = 1.0) -> go.Figure:
    """Weights where allowed, the mask's blocked cells grey on top. (Tq, Tk)"""
    allowed = allowed > 0  # pooled cells: grey where the mask allows no pair at all
    fig = head(weights, q_labels, k_labels, title, mask=allowed, signed=signed, words=words, start=start,
               numbered=numbered, zmax=zmax)
    blocked = np.where(allowed, np.nan, 1.0).astype(np.float32)  # 4 bytes a cell in the figure's JSON, not 8
    fig.add_trace(go.Heatmap(z=blocked, x=fig.data[0].x, y=fig.data[0].y, showscale=False,
                             colorscale=[[0, "#bbbbbb"], [1, "#bbbbbb"]], hoverongaps=False,
                             hovertemplate=(f"{words('plot.query')} %{{y}}<br>{words('plot.key')} %{{x}}<br>"
                                            f"{words('plot.blocked_by_mask')}<extra></extra>")))
    return fig


def distance_profile(profile: np.ndarray, edges: np.ndarray, title, words=ENGLISH) -> go.Figure:
    """Attention by distance: the mean weight at each log2 bin of |i - j|, one row per head and, after each
    layer's heads, the layer's mean; colour on a log10 scale (weights span orders of magnitude).

    profile: (n_layer, nh, nb), NaN where no (query, key) pair has that distance. edges: (nb + 1,) distances.
    """
    L, H, nb = profile.shape
    rows, names = [], []
    for layer in range(L):
        for h in range(H):
            rows.append(profile[layer, h])
            names.append(f"L{layer} H{h}")
        finite = np.isfinite(profile[layer])  # (nh, nb): a bin no pair reaches is NaN for every head
        counts = finite.sum(0)
        rows.append(np.where(counts > 0, np.where(finite, profile[layer], 0).sum(0) / np.maximum(counts, 1), np.nan))
        names.append(words("plot.layer_mean", i=layer))
    z = np.log10(np.clip(np.array(rows, dtype=np.float64), 1e-12, None))
    bins = [f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Heatmap(z=z, x=bins, y=names, colorscale=WEIGHT_SCALE, hoverongaps=False,
                               colorbar=dict(title=words("plot.log_weight")),
                               hovertemplate=(f"%{{y}}<br>{words('plot.distance')} %{{x}}<br>"
                                              f"{words('plot.log_weight')} %{{z:.2f}}<extra></extra>")))
    return _layout(fig, title, height=max(320, 16 * len(names) + 160), words=words,
                   xaxis=dict(title=words("plot.distance"), type="category"),
                   yaxis=dict(autorange="reversed", type="category"))


def logit_lens(top_probs: np.ndarray, top_labels: list[list[list[str]]], positions: list[str], title, *,
               untrained: bool = False, words=ENGLISH) -> go.Figure:
    """Each layer's best next-token guess per position: a layer x position grid coloured by the top token's
    probability and labelled with it; hover lists the top k with their probabilities.

    Args:
        top_probs: (L, T, k) probabilities of each layer's top-k guesses, best first.
        top_labels: [L][T][k] those tokens' labels. positions: the T tokens read.
    """
    L, T, k = top_probs.shape
    ys = [words("plot.layer", i=i) for i in range(L)]
    hover = [["<br>".join(f"{safe(top_labels[l][t][j])} {top_probs[l, t, j]:.3f}" for j in range(k))
              for t in range(T)] for l in range(L)]
    fig = go.Figure(go.Heatmap(
        z=top_probs[..., 0].astype(np.float32), x=axis_labels(positions), y=ys, coloraxis="coloraxis",
        text=[[safe(top_labels[l][t][0]) for t in range(T)] for l in range(L)], texttemplate="%{text}",
        customdata=hover, hovertemplate=words("plot.lens_hover") + "<extra></extra>"))
    return _layout(fig, words.render(title) + _status(untrained, words), height=max(320, 46 * L + 160), words=words,
                   coloraxis=colour_axis(top_probs[..., 0], False, words, words("plot.top_prob")),
                   xaxis=dict(title=words("plot.position"), tickangle=-60, type="category"),
                   yaxis=dict(autorange="reversed", type="category"))


def layer_head_grid(values: np.ndarray, title, *, scale_title, untrained: bool = False,
                    words=ENGLISH) -> go.Figure:
    """One number per (layer, head), signed (a change from the unablated model): a diverging scale about 0,
    each cell labelled with its value. values (L, nh)."""
    L, H = values.shape
    ys, xs = [words("plot.layer", i=i) for i in range(L)], [words("plot.head", h=h) for h in range(H)]
    name = safe(words.render(scale_title))
    fig = go.Figure(go.Heatmap(
        z=values.astype(np.float32), x=xs, y=ys, coloraxis="coloraxis", text=np.round(values, 3).astype(str),
        texttemplate="%{text}", customdata=[[name] * H for _ in range(L)],
        hovertemplate=words("plot.grid_hover") + "<extra></extra>"))
    return _layout(fig, words.render(title) + _status(untrained, words), height=max(300, 60 * L + 140), words=words,
                   coloraxis=colour_axis(values, True, words, scale_title),
                   xaxis=dict(type="category", side="top"), yaxis=dict(type="category", autorange="reversed"))
