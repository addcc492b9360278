"""Mamba-1 (``model_type: mamba``): ``MambaForCausalLM`` checkpoints such as ``state-spaces/mamba-130m-hf``.

Layout: ``backbone.embeddings``, ``backbone.layers.{i}.norm`` (RMSNorm) and ``.mixer.{in_proj,
conv1d.weight, conv1d.bias, x_proj, dt_proj.weight, dt_proj.bias, A_log, D, out_proj}``,
``backbone.norm_f`` and ``lm_head`` (absent when ``tie_word_embeddings``). The names and shapes
are ours already (``playground.models.mamba`` follows mamba-minimal and transformers' slow path),
so every tensor is taken as it is.

Config: ``hidden_size``, ``num_hidden_layers``, ``state_size``, ``expand``, ``conv_kernel``,
``time_step_rank`` ("auto": ceil(hidden_size / 16)), ``layer_norm_epsilon``, ``vocab_size``,
``tie_word_embeddings``. The playground's mixer has no bias in its projections and one in its
convolution, so ``use_bias`` must be false and ``use_conv_bias`` true; ``hidden_act`` must be silu.
``residual_in_fp32`` only changes rounding in half precision (the playground adds the residual in
the weights' dtype); the ``time_step_*`` init settings and ``initializer_range`` do not apply to
trained weights.

Mamba has no heads: the page draws the mean of alpha over groups of channels as "heads"
(``n_heads`` groups of expand * hidden_size / n_heads channels, about ``HEAD_CHANNELS`` each:
mamba-130m's 1,536 channels become 12 heads of 128).
"""
from __future__ import annotations

import math

import torch

from playground.config import ModelConfig
from playground.models.pretrained.checkpoint import Checkpoint
from playground.models.pretrained.families.common import field, fill, refuse_unless, same

MODEL_TYPES = ("mamba",)
HEAD_CHANNELS = 128   # channels per display head, about
CONTEXT_LENGTH = 2048  # Mamba has no positions; the length its checkpoints were trained on

LAYER = "backbone.layers.{}."
WEIGHT_MAP = {
    "tok_emb.weight": "backbone.embeddings.weight",
    "blocks.{}.norm.weight": LAYER + "norm.weight",
    **{f"blocks.{{}}.mixer.{p}": f"{LAYER}mixer.{p}"
       for p in ("in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                 "dt_proj.bias", "A_log", "D", "out_proj.weight")},
    "norm_out.weight": "backbone.norm_f.weight",
    "lm_head.weight": "lm_head.weight",
}


def display_heads(d_model: int, expand: int) -> int:
    """The divisor of d_model nearest expand * d_model / HEAD_CHANNELS (the larger on a tie): how many
    channel groups the page draws as heads (n_heads must divide d_model)."""
    target = expand * d_model / HEAD_CHANNELS
    small = [h for h in range(1, math.isqrt(d_model) + 1) if d_model % h == 0]
    return min(small + [d_model // h for h in small], key=lambda h: (abs(h - target), -h))


def time_step_rank(hf: dict, d_model: int) -> int:
    """Our dt_rank: 0 for "auto" (ceil(hidden_size / 16)), else the positive integer given."""
    rank = hf.get("time_step_rank", "auto")
    if rank == "auto":
        return 0
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"config.json field 'time_step_rank' must be \"auto\" or a positive integer, got {rank!r}")
    return rank


def to_config(hf: dict) -> ModelConfig:
    """Our config for a MambaForCausalLM config.json; ValueError naming the field on anything not supported."""
    refuse_unless(hf, "use_bias", False, False)
    refuse_unless(hf, "use_conv_bias", True, True)
    refuse_unless(hf, "hidden_act", "silu", "silu")
    d_model, expand = field(hf, "hidden_size"), field(hf, "expand", int, 2)
    inner = field(hf, "intermediate_size", int, expand * d_model)
    if inner != expand * d_model:
        raise ValueError(f"config.json sets intermediate_size={inner}, but expand * hidden_size = {expand * d_model}: "
                         "the playground needs intermediate_size == expand * hidden_size")
    n_heads = display_heads(d_model, expand) if d_model > 0 else 1
    cfg = ModelConfig(
        family="mamba", position="none", vocab_size=field(hf, "vocab_size"), context_length=CONTEXT_LENGTH,
        n_layer=field(hf, "num_hidden_layers"), d_model=d_model, n_heads=n_heads, n_kv_heads=n_heads,
        d_state=field(hf, "state_size", int, 16), d_conv=field(hf, "conv_kernel", int, 4), expand=expand,
        dt_rank=time_step_rank(hf, d_model), norm="rmsnorm", norm_eps=field(hf, "layer_norm_epsilon", float, 1e-5),
        bias=False, tie_embeddings=field(hf, "tie_word_embeddings", bool, True),
    )
    if cfg.dt_rank == math.ceil(d_model / 16):
        cfg = cfg.replace(dt_rank=0)  # the same rank as "auto": one config for both spellings
    return cfg


def state_dict(cfg: ModelConfig, hf: dict, ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    """Our state dict from a MambaForCausalLM checkpoint (no reshapes: the layouts agree)."""
    weight_map = {ours: (theirs, same) for ours, theirs in WEIGHT_MAP.items()}
    return fill(cfg, ckpt, weight_map, tied=("lm_head.weight", "tok_emb.weight") if cfg.tie_embeddings else None)
