"""Mamba-1 (Gu & Dao 2023, arXiv 2312.00752): a selective state space model, in scan and step modes.

Each block is ``x = x + mixer(rmsnorm(x))``; a final RMSNorm precedes the head. The mixer:

    (x, z) = in_proj(hidden)                 two branches of width d_in = expand * d
    x = silu(conv1d(x))                      causal, depthwise, K taps (d_conv)
    (delta, B, C) = x_proj(x)                input-dependent ("selective"); delta has rank R
    delta = softplus(dt_proj(delta))         (d_in,) step sizes
    y = selective_scan(x, delta, A, B, C, D),  A = -exp(A_log)
    out = out_proj(y * silu(z))

The selective scan, per channel c and state index n, with Mamba's discretisation (zero-order
hold for A, Euler for B):

    Abar_t = exp(delta_t A),   Bbar_t = delta_t B_t
    h_t = Abar_t h_{t-1} + Bbar_t x_t,   y_t = C_t . h_t + D x_t

Unrolled from h_0 = 0 (Ali, Zimerman & Wolf 2024, "The Hidden Attention of Mamba Models",
arXiv 2403.01590), each channel is an attention over its own past inputs:

    y_t[c] = sum_{s <= t} alpha[t, s, c] x_s[c] + D[c] x_t[c]
    alpha[t, s, c] = sum_n C_t[n] exp(A[c, n] (delta_{s+1} + ... + delta_t)[c]) delta_s[c] B_s[n]

The playground draws alpha averaged over groups of d_in / H channels, one group per "head" (H =
n_heads), and says so on the plot. The faithfulness check (``max_abs_diff``) uses every channel:
it compares sum_s alpha[t, s, c] x_s[c] + D x_t[c] with the output of ``selective_scan``, the
recurrence run token by token, which shares no code with ``implicit_attention_blocks`` (the
alpha is built from cumulative sums of delta and batched matmuls; the scan never forms it).
alpha is built one channel group and chunk of query rows at a time, checked and added into its
head, then dropped: a mamba-130m-sized layer (1,536 channels) never holds its (T, Tk, d_in) alpha.

``selective_scan`` runs the recurrence over the sequence (mamba-minimal's reference scan);
``step`` advances it one token from the conv and SSM state. A test proves both give the same
logits, and that they match ``transformers.MambaForCausalLM`` on random weights. Without a state
``forward`` scans from zeros; after ``setup_cache`` it continues from the held state: through
``step`` for one token, through the scan for a prefill or whenever capture is on.

Config: d_model, n_layer, d_state, d_conv, expand, dt_rank, vocab_size, norm_eps (RMSNorm), tie_embeddings;
n_heads only groups channels for display. d_ff, norm, mlp, bias and dropout do not apply (no
bias in the projections, one in the convolution and dt_proj, as in Mamba).

Glossary (mamba-minimal's, in this project's letters): B batch, T new tokens, Tk every token
seen, d model width, d_in inner width, n state size (d_state), K conv width (d_conv), R rank of
delta (dt_rank), H display heads, V vocabulary.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.models.recurrent import (History, RecurrentLM, RecurrentState, every_token, extend_history,
                                         implicit_record)
from playground.nn import masks
from playground.nn.cache import state_dtype
from playground.nn.recorder import AttentionRecord, Recorder

BLOCK_ELEMENTS = 1 << 22  # implicit attention is built a chunk at a time, about this many numbers per tensor
BLOCKS = (16, 4)          # implicit attention's blocks, then the blocks each is cut into (each size divides
                          # the one before); the last ones are computed directly


def dt_rank(cfg: ModelConfig) -> int:
    """R, the rank of delta's projection: the config's ``dt_rank``, or Mamba's default ceil(d / 16) when 0."""
    return cfg.dt_rank or math.ceil(cfg.d_model / 16)


@dataclass
class ScanHistory(History):
    """delta, B and the scan input of every token seen (see ``History``)."""

    time_dim = 1
    delta: Tensor  # (B, Tk, d_in), in the scan's dtype
    B: Tensor      # (B, Tk, n)
    x: Tensor      # (B, Tk, d_in), the conv output the scan reads


@dataclass
class MambaState(RecurrentState):
    """One layer's recurrent state: d_in * (K - 1) + d_in * n numbers, whatever the length."""

    conv: Tensor  # (B, d_in, K-1) the last K-1 inputs of the causal convolution, in the weights' dtype
    ssm: Tensor   # (B, d_in, n) h, in state_dtype (float32 at least)
    history: ScanHistory | None = None

    @classmethod
    def zeros(cls, batch: int, cfg: ModelConfig, dtype: torch.dtype, device, track: bool) -> MambaState:
        d_in, n = cfg.expand * cfg.d_model, cfg.d_state
        wide = state_dtype(dtype)
        history = None
        if track:
            history = ScanHistory(*(torch.zeros(batch, 0, size, dtype=wide, device=device) for size in (d_in, n, d_in)))
        return cls(torch.zeros(batch, d_in, cfg.d_conv - 1, dtype=dtype, device=device),
                   torch.zeros(batch, d_in, n, dtype=wide, device=device), history)


