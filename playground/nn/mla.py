"""Multi-head latent attention (MLA; DeepSeek-V2, DeepSeek-AI 2024, section 2.1): the next step after MQA and GQA
in shrinking the KV cache. Keys and values come from one small latent per token, and only that latent is cached.

Glossary (one layer, one sequence):
    d        model width                     nh       query heads
    d_c      kv_lora_rank, the latent width  d_r      qk_rope_dim, the shared RoPE key width
    d_n      qk_nope_dim, per head            d_v      v_head_dim, per head

Per token t:
    c_t   = RMSNorm(W_DKV x_t)                          (d_c,)       the latent: what the cache keeps
    kr_t  = RoPE(W_KR x_t, t)                           (d_r,)       one RoPE key shared by every head: cached
    kn_t,h = W_UK,h c_t                                 (d_n,)       per head, rebuilt from the latent
    v_t,h  = W_UV,h c_t                                 (d_v,)
    q_t,h  = [qn_t,h ; RoPE(qr_t,h, t)] = W_Q,h x_t     (d_n + d_r,)
    s_ts,h = (qn_t,h . kn_s,h + qr_t,h . kr_s) / sqrt(d_n + d_r)

RoPE cannot go through the latent (a rotation between W_UK and the cache would depend on the position), hence the
decoupled key kr: the cache holds d_c + d_r numbers per token per layer, against 2 nh hs for MHA.

The absorbed form (the paper's "W_UK can be absorbed into W_Q, W_UV into W_O") decodes without rebuilding any key
or value: qn_t,h . (W_UK,h c_s) = (W_UK,h^T qn_t,h) . c_s, so each head's query is mapped into the latent space once
and scored against the cached latents directly, and the weighted sum of latents is mapped out by W_UV,h after the
softmax. ``MultiHeadLatentAttention.forward(..., absorbed=True)`` computes that way; it equals the explicit form.

The module names its weights as transformers' ``DeepseekV2Attention`` does (``q_proj``, ``kv_a_proj_with_mqa``,
``kv_a_layernorm``, ``kv_b_proj``, ``o_proj``), with RoPE applied to halves (``nn.position.apply_rope``) where
DeepSeek's checkpoints rotate interleaved pairs (a fixed permutation of the RoPE rows maps one onto the other).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from playground.nn.position import apply_rope, rope_angles


@dataclass(frozen=True)
class MLAShape:
    """One MLA layer's widths (see the module docstring's glossary)."""

    d_model: int
    n_heads: int
    kv_lora_rank: int
    qk_nope_dim: int
    qk_rope_dim: int
    v_head_dim: int
    rope_base: float = 10000.0
    norm_eps: float = 1e-6

    def __post_init__(self):
        for name in ("d_model", "n_heads", "kv_lora_rank", "qk_nope_dim", "v_head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLA needs {name} >= 1, got {getattr(self, name)}")
        if self.qk_rope_dim < 2 or self.qk_rope_dim % 2:
            raise ValueError(f"MLA's RoPE key width must be even and at least 2, got {self.qk_rope_dim}")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_dim + self.qk_rope_dim

    @property
    def cached_per_token(self) -> int:
        """Numbers the cache holds per token for this layer: the latent and the shared RoPE key."""
        return self.kv_lora_rank + self.qk_rope_dim


class LatentCache(nn.Module):
    """What MLA caches for one layer: the latents c (B, max_len, d_c) and RoPE keys kr (B, max_len, d_r),
    preallocated; positions 0 .. length-1 are filled."""

    def __init__(self, batch: int, max_len: int, shape: MLAShape, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        super().__init__()
        if batch < 1 or max_len < 1:
            raise ValueError(f"a latent cache needs batch >= 1 and max_len >= 1, got {batch}, {max_len}")
        self.length = 0
        self.register_buffer("c", torch.zeros(batch, max_len, shape.kv_lora_rank, dtype=dtype, device=device),
                             persistent=False)
        self.register_buffer("kr", torch.zeros(batch, max_len, shape.qk_rope_dim, dtype=dtype, device=device),
                             persistent=False)

    def update(self, start: int, c: Tensor, kr: Tensor) -> tuple[Tensor, Tensor]:
        """Write positions start .. start+T-1 (c (B, T, d_c), kr (B, T, d_r)); return every position held so far."""
        end = start + c.shape[1]
        if start != self.length or end > self.c.shape[1]:
            raise ValueError(f"the latent cache holds positions 0..{self.length - 1} of {self.c.shape[1]}: "
                             f"cannot write {start}..{end - 1}")
        self.c[:, start:end] = c
        self.kr[:, start:end] = kr
        self.length = end
        return self.c[:, :end], self.kr[:, :end]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors as allocated."""
        return self.c.nbytes + self.kr.nbytes


@dataclass
class MLAOutput:
    out: Tensor        # (B, T, d)
    weights: Tensor    # (B, nh, T, Tk) the attention weights, float32
    lse: Tensor        # (B, nh, T) log-sum-exp of each row's scores, float32


