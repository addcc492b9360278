"""Figures: pure functions from plain data (numpy, lists) to Plotly figures.

Attention weights use one colour scale from 0 to 1 with a colour bar; masks are two-coloured.
Token labels are escaped for Plotly's text renderer, and numbered so repeated tokens stay
distinct on categorical axes. Overviews are downsampled (max over blocks, said in the title)
so a long prompt stays light to send and to draw; a single head opens at full resolution.

Every builder takes ``words`` for the words it writes itself (axis titles, hover text, colour
bars): ``words(key, **params) -> str`` and ``words.render(value) -> str`` for titles and series
names. The default, ``ENGLISH``, writes the templates in ``WORDS``; the page passes its own
``Words``, which writes the same keys in the reader's language (its English *is* ``WORDS``).
"""
from __future__ import annotations

import html
import itertools

import numpy as np
import plotly.graph_objects as go


WEIGHT_SCALE = "Viridis"
MASK_COLOURS = [[0.0, "#e9e9ef"], [1.0, "#2b6cb0"]]
FONT = dict(family="Inter, 'WenQuanYi Micro Hei', sans-serif", size=12)

WORDS: dict[str, str] = {
    'plot.weight': 'weight',
    'plot.implicit': 'implicit α',
    'plot.untrained': 'UNTRAINED (random weights)',
    'plot.layer': 'layer {i}',
    'plot.head': 'head {h}',
    'plot.block_unit': 'indices of {block}-token blocks',
    'plot.token_unit': 'token indices',
    'plot.pooled': 'max over {block}×{block} blocks',
    'plot.pooled_signed': 'largest |α| over {block}×{block} blocks',
    'plot.tokens_grid': '{tq}×{tk} tokens',
    'plot.cells_max': 'max over cells of {cr}×{cc} weights',
    'plot.cells_mean': 'mean over cells of {cr}×{cc} weights',
    'plot.cell_rows': 'rows {a}–{b}',
    'plot.cell_keys': 'keys {a}–{b}',
    'plot.cell_share': 'share allowed',
    'plot.layer_mean': 'layer {i} (mean)',
    'plot.fitted_scale': 'colours from 0 to the largest weight in view, {zmax:.2g}',
    'plot.log_weight': 'log10 mean weight',
    'plot.distance': 'distance |i − j| (tokens)',
    'plot.zoom_hint': 'box-zoom to see closer: {n} or fewer tokens a side are exact weights',
    'plot.key_axis': 'key (attended to)',
    'plot.query_axis': 'query (attending)',
    'plot.query': 'query',
    'plot.key': 'key',
    'plot.mask': 'mask',
    'plot.blocked': 'blocked',
    'plot.allowed': 'allowed',
    'plot.blocked_by_mask': 'blocked by the mask',
    'plot.formula_hover': '%{x:.0f} tokens: %{y:,.0f} bytes',
    'plot.measured': 'measured, in use: {label}',
    'plot.measured_hover': 'after %{x} tokens: %{y:,} bytes held (measured)',
    'plot.allocated': 'measured, allocated: {label}',
    'plot.allocated_hover': 'after %{x} tokens: %{y:,} bytes allocated (tensor.nbytes)',
    'plot.kv_title': 'KV cache (or recurrent state) bytes vs tokens so far',
    'plot.tokens_in_cache': 'tokens so far (prompt + generated)',
    'plot.bytes': 'bytes',
    'plot.next_token': 'next token {token}',
    'plot.key_in_cache': 'key in the cache',
    'plot.block_skipped': 'skipped',
    'plot.block_partial': 'computed, mask applied',
    'plot.block_full': 'computed in full',
    'plot.block_state': 'tile',
    'plot.query_block': 'query block',
    'plot.key_block': 'key block',
    'plot.block_hover': 'query tokens {q0}..{q1}<br>key tokens {k0}..{k1}<br>{state}',
    'plot.block_share': '{share:.0%} of tiles skipped',
    'plot.top_prob': 'probability of the top token',
    'plot.position': 'position (token read)',
    'plot.lens_hover': '%{y} · position %{x}<br>%{customdata}',
    'plot.grid_hover': '%{y} · %{x}<br>%{customdata}: %{z:.4f}',
    'plot.kv_group': 'kv{g}: {heads}',
    'plot.kv_short': 'kv{g}',
    'plot.grouped_kv': 'columns grouped by K/V head ({n} K/V heads)',
    'kv.heads': '{variant} ({n} K/V heads)',
    'kv.one_head': '{variant} (1 K/V head)',
    'kv.mla': 'MLA (latent {latent} + rope {rope})',
}