def selective_scan(x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   h: Tensor) -> tuple[Tensor, Tensor]:
    """The recurrence h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t, y_t = C_t . h_t + D x_t, over T tokens.

    Args:
        x: (B, T, d_in) scan input. delta: (B, T, d_in). A: (d_in, n). B, C: (B, T, n). D: (d_in,).
        h: (B, d_in, n) the state before the first token.
    Returns:
        y (B, T, d_in) and the state after the last token (B, d_in, n).
    """
    A_bar = torch.exp(delta[..., None] * A)                    # (B, T, d_in, n)
    Bx_bar = (delta * x)[..., None] * B[:, :, None, :]         # (B, T, d_in, n)
    ys = []
    # unbind, not A_bar[:, t]: the backward of T slices would build T full-size gradients
    for A_t, Bx_t, C_t in zip(A_bar.unbind(1), Bx_bar.unbind(1), C.unbind(1)):
        h = A_t * h + Bx_t                                     # (B, d_in, n)
        ys.append((h @ C_t[..., None]).squeeze(-1))            # (B, d_in)
    return torch.stack(ys, dim=1) + x * D, h


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


def channel_group(d_in: int, n_heads: int, Tk: int, n: int) -> int:
    """Channels computed at a time: the largest divisor of a head's d_in / H channels for which one block
    of query rows (S x Tk x max(n, S) numbers per channel) fits ``BLOCK_ELEMENTS``; a group never spans
    two heads."""
    per_head = d_in // n_heads
    fits = [g for g in range(1, per_head + 1) if per_head % g == 0 and g * Tk * max(n, BLOCKS[0]) <= BLOCK_ELEMENTS]
    return max(fits, default=1)


