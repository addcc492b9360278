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
For the check alpha is built one channel group and chunk of query rows at a time, then dropped; the
drawn per-head mean is a ``MambaSource`` that rebuilds any tile from delta, B and C: a
mamba-130m-sized layer (1,536 channels) never holds its (T, Tk, d_in) alpha, nor its (H, T, Tk) mean.

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
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.models.mamba_implicit import MambaSource, channel_group, implicit_attention_blocks
from playground.models.recurrent import (History, RecurrentLM, RecurrentState, every_token, extend_history,
                                         implicit_record)
from playground.nn.cache import state_dtype
from playground.nn.recorder import AttentionRecord, Recorder

CHECK_ALL_ROWS = 512  # up to this many new tokens the check covers every query row,
CHECK_ROWS = 128      # past it the last this many (each row costs Tk x d_in x n)



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

        While the recorder is on, writes alpha averaged per head (a ``MambaSource``: (B, H, T, Tk) rebuilt
        tile by tile), with max_abs_diff = the max over channels of |sum_s alpha[t, s, c] x_s[c] + D x_t[c]
        - y_t[c]|, y the output of ``selective_scan`` (before gating), which never forms alpha: an
        independent check (see ``_implicit`` for the rows it covers).

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
        """The record of T new tokens: a ``MambaSource`` (alpha averaged per head, rebuilt tile by tile) and the
        check over every channel: y_t[c] = sum_s alpha[t, s, c] x_s[c] + D x_t[c] against the scan's y.

        The check is built one channel group and block of rows at a time (``implicit_attention_blocks``) and
        dropped; past ``CHECK_ALL_ROWS`` tokens it covers the last ``CHECK_ROWS`` queries, which see the most
        keys (every row costs Tk x d_in x n).
        """
        past_delta, past_B, past_x = every_token(state, history, delta, B, xf)  # (B, Tk, d_in), (B, Tk, n), ...
        (Bt, Tk, d_in), T = past_delta.shape, C.shape[1]
        A, D = self._A_D()
        rows = T if T <= CHECK_ALL_ROWS else CHECK_ROWS
        values = past_x.transpose(1, 2)[..., None]  # (B, d_in, Tk, 1)
        direct = (xf * D - y)[:, T - rows:].transpose(1, 2)  # (B, d_in, rows): y_t[c] = sum_s alpha x_s[c] + this
        diff = 0.0
        group = channel_group(d_in, self.n_heads, Tk, A.shape[1], Bt)
        for channels, chunk, alpha in implicit_attention_blocks(past_delta, past_B, C[:, T - rows:], A, Tk - rows,
                                                                group):
            end = alpha.shape[-1]  # (B, g, tq, end)
            miss = (alpha @ values[:, channels, :end]).squeeze(-1) + direct[:, channels, chunk]  # (B, g, tq)
            diff = max(diff, float(miss.detach().abs().max()))
        return implicit_record(self.layer, MambaSource(past_delta, past_B, C, A, self.n_heads), max_abs_diff=diff)

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