class LatentProjections(nn.Module):
    """MLA's projections (named as transformers' ``DeepseekV2Attention`` names them) and what they compute from x:
    the latents the cache keeps, the queries, and the up-projections W_UK and W_UV. ``MultiHeadLatentAttention``
    adds the attention itself; the playground's layers (``nn.latent_attention``) call their kernels with these."""

    def __init__(self, shape: MLAShape):
        super().__init__()
        s = self.shape = shape
        self.q_proj = nn.Linear(s.d_model, s.n_heads * s.qk_head_dim, bias=False)                  # W_Q
        self.kv_a_proj_with_mqa = nn.Linear(s.d_model, s.kv_lora_rank + s.qk_rope_dim, bias=False)  # W_DKV ; W_KR
        self.kv_a_layernorm = nn.RMSNorm(s.kv_lora_rank, eps=s.norm_eps)
        self.kv_b_proj = nn.Linear(s.kv_lora_rank, s.n_heads * (s.qk_nope_dim + s.v_head_dim), bias=False)  # W_UK ; W_UV

    def up_weights(self) -> tuple[Tensor, Tensor]:
        """(W_UK (nh, d_n, d_c), W_UV (nh, d_v, d_c)): kv_b_proj's rows, head by head."""
        s = self.shape
        w = self.kv_b_proj.weight.view(s.n_heads, s.qk_nope_dim + s.v_head_dim, s.kv_lora_rank)
        return w[:, :s.qk_nope_dim], w[:, s.qk_nope_dim:]

    def _angles(self, pos: Tensor | int, T: int, device) -> tuple[Tensor, Tensor]:
        if not isinstance(pos, Tensor):
            pos = torch.arange(pos, pos + T, device=device)
        return rope_angles(pos, self.shape.qk_rope_dim, self.shape.rope_base)

    def latents(self, x: Tensor, pos: Tensor | int) -> tuple[Tensor, Tensor]:
        """x (B, T, d) at positions ``pos`` (T,) (an int: the first of T consecutive ones) -> (c (B, T, d_c),
        kr (B, T, d_r) rotated): what the cache keeps."""
        s = self.shape
        c, kr = self.kv_a_proj_with_mqa(x).split([s.kv_lora_rank, s.qk_rope_dim], dim=-1)
        cos, sin = self._angles(pos, x.shape[1], x.device)
        return self.kv_a_layernorm(c), apply_rope(kr[:, None], cos, sin)[:, 0]

    def queries(self, x: Tensor, pos: Tensor | int) -> tuple[Tensor, Tensor]:
        """x (B, T, d) at positions ``pos`` -> (qn (B, nh, T, d_n), qr (B, nh, T, d_r) rotated)."""
        s = self.shape
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, s.n_heads, s.qk_head_dim).transpose(1, 2)
        qn, qr = q.split([s.qk_nope_dim, s.qk_rope_dim], dim=-1)
        return qn, apply_rope(qr, *self._angles(pos, T, x.device))


class MultiHeadLatentAttention(LatentProjections):
    """Causal MLA over a sequence, with an optional ``LatentCache`` for decoding."""

    def __init__(self, shape: MLAShape):
        super().__init__(shape)
        s = shape
        self.o_proj = nn.Linear(s.n_heads * s.v_head_dim, s.d_model, bias=False)
        self.scaling = 1.0 / math.sqrt(s.qk_head_dim)

    def forward(self, x: Tensor, start: int = 0, cache: LatentCache | None = None,
                absorbed: bool = False) -> MLAOutput:
        """x (B, T, d), the tokens at positions start .. start+T-1 -> ``MLAOutput``. With a cache the new latents are
        written to it and the queries see every position it holds; ``absorbed`` scores the queries against the
        latents themselves (W_UK into the query, W_UV after the softmax) instead of rebuilding keys and values."""
        s = self.shape
        B, T, _ = x.shape
        c, kr = self.latents(x, start)                      # (B, T, d_c), (B, T, d_r)
        if cache is not None:
            c, kr = cache.update(start, c, kr)              # every position held: (B, Tk, ·)
        elif start:
            raise ValueError("positions after 0 need the cache that holds the ones before")
        qn, qr = self.queries(x, start)                     # (B, nh, T, d_n), (B, nh, T, d_r)
        w_uk, w_uv = self.up_weights()
        rope_scores = qr @ kr[:, None].transpose(-1, -2)    # (B, nh, T, Tk): the shared RoPE key
        if absorbed:
            q_latent = torch.einsum("bhtn,hnc->bhtc", qn, w_uk)          # (B, nh, T, d_c)
            scores = q_latent @ c[:, None].transpose(-1, -2) + rope_scores
        else:
            kn = torch.einsum("bsc,hnc->bhsn", c, w_uk)                 # (B, nh, Tk, d_n)
            scores = qn @ kn.transpose(-1, -2) + rope_scores
        scores = scores.float() * self.scaling
        Tk = c.shape[1]
        q_pos = torch.arange(start, start + T, device=x.device)
        allowed = q_pos[:, None] >= torch.arange(Tk, device=x.device)[None, :]  # (T, Tk) causal
        scores = scores.masked_fill(~allowed, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)                           # (B, nh, T)
        weights = torch.exp(scores - lse[..., None])                    # (B, nh, T, Tk)
        p = weights.to(c.dtype)
        if absorbed:
            mixed = p @ c[:, None]                                      # (B, nh, T, d_c): latents, weighted
            heads = torch.einsum("bhtc,hvc->bhtv", mixed, w_uv)         # (B, nh, T, d_v)
        else:
            v = torch.einsum("bsc,hvc->bhsv", c, w_uv)                  # (B, nh, Tk, d_v)
            heads = p @ v
        out = self.o_proj(heads.transpose(1, 2).reshape(B, T, s.n_heads * s.v_head_dim))
        return MLAOutput(out, weights, lse)
