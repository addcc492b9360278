"""Transformers: decoder-only (GPT, LLaMA), prefix decoder (GLM) and encoder-decoder (Vaswani 2017).

All three are stacks of the same ``Block``: self-attention, an optional cross-attention (Q from
the decoder, K/V from the encoder output) and an MLP, each wrapped in a residual with a norm
before (pre-norm, GPT-2/LLaMA) or after (post-norm, the 2017 paper). A ``Stack`` owns the
position encoding and builds the mask once per forward from absolute positions, so a full pass
and a cached decoding step run the same code.

Glossary: B batch, T new tokens, Tk keys, d model width, V vocabulary.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.nn import masks
from playground.models.base import LanguageModel, ModelOutput
from playground.nn.attention import Attention, AttentionInputs, AttentionRecord
from playground.nn.cache import KVCache
from playground.config import ModelConfig
from playground.nn.position import alibi_bias, alibi_slopes, rope_angles, sinusoidal_table


class MLP(nn.Module):
    """GELU: W2 gelu(W1 x). SwiGLU (LLaMA): W2 (silu(W1 x) * W3 x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.mlp
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.mlp == "swiglu" else None
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate is not None:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x)))


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, cross: bool = False):
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        self.self_attn, self.norm_self = Attention(cfg), make_norm(cfg)
        self.cross_attn = Attention(cfg, cross=True) if cross else None
        self.norm_cross = make_norm(cfg) if cross else None
        self.mlp, self.norm_mlp = MLP(cfg), make_norm(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def _residual(self, x: Tensor, norm: nn.Module, sublayer) -> tuple[Tensor, object]:
        if self.pre_norm:  # x + f(norm(x))
            y, extra = sublayer(norm(x))
            return x + self.dropout(y), extra
        y, extra = sublayer(x)  # norm(x + f(x))
        return norm(x + self.dropout(y)), extra

    def forward(self, x: Tensor, self_inputs: AttentionInputs, memory: Tensor | None = None,
                cross_inputs: AttentionInputs | None = None, capture: bool = False) -> tuple[Tensor, list]:
        """x (B, T, d) -> (B, T, d), and [self capture, cross capture] when capturing."""
        x, cap_self = self._residual(x, self.norm_self, lambda h: self.self_attn(h, self_inputs, capture=capture))
        captures = [cap_self]
        if self.cross_attn is not None:
            x, cap_cross = self._residual(
                x, self.norm_cross, lambda h: self.cross_attn(h, cross_inputs, memory=memory, capture=capture))
            captures.append(cap_cross)
        x, _ = self._residual(x, self.norm_mlp, lambda h: (self.mlp(h), None))
        return x, captures


class Stack(nn.Module):
    """A stack of blocks with its position encoding and its mask kind (causal, prefix, bidirectional)."""

    def __init__(self, cfg: ModelConfig, mask_kind: str, cross: bool = False):
        super().__init__()
        self.cfg, self.mask_kind = cfg, mask_kind
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.position == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, cross) for _ in range(cfg.n_layer))
        self.norm_out = make_norm(cfg) if cfg.norm_placement == "pre" else nn.Identity()
        self.dropout = nn.Dropout(cfg.dropout)
        if cfg.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_heads), persistent=False)

    @property
    def cached(self) -> bool:
        return self.blocks[0].self_attn.cache is not None

    def positions_for(self, start_pos: int, T: int, device) -> tuple[Tensor, Tensor]:
        """Absolute positions of the new queries (T,) and of every key they see (Tk,)."""
        if start_pos > 0 and not self.cached:
            raise ValueError(f"start_pos={start_pos} needs a KV cache holding the earlier tokens; "
                             "call model.setup_cache() first")
        end = start_pos + T
        if self.pos_emb is not None and end > self.cfg.context_length:
            raise ValueError(f"learned positions end at context_length={self.cfg.context_length}, "
                             f"but this input reaches position {end - 1}; shorten it")
        q_pos = masks.positions(start_pos, T, device)
        if not self.cached:
            return q_pos, q_pos
        first = self.blocks[0].self_attn.cache.first_kept(start_pos)  # a sliding window drops older keys
        return q_pos, masks.positions(first, end - first, device)

    def forward(self, x: Tensor, *, start_pos: int = 0, prefix_len: int = 0, key_valid: Tensor | None = None,
                memory: Tensor | None = None, memory_valid: Tensor | None = None,
                capture: bool = False) -> tuple[Tensor, list[list]]:
        """Run token embeddings x (B, T, d) through the stack -> (B, T, d), per-layer captures."""
        B, T, _ = x.shape
        cfg = self.cfg
        q_pos, k_pos = self.positions_for(start_pos, T, x.device)
        if cfg.position == "learned":
            x = x + self.pos_emb(q_pos)
        elif cfg.position == "sinusoidal":
            x = x + sinusoidal_table(q_pos, cfg.d_model).to(x.dtype)
        x = self.dropout(x)
        self_inputs = AttentionInputs(
            mask=masks.self_attention(self.mask_kind, q_pos, k_pos, prefix_len=prefix_len,
                                      window=cfg.sliding_window, key_valid=key_valid),
            input_pos=q_pos,
            rope=rope_angles(q_pos, cfg.head_dim, cfg.rope_base) if cfg.position == "rope" else None,
            bias=alibi_bias(self.alibi_slopes, q_pos, k_pos) if cfg.position == "alibi" else None,
        )
        cross_inputs = None
        if memory is not None:
            if memory_valid is None:
                memory_valid = torch.ones(B, memory.shape[1], dtype=torch.bool, device=x.device)
            cross_inputs = AttentionInputs(mask=masks.cross(T, memory_valid), input_pos=q_pos)
        captures = []
        for block in self.blocks:
            x, caps = block(x, self_inputs, memory, cross_inputs, capture)
            captures.append([(cap, inp) for cap, inp in zip(caps, (self_inputs, cross_inputs))])
        return self.norm_out(x), captures

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device) -> None:
        for block in self.blocks:
            attn = block.self_attn
            attn.cache = KVCache(batch, attn.n_kv_heads, max_len, attn.head_dim, dtype, device,
                                 window=self.cfg.sliding_window)
            if block.cross_attn is not None:
                block.cross_attn.cross_kv, block.cross_attn.use_cross_cache = None, True

    def clear_cache(self) -> None:
        for block in self.blocks:
            block.self_attn.cache = None
            if block.cross_attn is not None:
                block.cross_attn.cross_kv, block.cross_attn.use_cross_cache = None, False

    def cache_bytes(self, allocated: bool = False) -> int:
        """Bytes of this stack's caches now: self-attention K/V plus cross-attention K/V.

        The positions held, or with ``allocated`` the buffers as allocated (a cache without a window
        preallocates every position; cross K/V are exactly the source's, allocated as used)."""
        total = 0
        for block in self.blocks:
            cache = block.self_attn.cache
            if cache is not None:
                total += cache.bytes_allocated if allocated else cache.bytes_used
            if block.cross_attn is not None and block.cross_attn.cross_kv is not None:
                total += sum(t.nbytes for t in block.cross_attn.cross_kv)
        return total


