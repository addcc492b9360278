"""Tiny random checkpoints of current transformers architectures, written by transformers itself (no network): what
the tests and ``bench.any_model`` check the playground's attention function on.

``ARCHS`` maps a name to (model_type, task, config overrides): two or four layers, width 64, 4 heads, so a
forward takes milliseconds. ``build(name)`` returns the model in eager attention (the reference: its
``output_attentions`` are the weights transformers computes) and its config.
"""
from __future__ import annotations

import torch

VOCAB = 320  # a byte-level BPE (256 bytes and its merges) fits
SMALL = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, head_dim=16)
IDS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)

ARCHS: dict[str, tuple[str, str, dict]] = {
    "llama": ("llama", "causal", dict(SMALL)),
    "qwen2": ("qwen2", "causal", dict(SMALL)),
    "mistral": ("mistral", "causal", dict(SMALL, sliding_window=5)),
    "qwen3": ("qwen3", "causal", dict(SMALL)),
    "gemma2": ("gemma2", "causal", dict(SMALL, sliding_window=5, attn_logit_softcapping=0.2, query_pre_attn_scalar=1,
                                        layer_types=["sliding_attention", "full_attention"])),
    "gemma3": ("gemma3_text", "causal", dict(SMALL, num_hidden_layers=4, sliding_window=5,
                                             layer_types=["sliding_attention"] * 3 + ["full_attention"])),
    "smollm3": ("smollm3", "causal", dict(SMALL, num_hidden_layers=4, no_rope_layers=[1, 1, 1, 0])),
    "phi3": ("phi3", "causal", dict(SMALL, pad_token_id=0)),
    "olmo2": ("olmo2", "causal", dict(SMALL)),
    "gpt_oss": ("gpt_oss", "causal", dict(SMALL, num_local_experts=4, num_experts_per_tok=2, sliding_window=5,
                                          layer_types=["sliding_attention", "full_attention"])),
    "deepseek_v2": ("deepseek_v2", "causal", dict(SMALL, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8,
                                                  qk_nope_head_dim=16, v_head_dim=16, n_routed_experts=4,
                                                  num_experts_per_tok=2, first_k_dense_replace=1,
                                                  moe_intermediate_size=32, n_shared_experts=1, n_group=1,
                                                  topk_group=1)),
    "gpt_neox": ("gpt_neox", "causal", dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                                            num_hidden_layers=2, num_attention_heads=4, rotary_pct=0.25,
                                            max_position_embeddings=256)),
    "opt": ("opt", "causal", dict(vocab_size=VOCAB, hidden_size=64, ffn_dim=96, num_hidden_layers=2,
                                  num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=256)),
    "gpt2": ("gpt2", "causal", dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    "bert": ("bert", "masked", dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                    num_attention_heads=4, max_position_embeddings=256)),
    "modernbert": ("modernbert", "masked", dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96,
                                                num_hidden_layers=3, num_attention_heads=4, local_attention=6,
                                                global_attn_every_n_layers=3, max_position_embeddings=256,
                                                pad_token_id=0, bos_token_id=1, eos_token_id=2, sep_token_id=2,
                                                cls_token_id=1)),
    "t5": ("t5", "seq2seq", dict(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                 decoder_start_token_id=0, pad_token_id=0)),
    "bart": ("bart", "seq2seq", dict(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96,
                                     decoder_ffn_dim=96, max_position_embeddings=256)),
    "marian": ("marian", "seq2seq", dict(vocab_size=VOCAB, d_model=64, encoder_layers=2, decoder_layers=2,
                                         encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96,
                                         decoder_ffn_dim=96, max_position_embeddings=256, pad_token_id=VOCAB - 1,
                                         decoder_start_token_id=VOCAB - 1)),
    "granitemoehybrid": ("granitemoehybrid", "causal", dict(SMALL, num_hidden_layers=3,
                                                            layer_types=["mamba", "attention", "mamba"],
                                                            mamba_n_heads=4, mamba_d_head=32, mamba_d_state=16,
                                                            mamba_n_groups=1, mamba_chunk_size=16,
                                                            num_local_experts=0, shared_intermediate_size=96)),
    "lfm2": ("lfm2", "causal", dict(SMALL, num_hidden_layers=3, layer_types=["conv", "full_attention", "conv"])),
    "jamba": ("jamba", "causal", dict(SMALL, num_hidden_layers=2, attn_layer_period=2, attn_layer_offset=1,
                                      expert_layer_period=2, expert_layer_offset=1, num_experts=2,
                                      mamba_d_state=8, mamba_expand=2, mamba_dt_rank=8, use_mamba_kernels=False)),
}


def config(name: str):
    """transformers' config of the tiny ``name`` checkpoint."""
    from transformers import AutoConfig

    model_type, _, overrides = ARCHS[name]
    return AutoConfig.for_model(model_type, **{**IDS, **overrides})


def auto_class(task: str):
    import transformers

    return {"causal": transformers.AutoModelForCausalLM, "masked": transformers.AutoModelForMaskedLM,
            "seq2seq": transformers.AutoModelForSeq2SeqLM}[task]


def build(name: str, seed: int = 0):
    """The tiny ``name`` model with random weights, eager attention, float32, eval mode."""
    _, task, _ = ARCHS[name]
    cfg = config(name)
    torch.manual_seed(seed)
    model = auto_class(task).from_config(cfg, attn_implementation="eager")
    with torch.no_grad():  # some architectures start sinks, biases or norms at 0 or 1: random, so ignoring them shows
        for pname, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.5)
    return model.float().eval()


def save(name: str, folder, seed: int = 0):
    """Write the tiny ``name`` checkpoint (config.json + model.safetensors) into ``folder``; returns the model."""
    model = build(name, seed)
    model.save_pretrained(folder, safe_serialization=True)
    return model
