"""RWKV-5.2 "Eagle" (Peng et al. 2024, arXiv 2404.05892): a linear-attention RNN, one matrix state per head.

Each block is ``x = x + time_mix(norm(x)); x = x + channel_mix(norm(x))``, with a LayerNorm after
the embedding and one before the head. Time mixing is the attention-like part. Per head (size N),
with r, k, v the receptance, key and value rows of a token (each a lerp of the token and the one
before it: token shift), w in (0, 1) a learned per-channel decay and u a per-channel bonus:

    S_t = diag(w) S_{t-1} + k_t^T v_t              S: N x N, key index x value index
    o_t = r_t (diag(u) k_t^T v_t + S_{t-1})

Unrolled from S_0 = 0 this is attention without softmax, the implicit attention drawn here:

    o_t = sum_{s <= t} alpha[t, s] v_s
    alpha[t, s] = sum_i r_t[i] k_s[i] w[i]^(t-s-1)  (s < t),   alpha[t, t] = sum_i r_t[i] u[i] k_t[i]

exact, signed and not normalised. The parallel path evaluates it chunk by chunk (C tokens), so
the powers of w stay small and non-negative, and carries S across chunks:

    o_t = sum_{c0 <= s <= t} alpha[t, s] v_s + (r_t * w^(t-c0)) S_{c0}
    S_{c0+C} = diag(w^C) S_{c0} + sum_{c0 <= s < c0+C} (k_s * w^(c0+C-1-s))^T v_s

``step`` is the recurrence itself, word for word; tests prove both give the same logits, and
that they match the ``rwkv`` package's RWKV-5.2 CPU path. Without a state ``forward`` runs the
parallel form from zeros; after ``setup_cache`` it continues from the held state: through
``step`` for one token, through the chunked form for a prefill or whenever capture is on.

The faithfulness check of the drawn alpha (``max_abs_diff``) compares alpha @ v with the WKV run
token by token through ``wkv_step`` from the same state (``wkv_recurrent``), code that shares
nothing with ``implicit_attention``, at every length (the chunked form calls
``implicit_attention`` inside each chunk, so it cannot be the reference), and with the output
the model used.

Config: d_model, n_heads, n_layer, d_ff (channel-mix width), vocab_size, norm_eps, tie_embeddings.
norm, mlp, bias and dropout do not apply (LayerNorms with bias, linear layers without, as in RWKV).

Glossary: B batch, T new tokens, Tk every token seen, d model width, H heads, N head size
(d = H * N), F channel-mix width (d_ff), C chunk length, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.models.recurrent import (History, RecurrentLM, RecurrentState, every_token, extend_history,
                                         implicit_record)
from playground.nn.cache import state_dtype
from playground.nn.rebuild import ImplicitSource
from playground.nn.recorder import Recorder

CHUNK = 32                # tokens per chunk of the parallel form
GROUP_NORM_EPS = 64e-5    # RWKV-5.2's eps for the per-head GroupNorm (1e-5 * head_size_divisor 8 ** 2)
BLOCK_ELEMENTS = 1 << 22  # implicit attention is built a block of query rows at a time, about this many numbers


@dataclass
class WKVHistory(History):
    """Keys and values of every token seen (see ``History``)."""

    time_dim = 2
    keys: Tensor    # (B, H, Tk, N), in the WKV's dtype
    values: Tensor  # (B, H, Tk, N)


@dataclass
class RWKVState(RecurrentState):
    """One layer's recurrent state: d * (2 + N) numbers, whatever the length."""

    time_shift: Tensor     # (B, d) the last token's normed input, for time mixing's token shift
    wkv: Tensor            # (B, H, N, N) S, in state_dtype (float32 at least), like the reference implementation
    channel_shift: Tensor  # (B, d) the last token's normed input, for channel mixing's token shift
    history: WKVHistory | None = None

    @classmethod
    def zeros(cls, batch: int, cfg: ModelConfig, dtype: torch.dtype, device, track: bool) -> RWKVState:
        H, N = cfg.n_heads, cfg.head_dim
        shift = torch.zeros(batch, cfg.d_model, dtype=dtype, device=device)
        wide = state_dtype(dtype)
        history = None
        if track:
            empty = torch.zeros(batch, H, 0, N, dtype=wide, device=device)
            history = WKVHistory(empty, empty)
        return cls(shift, torch.zeros(batch, H, N, N, dtype=wide, device=device), shift.clone(), history)


