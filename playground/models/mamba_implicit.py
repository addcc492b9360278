"""Mamba's hidden attention (Ali, Zimerman & Wolf 2024, arXiv 2403.01590), built a block at a time.

Unrolled from h_0 = 0, each channel c of a Mamba mixer is an attention over its own past inputs,

    y_t[c] = sum_{s <= t} alpha[t, s, c] x_s[c] + D[c] x_t[c]
    alpha[t, s, c] = delta_s[c] sum_n C_t[n] B_s[n] exp(A[c, n] (P_{t+1} - P_{s+1})[c]),

with P_p = delta_0 + ... + delta_{p-1} (``playground.models.mamba`` has the recurrence). At the
size of mamba-130m (1,536 channels) the whole alpha of 256 tokens is 384 MiB in float32, so it is
never formed: ``implicit_attention_blocks`` yields it one group of channels and one chunk of query
rows at a time (each chunk's tensors about ``BLOCK_ELEMENTS`` numbers), for the caller to check
and reduce before the next. Within a chunk the work is Mamba-2's chunked form (Dao & Gu 2024):
positions cut into blocks, queries against earlier blocks through batched matmuls, each block's own
square cut again (``BLOCKS``), the smallest squares computed directly.

Glossary: B batch, Tq queries, Tk every token seen, d_in channels, g channels in a group, n state
size, S block size, nq / nk query / key blocks, P cumulative delta (float64).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from playground.nn import masks
from playground.nn.rebuild import ImplicitSource

BLOCK_ELEMENTS = 1 << 22  # implicit attention is built a chunk at a time, about this many numbers per tensor
BLOCKS = (16, 4)          # blocks, then the blocks each is cut into (each size divides the one before);
                          # the last ones are computed directly


def _decay(span: Tensor, A: Tensor) -> Tensor:
    """exp(A span): span (B, g, ...) differences of P >= 0, A (g, n) -> (B, g, ..., n), every entry in (0, 1]."""
    g, n = A.shape
    return torch.exp(span.to(A.dtype)[..., None] * A.view(g, *(1,) * (span.dim() - 2), n))


def _earlier_blocks(P: Tensor, keys: Tensor, C: Tensor, A: Tensor, q_blocks: range) -> Tensor:
    """alpha of queries in blocks ``q_blocks`` over the keys of strictly earlier blocks (zero elsewhere).

    Args:
        P: (B, g, ..., K+1) P at positions p0..p0+K (a segment cut into K / S blocks of S positions).
        keys: (B, g, ..., K, n) delta_s B_s of the segment's tokens. C: (B, 1 or g, ..., nq * S, n) of the queries.
    Returns:
        (B, g, ..., nq, S, q_blocks.stop * S): per query, its weights over the segment's first keys.
    """
    nq, S = len(q_blocks), C.shape[-2] // len(q_blocks)
    nk = q_blocks.stop
    edges = P[..., :nk * S + 1:S]  # (B, g, ..., nk+1): P at every block edge
    q_inner = P[..., q_blocks.start * S + 1:nk * S + 1].unflatten(-1, (nq, S))  # (.., nq, S): P_{t+1}
    k_inner = P[..., 1:nk * S + 1].unflatten(-1, (nk, S))                       # (.., nk, S): P_{s+1}
    q_start = edges[..., q_blocks.start:nk]                                   # (.., nq): P_{iS}
    queries = C.unflatten(-2, (nq, S)) * _decay(q_inner - q_start[..., None], A)               # (.., nq, S, n)
    keys = keys[..., :nk * S, :].unflatten(-2, (nk, S)) * _decay(edges[..., 1:, None] - k_inner, A)  # (.., nk, S, n)
    earlier = (torch.arange(q_blocks.start, nk, device=P.device)[:, None]
               > torch.arange(nk, device=P.device)[None, :])  # (nq, nk): j < i
    hop = _decay((q_start[..., :, None] - edges[..., None, 1:]).clamp(min=0), A) * earlier[..., None]  # (.., nq, nk, n)
    past_keys = (hop[..., None, :] * keys[..., None, :, :, :]).flatten(-3, -2)  # (.., nq, nk * S, n)
    # bmm on 3-d views reads past_keys transposed in place (matmul on more dims would copy it)
    alpha = torch.bmm(queries.flatten(0, -3), past_keys.flatten(0, -3).transpose(1, 2))  # (.., S, nk * S)
    return alpha.view(*queries.shape[:-1], nk * S)  # (.., nq, S, nk * S)


def _square(P: Tensor, keys: Tensor, C: Tensor, A: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """alpha within a segment whose queries are its keys: (B, g, ..., M, M), zero above the diagonal.

    Blocks of ``sizes[0]`` over earlier blocks through ``_earlier_blocks``, each block's own square by
    recursion on ``sizes[1:]``; with no sizes left, directly: one exponential per (t, s, n).
    P: (B, g, ..., M+1); keys: (B, g, ..., M, n) delta_s B_s; C: (B, 1 or g, ..., M, n).
    """
    M = keys.shape[-2]
    if not sizes or M <= sizes[0]:
        inner = P[..., 1:]  # (.., M)
        span = (inner[..., :, None] - inner[..., None, :]).clamp(min=0)  # (.., M, M)
        alpha = (_decay(span, A) * C[..., :, None, :] * keys[..., None, :, :]).sum(-1)  # (.., M, M)
        q_pos = masks.positions(0, M, P.device)
        return alpha.masked_fill(~masks.causal(q_pos, q_pos), 0)
    S = sizes[0]
    alpha = _earlier_blocks(P, keys, C, A, range(0, M // S))  # (.., nb, S, M)
    own = _square(P.unfold(-1, S + 1, S), keys.unflatten(-2, (M // S, S)), C.unflatten(-2, (M // S, S)), A, sizes[1:])
    _place_diagonal(alpha, own, 0)
    return alpha.flatten(-3, -2)


def _place_diagonal(alpha: Tensor, own: Tensor, first: int) -> None:
    """Write each query block's own square, own (.., nq, S, S), into alpha (.., nq, S, nk * S): query block i
    sits on key block first + i."""
    nq, S = own.shape[-3], own.shape[-1]
    blocks = alpha.unflatten(-1, (alpha.shape[-1] // S, S))[..., first:first + nq, :]  # (.., nq, S, nq, S)
    blocks.diagonal(dim1=-4, dim2=-2).copy_(own.movedim(-3, -1))  # (.., S, S, nq)


def implicit_attention_blocks(delta: Tensor, B: Tensor, C: Tensor, A: Tensor, start: int = 0,
                              group: int | None = None) -> Iterator[tuple[slice, slice, Tensor]]:
    """Mamba's hidden attention, one group of channels and one chunk of query rows at a time.

    With P_p = delta_0 + ... + delta_{p-1} (so P_0 = 0), alpha[t, s, c] = delta_s[c] sum_n C_t[n] B_s[n]
    exp(A[c, n] (P_{t+1} - P_{s+1})[c]) for s <= t. Positions are cut into blocks of S = ``BLOCKS[0]``;
    for a query t in block i and a key s in an earlier block j < i the exponent splits at the two
    block edges between them, every part <= 0 (the chunked form of Mamba-2, Dao & Gu 2024):

        A (P_{t+1} - P_{iS})  +  A (P_{iS} - P_{(j+1)S})  +  A (P_{(j+1)S} - P_{s+1})
          query factor           block-to-block decay        key factor

    so the sum over n is one batched matmul and nothing overflows. A block's own S x S square is
    cut the same way into blocks of ``BLOCKS[1]``, and so on; the last squares are computed directly.
    Nothing of size (Tq, Tk, d_in) is formed: channels go ``group`` at a time and query rows a
    chunk of whole blocks at a time, each chunk's tensors about ``BLOCK_ELEMENTS`` numbers.

    Args:
        delta: (B, Tk, d_in) and B: (B, Tk, n) of the tokens at positions 0..Tk-1.
        C: (B, Tq, n) of the queries at positions start..start+Tq-1. A: (d_in, n), negative.
        group: channels per group, a divisor of d_in (None: all of them at once).
    Yields:
        (channels, rows, alpha[:, channels, rows, :end]) of shape (B, g, tq, end), channel-major,
        where end = start + rows.stop: keys after the chunk's last query are zero (causal) and left
        out. Zero above the diagonal; y_t[c] = sum_s alpha[t, s, c] x_s[c] + D[c] x_t[c] (Ali et al. 2024).
    """
    Bt, Tk, d_in = delta.shape
    Tq, n, S = C.shape[1], A.shape[1], BLOCKS[0]
    g = d_in if group is None else group
    if g < 1 or d_in % g:
        raise ValueError(f"group={group} must divide the {d_in} channels")
    pad = -Tk % S  # keys padded to whole blocks with delta = 0 and B = 0
    delta_p, B_p = F.pad(delta, (0, 0, 0, pad)), F.pad(B, (0, 0, 0, pad))  # (B, Kp, d_in), (B, Kp, n)
    P = F.pad(delta_p.double().cumsum(dim=1), (0, 0, 1, 0)).transpose(1, 2).contiguous()  # (B, d_in, Kp+1), float64
    first, last = start // S, (start + Tq - 1) // S  # the query blocks
    C_p = F.pad(C, (0, 0, start - first * S, (last + 1) * S - start - Tq))[:, None]  # (B, 1, Qp, n) from first * S
    per_chunk = max(1, BLOCK_ELEMENTS // (Bt * g * (Tk + pad) * max(n, S)))  # query blocks per chunk
    for c in range(0, d_in, g):
        channels = slice(c, c + g)
        Pc, Ac = P[:, channels], A[channels]  # (B, g, Kp+1), (g, n)
        keys = delta_p[:, :, channels].transpose(1, 2)[..., None] * B_p[:, None]  # (B, g, Kp, n): delta_s B_s
        for i0 in range(first, last + 1, per_chunk):
            i1 = min(i0 + per_chunk, last + 1)  # query blocks i0..i1-1 over key blocks 0..i1-1
            queries = C_p[:, :, (i0 - first) * S:(i1 - first) * S]  # (B, 1, nq S, n)
            alpha = _earlier_blocks(Pc, keys, queries, Ac, range(i0, i1))  # (B, g, nq, S, i1 S)
            own = _square(Pc[..., i0 * S:i1 * S + 1].unfold(-1, S + 1, S),  # (B, g, nq, S+1): each block's P
                          keys[:, :, i0 * S:i1 * S].unflatten(2, (-1, S)), queries.unflatten(2, (-1, S)), Ac,
                          BLOCKS[1:])  # (B, g, nq, S, S)
            _place_diagonal(alpha, own, i0)
            lo, hi = max(start, i0 * S), min(start + Tq, i1 * S)  # the chunk's queries, by position
            yield channels, slice(lo - start, hi - start), alpha.flatten(2, 3)[:, :, lo - i0 * S:hi - i0 * S, :hi]


def implicit_attention(delta: Tensor, B: Tensor, C: Tensor, A: Tensor, start: int = 0) -> Tensor:
    """The whole per-channel alpha (B, Tq, Tk, d_in), for small inputs; see ``implicit_attention_blocks``."""
    Bt, Tk, d_in = delta.shape
    alpha = delta.new_zeros(Bt, d_in, C.shape[1], Tk)  # (B, d_in, Tq, Tk)
    for channels, rows, block in implicit_attention_blocks(delta, B, C, A, start):
        alpha[:, channels, rows, :block.shape[-1]] = block
    return alpha.permute(0, 2, 3, 1)  # (B, Tq, Tk, d_in)


def channel_group(d_in: int, n_heads: int, Tk: int, n: int, batch: int = 1) -> int:
    """Channels computed at a time: the largest divisor of a head's d_in / H channels for which one block
    of query rows (batch x S x Tk x max(n, S) numbers per channel) fits ``BLOCK_ELEMENTS``; a group
    never spans two heads."""
    per_head, row = d_in // n_heads, batch * Tk * max(n, BLOCKS[0])
    fits = [g for g in range(1, per_head + 1) if per_head % g == 0 and g * row <= BLOCK_ELEMENTS]
    return max(fits, default=1)


@dataclass
class MambaSource(ImplicitSource):
    """Mamba's hidden attention averaged over each head's d_in / H channels, any tile rebuilt from the
    per-token delta, B and C (memory linear in T; alpha itself is never held).

    For a tile whose keys all come before its first query t0 the exponent splits at t0, both parts <= 0:

        alpha[t, s, c] = sum_n (C_t[n] exp(A[c, n] (P_{t+1} - P_{t0})[c])) (delta_s[c] B_s[n] exp(A[c, n] (P_{t0} - P_{s+1})[c]))

    so a head's mean over its channels is one matmul over (channel, state) pairs. The differences of P
    are summed in float64 from delta (a float32 P would lose the small differences of a long prompt).
    Keys from t0 on (the diagonal's square) go through ``implicit_attention_blocks``.

    delta: (B, Tk, d_in) and B: (B, Tk, n) of every token; C: (B, Tq, n) of the Tq newest; A: (d_in, n).
    """

    delta: Tensor
    B: Tensor
    C: Tensor
    A: Tensor
    heads: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        Bt, Tk, _ = self.delta.shape
        return Bt, self.heads, self.C.shape[1], Tk

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.delta, self.B, self.C, self.A))

    def to_cpu(self) -> "MambaSource":
        return MambaSource(*(t.detach().cpu() for t in (self.delta, self.B, self.C, self.A)), self.heads)

    def _tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int], batch: int) -> Tensor:
        d_in, n = self.A.shape
        g = d_in // self.heads
        channels = torch.cat([torch.arange(h * g, (h + 1) * g) for h in heads])  # (h g,)
        delta, A = self.delta[batch][:, channels], self.A[channels]  # (Tk, h g), (h g, n)
        B, C = self.B[batch], self.C[batch, r0:r1]  # (Tk, n), (r, n)
        t0 = self.q_start + r0  # the first query's position
        out = torch.zeros(len(heads), r1 - r0, c1 - c0, dtype=A.dtype)
        split = min(max(t0, c0), c1)  # keys c0..split-1 come before every query of the tile
        if split > c0:
            q_span = delta[t0:t0 + r1 - r0].double().cumsum(0)  # (r, h g): P_{t+1} - P_{t0}
            inner = delta[c0:split].double()
            # P_{t0} - P_{s+1}: the keys after s in this tile, then the gap up to t0
            k_span = inner.sum(0) - inner.cumsum(0) + delta[split:t0].double().sum(0)  # (c', h g)
            queries = C[:, None, :] * torch.exp(q_span.to(A.dtype)[..., None] * A)  # (r, h g, n)
            keys = (delta[c0:split, :, None] * B[c0:split, None, :]
                    * torch.exp(k_span.to(A.dtype)[..., None] * A))  # (c', h g, n)
            h = len(heads)
            q = queries.reshape(r1 - r0, h, g * n).transpose(0, 1)  # (h, r, g n)
            k = keys.reshape(split - c0, h, g * n).permute(1, 2, 0)  # (h, g n, c')
            out[..., :split - c0] = torch.bmm(q, k) / g
        if split < c1:  # keys at or after the first query: the diagonal's square, channel by channel
            last = t0 + r1 - r0  # one past the last query's position
            first_row = split - t0  # queries before ``split`` see none of these keys
            for chans, rows, alpha in implicit_attention_blocks(delta[None, split:last], B[None, split:last],
                                                                C[None, first_row:], A, 0, g):
                width = min(alpha.shape[-1], c1 - split)
                out[chans.start // g, first_row + rows.start:first_row + rows.stop, split - c0:split - c0 + width] \
                    += alpha[0, :, :, :width].sum(0) / g
        return out
