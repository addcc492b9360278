"""Attention weights rebuilt on demand from what the kernel saw: q, k and each query row's log-sum-exp.

A fused kernel (FlashAttention, FlexAttention) never holds the (Tq, Tk) matrix of weights, and
neither does this module. Softmax row i is

    weight(i, j) = exp(s_ij - lse_i),   s_ij = q_i . k_j / sqrt(hs) + bias_ij,   lse_i = log sum_j exp(s_ij)

over the keys j the mask rule lets query i see (0 elsewhere). So q (after RoPE), k (after RoPE, one
per K/V head: a GQA or MQA model stores fewer), the rule, the ALiBi slopes and lse (Tq numbers per
head) give any tile of weights exactly, at any time, in memory that grows with T, not T². The
kernel returns lse where it can (CPU flash, FlexAttention, the explicit path); otherwise
``streamed_lse`` computes it tile by tile, as FlashAttention's online softmax does.

``output_from_tiles`` closes the loop: sum_j weight(i, j) v_j, tile by tile, must reproduce the
kernel's own output (the faithfulness check).

Glossary: B batch, nh query heads, n_kv K/V heads, g = nh / n_kv query heads per K/V head,
Tq queries, Tk keys, hs head dim, r / c rows / columns of a tile.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from playground.nn.masks import MaskRule

TILE = 512           # rows and columns per tile: 512 x 512 x nh float32 scores stay in a few MB
MAX_DENSE = 1 << 27  # the most weights ``dense`` builds at once (512 MB of float32): larger asks for tiles
MASKED = -1e30       # a finite "minus infinity": exp gives 0 and 0 * MASKED stays 0 (no NaN in sums)


def compact(t: Tensor | None) -> Tensor | None:
    """``t`` alone in its memory: a copy where it is a view into a larger buffer (q and k split from a fused
    QKV projection, a slice of a preallocated cache), which holding the view would keep whole; else ``t``."""
    if t is None or t.untyped_storage().nbytes() <= t.nbytes:
        return t
    return t.clone(memory_format=torch.contiguous_format)


@dataclass
class AttentionSource:
    """What any weight of one attention call can be rebuilt from; held on the CPU.

    q: (B, nh, Tq, hs) as the kernel saw it (after RoPE), in the run's dtype.
    k: (B, n_kv, Tk, hs) per K/V head, after RoPE.
    lse: (B, nh, Tq) float32, log sum_j exp(s_ij) over the keys each query sees.
    rule / q_start / k_start / key_valid: the mask: query i at position q_start + i sees key j at
        k_start + j when ``rule`` allows it and key_valid[b, j] (None: no padding).
    alibi_slopes: (nh,) or None: s_ij gets -slope_h * |pos_i - pos_j| (``nn.position.alibi_bias``).
    lse_source: "kernel" (returned by the kernel that ran) or "streamed" (``streamed_lse``).
    scale: what q . k is multiplied by (None: 1 / sqrt(hs); checkpoints such as Gemma's set their own).
    softcap: None, or c: the scaled score becomes c * tanh(score / c) before any bias (Gemma 2).
    rel_bias / rel_offset: None, or (nh, n) float32: a bias that depends only on the offset key - query
        (T5's bucketed relative positions): key position p_j and query position p_i read
        rel_bias[:, p_j - p_i - rel_offset]. Held per offset, so it grows with T, not T².
    sinks: None, or (nh,) float32: one extra logit per head that enters each row's softmax with no value
        (gpt-oss's learned sinks): lse counts it, the keys' weights sum to 1 - exp(sink_h - lse_i).
    """

    q: Tensor
    k: Tensor
    lse: Tensor | None
    rule: MaskRule
    q_start: int = 0
    k_start: int = 0
    key_valid: Tensor | None = None
    alibi_slopes: Tensor | None = None
    lse_source: str = "kernel"
    scale: float | None = None
    softcap: float | None = None
    rel_bias: Tensor | None = None
    rel_offset: int = 0
    sinks: Tensor | None = None

    def __post_init__(self):
        B, nh, _, hs = self.q.shape
        if self.k.dim() != 4 or self.k.shape[0] != B or self.k.shape[3] != hs or nh % self.k.shape[1]:
            raise ValueError(f"q {tuple(self.q.shape)} and k {tuple(self.k.shape)}: expected (B, nh, Tq, hs) and "
                             "(B, n_kv, Tk, hs) with n_kv dividing nh")
        self.q, self.k, self.lse = compact(self.q), compact(self.k), compact(self.lse)
        if self.lse is None:
            self.lse, self.lse_source = streamed_lse(self), "streamed"

    @property
    def n_heads(self) -> int:
        return self.q.shape[1]

    @property
    def n_kv_heads(self) -> int:
        return self.k.shape[1]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(B, nh, Tq, Tk): the shape of the weights this rebuilds."""
        return self.q.shape[0], self.q.shape[1], self.q.shape[2], self.k.shape[2]

    @property
    def device(self) -> torch.device:
        return self.q.device

    @property
    def nbytes(self) -> int:
        """What this source holds: q, k and lse (the weights would be B * nh * Tq * Tk * 4)."""
        extra = sum(t.nbytes for t in (self.key_valid, self.rel_bias, self.sinks) if t is not None)
        return self.q.nbytes + self.k.nbytes + self.lse.nbytes + extra

    @property
    def score_scale(self) -> float:
        """What q . k is multiplied by: ``scale``, or 1 / sqrt(hs)."""
        return 1 / math.sqrt(self.q.shape[-1]) if self.scale is None else float(self.scale)

    def to_cpu(self) -> "AttentionSource":
        """The same source on the CPU (the device's memory is freed as each layer is recorded)."""
        move = lambda t: None if t is None else t.detach().to("cpu")  # noqa: E731
        return replace(self, q=move(self.q), k=move(self.k), lse=move(self.lse), key_valid=move(self.key_valid),
                       alibi_slopes=move(self.alibi_slopes), rel_bias=move(self.rel_bias), sinks=move(self.sinks))

    def sink_share(self, batch: int = 0) -> Tensor | None:
        """(nh, Tq) float32: the share of each row's softmax that went to the sink logit, or None without sinks."""
        if self.sinks is None:
            return None
        return (self.sinks.float().to(self.lse.device)[:, None] - self.lse[batch]).exp()

    def mask_tile(self, r0: int, r1: int, c0: int, c1: int, batch: int = 0) -> Tensor:
        """Whether query i may see key j, for rows r0..r1-1 and columns c0..c1-1. (r, c) bool

        The rule's own arithmetic (``masks.allowed``), with the terms that are constant for this rule
        left out: a tile is evaluated many times per view.
        """
        dev = self.q.device
        q_pos = torch.arange(self.q_start + r0, self.q_start + r1, device=dev, dtype=torch.int32)[:, None]
        k_pos = torch.arange(self.k_start + c0, self.k_start + c1, device=dev, dtype=torch.int32)[None, :]
        rule = self.rule
        if rule.sees_all:
            mask = torch.ones(r1 - r0, c1 - c0, dtype=torch.bool, device=dev)
        else:
            mask = k_pos <= q_pos
            if rule.prefix_len:
                mask = mask | (k_pos < rule.prefix_len)
        if rule.window > 0:
            mask = mask & ((q_pos - k_pos).abs() < rule.window)
        if self.key_valid is not None:
            mask = mask & self.key_valid[batch, c0:c1].to(dev)[None, :]
        return mask

    def log_weights(self, r0: int, r1: int, c0: int, c1: int, heads: list[int] | None = None,
                    batch: int = 0, mask: Tensor | None = None) -> Tensor:
        """s_ij - lse_i in float32, ``MASKED`` where the rule hides key j. (h, r, c)

        Heads are computed per K/V head in one batched matmul (no K/V repeated to nh heads).
        """
        nh, n_kv = self.n_heads, self.n_kv_heads
        g, r, c = nh // n_kv, r1 - r0, c1 - c0
        hs, scale = self.q.shape[-1], self.score_scale
        k = self.k[batch, :, c0:c1].float()  # (n_kv, c, hs)
        # Without soft-capping lse folds into the matmul; with it, tanh comes between the product and lse.
        fold = self.softcap is None
        if heads is None:
            heads_t = None
            q = self.q[batch, :, r0:r1].float().reshape(n_kv, g * r, hs)  # (n_kv, g * r, hs)
            lse = self.lse[batch, :, r0:r1].reshape(n_kv, g * r, 1)
            kt = k.transpose(1, 2)
        else:
            heads_t = torch.as_tensor(heads, device=self.q.device)
            q = self.q[batch, heads_t, r0:r1].float()  # (h, r, hs)
            lse = self.lse[batch, heads_t, r0:r1, None]
            kt = k[heads_t // g].transpose(1, 2)
        if fold:
            s = torch.baddbmm(lse, q, kt, beta=-1.0, alpha=scale)  # (n_kv, g * r, c) or (h, r, c)
        else:
            s = torch.bmm(q, kt).mul_(scale).div_(self.softcap).tanh_().mul_(self.softcap).sub_(lse)
        s = s.view(nh if heads_t is None else len(heads), r, c)
        if self.alibi_slopes is not None:
            slopes = self.alibi_slopes.float().to(s.device)
            slopes = slopes if heads_t is None else slopes[heads_t]
            dist = (torch.arange(self.q_start + r0, self.q_start + r1, device=s.device)[:, None]
                    - torch.arange(self.k_start + c0, self.k_start + c1, device=s.device)[None, :]).abs().float()
            s = s - slopes[:, None, None] * dist[None]
        if self.rel_bias is not None:
            s = s + self.rel_bias_tile(r0, r1, c0, c1, heads_t).to(s.device)
        if mask is None:
            mask = self.mask_tile(r0, r1, c0, c1, batch)
        if bool(mask.all()):  # most tiles of a long causal prompt lie wholly below the diagonal
            return s
        return s.masked_fill_(~mask, MASKED)

    def rel_bias_tile(self, r0: int, r1: int, c0: int, c1: int, heads: Tensor | None = None) -> Tensor:
        """The relative bias of rows r0..r1-1 over keys c0..c1-1, read from its per-offset table. (h, r, c) float32"""
        off = (torch.arange(self.k_start + c0, self.k_start + c1)[None, :]
               - torch.arange(self.q_start + r0, self.q_start + r1)[:, None]) - self.rel_offset  # (r, c)
        table = self.rel_bias.float() if heads is None else self.rel_bias[heads.cpu()].float()
        return table[:, off]

    def tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int] | None = None, batch: int = 0) -> Tensor:
        """Exact weights of rows r0..r1-1 over keys c0..c1-1. (h, r, c) float32"""
        self._check_range(r0, r1, c0, c1)
        return self.log_weights(r0, r1, c0, c1, heads, batch).exp_()

    def dense(self, batch: int | None = None) -> Tensor:
        """The whole weights, built tile by tile: (B, nh, Tq, Tk), or (nh, Tq, Tk) for one ``batch``.

        Raises ValueError past ``MAX_DENSE`` weights: ask for tiles (``tile``) or pooled cells instead.
        """
        return dense_of(self, batch)

    def dense_mask(self) -> Tensor:
        """The rule at every (query, key): (Tq, Tk) bool, or (B, 1, Tq, Tk) with padding."""
        B, _, Tq, Tk = self.shape
        q_pos = torch.arange(self.q_start, self.q_start + Tq)
        k_pos = torch.arange(self.k_start, self.k_start + Tk)
        return self.rule.dense(q_pos, k_pos, None if self.key_valid is None else self.key_valid.cpu())

    def dense_bias(self) -> Tensor | None:
        """The additive bias at every (query, key) (ALiBi, or a relative-position table), (nh, Tq, Tk), or None."""
        if self.rel_bias is not None:
            _, _, Tq, Tk = self.shape
            return self.rel_bias_tile(0, Tq, 0, Tk)
        if self.alibi_slopes is None:
            return None
        _, _, Tq, Tk = self.shape
        dist = (torch.arange(self.q_start, self.q_start + Tq)[:, None]
                - torch.arange(self.k_start, self.k_start + Tk)[None, :]).abs().float()
        return -self.alibi_slopes.float().cpu()[:, None, None] * dist[None]

    def _check_range(self, r0: int, r1: int, c0: int, c1: int) -> None:
        _, _, Tq, Tk = self.shape
        if not (0 <= r0 < r1 <= Tq and 0 <= c0 < c1 <= Tk):
            raise ValueError(f"rows {r0}..{r1 - 1} and keys {c0}..{c1 - 1} are outside this attention's "
                             f"{Tq} queries x {Tk} keys")


class ImplicitSource:
    """Implicit attention (RWKV, Mamba) read tile by tile: signed, not normalised, causal, with no log-sum-exp.

    A subclass holds the per-token quantities its recurrence unrolls from (memory linear in T) and
    computes one tile in ``_tile``; this class gives the interface ``AttentionSource`` has (``shape``,
    ``mask_tile``, ``tile``, ``dense``, ...). Queries are the ``Tq`` newest of ``Tk`` tokens (positions
    Tk - Tq .. Tk - 1), and each sees the keys at or before it.
    """

    signed = True
    device = torch.device("cpu")  # sources are kept on the CPU, like the softmax ones
    k_start = 0                   # key j is token j: a recurrence keeps every token in its state

    @property
    def shape(self) -> tuple[int, int, int, int]:
        raise NotImplementedError

    @property
    def n_heads(self) -> int:
        return self.shape[1]

    @property
    def n_kv_heads(self) -> int:
        """One value row per head (the output check applies a head's weights to its own values)."""
        return self.shape[1]

    @property
    def q_start(self) -> int:
        _, _, Tq, Tk = self.shape
        return Tk - Tq

    def _tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int], batch: int) -> Tensor:
        """The weights of rows r0..r1-1 over keys c0..c1-1 of ``heads`` (h, r, c); any value above the diagonal
        is overwritten with 0 by ``tile``."""
        raise NotImplementedError

    def mask_tile(self, r0: int, r1: int, c0: int, c1: int, batch: int = 0) -> Tensor:
        """Causal: query i (position q_start + i) sees key j <= q_start + i. (r, c) bool"""
        q_pos = torch.arange(self.q_start + r0, self.q_start + r1)[:, None]
        return torch.arange(c0, c1)[None, :] <= q_pos

    def tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int] | None = None, batch: int = 0) -> Tensor:
        """Weights of rows r0..r1-1 over keys c0..c1-1. (h, r, c) float32"""
        _, nh, Tq, Tk = self.shape
        if not (0 <= r0 < r1 <= Tq and 0 <= c0 < c1 <= Tk):
            raise ValueError(f"rows {r0}..{r1 - 1} and keys {c0}..{c1 - 1} are outside this attention's "
                             f"{Tq} queries x {Tk} keys")
        heads = list(range(nh)) if heads is None else list(heads)
        mask = self.mask_tile(r0, r1, c0, c1, batch)
        if not bool(mask.any()):
            return torch.zeros(len(heads), r1 - r0, c1 - c0)
        return self._tile(r0, r1, c0, c1, heads, batch).float().masked_fill_(~mask, 0.0)

    def dense(self, batch: int | None = None) -> Tensor:
        """The whole weights, tile by tile: (B, nh, Tq, Tk), or (nh, Tq, Tk) for one ``batch`` (``MAX_DENSE`` at most)."""
        return dense_of(self, batch)

    def dense_mask(self) -> Tensor:
        _, _, Tq, Tk = self.shape
        return self.mask_tile(0, Tq, 0, Tk)

    def dense_bias(self) -> None:
        return None


