"""Views that ask for tiles: pooled cells, exact windows and head statistics, streamed over a source.

A source (``nn.rebuild.AttentionSource`` for softmax attention, an ``ImplicitSource`` for RWKV and Mamba)
answers any tile of weights. Nothing here holds a (Tq, Tk) matrix: every function walks tiles of at
most ``nn.rebuild.TILE`` x TILE keys, skips tiles the mask rule hides entirely, and keeps only what it
reduces them to.

- ``pool``: a window of one or more heads as cells of cr x cc weights, the max and the mean of each cell
  (exact weights when a cell is one weight). The overview, the zoomable head map and ``/tile`` use it.
- ``sweep``: one pass over a whole layer that pools every head for the overview, computes the head
  statistics below and, when the kernel's values and output are at hand, the faithfulness check.

Head statistics, per head, with ``inspect.heads``'s definitions (its docstring gives them in full):
entropy, mean distance |i - j|, first-token sink (mean of column 0), previous-token, duplicate-token and
induction role shares (over the queries that have an expected key), and the **attention by distance**
profile: the mean weight over the (query, key) pairs the mask allows whose distance |i - j| falls in
each log2 bin [0], [1], [2, 3], [4, 7], ... .

Glossary: h heads, r / c rows / columns of a tile, cr / cc rows / columns per cell, nb distance bins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from playground.nn.rebuild import TILE, AttentionSource, ImplicitSource, tile_grid

# a whole layer's pass: 9 heads x 512² float32 is 9.4 MB a tile. Larger tiles are slower, not faster: past
# the C allocator's largest reuse threshold (32 MB) every tile's buffers are fresh pages from the kernel.
SWEEP_TILE = 512
STATS = ("entropy", "mean_distance", "first_token_sink", "previous_token", "duplicate_token", "induction")


@dataclass
class Pooled:
    """Cells of a window of weights: rows r0..r1-1 x keys c0..c1-1 in cells of cr x cc (the last ones smaller).

    max / mean: (h, n_rows, n_cols) float32, the largest and the mean weight of each cell (signed
    attention: the value of largest magnitude, and the mean). ``exact``: one weight per cell.
    """

    max: np.ndarray
    mean: np.ndarray
    rows: tuple[int, int]
    cols: tuple[int, int]
    cell: tuple[int, int]

    @property
    def exact(self) -> bool:
        return self.cell == (1, 1)

    def cells(self, how: str = "max") -> np.ndarray:
        if how not in ("max", "mean"):
            raise ValueError(f"pooling must be 'max' or 'mean', got {how!r}")
        return self.max if how == "max" else self.mean

    def row_edges(self) -> np.ndarray:
        """First row of each cell, and r1 at the end. (n_rows + 1,)"""
        return np.minimum(np.arange(self.rows[0], self.rows[1] + self.cell[0], self.cell[0]), self.rows[1])[
            : self.max.shape[1] + 1]

    def col_edges(self) -> np.ndarray:
        return np.minimum(np.arange(self.cols[0], self.cols[1] + self.cell[1], self.cell[1]), self.cols[1])[
            : self.max.shape[2] + 1]

    @property
    def nbytes(self) -> int:
        return self.max.nbytes + self.mean.nbytes


def cell_size(span: int, cells: int) -> int:
    """The cell side that covers ``span`` weights in at most ``cells`` cells."""
    if span < 1 or cells < 1:
        raise ValueError(f"a window of {span} weights in {cells} cells: both must be at least 1")
    return max(1, math.ceil(span / cells))


def tile_side(cell: int, tile: int = TILE) -> int:
    """Tiles hold whole cells: the largest multiple of the cell within ``tile`` (at least one cell)."""
    return max(cell, (tile // cell) * cell)


class Pooler:
    """Accumulates the max and the sum of each cell, tile by tile."""

    def __init__(self, h: int, rows: tuple[int, int], cols: tuple[int, int], cell: tuple[int, int], signed: bool):
        self.rows, self.cols, self.cell, self.signed = rows, cols, cell, signed
        nr, nc = -(-(rows[1] - rows[0]) // cell[0]), -(-(cols[1] - cols[0]) // cell[1])
        self.max = torch.zeros(h, nr, nc)
        self.sum = torch.zeros(h, nr, nc)

    def add(self, w: Tensor, r0: int, r1: int, c0: int, c1: int) -> None:
        cr, cc = self.cell
        h, r, c = w.shape
        pr, pc = (-r) % cr, (-c) % cc
        if pr or pc:
            w = torch.nn.functional.pad(w, (0, pc, 0, pr))
        blocks = w.view(h, (r + pr) // cr, cr, (c + pc) // cc, cc)
        i, j = (r0 - self.rows[0]) // cr, (c0 - self.cols[0]) // cc
        ni, nj = blocks.shape[1], blocks.shape[3]
        if self.signed:
            hi, lo = blocks.amax((2, 4)), blocks.amin((2, 4))
            top = torch.where(hi.abs() >= lo.abs(), hi, lo)
        else:
            top = blocks.amax((2, 4))
        self.max[:, i:i + ni, j:j + nj] = top
        self.sum[:, i:i + ni, j:j + nj] = blocks.sum((2, 4))

    def result(self) -> Pooled:
        r_sizes = np.diff(np.minimum(np.arange(self.rows[0], self.rows[1] + self.cell[0], self.cell[0]),
                                     self.rows[1]))[: self.max.shape[1]]
        c_sizes = np.diff(np.minimum(np.arange(self.cols[0], self.cols[1] + self.cell[1], self.cell[1]),
                                     self.cols[1]))[: self.max.shape[2]]
        area = torch.from_numpy(np.outer(r_sizes, c_sizes).astype(np.float32))
        return Pooled(self.max.numpy(), (self.sum / area).numpy(), self.rows, self.cols, self.cell)


def _signed(src) -> bool:
    return isinstance(src, ImplicitSource)


def pool(src: AttentionSource | ImplicitSource, rows: tuple[int, int], cols: tuple[int, int], cells: int,
         heads: list[int] | None = None, batch: int = 0) -> Pooled:
    """A window (rows r0..r1-1, keys c0..c1-1) of the chosen heads in at most ``cells`` x ``cells`` cells, each
    the max and the mean of the weights it covers; exact weights when the window fits (cell 1 x 1)."""
    _, nh, Tq, Tk = src.shape
    (r0, r1), (c0, c1) = rows, cols
    if not (0 <= r0 < r1 <= Tq and 0 <= c0 < c1 <= Tk):
        raise ValueError(f"rows {r0}..{r1 - 1} and keys {c0}..{c1 - 1} are outside this attention's "
                         f"{Tq} queries x {Tk} keys")
    cell = (cell_size(r1 - r0, cells), cell_size(c1 - c0, cells))
    pooler = Pooler(nh if heads is None else len(heads), rows, cols, cell, _signed(src))
    for a0, a1, b0, b1 in tile_grid(Tq, Tk, tile_side(cell[0]), tile_side(cell[1]), rows, cols):
        if not bool(src.mask_tile(a0, a1, b0, b1, batch).any()):
            continue
        pooler.add(src.tile(a0, a1, b0, b1, heads, batch), a0, a1, b0, b1)
    return pooler.result()


def pool_mask(src: AttentionSource | ImplicitSource, rows: tuple[int, int], cols: tuple[int, int], cells: int,
              batch: int = 0) -> np.ndarray:
    """The mask over the same cells as ``pool``: the share of each cell's (query, key) pairs the rule allows
    (exactly the mask, 0 or 1, when a cell is one pair). (n_rows, n_cols) float32"""
    (r0, r1), (c0, c1) = rows, cols
    cell = (cell_size(r1 - r0, cells), cell_size(c1 - c0, cells))
    pooler = Pooler(1, rows, cols, cell, False)
    for a0, a1, b0, b1 in tile_grid(*src.shape[2:], tile_side(cell[0]), tile_side(cell[1]), rows, cols):
        pooler.add(src.mask_tile(a0, a1, b0, b1, batch)[None].float(), a0, a1, b0, b1)
    return pooler.result().mean[0]


@dataclass
class HeadStats:
    """Per-head statistics of one layer (arrays of nh), and its attention-by-distance profile."""

    values: dict[str, np.ndarray]   # STATS name -> (nh,)
    profile: np.ndarray             # (nh, nb) mean weight per distance bin; NaN where no pair has that distance
    bin_edges: np.ndarray           # (nb + 1,) distances: bin b holds e_b <= |i - j| < e_{b+1}

    def rows(self, layer: int) -> list[dict]:
        nh = len(next(iter(self.values.values())))
        return [{"layer": layer, "head": h, **{k: float(v[h]) for k, v in self.values.items()}} for h in range(nh)]


def distance_bins(T: int) -> np.ndarray:
    """Log2 bin edges over distances 0..T-1: [0, 1, 2, 4, 8, ..., >= T]."""
    edges = [0, 1]
    while edges[-1] < T:
        edges.append(edges[-1] * 2)
    return np.array(edges)


def _earlier_copy(tokens: np.ndarray) -> np.ndarray:
    """Whether token i repeats an earlier token: the queries with a duplicate (and an induction) key. (T,)"""
    seen, out = set(), np.zeros(len(tokens), dtype=bool)
    for i, t in enumerate(tokens.tolist()):
        out[i] = t in seen
        seen.add(t)
    return out


class _Stats:
    """Accumulates the head statistics, tile by tile (batch 0)."""

    def __init__(self, nh: int, Tq: int, Tk: int, tokens: np.ndarray | None, positional: bool = True):
        self.nh, self.Tq, self.positional = nh, Tq, positional
        self.entropy = torch.zeros(nh, dtype=torch.float64)
        self.distance = torch.zeros(nh, dtype=torch.float64)
        self.sink = torch.zeros(nh, dtype=torch.float64)
        self.row_sum = torch.zeros(nh, Tq, dtype=torch.float64)
        self.prev = torch.zeros(nh, dtype=torch.float64)
        self.dup = torch.zeros(nh, dtype=torch.float64)
        self.ind = torch.zeros(nh, dtype=torch.float64)
        self.edges = distance_bins(max(Tq, Tk))
        self.mass = torch.zeros(nh, len(self.edges) - 1, dtype=torch.float64)
        self.pairs = torch.zeros(len(self.edges) - 1, dtype=torch.float64)
        self.tokens = None if tokens is None or len(tokens) != Tq or Tq != Tk else torch.as_tensor(tokens)
        if self.tokens is not None:
            self.prev_tokens = torch.cat([torch.tensor([-1]), self.tokens[:-1]])  # token j-1 at key j
            self.has_copy = torch.from_numpy(_earlier_copy(np.asarray(tokens)))

    def add(self, w: Tensor, log_w: Tensor, mask: Tensor, r0: int, r1: int, c0: int, c1: int) -> None:
        """Adds one tile: w (h, r, c) its weights, log_w their logs (overwritten: it is scratch afterwards)."""
        h, r, c = w.shape
        flat = w.view(h, r * c)
        i = torch.arange(r0, r1)[:, None]
        j = torch.arange(c0, c1)[None, :]
        # w log w in place; per row in float32 (c terms), rows summed in float64: a float32 sum over a whole
        # tile loses digits
        self.entropy -= log_w.mul_(w).sum(-1).double().sum(-1)
        # sum_j w_ij |i - j| from two matrix-vector products: i * rowsum - sum_j w_ij j, where every key is
        # at or before its query; the tiles the diagonal crosses weigh |i - j| directly
        row_sum = w.sum(-1)  # (h, r)
        if c1 - 1 <= r0 or c0 >= r1 - 1:
            sign = 1.0 if c1 - 1 <= r0 else -1.0
            by_key = w @ torch.arange(c0, c1, dtype=w.dtype)  # (h, r)
            self.distance += (sign * (torch.arange(r0, r1, dtype=w.dtype) * row_sum - by_key)).double().sum(-1)
        else:
            self.distance += (flat @ (i - j).abs().float().view(r * c)).double()
        self.row_sum[:, r0:r1] += row_sum.double()
        if c0 == 0:
            self.sink += w[:, :, 0].sum(-1).double()
        first, last = max(r0, c0 + 1), min(r1, c1 + 1)  # queries whose previous key is in this tile
        if first < last:
            rows = torch.arange(first, last)
            self.prev += w[:, rows - r0, rows - 1 - c0].sum(-1).double()
        if self.tokens is not None:
            tq = self.tokens[r0:r1, None]
            same = (tq == self.tokens[None, c0:c1]) & (j < i)       # duplicate-token pairs (r, c)
            after = (tq == self.prev_tokens[None, c0:c1]) & (j >= 1) & (j <= i)  # induction pairs
            if bool(same.any()):
                self.dup += (flat @ same.view(r * c).float()).double()
            if bool(after.any()):
                self.ind += (flat @ after.view(r * c).float()).double()
        self._by_distance(w, mask, r0, c0)

    def _by_distance(self, w: Tensor, mask: Tensor, r0: int, c0: int) -> None:
        """Weight mass and allowed pairs per distance bin, from row-wise prefix sums: the keys at distance
        [e_b, e_{b+1}) on either side of query i are two column ranges."""
        h, r, c = w.shape
        lo, hi = max(0, r0 - (c0 + c - 1), c0 - (r0 + r - 1)), max(abs(r0 - (c0 + c - 1)), abs(r0 + r - 1 - c0))
        b_lo, b_hi = np.searchsorted(self.edges, [lo, hi], side="right") - 1
        if b_lo == b_hi:  # every pair of the tile is in one bin (most tiles far from the diagonal)
            self.mass[:, b_lo] += w.sum((1, 2)).double()
            self.pairs[b_lo] += float(mask.sum())
            return
        prefix = w.new_zeros(h + 1, r, c + 1)  # prefix[..., x] = sum_{j < x}; the last row counts the pairs
        torch.cumsum(w, -1, out=prefix[:h, :, 1:])
        torch.cumsum(mask.float(), -1, out=prefix[h, :, 1:])
        e = torch.as_tensor(self.edges)
        i = torch.arange(r0, r0 + r)[:, None]  # (r, 1)

        def upto(last: Tensor) -> Tensor:  # sum over keys j <= last (absolute), within this tile. (h + 1, r, n)
            idx = (last - c0 + 1).clamp(0, c)
            return prefix.gather(2, idx.expand(h + 1, r, idx.shape[-1]))

        left = upto(i - e[None, :])                      # keys j <= i - e_b
        left = left[..., :-1] - left[..., 1:]            # e_b <= i - j < e_{b+1}
        right = upto(i + e[None, :] - 1)                 # keys j <= i + e_b - 1
        right = right[..., 1:] - right[..., :-1]         # e_b <= j - i < e_{b+1}
        right[..., 0] = 0                                # distance 0 counted once, on the left
        total = (left + right).sum(1).double()           # (h + 1, nb)
        self.mass += total[:h]
        self.pairs += total[h]

    def result(self) -> HeadStats:
        T = self.Tq
        values = {"entropy": self.entropy / T, "mean_distance": self.distance / T, "first_token_sink": self.sink / T}
        q_prev = torch.arange(T) >= 1
        values["previous_token"] = _share(self.prev, self.row_sum, q_prev)
        if self.tokens is not None:
            values["duplicate_token"] = _share(self.dup, self.row_sum, self.has_copy)
            values["induction"] = _share(self.ind, self.row_sum, self.has_copy)
        else:
            values["duplicate_token"] = values["induction"] = torch.full((self.nh,), float("nan"), dtype=torch.float64)
        profile = torch.where(self.pairs > 0, self.mass / self.pairs.clamp(min=1), float("nan"))
        if not self.positional:  # cross-attention: a decoder index and an encoder index are no distance apart
            for name in ("mean_distance", "previous_token"):
                values[name] = torch.full((self.nh,), float("nan"), dtype=torch.float64)
            profile = torch.full_like(profile, float("nan"))
        return HeadStats({k: v.numpy().astype(np.float64) for k, v in values.items()}, profile.numpy(), self.edges)


def _share(on_pattern: Tensor, row_sum: Tensor, queries: Tensor) -> Tensor:
    """Role share: attention on the expected pairs over the attention of the queries that have one (0 if none)."""
    if not bool(queries.any()):
        return torch.zeros_like(on_pattern)
    return on_pattern / row_sum[:, queries].sum(-1).clamp(min=1e-30)


@dataclass
class LayerSweep:
    """What one pass over a layer's tiles gives: the overview's cells, the head statistics and, when the
    kernel's values and output were given, max |sum_j weight v_j - out| (None otherwise)."""

    overview: Pooled
    stats: HeadStats
    max_abs_diff: float | None


