"""One head of an analysis: its map, mask and overlay (pooled, or exact weights with their tokens in a window),
the block mask the fused kernel builds for its layer, and the ``/head`` and ``/tile`` endpoints.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import html
import threading
from collections import OrderedDict

import gradio as gr
import numpy as np

from playground import plots
from playground.inspect import tiles
from playground.inspect.analysis import Analysis
from playground.nn import flex
from playground.nn.block_mask_timing import fused_vs_dense
from playground.nn.kernels import TORCH_DTYPES
from playground.nn.rebuild import AttentionSource
from playground.ui import service
from playground.ui.i18n import msg
from . import gpu
from .lang import Words, visitor_error
from .session import AnalysisRef, analysis_state, kind_labels, kind_title, layer_type
from .warmup import FLEX

HEAD_CELLS = 512  # one head's map: at most this many cells a side; a window this small shows exact weights
POOLING = ("max", "mean")


def head_views(state: dict | None, kind: str, layer: int, head: int, how: str = "max", request: gr.Request = None):
    w = Words(request)
    return *head_figures(w, state, kind, layer, head, how=how), *block_view(w, state, kind, layer)


class BlockTimings:
    """The server's block-mask timings: one per (rule, call shape, device, dtype), measured once for every session
    and analysis that makes that call; at most ``most``, the oldest let go first."""

    def __init__(self, most: int = 64):
        self.most, self._items, self._lock = most, OrderedDict(), threading.Lock()

    def get(self, key: tuple, measure) -> dict:
        """The timing under ``key``, measured by ``measure()`` the first time (two first askers may both measure)."""
        with self._lock:
            hit = self._items.get(key)
        if hit is not None:
            return hit
        value = measure()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.most:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


BLOCK_TIMINGS = BlockTimings()


def block_view(w: Words, state: "AnalysisRef | None", kind: str, layer: int) -> tuple:
    """(figure, note) of the BlockMask the fused kernel builds for this layer's call: its tiles and the share
    skipped, and that call timed with FlexAttention against SDPA with the dense mask, measured once per call shape
    (rule, tokens, heads, head dim, device, dtype) for every session (``BLOCK_TIMINGS``). (None, note) where there is no attention kernel or FlexAttention cannot run here."""
    result: Analysis | None = state.result(w) if state else None
    if result is None or kind not in result.kinds:
        return None, ""
    maps = result.of_kind(kind)
    source = maps[min(layer, len(maps) - 1)].source
    if not isinstance(source, AttentionSource):  # implicit attention: no kernel, no block mask
        return None, w("blocks.none")
    rule = source.rule  # the very rule this layer computed with
    q, k = kind_labels(kind, result)
    head_dim = source.q.shape[-1]
    key = (str(rule), len(q), len(k), source.n_heads, head_dim, state.device, result.dtype)

    def measure() -> dict:  # the same call in every layer of a kind with this rule, and in every session
        FLEX.wait()  # the page's start-up compile, if it is still running
        # where FlexAttention cannot run (ZeroGPU, no compiler) the reason is known here: no GPU call to learn it
        reason = flex.flex_status(state.device, TORCH_DTYPES[result.dtype], head_dim)
        try:
            return {"reason": reason} if reason else gpu.work(
                w, fused_vs_dense, rule, len(q), len(k), source.n_heads, head_dim, device=state.device,
                dtype=result.dtype)
        except (RuntimeError, ValueError) as e:  # a compile that fails here: say PyTorch's reason
            return {"reason": str(e).splitlines()[0]}

    m = BLOCK_TIMINGS.get(key, measure)
    if "reason" in m:
        return None, w("blocks.unavailable", reason=html.escape(m["reason"]))
    grid, (bq, bk) = m["grid"], m["block_size"]
    title = msg("title.blocks", layer=layer, kind=msg(f"kind_short.{kind}"), nq=grid.shape[0], nk=grid.shape[1],
                bq=bq, bk=bk)
    figure = plots.block_grid(grid, title, block=(bq, bk), n_queries=len(q), n_keys=len(k), words=w)
    note = w("blocks.note", skipped=m["skipped_share"], tiles=grid.size, partial=int((grid == 1).sum()),
             full=int((grid == 2).sum()), device=html.escape(m["device_name"]), n=m["repeats"], flex_ms=m["flex_ms"],
             kernel=w(f"kernel.{m['dense_kernel']}"), dense_ms=m["dense_ms"], ratio=m["dense_ms"] / m["flex_ms"])
    return figure, note


def cell_labels(w: Words, cells: tiles.Pooled, q: list[str], k: list[str]) -> tuple[list[str], list[str], dict]:
    """Axis labels of pooled cells and how ``plots.head`` draws them: the window's tokens when each cell is one
    weight, else each cell's range of rows and keys. (query labels, key labels, keyword arguments)"""
    (r0, r1), (c0, c1) = cells.rows, cells.cols
    if cells.exact:
        return q[r0:r1], k[c0:c1], dict(start=(r0, c0))
    r_edges, c_edges = cells.row_edges(), cells.col_edges()
    return ([w("plot.cell_rows", a=a, b=b - 1) for a, b in zip(r_edges[:-1], r_edges[1:])],
            [w("plot.cell_keys", a=a, b=b - 1) for a, b in zip(c_edges[:-1], c_edges[1:])], dict(numbered=False))