class MambaMixer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0, recorder: Recorder | None = None):
        super().__init__()
        d, d_in, n, self.rank = cfg.d_model, cfg.expand * cfg.d_model, cfg.d_state, dt_rank(cfg)
        self.d_in, self.n_heads, self.layer = d_in, cfg.n_heads, layer
        self.recorder = recorder if recorder is not None else Recorder()
        self.in_proj = nn.Linear(d, 2 * d_in, bias=False)
        self.conv1d = nn.Conv1d(d_in, d_in, kernel_size=cfg.d_conv, groups=d_in, bias=True)
        self.x_proj = nn.Linear(d_in, self.rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(self.rank, d_in, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_in, n))  # A = -exp(A_log): every state decays
        self.D = nn.Parameter(torch.empty(d_in))          # the skip from x_t to y_t
        self.out_proj = nn.Linear(d_in, d, bias=False)
        for p in (self.A_log, self.D):
            p._no_weight_decay = True  # as mamba_ssm marks them

    @torch.no_grad()
    def reset_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """Mamba's init: S4D-real A = -(1..n), D = 1, softplus(dt bias) log-uniform in [dt_min, dt_max]."""
        n = self.A_log.shape[1]
        self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand(self.d_in, n))
        self.D.fill_(1.0)
        nn.init.uniform_(self.dt_proj.weight, -self.rank ** -0.5, self.rank ** -0.5)
        dt = torch.exp(torch.rand(self.d_in) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    def _selective_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d_in) -> delta (B, T, d_in), B (B, T, n), C (B, T, n), in the scan's dtype."""
        n, wide = self.A_log.shape[1], state_dtype(x.dtype)
        delta, B, C = self.x_proj(x).split([self.rank, n, n], dim=-1)  # (B, T, R), (B, T, n), (B, T, n)
        return F.softplus(self.dt_proj(delta)).to(wide), B.to(wide), C.to(wide)

    def _A_D(self) -> tuple[Tensor, Tensor]:
        """A = -exp(A_log) (d_in, n) and D (d_in,), in the scan's dtype."""
        wide = state_dtype(self.A_log.dtype)
        return -torch.exp(self.A_log.to(wide)), self.D.to(wide)

    def forward(self, hidden: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState | None]:
        """Scan mode over a sequence.

        While the recorder is on, writes alpha averaged per head (B, H, T, Tk), with max_abs_diff =
        the max over channels of |sum_s alpha[t, s, c] x_s[c] + D x_t[c] - y_t[c]|, y the output of
        ``selective_scan`` (before gating), which never forms alpha: an independent check.

        Args:
            hidden: (B, T, d) normed input. state: this layer's state before it; None: zeros (no state returned).
        Returns:
            (B, T, d) and the state after the input (or None).
        """
        Bt, T, _ = hidden.shape
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (B, T, d_in) each
        past = self.conv1d.weight.new_zeros(Bt, self.d_in, self.conv1d.kernel_size[0] - 1) if state is None \
            else state.conv.to(x.dtype)
        window = torch.cat([past, x.transpose(1, 2)], dim=-1)  # (B, d_in, K-1+T)
        x = F.silu(self.conv1d(window)).transpose(1, 2)  # (B, T, d_in): causal, as the window starts K-1 early
        delta, B, C = self._selective_params(x)
        A, D = self._A_D()
        h0 = delta.new_zeros(Bt, self.d_in, A.shape[1]) if state is None else state.ssm
        xf = x.to(delta.dtype)
        y, h_last = selective_scan(xf, delta, A, B, C, D, h0)  # (B, T, d_in)
        history = extend_history(state, delta, B, xf)
        if self.recorder.on:
            self.recorder.write(self._implicit(state, history, delta, B, C, xf, y))
        if state is not None:
            state = replace(state, conv=window[..., T:], ssm=h_last, history=history)
        return self.out_proj(y.to(z.dtype) * F.silu(z)), state

    def _implicit(self, state: MambaState | None, history: ScanHistory | None, delta: Tensor, B: Tensor,
                  C: Tensor, xf: Tensor, y: Tensor) -> AttentionRecord:
        """The record of T new tokens: alpha averaged per head (B, H, T, Tk) and the check over every channel.

        Built one channel group and block of rows at a time (``implicit_attention_blocks``): each
        block is checked against the scan's y (B, T, d_in) and added into its head's mean, then dropped.
        """
        past_delta, past_B, past_x = every_token(state, history, delta, B, xf)  # (B, Tk, d_in), (B, Tk, n), ...
        (Bt, Tk, d_in), T = past_delta.shape, C.shape[1]
        A, D = self._A_D()
        per_head = d_in // self.n_heads
        heads = delta.new_zeros(Bt, self.n_heads, T, Tk)  # (B, H, T, Tk)
        values = past_x.transpose(1, 2)[..., None]  # (B, d_in, Tk, 1)
        direct = (xf * D - y).transpose(1, 2)  # (B, d_in, T): y_t[c] = sum_s alpha[t, s, c] x_s[c] + this
        diff = 0.0
        group = channel_group(d_in, self.n_heads, Tk, A.shape[1])
        for channels, rows, alpha in implicit_attention_blocks(past_delta, past_B, C, A, Tk - T, group):
            end = alpha.shape[-1]  # (B, g, tq, end)
            miss = (alpha @ values[:, channels, :end]).squeeze(-1) + direct[:, channels, rows]  # (B, g, tq)
            diff = max(diff, float(miss.detach().abs().max()))
            heads[:, channels.start // per_head, rows, :end] += alpha.sum(1) / per_head
        return implicit_record(self.layer, heads, diff)

    def step(self, hidden_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """Step mode, one token: hidden_t (B, d) normed input -> (B, d), the state after it."""
        x, z = self.in_proj(hidden_t).chunk(2, dim=-1)  # (B, d_in) each
        window = torch.cat([state.conv.to(x.dtype), x[..., None]], dim=-1)  # (B, d_in, K)
        x = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)  # (B, d_in)
        delta, B, C = (t[:, 0] for t in self._selective_params(x[:, None]))  # (B, d_in), (B, n), (B, n)
        A, D = self._A_D()
        xf = x.to(delta.dtype)
        ssm = torch.exp(delta[..., None] * A) * state.ssm + (delta * xf)[..., None] * B[:, None, :]  # (B, d_in, n)
        y = (ssm @ C[..., None]).squeeze(-1) + D * xf  # (B, d_in)
        history = extend_history(state, delta[:, None], B[:, None], xf[:, None])
        out = self.out_proj(y.to(z.dtype) * F.silu(z))
        return out, replace(state, conv=window[..., 1:], ssm=ssm, history=history)


class ResidualBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int = 0, recorder: Recorder | None = None):
        super().__init__()
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.mixer = MambaMixer(cfg, layer, recorder)

    def forward(self, x: Tensor, state: MambaState | None = None) -> tuple[Tensor, MambaState | None]:
        """x (B, T, d) -> (B, T, d), the state after x (or None)."""
        y, state = self.mixer(self.norm(x), state)
        return x + y, state

    def step(self, x_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """x_t (B, d) -> (B, d), the state after it."""
        y, state = self.mixer.step(self.norm(x_t), state)
        return x_t + y, state


class Mamba(RecurrentLM):
    """Mamba-1 language model: scan mode without a state, step mode after ``setup_cache``."""

    state_cls = MambaState
    reader = "a Mamba model"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "mamba":
            raise ValueError(f"Mamba builds family mamba, got {cfg.family!r}")
        self.blocks = nn.ModuleList(ResidualBlock(cfg, layer, self.recorder) for layer in range(cfg.n_layer))
        self.norm_out = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self._init_embeddings(cfg)
        for block in self.blocks:  # after the generic init, which would overwrite dt_proj
            block.mixer.reset_parameters()
        self._init_state()