class English:
    """The figures' words in English: ``WORDS`` filled in; titles given as values are ``str``-ed."""

    def __call__(self, key: str, **params) -> str:
        return WORDS[key].format(**params) if params else WORDS[key]  # Plotly's %{x} stays as written

    def render(self, value) -> str:
        return str(value)


ENGLISH = English()


def safe(label) -> str:
    """Escape a label for Plotly, which renders a subset of HTML in text."""
    return html.escape(str(label), quote=False)


def axis_labels(labels: list[str], start: int = 0) -> list[str]:
    """Unique, escaped category names numbered by position from ``start``: '3 ␣the'."""
    return [f"{i} {safe(t)}" for i, t in enumerate(labels, start)]


def colour_axis(values: np.ndarray, signed: bool, words=ENGLISH, scale_title=None, zmax: float = 1.0) -> dict:
    """Weights: 0..1 sequential. Signed values (implicit attention, differences): a diverging scale
    symmetric about 0. ``scale_title`` names the colour bar (default: weight, or implicit α when signed);
    ``zmax`` tops a sequential scale of values that are not weights (norms)."""
    title = words.render(scale_title) if scale_title else words("plot.implicit" if signed else "plot.weight")
    if not signed:
        return dict(colorscale=WEIGHT_SCALE, cmin=0, cmax=zmax, colorbar=dict(title=title))
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


def _status(untrained: bool, words) -> str:
    return " · " + words("plot.untrained") if untrained else ""


def _layout(fig: go.Figure, title, height: int, words=ENGLISH, **extra) -> go.Figure:
    fig.update_layout(title=dict(text=words.render(title), x=0.01, font=dict(size=14)), height=height, font=FONT,
                      margin=dict(l=10, r=10, t=60, b=10), plot_bgcolor="white", **extra)
    return fig


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
         value_key: str = "plot.weight", zmax: float = 1.0) -> go.Figure:
    """One head (or a window of it), tokens on both axes; masked cells left blank ("masked" on hover).

    Args:
        weights: (Tq, Tk). mask: (Tq, Tk) bool, True where attention was allowed.
        start: the index of the first query and key shown (a window of a longer prompt).
        numbered: number the labels by position (tokens); False for labels that are already unique (cells).
        meta: written into ``layout.meta`` (the window a zoom reads: ``assets/js/zoom_head.js``).
        zmax: the top of the colour scale (a long prompt's weights are small: the page fits it to the window).
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
    return _layout(fig, words.render(title) + _status(untrained, words), height=side, words=words,
                   coloraxis=colour_axis(z, signed, words, scale_title, zmax=zmax), meta=meta or {},
                   xaxis=dict(title=words("plot.key_axis"), tickangle=-60, type="category"),
                   yaxis=dict(title=words("plot.query_axis"), autorange="reversed", type="category"))


def _hover(words, value_key: str, fmt: str = "") -> str:
    """'query <q><br>key <k><br><value word> <z>' in the reader's words."""
    return (f"{words('plot.query')} %{{y}}<br>{words('plot.key')} %{{x}}<br>"
            f"{words(value_key)} %{{z{fmt}}}<extra></extra>")


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
    blocked = np.where(allowed, np.nan, 1.0)
    fig.add_trace(go.Heatmap(z=blocked, x=fig.data[0].x, y=fig.data[0].y, showscale=False,
                             colorscale=[[0, "#bbbbbb"], [1, "#bbbbbb"]], hoverongaps=False,
                             hovertemplate=(f"{words('plot.query')} %{{y}}<br>{words('plot.key')} %{{x}}<br>"
                                            f"{words('plot.blocked_by_mask')}<extra></extra>")))
    return fig