def sweep(src: AttentionSource | ImplicitSource, cells: int, tokens=None, check: tuple[Tensor, Tensor] | None = None,
          batch: int = 0) -> LayerSweep:
    """One pass over every tile of a layer (batch ``batch``) the mask does not hide entirely.

    Args:
        cells: the overview's cells per side (each head at most cells x cells).
        tokens: the query tokens (T,), for the duplicate and induction shares of self-attention.
        check: (v (B, n_kv, Tk, hs), out (B, nh, Tq, hs)): also rebuild the output and compare (softmax only).
    """
    _, nh, Tq, Tk = src.shape
    cell = (cell_size(Tq, cells), cell_size(Tk, cells))
    pooler = Pooler(nh, (0, Tq), (0, Tk), cell, _signed(src))
    cross = isinstance(src, AttentionSource) and src.rule.kind == "cross"  # queries and keys of two sequences
    stats = _Stats(nh, Tq, Tk, None if tokens is None or cross else np.asarray(tokens), positional=not cross)
    rebuilt = None
    if check is not None:
        v, out = check
        g = nh // src.n_kv_heads
        rebuilt = torch.zeros(nh, Tq, v.shape[-1])
    for r0, r1, c0, c1 in tile_grid(Tq, Tk, tile_side(cell[0], SWEEP_TILE), tile_side(cell[1], SWEEP_TILE)):
        mask = src.mask_tile(r0, r1, c0, c1, batch)
        if not bool(mask.any()):
            continue
        if isinstance(src, AttentionSource):
            log_w = src.log_weights(r0, r1, c0, c1, batch=batch, mask=mask)  # (nh, r, c)
            w = torch.exp(log_w)
        else:
            w = src.tile(r0, r1, c0, c1, batch=batch).float()
            log_w = w.clamp(1e-12, 1.0).log()
        pooler.add(w, r0, r1, c0, c1)
        stats.add(w, log_w, mask, r0, r1, c0, c1)  # log_w is scratch after this
        if rebuilt is not None:
            r = r1 - r0
            grouped = w.view(src.n_kv_heads, g * r, c1 - c0)  # (n_kv, g * r, c)
            rebuilt[:, r0:r1] += (grouped @ v[batch, :, c0:c1].float()).view(nh, r, -1)
    diff = None if rebuilt is None else float((rebuilt - check[1][batch].float()).abs().max())
    return LayerSweep(pooler.result(), stats.result(), diff)