def head_figures(w: Words, state: dict | None, kind: str, layer: int, head: int, window: dict | None = None,
                 how: str = "max"):
    """(head figure, mask figure, overlay figure) for one head, or a window of it (``window``: {"rows": [a, b],
    "cols": [c, d]}, token indices, end excluded; default the whole head), in at most ``HEAD_CELLS`` cells a
    side: exact weights with their tokens when the window fits, else each cell the max or mean of the weights
    it covers. The mask and the overlay show the same window. Empty figures before any analysis. A kind,
    layer, head or window the model does not have is a gr.Error naming what it has."""
    if not state:
        return None, None, None
    result: Analysis = state.result(w)
    try:
        m, head = service.attention_map(result, kind, layer, head)
        rows, cols = service.head_window(m, window)
        cells = tiles.pool(m.source, rows, cols, HEAD_CELLS, heads=[head])
        allowed = tiles.pool_mask(m.source, rows, cols, HEAD_CELLS)
    except ValueError as e:
        raise w.error(e) from None
    layer = m.layer
    q, k = kind_labels(kind, result)
    where = msg("title.head", kind=kind_title(kind, result), layer=layer, head=head)
    if m.layer_type:
        where = msg("title.head_typed", head=where, type=layer_type(m.layer_type))
    untrained, signed = state.untrained, kind == "implicit"
    meta = dict(kind=kind, layer=layer, head=head, rows=list(rows), cols=list(cols), cell=list(cells.cell),
                tokens=[m.shape[1], m.shape[2]])
    z = cells.cells(how)[0]
    q, k, look = cell_labels(w, cells, q, k)
    if cells.exact:
        allowed = allowed > 0.5
    else:
        where = msg("title.head_cells", head=where, how=w(f"plot.cells_{how}", cr=cells.cell[0], cc=cells.cell[1]),
                    hint=w("plot.zoom_hint", n=HEAD_CELLS))
    mask_title = msg("title.mask", layer=layer, kind=msg(f"kind_short.{kind}"))
    zmax = 1.0
    if m.shape[2] > plots.FIT_SCALE_KEYS and not signed and np.isfinite(z).any() and float(np.nanmax(z)) > 0:
        zmax = float(np.nanmax(z))  # over thousands of keys a weight is small: a 0..1 scale would show nothing
        where = msg("title.with_scale", title=where, scale=w("plot.fitted_scale", zmax=zmax))
    sink = None
    if getattr(m.source, "sinks", None) is not None:  # gpt-oss: each row's share of softmax that went to its sink
        share = m.source.sink_share()[head].numpy()
        edges = cells.row_edges()
        sink = np.array([getattr(share[a:b], how)() for a, b in zip(edges[:-1], edges[1:])], dtype=np.float32)
    return (plots.head(z, q, k, where, mask=allowed > 0, untrained=untrained, signed=signed, words=w, meta=meta,
                       zmax=zmax, sink=sink, **look),
            plots.mask(allowed, q, k, mask_title, words=w, **look),
            plots.mask_overlay(z, allowed, q, k, msg("title.overlay", layer=layer, head=head), signed=signed,
                               words=w, zmax=zmax, **look))


