"""Llama, Mistral and Qwen2 (``model_type: llama | mistral | qwen2``): RoPE, RMSNorm, SwiGLU, GQA.

One layout: ``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v,o}_proj`` (k and v have
n_kv_heads * head_dim rows), ``mlp.{gate,up,down}_proj``, ``input_layernorm``,
``post_attention_layernorm``, ``model.norm`` and ``lm_head`` (absent when ``tie_word_embeddings``).
What differs is configuration:

- Llama: ``attention_bias`` (q, k, v, o), ``mlp_bias``, ``rope_scaling`` (``linear``, ``llama3``).
- Qwen2: biases on q, k, v only; ``rope_theta`` 1e6; a sliding window only when
  ``use_sliding_window`` (per layer from ``max_window_layers``: all or none is supported).
- Mistral: ``sliding_window`` (v0.1: 4096 keys, the query's own included; null: off).

RoPE settings are read from ``rope_theta`` / ``rope_scaling`` (the files the Hub serves) or from
``rope_parameters`` (what transformers 5 writes).
"""
from __future__ import annotations

import torch

from playground.config import ModelConfig
from playground.models.pretrained.checkpoint import Checkpoint
from playground.models.pretrained.families.common import field, fill, refuse_unless, same

MODEL_TYPES = ("llama", "mistral", "qwen2")
DEFAULT_CONTEXT = {"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768}  # transformers' config defaults
ROPE_FIELDS = {"linear": ("factor",),
               "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}

LAYER = "model.layers.{}."
WEIGHT_MAP = {
    "tok_emb.weight": "model.embed_tokens.weight",
    **{f"decoder.blocks.{{}}.self_attn.{p}_proj.{kind}": f"{LAYER}self_attn.{p}_proj.{kind}"
       for p in "qkvo" for kind in ("weight", "bias")},
    "decoder.blocks.{}.norm_self.weight": LAYER + "input_layernorm.weight",
    "decoder.blocks.{}.norm_mlp.weight": LAYER + "post_attention_layernorm.weight",
    **{f"decoder.blocks.{{}}.mlp.{ours}.{kind}": f"{LAYER}mlp.{theirs}_proj.{kind}"
       for ours, theirs in (("gate", "gate"), ("up", "up"), ("down", "down")) for kind in ("weight", "bias")},
    "decoder.norm_out.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def rope_settings(hf: dict) -> tuple[float, dict | None]:
    """(rope_theta, our rope_scaling) from ``rope_theta`` + ``rope_scaling`` or ``rope_parameters``."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {k: v for k, v in params.items() if k != "rope_theta"}
    if not isinstance(params, dict) or not isinstance(scaling, dict):
        raise ValueError("config.json rope_parameters / rope_scaling must be JSON objects")
    theta = field(params, "rope_theta", float, None)
    theta = theta if theta is not None else field(hf, "rope_theta", float, 10000.0)
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind not in ROPE_FIELDS:
        raise ValueError(f"config.json sets rope_scaling type {kind!r}, which the playground does not support "
                         f"(supported: default, {', '.join(ROPE_FIELDS)})")
    if scaling.get("attention_factor", 1.0) != 1.0:
        raise ValueError(f"config.json sets rope_scaling attention_factor={scaling['attention_factor']!r}; "
                         "the playground supports only 1.0")
    ours = {"rope_type": kind}
    for name in ROPE_FIELDS[kind]:
        ours[name] = field(scaling, name, float)
    if "original_max_position_embeddings" in ours:
        ours["original_max_position_embeddings"] = field(scaling, "original_max_position_embeddings", int)
    return theta, ours


def sliding_window(hf: dict, model_type: str, n_layer: int) -> int:
    """Keys each query sees (its own included), 0 for none; ValueError if only some layers slide."""
    window = field(hf, "sliding_window", int, 0)
    if model_type == "llama":
        return 0
    layer_types = hf.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or not all(isinstance(k, str) for k in layer_types):
            raise ValueError(f"config.json layer_types must be a list of strings, got {layer_types!r:.80}")
        kinds = set(layer_types)
    elif model_type == "qwen2":
        if not hf.get("use_sliding_window", False):
            return 0
        first = field(hf, "max_window_layers", int, n_layer)  # layers >= this one slide
        kinds = {"full_attention" if i < first else "sliding_attention" for i in range(n_layer)}
    else:
        return window
    if kinds <= {"full_attention"}:
        return 0
    if kinds == {"sliding_attention"}:
        return window
    raise ValueError(f"config.json mixes full and sliding-window layers ({sorted(kinds)}); the playground "
                     "supports one kind for every layer")


def to_config(hf: dict) -> ModelConfig:
    """Our config for a Llama / Mistral / Qwen2 config.json; ValueError naming the field otherwise."""
    model_type = hf.get("model_type")
    refuse_unless(hf, "hidden_act", "silu", "silu")
    d_model, n_heads = field(hf, "hidden_size"), field(hf, "num_attention_heads")
    n_layer = field(hf, "num_hidden_layers")
    head_dim = field(hf, "head_dim", int, None)
    if head_dim is not None and n_heads and head_dim * n_heads != d_model:
        raise ValueError(f"config.json sets head_dim={head_dim}, but hidden_size / num_attention_heads = "
                         f"{d_model} / {n_heads}: the playground needs head_dim == hidden_size / num_attention_heads")
    theta, scaling = rope_settings(hf)
    if model_type == "qwen2":
        attn_bias, bias = "qkv", False
    elif model_type == "llama":
        attn_bias = "qkvo" if field(hf, "attention_bias", bool, False) else "none"
        bias = field(hf, "mlp_bias", bool, False)
    else:
        attn_bias, bias = "none", False
    return ModelConfig(
        family="decoder", vocab_size=field(hf, "vocab_size"),
        context_length=field(hf, "max_position_embeddings", int, DEFAULT_CONTEXT[model_type]),
        n_layer=n_layer, d_model=d_model, n_heads=n_heads,
        n_kv_heads=field(hf, "num_key_value_heads", int, n_heads), d_ff=field(hf, "intermediate_size"),
        position="rope", rope_base=theta, rope_scaling=scaling, norm="rmsnorm", norm_placement="pre",
        norm_eps=field(hf, "rms_norm_eps", float, 1e-6), mlp="swiglu", bias=bias, attn_bias=attn_bias,
        tie_embeddings=field(hf, "tie_word_embeddings", bool, False),
        sliding_window=sliding_window(hf, model_type, n_layer),
    )


def state_dict(cfg: ModelConfig, hf: dict, ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Our state dict from a Llama-layout checkpoint (no reshapes: the layouts agree)."""
    weight_map = {ours: (theirs, same) for ours, theirs in WEIGHT_MAP.items()}
    return fill(cfg, ckpt, weight_map, tied=("lm_head.weight", "tok_emb.weight") if cfg.tie_embeddings else None)
