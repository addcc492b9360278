"""The KV cache by formula: per-token bytes of each attention layout at a model's own dimensions, a sliding
window's cap, the recurrent families' fixed state, and a Hub checkpoint's own layers counted from its config."""
from __future__ import annotations

from playground import config
from playground.config import ModelConfig
from playground.nn.cache import dtype_bytes, kv_elements_per_token, state_bytes_per_layer
from playground.nn.kernels import dtype_name
from playground.models.hf.shape import HubConfig
from playground.nn.kv_config import kv_from_config
from playground.ui.i18n import Message, msg


def kv_formulas(cfg: ModelConfig, dtype: str = "fp32", source_tokens: int = 0) -> dict[Message, dict]:
    """Per-token KV bytes by formula at this model's dimensions (MLA: d_latent = 4 hs, d_rope = hs / 2,
    DeepSeek-V2's ratios), and the fixed state of RWKV-5 and Mamba at the same width. A model with a
    sliding window W adds its own variant capped at W positions ("cap"). An encoder-decoder adds its own decoder:
    per token its self-attention K/V in every decoder layer, and fixed the cross-attention K/V of every decoder layer
    over the ``source_tokens`` of the source, computed once."""
    size = dtype_bytes(dtype)
    hs, nh, layers = cfg.head_dim, cfg.n_heads, cfg.n_layer
    per_token = {
        msg("kv.heads", variant="MHA", n=nh): kv_elements_per_token("MHA", nh, hs),
        msg("kv.heads", variant="GQA", n=max(1, nh // 2)): kv_elements_per_token("GQA", nh, hs, n_kv_heads=max(1, nh // 2)),
        msg("kv.one_head", variant="MQA"): kv_elements_per_token("MQA", nh, hs),
        msg("kv.mla", latent=4 * hs, rope=hs // 2): kv_elements_per_token("MLA", nh, hs, d_latent=4 * hs, d_rope=hs // 2),
    }
    if isinstance(cfg, ModelConfig) and cfg.kv_lora_rank:  # this model's own latent and RoPE key
        per_token[msg("kv.mla", latent=cfg.kv_lora_rank, rope=cfg.qk_rope_dim)] = cfg.kv_lora_rank + cfg.qk_rope_dim
    out = {name: {"per_token": layers * e * size, "fixed": 0.0} for name, e in per_token.items()}
    if cfg.sliding_window and cfg.family not in config.RECURRENT_FAMILIES:
        own = 2 * cfg.n_kv_heads * hs  # the model's own K/V heads
        out[msg("kv.window", n=cfg.n_kv_heads, window=cfg.sliding_window)] = {
            "per_token": layers * own * size, "fixed": 0.0, "cap": cfg.sliding_window}
    if isinstance(cfg, ModelConfig):  # the recurrent families' fixed state at the same width
        for kind in ("RWKV", "Mamba"):
            out[msg("kv.state", kind=kind)] = {"per_token": 0.0,
                                              "fixed": layers * state_bytes_per_layer(kind, cfg, dtype)}
    if cfg.family == "encdec":
        layers_d, kv_heads, hd = cfg.decoder_cache_shape if isinstance(cfg, HubConfig) else (layers, cfg.n_kv_heads, hs)
        per_token = layers_d * 2 * kv_heads * hd * size
        out[msg("kv.this_encdec", layers=layers_d, source=source_tokens)] = {"per_token": per_token,
                                                                            "fixed": per_token * source_tokens}
    elif not isinstance(cfg, ModelConfig):  # the checkpoint's own layers, counted from its config.json as they cache
        # (decoder-only and hybrid configs)
        report = kv_from_config(cfg.hf, dtype if isinstance(dtype, str) else dtype_name(dtype))
        out[msg("kv.this_model", model_type=cfg.model_type)] = {"layers": [
            {"per_token": layer.per_token, "fixed": layer.fixed or 0.0, "cap": layer.cap} for layer in report.layers]}
    return out