@dataclass
class StoredWeights(ImplicitSource):
    """Implicit attention held whole: weights (B, nh, Tq, Tk), signed, zero above the causal diagonal of the
    Tq newest tokens. For short sequences and tests; the models' own sources rebuild tiles instead."""

    weights: Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.weights.shape)

    @property
    def nbytes(self) -> int:
        return self.weights.nbytes

    def to_cpu(self) -> "StoredWeights":
        return StoredWeights(self.weights.detach().float().cpu())

    def _tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int], batch: int) -> Tensor:
        return self.weights[batch, torch.as_tensor(heads), r0:r1, c0:c1]


def dense_of(src: "AttentionSource | ImplicitSource", batch: int | None = None) -> Tensor:
    """A source's whole weights, tile by tile: (B, nh, Tq, Tk), or (nh, Tq, Tk) for one ``batch``; ValueError past
    ``MAX_DENSE`` weights (ask for tiles or pooled cells instead)."""
    B, nh, Tq, Tk = src.shape
    batches = range(B) if batch is None else [batch]
    if len(batches) * nh * Tq * Tk > MAX_DENSE:
        raise ValueError(f"{len(batches)} x {nh} x {Tq} x {Tk} weights are too many to hold at once; "
                         "ask for a tile (source.tile) or pooled cells (inspect.tiles) instead")
    out = torch.zeros(len(batches), nh, Tq, Tk)
    for n, b in enumerate(batches):
        for r0, r1, c0, c1 in tile_grid(Tq, Tk):
            out[n, :, r0:r1, c0:c1] = src.tile(r0, r1, c0, c1, batch=b).cpu()
    return out if batch is None else out[0]