def records(captures: list[list], kinds: tuple[str, ...]) -> list[AttentionRecord]:
    """Stack captures -> AttentionRecords, one per layer and attention kind."""
    out = []
    for layer, caps in enumerate(captures):
        for kind, ((weights, kernel, recomputed, diff), inputs) in zip(kinds, caps):
            out.append(AttentionRecord(kind, layer, weights, inputs.mask, inputs.bias, kernel, recomputed, diff))
    return out


class TransformerLM(LanguageModel):
    """Decoder-only (causal) or prefix decoder (GLM: bidirectional over the first prefix_len tokens)."""

    cached_stacks = ("decoder",)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family not in ("decoder", "prefix"):
            raise ValueError(f"TransformerLM builds family decoder or prefix, got {cfg.family!r}")
        self.decoder = Stack(cfg, "causal" if cfg.family == "decoder" else "prefix")
        self._init_embeddings(cfg)

    def forward(self, idx: Tensor, *, start_pos: int = 0, prefix_len: int = 0, key_valid: Tensor | None = None,
                capture: bool = False) -> ModelOutput:
        """Logits for every position, and every layer's attention when ``capture``.

        Args:
            idx: (B, T) token ids at absolute positions start_pos..start_pos+T-1.
            start_pos: > 0 only with a cache holding positions 0..start_pos-1 (``setup_cache``).
            prefix_len: prefix family only: tokens 0..prefix_len-1 attend bidirectionally.
            key_valid: (B, T) bool, False at right padding.
        Returns:
            ModelOutput(logits (B, T, V), attentions: one "self" record per layer).
        """
        if prefix_len and self.cfg.family != "prefix":
            raise ValueError("prefix_len applies to the prefix family only; this model is decoder-only (causal)")
        h, caps = self.decoder(self.embed(idx), start_pos=start_pos, prefix_len=prefix_len, key_valid=key_valid,
                               capture=capture)
        return ModelOutput(self.lm_head(h), records(caps, ("self",)) if capture else [])


class EncoderDecoder(LanguageModel):
    """The 2017 Transformer: a bidirectional encoder, a causal decoder with cross-attention."""

    cached_stacks = ("decoder",)  # the encoder runs once per input; cross K/V are cached in the decoder

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "encdec":
            raise ValueError(f"EncoderDecoder builds family encdec, got {cfg.family!r}")
        self.encoder = Stack(cfg, "bidirectional")
        self.decoder = Stack(cfg, "causal", cross=True)
        self._init_embeddings(cfg)

    def encode(self, src: Tensor, src_valid: Tensor | None = None,
               capture: bool = False) -> tuple[Tensor, list[AttentionRecord]]:
        """src (B, S) -> memory (B, S, d) and "encoder_self" records."""
        memory, caps = self.encoder(self.embed(src), key_valid=src_valid, capture=capture)
        return memory, records(caps, ("encoder_self",)) if capture else []

    def decode(self, tgt: Tensor, memory: Tensor, *, src_valid: Tensor | None = None, start_pos: int = 0,
               capture: bool = False) -> ModelOutput:
        """tgt (B, T) decoder ids -> logits (B, T, V), with "decoder_self" and "cross" records."""
        h, caps = self.decoder(self.embed(tgt), start_pos=start_pos, memory=memory, memory_valid=src_valid,
                               capture=capture)
        return ModelOutput(self.lm_head(h), records(caps, ("decoder_self", "cross")) if capture else [])

    def forward(self, src: Tensor, tgt: Tensor, *, src_valid: Tensor | None = None, start_pos: int = 0,
                capture: bool = False) -> ModelOutput:
        """Encode src (B, S), decode tgt (B, T): logits (B, T, V) and all three attention kinds."""
        memory, enc_records = self.encode(src, src_valid, capture)
        out = self.decode(tgt, memory, src_valid=src_valid, start_pos=start_pos, capture=capture)
        out.attentions = enc_records + out.attentions
        return out