def token_shift(x: Tensor, last: Tensor | None) -> Tensor:
    """Each position's previous input: x (B, T, d) -> (B, T, d); ``last`` (B, d) precedes x (None: zeros)."""
    before = torch.zeros_like(x[:, :1]) if last is None else last[:, None].to(x.dtype)  # (B, 1, d)
    return torch.cat([before, x[:, :-1]], dim=1)


def lerp(x: Tensor, prev: Tensor, mix: Tensor) -> Tensor:
    """RWKV's static token shift: mix * x + (1 - mix) * prev, per channel."""
    return mix * x + (1 - mix) * prev


def decay_powers(log_w: Tensor, u: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """P[h, t, s, i] = w[i]^(t-s-1) for s < t, u[i] for s == t, 0 for s > t: (H, Tq, Tk, N)."""
    lag = (q_pos[:, None] - k_pos[None, :] - 1)[None, :, :, None]  # (1, Tq, Tk, 1)
    powers = torch.exp(lag.clamp(min=0) * log_w[:, None, None, :])  # (H, Tq, Tk, N)
    powers = torch.where(lag >= 0, powers, torch.zeros_like(powers))
    return torch.where(lag == -1, u[:, None, None, :].expand_as(powers), powers)


def implicit_attention(r: Tensor, k: Tensor, log_w: Tensor, u: Tensor, start: int = 0) -> Tensor:
    """RWKV-5's attention matrix: alpha (B, H, Tq, Tk), exact, signed, zero above the diagonal.

    Args:
        r: (B, H, Tq, N) receptances of the queries at positions start..start+Tq-1.
        k: (B, H, Tk, N) keys at positions 0..Tk-1.
        log_w: (H, N) log of the decay (= -exp(decay)). u: (H, N) the bonus.
    Returns:
        alpha with o_t = sum_s alpha[t, s] v_s (DESIGN.md; Peng et al. 2024, eq. of the WKV).
    """
    B, H, Tq, N = r.shape
    Tk = k.shape[2]
    k_pos = torch.arange(Tk, device=r.device)
    block = max(1, BLOCK_ELEMENTS // (B * H * Tk * N))
    rows = []
    for q0 in range(0, Tq, block):
        q_pos = torch.arange(start + q0, start + min(q0 + block, Tq), device=r.device)
        powers = decay_powers(log_w, u, q_pos, k_pos)  # (H, tq, Tk, N)
        rows.append(torch.einsum("bhti,bhsi,htsi->bhts", r[:, :, q0:q0 + block], k, powers))
    return torch.cat(rows, dim=2)  # (B, H, Tq, Tk)


@dataclass
class RWKVSource(ImplicitSource):
    """RWKV-5's implicit attention, any tile rebuilt from r, k, w and u (memory linear in T).

    For a tile whose keys all come before its first query r0 the power splits at r0, both parts
    non-negative powers of w in (0, 1), so nothing overflows and the sum over channels is one matmul:

        alpha[t, s] = sum_i (r_t[i] w[i]^(t - r0)) (k_s[i] w[i]^(r0 - 1 - s))       (s < r0 <= t)

    The keys from r0 on (the diagonal's square) go through ``implicit_attention`` directly.

    r: (B, H, Tq, N) receptances of the Tq newest tokens. k: (B, H, Tk, N) every token's key.
    log_w, u: (H, N). All float32 at least, on the CPU.
    """

    r: Tensor
    k: Tensor
    log_w: Tensor
    u: Tensor

    @property
    def shape(self) -> tuple[int, int, int, int]:
        B, H, Tq, _ = self.r.shape
        return B, H, Tq, self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.r, self.k, self.log_w, self.u))

    def to_cpu(self) -> "RWKVSource":
        return RWKVSource(*(t.detach().cpu() for t in (self.r, self.k, self.log_w, self.u)))

    def _tile(self, r0: int, r1: int, c0: int, c1: int, heads: list[int], batch: int) -> Tensor:
        hs = torch.as_tensor(heads)
        log_w, u = self.log_w[hs], self.u[hs]  # (h, N)
        r = self.r[batch, hs, r0:r1]  # (h, r, N)
        t0 = self.q_start + r0  # the first query's position
        out = r.new_zeros(len(heads), r1 - r0, c1 - c0)
        split = min(max(t0, c0), c1)  # keys c0..split-1 come before every query of the tile
        if split > c0:
            lag_q = torch.arange(r1 - r0, dtype=r.dtype)[:, None]  # t - t0
            lag_k = (t0 - 1 - torch.arange(c0, split, dtype=r.dtype))[:, None]  # t0 - 1 - s >= 0
            queries = r * torch.exp(lag_q * log_w[:, None, :])  # (h, r, N)
            keys = self.k[batch, hs, c0:split] * torch.exp(lag_k * log_w[:, None, :])  # (h, c', N)
            out[..., :split - c0] = queries @ keys.transpose(1, 2)
        if split < c1:  # keys at or after the first query: within the diagonal's reach
            rows = implicit_attention(r[None], self.k[batch, hs, split:c1][None], log_w, u, start=t0 - split)
            out[..., split - c0:] = rows[0]
        return out


