"""Inside one head: its steps, and FlashAttention's replay of it tile by tile (scores, running max and
sum, HBM traffic, the memory hierarchy)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import WEIGHT_SCALE, WORDS, ENGLISH, safe, axis_labels, colour_axis, _layout, _hover


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