def tile_grid(Tq: int, Tk: int, rows: int = TILE, cols: int = TILE, r_range: tuple[int, int] | None = None,
              c_range: tuple[int, int] | None = None) -> Iterator[tuple[int, int, int, int]]:
    """(r0, r1, c0, c1) of the tiles covering rows r_range x keys c_range (default: everything), row-major."""
    ra, rb = r_range or (0, Tq)
    ca, cb = c_range or (0, Tk)
    for r0 in range(ra, rb, rows):
        for c0 in range(ca, cb, cols):
            yield r0, min(r0 + rows, rb), c0, min(c0 + cols, cb)


def streamed_lse(src: AttentionSource, block: int = TILE) -> Tensor:
    """log sum_j exp(s_ij) over the keys each query sees, one tile at a time (online, as FlashAttention). (B, nh, Tq)

    A query that sees no key gets -inf.
    """
    B, nh, Tq, Tk = src.shape
    zero = replace(src, lse=torch.zeros(B, nh, Tq, device=src.q.device), lse_source="zero", sinks=None)
    lse = torch.full((B, nh, Tq), float("-inf"), device=src.q.device)
    for b in range(B):
        for r0, r1, c0, c1 in tile_grid(Tq, Tk, block, block):
            mask = zero.mask_tile(r0, r1, c0, c1, b)
            if not bool(mask.any()):
                continue
            s = zero.log_weights(r0, r1, c0, c1, batch=b, mask=mask).masked_fill_(~mask, float("-inf"))
            lse[b, :, r0:r1] = torch.logaddexp(lse[b, :, r0:r1], s.logsumexp(-1))
    if src.sinks is not None:  # the sink logit is one more term of every row's sum
        lse = torch.logaddexp(lse, src.sinks.float().to(lse.device)[None, :, None])
    return lse