def kv_growth(tokens: list[int], measured_bytes: list[int], formulas: dict, *, label,
              allocated_bytes: list[int] | None = None, log: bool = False, max_tokens: int | None = None,
              words=ENGLISH) -> go.Figure:
    """Cache bytes against tokens so far: measured from the model, and by formula for each variant.

    measured_bytes: the positions the cache holds. allocated_bytes: its tensors as allocated (a cache
        without a window preallocates every position); drawn before the bytes in use, which come last.
    formulas: name -> {"per_token": bytes, "fixed": bytes, optional "cap": tokens} (fixed: recurrent
        state; cap: a sliding window, the cache stops growing at that many positions).
    """
    span = max_tokens or (max(tokens) if tokens else 1)
    xs = np.linspace(1, span, 64)
    fig = go.Figure()
    for name, f in formulas.items():
        name = words.render(name)
        dash = "dot" if f["fixed"] else "dash"
        held = np.minimum(xs, f["cap"]) if f.get("cap") else xs
        fig.add_trace(go.Scatter(x=xs, y=f["fixed"] + f["per_token"] * held, mode="lines", name=safe(name),
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
              numbered: bool = True) -> go.Figure:
    """One decode step: the new query's attention over every cached key, one row per layer/head.

    rows: (n_layer, nh, Tk). key_start: the position of the first key (a sliding window drops older ones).
    numbered: False when the columns are pooled key ranges already labelled.
    """
    L, H, tk = rows.shape
    names = [f"L{l} H{h}" for l in range(L) for h in range(H)]
    xs = axis_labels(k_labels, key_start) if numbered else [safe(label) for label in k_labels]
    fig = go.Figure(go.Heatmap(z=rows.reshape(L * H, tk), x=xs, y=names, coloraxis="coloraxis",
                               hovertemplate=(f"%{{y}}<br>{words('plot.key')} %{{x}}<br>"
                                              f"{words('plot.weight')} %{{z:.4f}}<extra></extra>")))
    title = f"{words.render(title)} → {words('plot.next_token', token=safe(new_token))}{_status(untrained, words)}"
    return _layout(fig, title, height=max(300, 22 * L * H + 160), words=words,
                   coloraxis=colour_axis(rows, signed=signed, words=words),
                   xaxis=dict(title=words("plot.key_in_cache"), tickangle=-60, type="category"),
                   yaxis=dict(autorange="reversed", type="category"))


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


# ---------------------------------------------------------------------------------------------
# Inside one head: its steps, and FlashAttention's replay of it
# ---------------------------------------------------------------------------------------------

WORDS.update({
    'plot.value': 'value',
    'plot.dim': 'dim {i}',
    'plot.masked_cell': 'masked (−∞)',
    'plot.tile_done': 'done',
    'plot.tile_current': 'current',
    'plot.tile_skipped': 'skipped (causal)',
    'plot.tile_pending': 'pending',
    'plot.tile_hover': 'query block {i}, key block {j}<br>{state}',
    'plot.scores_tile': 'S_ij = Q_i K_jᵀ / √d',
    'plot.running_m': 'running max m',
    'plot.running_l': 'running sum l',
    'plot.rescaled_o': 'O_i so far (÷ l)',
    'plot.seq_len': 'sequence length N',
    'plot.hbm_elements': 'HBM elements read + written',
    'plot.standard': 'standard (counted)',
    'plot.standard_bound': 'Θ(N d + N²)',
    'plot.tiled': 'FlashAttention (counted)',
    'plot.tiled_bound': 'Θ(N² d² / M)',
    'plot.traffic_title': 'HBM traffic over N (d = {d}, M = {m:,} elements, Br = {br}, Bc = {bc})',
    'plot.hierarchy_title': 'Memory hierarchy of the {gpu}: where this step\'s tiles live',
    'plot.level_size': '{level}: {size} per {per}',
    'plot.level_bandwidth': '{bandwidth} TB/s',
    'plot.level_unknown_bandwidth': 'bandwidth not published',
})
TILE_STATES = ("plot.tile_pending", "plot.tile_skipped", "plot.tile_done", "plot.tile_current")  # codes 0..3
TILE_COLOURS = ("#c3dafe", "#f4f4f6", "#2b6cb0", "#dd6b20")


def step_matrix(array: np.ndarray, row_labels: list[str], col_labels: list[str], title, *, highlight: int | None = None,
                weights: bool = False, words=ENGLISH) -> go.Figure:
    """One step of a head's computation: labelled rows and columns, hover values, a colour bar, the
    highlighted query's row framed. -inf (masked) cells are blank. (rows, cols)"""
    z = np.where(np.isfinite(array), array, np.nan).astype(np.float64)
    x, y = axis_labels(col_labels), axis_labels(row_labels)
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, coloraxis="coloraxis", hoverongaps=False,
                               hovertemplate=_hover(words, "plot.value", ":.4g")))
    if not np.isfinite(array).all():
        masked = np.where(np.isfinite(array), np.nan, 1.0)
        fig.add_trace(go.Heatmap(z=masked, x=x, y=y, showscale=False, colorscale=[[0, "#bbbbbb"], [1, "#bbbbbb"]],
                                 hoverongaps=False, hovertemplate=(f"{words('plot.query')} %{{y}}<br>"
                                                                   f"{words('plot.key')} %{{x}}<br>"
                                                                   f"{words('plot.masked_cell')}<extra></extra>")))
    if highlight is not None:
        fig.add_shape(type="rect", xref="x", yref="y", x0=-0.5, x1=len(col_labels) - 0.5, y0=highlight - 0.5,
                      y1=highlight + 0.5, line=dict(color="#dd6b20", width=3))
    axis = (dict(colorscale=WEIGHT_SCALE, cmin=0, cmax=1, colorbar=dict(title=words("plot.weight"))) if weights
            else colour_axis(z, True, words, scale_title=words("plot.value")))
    height = min(700, max(300, 12 * len(row_labels) + 170))
    every = dict(dtick=1) if len(row_labels) <= 32 else {}  # each token named while the rows have room
    return _layout(fig, title, height=height, words=words, coloraxis=axis,
                   xaxis=dict(type="category", tickangle=-60),
                   yaxis=dict(type="category", autorange="reversed", **every))


