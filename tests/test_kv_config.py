"""The KV-cache calculator reading real config.json files: published figures, every layer kind, refusals.

The configs below carry the fields of the models' published ``config.json`` that the cache depends on
(copied from the Hub's files). Which layer slides, and which is attention in a hybrid, is checked against
``transformers``' own config classes.
"""
import pytest
import torch

from playground.config import ModelConfig
from playground.errors import InputError
from playground.nn.cache import state_bytes_per_layer
from playground.nn.kv_config import kv_from_config

LLAMA_2_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
              "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
              "num_key_value_heads": 32, "max_position_embeddings": 4096, "vocab_size": 32000,
              "torch_dtype": "float16"}
LLAMA_3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
              "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
              "num_key_value_heads": 8, "max_position_embeddings": 8192, "rope_theta": 500000.0,
              "vocab_size": 128256, "torch_dtype": "bfloat16"}
DEEPSEEK_V2 = {"architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "hidden_size": 5120,
               "num_attention_heads": 128, "num_key_value_heads": 128, "num_hidden_layers": 60,
               "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
               "v_head_dim": 128, "first_k_dense_replace": 1, "n_routed_experts": 160, "vocab_size": 102400}
MISTRAL_7B_V01 = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 4096,
                  "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
                  "num_key_value_heads": 8, "max_position_embeddings": 32768, "sliding_window": 4096,
                  "rope_theta": 10000.0, "vocab_size": 32000}
GEMMA_3_1B = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 1152,
              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "num_hidden_layers": 26,
              "sliding_window": 512, "sliding_window_pattern": 6, "max_position_embeddings": 32768,
              "query_pre_attn_scalar": 256, "vocab_size": 262144}
JAMBA_V01 = {"architectures": ["JambaForCausalLM"], "model_type": "jamba", "hidden_size": 4096,
             "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32,
             "attn_layer_period": 8, "attn_layer_offset": 4, "expert_layer_period": 2, "expert_layer_offset": 1,
             "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_dt_rank": 256,
             "sliding_window": None, "vocab_size": 65536}
MAMBA_130M = {"architectures": ["MambaForCausalLM"], "model_type": "mamba", "hidden_size": 768,
              "intermediate_size": 1536, "state_size": 16, "expand": 2, "conv_kernel": 4, "num_hidden_layers": 24,
              "time_step_rank": 48, "vocab_size": 50280}


def test_published_figures():
    assert kv_from_config(LLAMA_2_7B, "fp16").bytes_per_token == 524_288
    assert kv_from_config(LLAMA_3_8B, "bf16").bytes_per_token == 131_072
    deepseek = kv_from_config(DEEPSEEK_V2, "bf16")
    assert deepseek.bytes_per_token == 69_120  # 60 layers x (512 + 64) x 2 bytes
    assert [g.layer.kind for g in deepseek.groups()] == ["mla"]
    # the generic formula (hd = 5120 / 128 = 40 over 128 K/V heads) is 17.8x the latent cache
    assert deepseek.generic_per_token == 2 * 60 * 128 * 40 * 2
    assert deepseek.generic_terms == dict(n_layer=60, n_kv_heads=128, head_dim=40, bytes=2)


def test_plain_attention_agrees_with_the_generic_formula():
    report = kv_from_config(LLAMA_3_8B, "bf16")
    assert report.generic_per_token == report.bytes_per_token
    assert report.bytes_at(8192, batch=4) == report.generic_at(8192, batch=4) == 4 * 8192 * 131_072 == 2**32
    assert report.fixed_bytes == 0 and report.uncounted_layers == 0


def test_gpt2_names_and_multi_query():
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024}
    assert kv_from_config(gpt2, "fp32").bytes_per_token == 12 * 2 * 768 * 4
    starcoder = {"model_type": "gpt_bigcode", "n_layer": 40, "n_head": 48, "n_embd": 6144, "multi_query": True}
    assert kv_from_config(starcoder, "fp16").bytes_per_token == 40 * 2 * 128 * 2


def test_mistral_window_caps_every_layer():
    report = kv_from_config(MISTRAL_7B_V01, "bf16")
    (group,) = report.groups()
    assert group.layer.kind == "sliding" and group.layer.cap == 4096 and len(group.indices) == 32
    assert report.bytes_per_token == 131_072
    assert report.bytes_at(1000) == 1000 * 131_072                  # the window is not full yet
    assert report.bytes_at(32768) == 4096 * 131_072 == 2**29         # 512 MiB, capped
    assert report.generic_at(32768) == 32768 * 131_072 == 2**32      # the generic formula: 4 GiB
    no_window = dict(MISTRAL_7B_V01, sliding_window=None)             # Mistral v0.2 on: no window
    assert kv_from_config(no_window).bytes_at(32768) == 2**32