def head(spec: str, prompt: str, kind: str, layer: int, head: int, prefix_len: int = 0, window: int = 0,
         backend: str = "auto", device: str = "cpu", dtype: str = "auto", request: gr.Request = None) -> dict[str, str]:
    """One head at full resolution: Plotly JSON of the head, the mask its layer computed with, the two
    overlaid, and the fused kernel's block mask for its layer (null without an attention kernel).
    kind: self | encoder_self | decoder_self | cross | implicit, as the model has them."""
    w = Words(request)
    state = analysis_state(w, spec, prompt, prefix_len, window, backend, device, dtype)
    figures = head_figures(w, state, kind, layer, head)
    blocks, _ = block_view(w, state, kind, layer)
    return {**{name: fig.to_json() for name, fig in zip(("head", "mask", "overlay"), figures)},
            "blocks": blocks.to_json() if blocks else None}


def tile(spec: str, prompt: str, kind: str, layer: int, head: int, rows: list[int], cols: list[int],
         resolution: int = 512, how: str = "max", prefix_len: int = 0, window: int = 0, backend: str = "auto",
         device: str = "cpu", dtype: str = "auto", request: gr.Request = None) -> dict:
    """The numbers of a window of one head, rebuilt from the analysis' q, k and log-sum-exp: rows [a, b) x keys
    [c, d) (token indices) in at most resolution x resolution cells (1..512), each the max or mean of the weights
    it covers; at a window of resolution tokens a side or fewer every cell is one exact weight. The analysis is
    the one /analyze makes of the same spec, prompt and options (computed if the server has none).

    Returns {"rows": [a, b], "cols": [c, d], "cell": [cr, cc], "exact": bool, "how": ..., "row_edges": [...],
    "col_edges": [...], "values": [[...]] (n_rows x n_cols), "allowed": [[...]] (share of each cell the mask
    allows), "row_labels" / "col_labels" (the tokens, when exact)}."""
    w = Words(request)
    resolution = int(resolution) if str(resolution).lstrip("-").isdigit() else -1
    if not 1 <= resolution <= HEAD_CELLS:
        raise visitor_error(w("error.resolution", value=resolution, most=HEAD_CELLS))
    if how not in POOLING:
        raise visitor_error(w("error.pooling", value=how, valid=", ".join(POOLING)))
    state = analysis_state(w, spec, prompt, prefix_len, window, backend, device, dtype)
    result = state.result(w)
    try:
        m, head = service.attention_map(result, kind, layer, head)
        r, c = service.head_window(m, {"rows": rows, "cols": cols})
        cells = tiles.pool(m.source, r, c, resolution, heads=[head])
        allowed = tiles.pool_mask(m.source, r, c, resolution)
    except ValueError as e:
        raise w.error(e) from None
    out = {"rows": list(r), "cols": list(c), "cell": list(cells.cell), "exact": cells.exact, "how": how,
           "row_edges": cells.row_edges().tolist(), "col_edges": cells.col_edges().tolist(),
           "values": np.round(cells.cells(how)[0].astype(np.float64), 7).tolist(), "allowed": allowed.tolist()}
    if cells.exact:
        q, k = kind_labels(kind, result)
        out.update(row_labels=q[r[0]:r[1]], col_labels=k[c[0]:c[1]])
    return out