def tile_states(n_rows: int, n_cols: int, steps: list[dict], current: int) -> np.ndarray:
    """(Tr, Tc) codes of ``TILE_STATES`` at step ``current``: each step {i, j, skipped} in kernel order. The
    skipped tiles are known before the kernel starts (its loop bounds), so they show as skipped throughout."""
    grid = np.zeros((n_rows, n_cols), dtype=np.int8)
    for k, s in enumerate(steps):
        if s["skipped"]:
            grid[s["i"], s["j"]] = 1
        elif k <= current:
            grid[s["i"], s["j"]] = 2
    cur = steps[current]
    if not cur["skipped"]:
        grid[cur["i"], cur["j"]] = 3
    return grid


def tile_grid(grid: np.ndarray, title, words=ENGLISH) -> go.Figure:
    """FlashAttention's tiles at one step of the replay: done, current, skipped, pending (``tile_states``)."""
    names = [words(k) for k in TILE_STATES]
    nr, nc = grid.shape
    hover = [[words("plot.tile_hover", i=i, j=j, state=names[grid[i, j]]) for j in range(nc)] for i in range(nr)]
    scale = [[edge, TILE_COLOURS[c]] for c in range(4) for edge in (c / 4, (c + 1) / 4)]
    fig = go.Figure(go.Heatmap(z=grid, zmin=-0.5, zmax=3.5, colorscale=scale, text=hover, xgap=2, ygap=2,
                               hovertemplate="%{text}<extra></extra>",
                               colorbar=dict(title=words("plot.block_state"), tickvals=[0, 1, 2, 3], ticktext=names)))
    return _layout(fig, title, height=min(520, max(300, 26 * nr + 160)), words=words,
                   xaxis=dict(title=words("plot.key_block"), dtick=1 if nc <= 32 else None),
                   yaxis=dict(title=words("plot.query_block"), autorange="reversed", dtick=1 if nr <= 32 else None))


