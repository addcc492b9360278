"""Multi-head attention with any number of K/V heads: MHA, GQA and MQA in one module.

``n_kv_heads`` K/V heads serve ``n_heads`` query heads; query head h reads K/V head
``h // (n_heads // n_kv_heads)``. K/V are projected (and cached) at n_kv heads and repeated
to n_heads only to compute, so the cache of a GQA/MQA model is really smaller.

The same module is self-attention (queries, keys and values from one sequence) or
cross-attention (queries from the decoder, keys and values from the encoder output).

Glossary: B batch, T new tokens, Tk keys, d model width, nh query heads, n_kv K/V heads,
hs head dim.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from playground.config import ModelConfig
from playground.nn.cache import KVCache
from playground.nn.kernels import explicit_attention, sdpa, sdpa_mask
from playground.nn.position import apply_rope
from playground.nn.recorder import AttentionRecord, Recorder


@dataclass
class AttentionInputs:
    """What a layer needs besides x, computed once per forward by the stack."""

    mask: Tensor                              # bool, (Tq, Tk) or (B, 1, Tq, Tk)
    input_pos: Tensor                         # (T,) absolute positions of the new tokens
    rope: tuple[Tensor, Tensor] | None = None  # cos, sin at input_pos, each (T, hs)
    bias: Tensor | None = None                # (nh, Tq, Tk) ALiBi


class Attention(nn.Module):
    """One attention layer; it writes an ``AttentionRecord`` into ``recorder`` while that is on.

    Args:
        kind: the record's kind: self | encoder_self | decoder_self, or cross (queries from x,
            keys and values from the encoder output).
        layer: the layer index written in the record.
        recorder: shared with the rest of the model (default: one of its own, off).
    """

    def __init__(self, cfg: ModelConfig, kind: str = "self", layer: int = 0, recorder: Recorder | None = None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.backend = cfg.backend
        self.kind, self.layer = kind, layer
        self.cross = kind == "cross"
        self.recorder = recorder if recorder is not None else Recorder()
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.bias)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)  # on the output, before the residual add (nanoGPT's resid_dropout)
        self.cache: KVCache | None = None             # self-attention: grows one token at a time
        self.cross_kv: tuple[Tensor, Tensor] | None = None  # cross-attention: computed once per input
        self.use_cross_cache = False

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # (B, n, T, hs)

    def _keys_values(self, source: Tensor, inputs: AttentionInputs) -> tuple[Tensor, Tensor]:
        if self.cross and self.cross_kv is not None:
            return self.cross_kv
        k = self._heads(self.k_proj(source), self.n_kv_heads)  # (B, n_kv, Tk, hs)
        v = self._heads(self.v_proj(source), self.n_kv_heads)  # (B, n_kv, Tk, hs)
        if self.cross:
            if self.use_cross_cache:
                self.cross_kv = (k, v)
            return k, v
        if inputs.rope is not None:
            k = apply_rope(k, *inputs.rope)
        if self.cache is not None:
            k, v = self.cache.update(inputs.input_pos, k, v)  # (B, n_kv, Tk, hs)
        return k, v

    def forward(self, x: Tensor, inputs: AttentionInputs, memory: Tensor | None = None) -> Tensor:
        """Attend from x to itself (self) or to ``memory`` (cross).

        While the recorder is on, the weights (B, nh, T, Tk) go into an ``AttentionRecord``: from
        the explicit path itself, or recomputed beside an SDPA kernel (which never returns them),
        with max |out_sdpa - out_explicit|.

        Args:
            x: (B, T, d) the queries' input.
            inputs: mask, positions, RoPE angles and ALiBi bias for this forward.
            memory: (B, Tk, d) encoder output, for cross-attention.
        Returns:
            (B, T, d).
        """
        B, T, _ = x.shape
        q = self._heads(self.q_proj(x), self.n_heads)  # (B, nh, T, hs)
        if inputs.rope is not None and not self.cross:
            q = apply_rope(q, *inputs.rope)
        k, v = self._keys_values(memory if self.cross else x, inputs)  # (B, n_kv, Tk, hs)
        groups = self.n_heads // self.n_kv_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)  # (B, nh, Tk, hs)
            v = v.repeat_interleave(groups, dim=1)  # (B, nh, Tk, hs)

        if self.backend == "explicit":
            out, weights = explicit_attention(q, k, v, inputs.mask, inputs.bias)  # (B, nh, T, hs), (B, nh, T, Tk)
            self.recorder.write(AttentionRecord(self.kind, self.layer, weights, inputs.mask, inputs.bias,
                                                "explicit", False, 0.0))
        else:
            out, kernel = sdpa(q, k, v, sdpa_mask(inputs.mask, inputs.bias, q.dtype), kernel=self.backend)
            if self.recorder.on:  # SDPA kernels never return weights: recompute them, and say by how much outputs differ
                out_explicit, weights = explicit_attention(q, k, v, inputs.mask, inputs.bias)
                diff = float((out - out_explicit).detach().abs().max())
                self.recorder.write(AttentionRecord(self.kind, self.layer, weights, inputs.mask, inputs.bias,
                                                    kernel, True, diff))
        y = out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, nh * hs)
        return self.dropout(self.o_proj(y))  # (B, T, d)