def wkv_parallel(r: Tensor, k: Tensor, v: Tensor, log_w: Tensor, u: Tensor, state: Tensor,
                 chunk: int = CHUNK) -> tuple[Tensor, Tensor]:
    """The WKV over a sequence, chunk by chunk, from ``state``.

    Args:
        r, k, v: (B, H, T, N). log_w, u: (H, N). state: (B, H, N, N), S before the first token.
    Returns:
        o (B, H, T, N) and S after the last token (B, H, N, N).
    """
    outs = []
    for c0 in range(0, r.shape[2], chunk):
        rc, kc, vc = (t[:, :, c0:c0 + chunk] for t in (r, k, v))  # (B, H, C, N)
        C = rc.shape[2]
        pos = torch.arange(C, device=r.device, dtype=r.dtype)[:, None]  # (C, 1)
        intra = implicit_attention(rc, kc, log_w, u) @ vc  # (B, H, C, N)
        inter = (rc * torch.exp(pos * log_w[:, None, :])) @ state  # (B, H, C, N)
        outs.append(intra + inter)
        kc_decayed = kc * torch.exp((C - 1 - pos) * log_w[:, None, :])  # (B, H, C, N)
        state = torch.exp(C * log_w)[..., None] * state + kc_decayed.transpose(-1, -2) @ vc  # (B, H, N, N)
    return torch.cat(outs, dim=2), state


