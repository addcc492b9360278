"""Transformers: decoder-only (GPT, LLaMA), prefix decoder (GLM) and encoder-decoder (Vaswani 2017).

All three are stacks of the same ``Block``: self-attention, an optional cross-attention (Q from
the decoder, K/V from the encoder output) and an MLP, each wrapped in a residual with a norm
before (pre-norm, GPT-2/LLaMA) or after (post-norm, the 2017 paper). A ``Stack`` owns the
position encoding and builds the mask once per forward from absolute positions, so a full pass
and a cached decoding step run the same code. Every attention layer holds the model's recorder
and writes its weights there when asked (``capture=True``); no forward passes them back.

Glossary: B batch, T new tokens, Tk keys, d model width, V vocabulary.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from playground.nn import masks
from playground.models.base import LanguageModel, ModelOutput
from playground.nn.latent_attention import LatentAttention
from playground.nn.attention import Attention, AttentionInputs
from playground.nn.recorder import AttentionRecord, Recorder
from playground.config import ModelConfig
from playground.nn.position import alibi_slopes, rope_angles, sinusoidal_table


class MLP(nn.Module):
    """GELU: W2 gelu(W1 x) (gelu_tanh: GPT-2's tanh approximation). SwiGLU (LLaMA): W2 (silu(W1 x) * W3 x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.mlp
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias) if cfg.mlp == "swiglu" else None
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d) -> (B, T, d)."""
        if self.gate is not None:
            return self.dropout(self.down(F.silu(self.gate(x)) * self.up(x)))
        approximate = "tanh" if self.kind == "gelu_tanh" else "none"
        return self.dropout(self.down(F.gelu(self.up(x), approximate=approximate)))


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    """Self-attention, cross-attention (encoder-decoder's decoder only) and MLP, each in a residual.

    Args:
        kind: the self-attention's record kind (self | encoder_self | decoder_self).
        layer: this block's index in its stack. recorder: the model's.
        cross: add cross-attention to an encoder's output.
    """

    def __init__(self, cfg: ModelConfig, kind: str, layer: int, recorder: Recorder, cross: bool = False):
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        layer_class = LatentAttention if cfg.kv_lora_rank else Attention  # MLA: keys and values from one latent
        self.self_attn, self.norm_self = layer_class(cfg, kind, layer, recorder), make_norm(cfg)
        self.cross_attn = Attention(cfg, "cross", layer, recorder) if cross else None
        self.norm_cross = make_norm(cfg) if cross else None
        self.mlp, self.norm_mlp = MLP(cfg), make_norm(cfg)

    def forward(self, x: Tensor, inputs: AttentionInputs, memory: Tensor | None = None,
                cross_inputs: AttentionInputs | None = None) -> Tensor:
        """Pre-norm ``x = x + attn(norm(x))`` or post-norm ``x = norm(x + attn(x))``, then the same for the MLP.

        Args:
            x: (B, T, d). inputs: mask, positions, RoPE, ALiBi of the self-attention.
            memory: (B, S, d) encoder output and cross_inputs its mask, for cross-attention.
        Returns:
            (B, T, d).
        """
        if self.pre_norm:  # GPT-2, LLaMA: x + f(norm(x))
            x = x + self.self_attn(self.norm_self(x), inputs)
            if self.cross_attn is not None:
                x = x + self.cross_attn(self.norm_cross(x), cross_inputs, memory)
            return x + self.mlp(self.norm_mlp(x))
        x = self.norm_self(x + self.self_attn(x, inputs))  # Vaswani et al. 2017: norm(x + f(x))
        if self.cross_attn is not None:
            x = self.norm_cross(x + self.cross_attn(x, cross_inputs, memory))
        return self.norm_mlp(x + self.mlp(x))


class Stack(nn.Module):
    """A stack of blocks with its position encoding and its mask kind (causal, prefix, bidirectional).

    ``kind`` names its self-attention records (self | encoder_self | decoder_self); every layer
    writes into ``recorder``, the model's.
    """

    def __init__(self, cfg: ModelConfig, mask_kind: str, kind: str, recorder: Recorder, cross: bool = False):
        super().__init__()
        self.cfg, self.mask_kind = cfg, mask_kind
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.position == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, kind, layer, recorder, cross) for layer in range(cfg.n_layer))
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
                memory: Tensor | None = None, memory_valid: Tensor | None = None) -> Tensor:
        """Run token embeddings through the stack.

        Args:
            x: (B, T, d) embeddings of the tokens at positions start_pos..start_pos+T-1.
            prefix_len: tokens seen bidirectionally (mask kind "prefix"). key_valid: (B, T) bool, False at padding.
            memory: (B, S, d) encoder output, for cross-attention; memory_valid: (B, S) bool.
        Returns:
            (B, T, d), normed (pre-norm) for the output head.
        """
        B, T, _ = x.shape
        cfg = self.cfg
        q_pos, k_pos = self.positions_for(start_pos, T, x.device)
        if cfg.position == "learned":
            x = x + self.pos_emb(q_pos)
        elif cfg.position == "sinusoidal":
            x = x + sinusoidal_table(q_pos, cfg.d_model).to(x.dtype)
        x = self.dropout(x)
        rule = masks.MaskRule(self.mask_kind, prefix_len=prefix_len, window=cfg.sliding_window)
        alibi = cfg.position == "alibi"
        self_inputs = AttentionInputs(
            input_pos=q_pos, k_pos=k_pos, rule=rule, q_start=start_pos, k_start=int(k_pos[0]),
            key_valid=_padding(key_valid),
            rope=rope_angles(q_pos, cfg.head_dim, cfg.rope_base, cfg.rope_scaling) if cfg.position == "rope" else None,
            alibi_slopes=self.alibi_slopes if alibi else None,
        )
        cross_inputs = None
        if memory is not None:
            cross_inputs = AttentionInputs(input_pos=q_pos, k_pos=masks.positions(0, memory.shape[1], x.device),
                                           rule=masks.MaskRule("cross"), q_start=start_pos, k_start=0,
                                           key_valid=_padding(memory_valid))
        for block in self.blocks:
            x = block(x, self_inputs, memory, cross_inputs)
        return self.norm_out(x)

    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype, device) -> None:
        for block in self.blocks:
            block.self_attn.cache = block.self_attn.new_cache(batch, max_len, dtype, device, self.cfg.sliding_window)
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


def _padding(key_valid: Tensor | None) -> Tensor | None:
    """key_valid (B, Tk) when some key is padding, else None: a kernel then needs no padding mask."""
    return key_valid if key_valid is not None and not bool(key_valid.all()) else None


class TransformerLM(LanguageModel):
    """Decoder-only (causal) or prefix decoder (GLM: bidirectional over the first prefix_len tokens)."""

    cached_stacks = ("decoder",)

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family not in ("decoder", "prefix"):
            raise ValueError(f"TransformerLM builds family decoder or prefix, got {cfg.family!r}")
        self.decoder = Stack(cfg, mask_kind="causal" if cfg.family == "decoder" else "prefix", kind="self",
                             recorder=self.recorder)
        self._init_embeddings(cfg)

    def forward(self, idx: Tensor, *, start_pos: int = 0, prefix_len: int = 0, key_valid: Tensor | None = None,
                capture: bool = False, logits: str = "all") -> ModelOutput:
        """Logits for every position (``logits``: "last" or "none", see ``project``), and every layer's
        attention when ``capture``.

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
        with self.recording(capture) as records:
            h = self.decoder(self.embed(idx), start_pos=start_pos, prefix_len=prefix_len, key_valid=key_valid)
        return ModelOutput(self.project(h, logits), records)


class EncoderDecoder(LanguageModel):
    """The 2017 Transformer: a bidirectional encoder, a causal decoder with cross-attention."""

    cached_stacks = ("decoder",)  # the encoder runs once per input; cross K/V are cached in the decoder

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.family != "encdec":
            raise ValueError(f"EncoderDecoder builds family encdec, got {cfg.family!r}")
        self.encoder = Stack(cfg, mask_kind="bidirectional", kind="encoder_self", recorder=self.recorder)
        self.decoder = Stack(cfg, mask_kind="causal", kind="decoder_self", recorder=self.recorder, cross=True)
        self._init_embeddings(cfg)

    def encode(self, src: Tensor, src_valid: Tensor | None = None,
               capture: bool = False) -> tuple[Tensor, list[AttentionRecord]]:
        """src (B, S) -> memory (B, S, d), and one "encoder_self" record per layer when ``capture``."""
        with self.recording(capture) as records:
            memory = self.encoder(self.embed(src), key_valid=src_valid)
        return memory, records

    def decode(self, tgt: Tensor, memory: Tensor, *, src_valid: Tensor | None = None, start_pos: int = 0,
               capture: bool = False, logits: str = "all") -> ModelOutput:
        """tgt (B, T) decoder ids -> logits (B, T, V) (``logits``: see ``project``), with "decoder_self" and
        "cross" records per layer."""
        with self.recording(capture) as records:
            h = self.decoder(self.embed(tgt), start_pos=start_pos, memory=memory, memory_valid=src_valid)
        return ModelOutput(self.project(h, logits), records)

    def forward(self, src: Tensor, tgt: Tensor, *, src_valid: Tensor | None = None, start_pos: int = 0,
                capture: bool = False, logits: str = "all") -> ModelOutput:
        """Encode src (B, S), decode tgt (B, T): logits (B, T, V) and all three attention kinds,
        encoder layers first, then per decoder layer its self and cross records."""
        with self.recording(capture) as records:
            memory, _ = self.encode(src, src_valid)
            out = self.decode(tgt, memory, src_valid=src_valid, start_pos=start_pos, logits=logits).logits
        return ModelOutput(out, records)