def test_gemma3_five_local_layers_to_one_global():
    transformers = pytest.importorskip("transformers")
    report = kv_from_config(GEMMA_3_1B, "bf16")
    kinds = ["full_attention" if layer.kind == "attention" else "sliding_attention" for layer in report.layers]
    reference = transformers.Gemma3TextConfig(**{k: v for k, v in GEMMA_3_1B.items() if k != "architectures"})
    assert kinds == reference.layer_types
    full = [g for g in report.groups() if g.layer.kind == "attention"][0]
    local = [g for g in report.groups() if g.layer.kind == "sliding"][0]
    assert full.indices == (5, 11, 17, 23) and len(local.indices) == 22 and local.layer.cap == 512
    per_layer = 2 * 1 * 256 * 2
    assert report.bytes_at(32768) == 4 * 32768 * per_layer + 22 * 512 * per_layer
    assert report.generic_at(32768) == 26 * 32768 * per_layer  # 5.9x too much
    # the multimodal checkpoints keep the text model in text_config; no pattern named: gemma3's default (6)
    nested = {"model_type": "gemma3", "text_config": {k: v for k, v in GEMMA_3_1B.items()
                                                      if k not in ("sliding_window_pattern", "model_type")}
              | {"model_type": "gemma3_text"}, "vision_config": {"hidden_size": 1152}}
    assert kv_from_config(nested, "bf16").layers == report.layers