def wkv_step(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One token of the recurrence: r, k, v (B, H, N); w, u (H, N); state (B, H, N, N) -> o (B, H, N), S."""
    kv = k[..., :, None] * v[..., None, :]  # (B, H, N, N): k_t^T v_t
    o = (r[..., None, :] @ (u[..., None] * kv + state)).squeeze(-2)  # (B, H, N)
    return o, kv + w[..., None] * state


def wkv_recurrent(r: Tensor, k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """The WKV over a sequence, one ``wkv_step`` per token: the reference the implicit matrix is
    checked against, as it shares no code with ``implicit_attention``.

    Args:
        r, k, v: (B, H, T, N). w, u: (H, N), w the decay itself (not its log). state: (B, H, N, N).
    Returns:
        o (B, H, T, N) and S after the last token (B, H, N, N).
    """
    outs = []
    for r_t, k_t, v_t in zip(r.unbind(2), k.unbind(2), v.unbind(2)):
        o_t, state = wkv_step(r_t, k_t, v_t, w, u, state)  # (B, H, N)
        outs.append(o_t)
    return torch.stack(outs, dim=2), state


class TimeMix(nn.Module):
    """Time mixing: token-shifted r, k, v, g; the WKV per head; GroupNorm per head; silu(g) gate."""

    def __init__(self, cfg: ModelConfig, layer: int, recorder: Recorder | None = None):
        super().__init__()
        d, self.n_heads, self.head_dim = cfg.d_model, cfg.n_heads, cfg.head_dim
        self.layer, self.n_layer = layer, cfg.n_layer
        self.recorder = recorder if recorder is not None else Recorder()
        self.mix_receptance, self.mix_key, self.mix_value, self.mix_gate = (
            nn.Parameter(torch.empty(d)) for _ in range(4))
        self.decay = nn.Parameter(torch.empty(d))  # w = exp(-exp(decay)) per channel, viewed (H, N)
        self.bonus = nn.Parameter(torch.empty(d))  # u, the current token's weight per channel, viewed (H, N)
        self.receptance, self.key, self.value, self.gate, self.output = (
            nn.Linear(d, d, bias=False) for _ in range(5))
        self.head_norm = nn.GroupNorm(cfg.n_heads, d, eps=GROUP_NORM_EPS)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """RWKV-LM v5's init: mixes fade with depth; decays spread from fast to slow channels."""
        d = self.decay.numel()
        depth = self.layer / max(1, self.n_layer - 1)        # 0 -> 1
        shallow = 1.0 - self.layer / self.n_layer            # 1 -> almost 0
        ramp = torch.arange(d) / d
        self.mix_key.copy_(ramp ** shallow)
        self.mix_value.copy_(ramp ** shallow + 0.3 * depth)
        self.mix_receptance.copy_(ramp ** (0.5 * shallow))
        self.mix_gate.copy_(ramp ** (0.5 * shallow))
        n = torch.arange(d) / max(1, d - 1)
        self.decay.copy_(-6 + 5 * n ** (0.7 + 1.3 * depth))
        self.bonus.copy_(depth * (1 - n) + ((torch.arange(d) + 1) % 3 - 1) * 0.1)

    def log_w(self) -> Tensor:
        return -torch.exp(self.decay.to(state_dtype(self.decay.dtype))).view(self.n_heads, self.head_dim)  # (H, N)

    def u(self) -> Tensor:
        return self.bonus.to(state_dtype(self.bonus.dtype)).view(self.n_heads, self.head_dim)  # (H, N)

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2).to(state_dtype(x.dtype))  # (B, H, T, N)

    def _project(self, x: Tensor, prev: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x, prev (B, T, d) -> r, k, v (B, H, T, N) in the WKV's dtype and the gate silu(g) (B, T, d)."""
        r = self._heads(self.receptance(lerp(x, prev, self.mix_receptance)))
        k = self._heads(self.key(lerp(x, prev, self.mix_key)))
        v = self._heads(self.value(lerp(x, prev, self.mix_value)))
        return r, k, v, F.silu(self.gate(lerp(x, prev, self.mix_gate)))

    def _out(self, o: Tensor, g: Tensor) -> Tensor:
        """o (B, H, T, N), gate (B, T, d) -> (B, T, d): GroupNorm per head, gate, output projection."""
        B, T, d = g.shape
        o = o.transpose(1, 2).reshape(B * T, d)  # (B*T, d), heads side by side
        norm = self.head_norm  # in the WKV's dtype (float32 at least), as the reference does
        o = F.group_norm(o, norm.num_groups, norm.weight.to(o.dtype), norm.bias.to(o.dtype), norm.eps).view(B, T, d)
        return self.output(o.to(g.dtype) * g)

    def forward(self, x: Tensor, state: RWKVState | None = None) -> tuple[Tensor, RWKVState | None]:
        """Parallel (chunked) time mixing of a whole sequence.

        While the recorder is on, writes the implicit attention of the new tokens over every token seen
        (an ``RWKVSource``: alpha (B, H, T, Tk) rebuilt tile by tile), checked against the WKV token by
        token (``wkv_recurrent``) from the same state: max |alpha @ v - o_step|, settled tile by tile.

        Args:
            x: (B, T, d) normed input. state: this layer's state before x; None: zeros (no state returned).
        Returns:
            (B, T, d) and the state after x (or None).
        """
        B, T, _ = x.shape
        r, k, v, g = self._project(x, token_shift(x, None if state is None else state.time_shift))
        log_w, u = self.log_w(), self.u()
        S0 = r.new_zeros(B, self.n_heads, self.head_dim, self.head_dim) if state is None else state.wkv
        o, S = wkv_parallel(r, k, v, log_w, u, S0)  # (B, H, T, N)
        history = extend_history(state, k, v)
        if self.recorder.on:
            keys, values = every_token(state, history, k, v)  # (B, H, Tk, N)
            o_step, _ = wkv_recurrent(r, k, v, log_w.exp(), u, S0)  # (B, H, T, N)
            self.recorder.write(implicit_record(self.layer, RWKVSource(r, keys, log_w, u), check=(values, o_step)))
        if state is not None:
            state = replace(state, time_shift=x[:, -1], wkv=S, history=history)
        return self._out(o, g), state

    def step(self, x_t: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        """Recurrent mode, one token: x_t (B, d) normed input -> (B, d), the state after it."""
        r, k, v, g = self._project(x_t[:, None], state.time_shift[:, None].to(x_t.dtype))  # T = 1
        o, S = wkv_step(r[:, :, 0], k[:, :, 0], v[:, :, 0], self.log_w().exp(), self.u(), state.wkv)
        y = self._out(o[:, :, None], g)[:, 0]  # (B, d)
        return y, replace(state, time_shift=x_t, wkv=S, history=extend_history(state, k, v))


class ChannelMix(nn.Module):
    """Channel mixing: sigmoid(receptance(xr)) * value(relu(key(xk))^2), token-shifted inputs."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer, self.n_layer = layer, cfg.n_layer
        self.mix_key, self.mix_receptance = (nn.Parameter(torch.empty(cfg.d_model)) for _ in range(2))
        self.key = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.receptance = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.value = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        ramp = torch.arange(self.mix_key.numel()) / self.mix_key.numel()
        shallow = 1.0 - self.layer / self.n_layer
        self.mix_key.copy_(ramp ** shallow)
        self.mix_receptance.copy_(ramp ** shallow)

    def _mix(self, x: Tensor, prev: Tensor) -> Tensor:
        k = torch.relu(self.key(lerp(x, prev, self.mix_key))) ** 2  # (B, T, F)
        return torch.sigmoid(self.receptance(lerp(x, prev, self.mix_receptance))) * self.value(k)

    def forward(self, x: Tensor, state: RWKVState | None = None) -> tuple[Tensor, RWKVState | None]:
        """x (B, T, d) normed input -> (B, T, d), and the state after x (None in, None out)."""
        y = self._mix(x, token_shift(x, None if state is None else state.channel_shift))
        return y, (None if state is None else replace(state, channel_shift=x[:, -1]))

    def step(self, x_t: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        """x_t (B, d) -> (B, d), the state after it."""
        return self._mix(x_t, state.channel_shift.to(x_t.dtype)), replace(state, channel_shift=x_t)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, recorder: Recorder | None = None):
        super().__init__()
        self.norm_time = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.time_mix = TimeMix(cfg, layer, recorder)
        self.norm_channel = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.channel_mix = ChannelMix(cfg, layer)

    def forward(self, x: Tensor, state: RWKVState | None = None) -> tuple[Tensor, RWKVState | None]:
        """x (B, T, d) -> (B, T, d), the state after x (or None)."""
        y, state = self.time_mix(self.norm_time(x), state)
        x = x + y
        y, state = self.channel_mix(self.norm_channel(x), state)
        return x + y, state

    def step(self, x_t: Tensor, state: RWKVState) -> tuple[Tensor, RWKVState]:
        """x_t (B, d) -> (B, d), the state after it."""
        y, state = self.time_mix.step(self.norm_time(x_t), state)
        x_t = x_t + y
        y, state = self.channel_mix.step(self.norm_channel(x_t), state)
        return x_t + y, state


class RWKV(RecurrentLM):
    """RWKV-5.2 language model: parallel mode without a state, recurrent mode after ``setup_cache``."""

    state_cls = RWKVState
    reader = "an RWKV model"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "rwkv":
            raise ValueError(f"RWKV builds family rwkv, got {cfg.family!r}")
        self.norm_emb = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.blocks = nn.ModuleList(Block(cfg, layer, self.recorder) for layer in range(cfg.n_layer))
        self.norm_out = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self._init_embeddings(cfg)
        for block in self.blocks:  # after the generic init, which knows nothing of decays and mixes
            block.time_mix.reset_parameters()
            block.channel_mix.reset_parameters()
        self._init_state()

    def embed_input(self, idx: Tensor) -> Tensor:
        return self.norm_emb(self.embed(idx))  # (B, T, d): RWKV normalises the embeddings (ln0)
