"""Multi-head latent attention as a playground layer: ``nn.mla``'s projections, called through ``Attention``'s
kernels and records, so every view, the KV cache and the KV-cache lab read an MLA model as they read MHA.

Two forms of one computation (``nn.mla``'s docstring derives them):

- **Explicit** (a forward without a cache: training, an analysis): every head's key [W_UK,h c_s ; kr_s] and value
  W_UV,h c_s are rebuilt from the latents, and the kernel sees an MHA call of head width d_n + d_r. The records
  hold those per-head queries and keys, so the views read one map per head.
- **Absorbed** (with a cache: generation, the lab): W_UK moves into the query and W_UV after the softmax. The
  cache holds one row [c_s ; kr_s] of d_c + d_r numbers per position (no value: the latent is the value), and the
  kernel sees an MQA call over it, the query [W_UK,h^T qn_t,h ; qr_t,h]. Its scores must be divided by
  sqrt(d_n + d_r), the head width of the explicit form; a kernel divides by the square root of its own query width,
  so the query is scaled by sqrt((d_c + d_r) / (d_n + d_r)) first. The weighted sum of rows is [sum_s w c_s ; ...]:
  its first d_c numbers, through W_UV,h, are head h's output.

Glossary: B batch, T new tokens, Tk keys, nh heads, d_c latent, d_r RoPE key, d_n the rest of a head's key.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from playground.config import ModelConfig
from playground.nn.attention import Attention, AttentionInputs
from playground.nn.mla import LatentProjections, MLAShape
from playground.nn.recorder import Recorder


def mla_shape(cfg: ModelConfig) -> MLAShape:
    """The MLA widths of a config: the head is qk_rope_dim with RoPE and the rest without, values a head wide."""
    return MLAShape(d_model=cfg.d_model, n_heads=cfg.n_heads, kv_lora_rank=cfg.kv_lora_rank,
                    qk_nope_dim=cfg.head_dim - cfg.qk_rope_dim, qk_rope_dim=cfg.qk_rope_dim, v_head_dim=cfg.head_dim,
                    rope_base=cfg.rope_base, norm_eps=cfg.norm_eps)


class LatentAttention(Attention):
    """Self-attention of a decoder-only or prefix model whose keys and values come from one latent per token."""

    def __init__(self, cfg: ModelConfig, kind: str = "self", layer: int = 0, recorder: Recorder | None = None):
        super().__init__(cfg, kind, layer, recorder)
        if kind == "cross":
            raise ValueError("MLA is self-attention: cross-attention keeps its own K/V heads")
        del self.q_proj, self.k_proj, self.v_proj  # MLA's own projections replace them
        self.latent = LatentProjections(mla_shape(cfg))

    def forward(self, x: Tensor, inputs: AttentionInputs, memory: Tensor | None = None) -> Tensor:
        """x (B, T, d) -> (B, T, d): the explicit form without a cache, the absorbed one with it."""
        s = self.latent.shape
        c, kr = self.latent.latents(x, inputs.input_pos)    # (B, T, d_c), (B, T, d_r)
        qn, qr = self.latent.queries(x, inputs.input_pos)   # (B, nh, T, d_n), (B, nh, T, d_r)
        w_uk, w_uv = self.latent.up_weights()               # (nh, d_n, d_c), (nh, d_v, d_c)
        rows = torch.cat([c, kr], dim=-1)[:, None]          # (B, 1, T, d_c + d_r)
        if self.cache is None:
            kn = torch.einsum("bsc,hnc->bhsn", c, w_uk)     # (B, nh, Tk, d_n)
            k = torch.cat([kn, kr[:, None].expand(-1, s.n_heads, -1, -1)], dim=-1)  # (B, nh, Tk, d_n + d_r)
            v = torch.einsum("bsc,hvc->bhsv", c, w_uv)      # (B, nh, Tk, d_v)
            return self.output(self.attend(torch.cat([qn, qr], dim=-1), k, v, inputs))
        rows, _ = self.cache.update(inputs.input_pos, rows, rows[..., :0])  # (B, 1, Tk, d_c + d_r): all held
        q = torch.cat([torch.einsum("bhtn,hnc->bhtc", qn, w_uk), qr], dim=-1)  # (B, nh, T, d_c + d_r)
        q = q * math.sqrt(q.shape[-1] / s.qk_head_dim)      # the kernel divides by sqrt(d_c + d_r), not sqrt(d_n + d_r)
        mixed = self.attend(q, rows, rows, inputs)[..., :s.kv_lora_rank]  # (B, nh, T, d_c): the latents, weighted
        return self.output(torch.einsum("bhtc,hvc->bhtv", mixed, w_uv))  # W_UV,h after the softmax
