"""What every figure shares: the font and colour scales, the words a figure writes (``WORDS``, and
``ENGLISH`` writing them), safe token labels, colour axes, downsampling and the common layout."""
from __future__ import annotations

import html

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


def _hover(words, value_key: str, fmt: str = "") -> str:
    """'query <q><br>key <k><br><value word> <z>' in the reader's words."""
    return (f"{words('plot.query')} %{{y}}<br>{words('plot.key')} %{{x}}<br>"
            f"{words(value_key)} %{{z{fmt}}}<extra></extra>")