def replay_step(scores: np.ndarray, m: np.ndarray, l: np.ndarray, o: np.ndarray, rows: list[str], cols: list[str],
                title, *, row_start: int = 0, col_start: int = 0, words=ENGLISH) -> go.Figure:
    """One tile of the replay side by side: S_ij (Br, Bc), the running m and l (Br,) and block i's output so
    far, O_i / l (Br, d). ``row_start`` / ``col_start``: the position of the tile's first query / key."""
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=4, column_widths=[0.38, 0.08, 0.08, 0.46], horizontal_spacing=0.08,
                        subplot_titles=[words(k) for k in ("plot.scores_tile", "plot.running_m", "plot.running_l",
                                                           "plot.rescaled_o")])
    y = axis_labels(rows, row_start)
    z = np.where(np.isfinite(scores), scores, np.nan)
    hover = _hover(words, "plot.value", ":.4g")
    fig.add_trace(go.Heatmap(z=z, x=axis_labels(cols, col_start), y=y, colorscale="RdBu_r", zmid=0,
                             hoverongaps=False, colorbar=dict(title="S", x=0.305, len=0.9, thickness=10),
                             hovertemplate=hover), 1, 1)
    for col, values, name in ((2, m, "m"), (3, l, "l")):
        fig.add_trace(go.Heatmap(z=values[:, None], x=[name], y=y, colorscale="Viridis", showscale=False,
                                 texttemplate="%{z:.3g}", hovertemplate=f"%{{y}}<br>{name} %{{z:.5g}}<extra></extra>"),
                      1, col)
    dims = [words("plot.dim", i=i) for i in range(o.shape[1])]
    fig.add_trace(go.Heatmap(z=o, x=dims, y=y, colorscale="RdBu_r", zmid=0, colorbar=dict(title="O", len=0.9),
                             hovertemplate=f"%{{y}}<br>%{{x}}<br>{words('plot.value')} %{{z:.4g}}<extra></extra>"), 1, 4)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_yaxes(showticklabels=False, col=2)
    fig.update_yaxes(showticklabels=False, col=3)
    fig.update_yaxes(showticklabels=False, col=4)
    fig.update_xaxes(type="category", tickangle=-60)
    return _layout(fig, title, height=min(560, max(320, 18 * len(rows) + 200)), words=words)


def traffic(data: dict, words=ENGLISH, *, head_dim: int, budget: int) -> go.Figure:
    """HBM elements against N, counted for standard and tiled attention, beside Theorem 2's bounds
    (``flash_replay.traffic_over_n``); log-log."""
    fig = go.Figure()
    n = [int(x) for x in data["n"]]
    for key, name, dash in (("standard", "plot.standard", None), ("standard_bound", "plot.standard_bound", "dot"),
                            ("tiled", "plot.tiled", None), ("tiled_bound", "plot.tiled_bound", "dot")):
        fig.add_trace(go.Scatter(x=n, y=[float(v) for v in data[key]], name=words(name),
                                 mode="lines+markers" if dash is None else "lines", line=dict(dash=dash),
                                 hovertemplate="N %{x}<br>%{y:,.0f}<extra></extra>"))
    title = words("plot.traffic_title", d=head_dim, m=budget, br=data["block_rows"], bc=data["block_cols"])
    return _layout(fig, title, height=420, words=words,
                   xaxis=dict(title=words("plot.seq_len"), type="log", gridcolor="#eee"),
                   yaxis=dict(title=words("plot.hbm_elements"), type="log", gridcolor="#eee"),
                   legend=dict(orientation="h", y=-0.25))


def _bytes(n: int) -> str:
    for unit, size in (("GB", 10 ** 9), ("KB", 1024)):
        if n >= size:
            return f"{n / size:,.0f} {unit}"
    return f"{n} B"


def memory_hierarchy(levels: list[dict], placement: dict[str, str], gpu_name: str, words=ENGLISH) -> go.Figure:
    """Registers, SRAM, HBM as stacked boxes (fastest on top) with the GPU's sizes and bandwidths, and the
    tiles each level holds at this step written inside it. ``levels`` from ``GPU.hierarchy()``."""
    fig = go.Figure()
    colours = ("#fbd38d", "#90cdf4", "#cbd5e0")
    for row, (level, colour) in enumerate(zip(levels, colours)):
        y0, y1 = 2 - row, 3 - row
        fig.add_shape(type="rect", x0=0, x1=1, y0=y0 + 0.05, y1=y1 - 0.05, fillcolor=colour, line=dict(color="#555"))
        bw = (words("plot.level_bandwidth", bandwidth=level["bandwidth_tb_s"]) if level["bandwidth_tb_s"]
              else words("plot.level_unknown_bandwidth"))
        held = ", ".join(sorted(name for name, where in placement.items() if where == level["level"])) or "—"
        head_line = words("plot.level_size", level=level["level"], size=_bytes(level["size_bytes"]), per=level["per"])
        fig.add_annotation(x=0.02, y=(y0 + y1) / 2, xanchor="left", showarrow=False, align="left",
                           text=f"<b>{safe(head_line)}</b> · {safe(bw)}<br>{safe(held)}")
    fig.update_xaxes(visible=False, range=[0, 1])
    fig.update_yaxes(visible=False, range=[0, 3])
    return _layout(fig, words("plot.hierarchy_title", gpu=safe(gpu_name)), height=320, words=words)
