"""GPT-2 (``model_type: gpt2``): learned positions, LayerNorm, GELU (tanh), MHA, tied embeddings.

The Hub's ``openai-community/gpt2`` names its tensors without a prefix (``h.0.attn.c_attn.weight``);
``save_pretrained`` of ``GPT2LMHeadModel`` writes them under ``transformer.``: both are read. Its
linear layers are ``Conv1D``, stored (in, out), the transpose of ``nn.Linear``; ``c_attn`` fuses
q | k | v by columns. ``attn.bias`` (the causal mask) and ``attn.masked_bias`` are buffers some
files carry, not weights: they are accounted for and not read.
"""
from __future__ import annotations

import torch

from playground.config import ModelConfig
from playground.models.pretrained.checkpoint import Checkpoint
from playground.models.pretrained.families.common import (field, fill, fused_column, refuse_unless, same,
                                                          transposed)

MODEL_TYPES = ("gpt2",)
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
BUFFERS = ("attn.bias", "attn.masked_bias")

# our template -> (theirs, without the optional "transformer." prefix; reshape)
WEIGHT_MAP = {
    "tok_emb.weight": ("wte.weight", same),
    "decoder.pos_emb.weight": ("wpe.weight", same),
    "decoder.blocks.{}.norm_self.weight": ("h.{}.ln_1.weight", same),
    "decoder.blocks.{}.norm_self.bias": ("h.{}.ln_1.bias", same),
    "decoder.blocks.{}.self_attn.q_proj.weight": ("h.{}.attn.c_attn.weight", fused_column(0)),
    "decoder.blocks.{}.self_attn.k_proj.weight": ("h.{}.attn.c_attn.weight", fused_column(1)),
    "decoder.blocks.{}.self_attn.v_proj.weight": ("h.{}.attn.c_attn.weight", fused_column(2)),
    "decoder.blocks.{}.self_attn.q_proj.bias": ("h.{}.attn.c_attn.bias", fused_column(0)),
    "decoder.blocks.{}.self_attn.k_proj.bias": ("h.{}.attn.c_attn.bias", fused_column(1)),
    "decoder.blocks.{}.self_attn.v_proj.bias": ("h.{}.attn.c_attn.bias", fused_column(2)),
    "decoder.blocks.{}.self_attn.o_proj.weight": ("h.{}.attn.c_proj.weight", transposed),
    "decoder.blocks.{}.self_attn.o_proj.bias": ("h.{}.attn.c_proj.bias", same),
    "decoder.blocks.{}.norm_mlp.weight": ("h.{}.ln_2.weight", same),
    "decoder.blocks.{}.norm_mlp.bias": ("h.{}.ln_2.bias", same),
    "decoder.blocks.{}.mlp.up.weight": ("h.{}.mlp.c_fc.weight", transposed),
    "decoder.blocks.{}.mlp.up.bias": ("h.{}.mlp.c_fc.bias", same),
    "decoder.blocks.{}.mlp.down.weight": ("h.{}.mlp.c_proj.weight", transposed),
    "decoder.blocks.{}.mlp.down.bias": ("h.{}.mlp.c_proj.bias", same),
    "decoder.norm_out.weight": ("ln_f.weight", same),
    "decoder.norm_out.bias": ("ln_f.bias", same),
}
HEAD = "lm_head.weight"  # never prefixed


def to_config(hf: dict) -> ModelConfig:
    """Our config for a GPT-2 config.json; ValueError naming the field on anything not supported."""
    refuse_unless(hf, "scale_attn_weights", True, True)
    refuse_unless(hf, "scale_attn_by_inverse_layer_idx", False, False)
    refuse_unless(hf, "add_cross_attention", False, False)
    activation = hf.get("activation_function", "gelu_new")
    if activation not in ACTIVATIONS:
        raise ValueError(f"config.json sets activation_function={activation!r}, which the playground does not "
                         f"support (supported: {', '.join(ACTIVATIONS)})")
    d_model, n_heads = field(hf, "n_embd"), field(hf, "n_head")
    return ModelConfig(
        family="decoder", vocab_size=field(hf, "vocab_size"), context_length=field(hf, "n_positions"),
        n_layer=field(hf, "n_layer"), d_model=d_model, n_heads=n_heads, n_kv_heads=n_heads,
        d_ff=field(hf, "n_inner", int, 4 * d_model), position="learned", norm="layernorm", norm_placement="pre",
        norm_eps=field(hf, "layer_norm_epsilon", float, 1e-5), mlp=ACTIVATIONS[activation], bias=True,
        tie_embeddings=field(hf, "tie_word_embeddings", bool, True),
    )


def state_dict(cfg: ModelConfig, hf: dict, ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Our state dict from a GPT-2 checkpoint, with or without the ``transformer.`` prefix."""
    prefix = "transformer." if "transformer.wte.weight" in ckpt else ""
    weight_map = {ours: (prefix + theirs, reshape) for ours, (theirs, reshape) in WEIGHT_MAP.items()}
    weight_map[HEAD] = (HEAD, same)
    for i in range(cfg.n_layer):
        for buffer in BUFFERS:
            if f"{prefix}h.{i}.{buffer}" in ckpt:
                ckpt.ignore(f"{prefix}h.{i}.{buffer}")
    return fill(cfg, ckpt, weight_map, tied=(HEAD, "tok_emb.weight") if cfg.tie_embeddings else None)