def output_from_tiles(src: "AttentionSource | ImplicitSource", v: Tensor, block: int = TILE, tile_fn=None) -> Tensor:
    """sum_j weight(i, j) v_j, tile by tile, from the rebuilt weights: what the kernel's output must be.

    Args:
        v: (B, n_kv, Tk, hs) values per K/V head (implicit attention: per head).
        tile_fn: (r0, r1, c0, c1, batch) -> (nh, r, c) weights (default ``src.tile``; a test passes a perturbed one).
    Returns:
        (B, nh, Tq, hs) float32.
    """
    B, nh, Tq, Tk = src.shape
    g = nh // src.n_kv_heads
    tile_fn = tile_fn or (lambda r0, r1, c0, c1, b: src.tile(r0, r1, c0, c1, batch=b))
    out = torch.zeros(B, nh, Tq, v.shape[-1], device=src.device)
    for b in range(B):
        for r0, r1, c0, c1 in tile_grid(Tq, Tk, block, block):
            if not bool(src.mask_tile(r0, r1, c0, c1, b).any()):
                continue
            w = tile_fn(r0, r1, c0, c1, b)  # (nh, r, c)
            r = r1 - r0
            grouped = w.reshape(src.n_kv_heads, g * r, c1 - c0)  # (n_kv, g * r, c)
            out[b, :, r0:r1] += (grouped @ v[b, :, c0:c1].float()).view(nh, r, -1)
    return out


def max_output_diff(src: "AttentionSource | ImplicitSource", v: Tensor, out: Tensor, **kwargs) -> float:
    """max |sum_j weight(i, j) v_j - out|: how far the rebuilt weights are from the kernel's output."""
    return float((output_from_tiles(src, v, **kwargs) - out.float().to(src.device)).abs().max())