def test_layer_types_and_other_sliding_rules_follow_transformers():
    transformers = pytest.importorskip("transformers")
    listed = dict(GEMMA_3_1B, num_hidden_layers=4, sliding_window_pattern=None,
                  layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"])
    assert [layer.kind for layer in kv_from_config(listed).layers] == ["sliding", "attention"] * 2
    qwen = {"model_type": "qwen2", "hidden_size": 896, "num_attention_heads": 14, "num_key_value_heads": 2,
            "num_hidden_layers": 24, "sliding_window": 32768, "max_window_layers": 21}
    for on in (False, True):
        kinds = [layer.kind for layer in kv_from_config(dict(qwen, use_sliding_window=on)).layers]
        reference = transformers.Qwen2Config(**dict(qwen, use_sliding_window=on)).layer_types
        assert kinds == [{"full_attention": "attention", "sliding_attention": "sliding"}[t] for t in reference]
        assert kinds.count("sliding") == (3 if on else 0)
    gemma2 = {"model_type": "gemma2", "hidden_size": 2304, "num_attention_heads": 8, "num_key_value_heads": 4,
              "head_dim": 256, "num_hidden_layers": 26, "sliding_window": 4096}
    kinds = [layer.kind for layer in kv_from_config(gemma2).layers]
    reference = transformers.Gemma2Config(**gemma2).layer_types
    assert kinds == [{"full_attention": "attention", "sliding_attention": "sliding"}[t] for t in reference]
    assert kinds[:2] == ["sliding", "attention"]


def test_jamba_hybrid_counts_attention_layers_and_mamba_state():
    transformers = pytest.importorskip("transformers")
    report = kv_from_config(JAMBA_V01, "bf16")
    attention = [i for i, layer in enumerate(report.layers) if layer.kind == "attention"]
    reference = transformers.JambaConfig(**{k: v for k, v in JAMBA_V01.items() if k != "architectures"})
    assert attention == [i for i, t in enumerate(reference.layers_block_type) if t == "attention"] == [4, 12, 20, 28]
    assert report.bytes_per_token == 4 * 2 * 8 * 128 * 2                 # 16,384: 4 attention layers of 32
    assert report.generic_per_token == 32 * 2 * 8 * 128 * 2             # 131,072: 8x too much per token
    d_inner = 2 * 4096
    mamba = d_inner * 3 * 2 + d_inner * 16 * 4  # conv state in bf16, SSM state in float32
    assert {layer.fixed for layer in report.layers if layer.kind == "recurrent"} == {mamba}
    assert report.fixed_bytes == 28 * mamba
    assert report.bytes_at(0) == 28 * mamba and report.bytes_at(100, batch=2) == 2 * (28 * mamba + 100 * 16_384)


def test_mamba_130m_holds_a_fixed_state():
    report = kv_from_config(MAMBA_130M, "bf16")
    assert {layer.kind for layer in report.layers} == {"recurrent"} and report.layers[0].state == "Mamba-1"
    assert report.bytes_per_token == 0 and report.generic_per_token is None
    assert report.fixed_bytes == 24 * (1536 * 3 * 2 + 1536 * 16 * 4) == 2_580_480
    assert report.bytes_at(1) == report.bytes_at(100_000) == 2_580_480
    assert report.generic_at(100_000) is None
    # the same state as the playground's own Mamba keeps (its formula, from a ModelConfig)
    ours = ModelConfig(family="mamba", d_model=768, n_layer=24, expand=2, d_state=16, d_conv=4, position="none",
                       n_heads=1, n_kv_heads=1)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        assert kv_from_config(MAMBA_130M, name).layers[0].fixed == state_bytes_per_layer("Mamba", ours, dtype)


def test_mamba2_rwkv_and_pattern_hybrids():
    mamba2 = {"model_type": "mamba2", "hidden_size": 768, "expand": 2, "num_heads": 24, "head_dim": 64,
              "state_size": 128, "n_groups": 1, "conv_kernel": 4, "num_hidden_layers": 24}
    layer = kv_from_config(mamba2, "fp32").layers[0]
    assert layer.state == "Mamba-2" and layer.fixed == ((1536 + 2 * 128) * 3 + 1536 * 128) * 4
    rwkv4 = {"model_type": "rwkv", "hidden_size": 768, "attention_hidden_size": 768, "num_hidden_layers": 12}
    assert kv_from_config(rwkv4, "bf16").fixed_bytes == 12 * (2 * 768 * 2 + 3 * 768 * 4)
    rwkv6 = {"model_type": "rwkv6", "hidden_size": 2048, "attention_hidden_size": 2048, "head_size": 64,
             "num_hidden_layers": 24}
    assert kv_from_config(rwkv6, "bf16").fixed_bytes == 24 * (2 * 2048 * 2 + 2048 * 64 * 4)
    nemotron = {"model_type": "nemotron_h", "hybrid_override_pattern": "M-M*-M-E", "hidden_size": 1024,
                "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "mamba_num_heads": 32,
                "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8, "conv_kernel": 4}
    report = kv_from_config(nemotron, "bf16")
    assert [layer.kind for layer in report.layers] == ["recurrent", "none", "recurrent", "attention", "none",
                                                       "recurrent", "none", "none"]
    assert report.bytes_per_token == 2 * 2 * 128 * 2
    assert report.fixed_bytes == 3 * ((2048 + 2 * 8 * 128) * 3 * 2 + 2048 * 128 * 4)
    # a linear-attention layer whose state the config does not size is counted as 0, and said so
    qwen3_next = {"model_type": "qwen3_next", "num_hidden_layers": 4, "hidden_size": 2048, "num_attention_heads": 16,
                  "num_key_value_heads": 2, "head_dim": 256,
                  "layer_types": ["linear_attention"] * 3 + ["full_attention"]}
    report = kv_from_config(qwen3_next)
    assert report.uncounted_layers == 3 and report.bytes_per_token == 2 * 2 * 256 * 2


@pytest.mark.parametrize("config, dtype, message", [
    ([1, 2], "bf16", "JSON object"),
    (dict(LLAMA_3_8B, num_attention_heads=None), "bf16", "no num_attention_heads / n_head"),
    ({"model_type": "llama", "hidden_size": 4096}, "bf16", "no num_hidden_layers / n_layer / num_layers"),
    (dict(LLAMA_3_8B, num_hidden_layers=5000), "bf16", "num_hidden_layers must be an integer from 1 to 1000"),
    (dict(LLAMA_3_8B, num_hidden_layers="32"), "bf16", "num_hidden_layers must be an integer"),
    (dict(LLAMA_3_8B, num_key_value_heads=5), "bf16", "n_heads=32 must be divisible by n_kv_heads=5"),
    (dict(LLAMA_3_8B, hidden_size=4100), "bf16", "hidden_size=4100 is not divisible by num_attention_heads=32"),
    (dict(LLAMA_3_8B, layer_types=["full_attention"] * 31), "bf16", "layer_types lists 31 layers but the model has 32"),
    (dict(LLAMA_3_8B, layer_types=["full_attention"] * 31 + ["teleport"]), "bf16", "layer type 'teleport'"),
    (dict(LLAMA_3_8B, layer_types=["sliding_attention"] * 32), "bf16", "no sliding_window, needed for sliding"),
    (dict(MISTRAL_7B_V01, sliding_window=-4), "bf16", "sliding_window must be an integer from 1"),
    (dict(DEEPSEEK_V2, qk_rope_head_dim=None), "bf16", "no qk_rope_head_dim, needed for MLA layers"),
    (dict(MAMBA_130M, state_size=None), "bf16", "no state_size, needed for the Mamba-1 state"),
    (dict(JAMBA_V01, attn_layer_offset=8), "bf16", "attn_layer_offset must be an integer from 0 to 7"),
    ({"model_type": "falcon_h1", "num_hidden_layers": 24}, "bf16", "'falcon_h1' lays out its layers"),
    (LLAMA_3_8B, "fp12", "cache dtype 'fp12' is not one of"),
])
def test_refusals_name_the_field(config, dtype, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as caught:
        kv_from_config(config, dtype)
    assert isinstance(caught.value, ValueError)


def test_context_and_batch_are_checked():
    report = kv_from_config(LLAMA_3_8B)
    with pytest.raises(ValueError, match="batch must be an integer of at least 1"):
        report.bytes_at(10, batch=0)
    with pytest.raises(ValueError, match="context must be an integer of at least 0"):
        report.generic_at(-1)


def test_a_list_of_layer_types_is_authoritative():
    """A layer list says it layer by layer: no rule (Mistral's every-layer window) overrides it."""
    listed = dict(MISTRAL_7B_V01, num_hidden_layers=3,
                  layer_types=["full_attention", "sliding_attention", "full_attention"])
    report = kv_from_config(listed)
    assert [layer.kind for layer in report.layers] == ["attention", "sliding", "attention"]
    assert report.bytes_at(10_000) == 2 * 10_000 * 4096 + 4096 * 4096
    with pytest.raises(InputError, match=r"layer type \"{'x': 1}\""):
        kv_from_config(dict(listed, layer_types=["full_attention", {"x": 1}, "full_attention"]))
