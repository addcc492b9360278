"""Our models against `transformers` on random weights: same logits, same attention weights."""
import pytest
import torch

from playground.config import ModelConfig
from playground.models import build_model

from conftest import require

transformers = require("transformers", "pip install -r requirements-dev.txt")

V, T, D, L, H = 101, 17, 64, 2, 8


def randomize(model):
    """Random values everywhere, norms included, so every weight is really checked."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.dim() == 1 and p.shape[0] == D else 0.0))
    return model


def compare(ours, theirs, x, n_layer):
    with torch.no_grad():
        ref = theirs(x, output_attentions=True)
        out = ours(x, capture=True)
    assert torch.allclose(out.logits, ref.logits, atol=1e-4, rtol=0), (out.logits - ref.logits).abs().max()
    assert len(ref.attentions) == n_layer and len(out.attentions) == n_layer
    for mine, theirs_w in zip(out.attentions, ref.attentions):
        assert mine.weights.shape == theirs_w.shape
        assert torch.allclose(mine.weights, theirs_w, atol=1e-5)


@pytest.mark.parametrize("backend", ["explicit", "auto"])
def test_gpt2_learned_mha_layernorm_gelu(backend):
    hf_cfg = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=D, n_layer=L, n_head=H,
                                     activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = randomize(transformers.GPT2LMHeadModel(hf_cfg)).eval()
    ours = build_model(ModelConfig(family="decoder", vocab_size=V, context_length=32, n_layer=L, d_model=D,
                                   n_heads=H, n_kv_heads=H, d_ff=4 * D, position="learned", norm="layernorm",
                                   mlp="gelu", bias=True, tie_embeddings=True, backend=backend)).eval()
    sd = theirs.state_dict()
    state = {"tok_emb.weight": sd["transformer.wte.weight"], "decoder.pos_emb.weight": sd["transformer.wpe.weight"],
             "decoder.norm_out.weight": sd["transformer.ln_f.weight"], "decoder.norm_out.bias": sd["transformer.ln_f.bias"]}
    for i in range(L):
        h, b = f"transformer.h.{i}.", f"decoder.blocks.{i}."
        qkv_w, qkv_b = sd[h + "attn.c_attn.weight"].T, sd[h + "attn.c_attn.bias"]  # Conv1D stores (in, out)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[b + f"self_attn.{name}.weight"] = qkv_w[j * D:(j + 1) * D]
            state[b + f"self_attn.{name}.bias"] = qkv_b[j * D:(j + 1) * D]
        state[b + "self_attn.o_proj.weight"] = sd[h + "attn.c_proj.weight"].T
        state[b + "self_attn.o_proj.bias"] = sd[h + "attn.c_proj.bias"]
        state[b + "mlp.up.weight"], state[b + "mlp.up.bias"] = sd[h + "mlp.c_fc.weight"].T, sd[h + "mlp.c_fc.bias"]
        state[b + "mlp.down.weight"], state[b + "mlp.down.bias"] = sd[h + "mlp.c_proj.weight"].T, sd[h + "mlp.c_proj.bias"]
        for theirs_n, ours_n in (("ln_1", "norm_self"), ("ln_2", "norm_mlp")):
            state[b + f"{ours_n}.weight"], state[b + f"{ours_n}.bias"] = sd[h + f"{theirs_n}.weight"], sd[h + f"{theirs_n}.bias"]
    state["lm_head.weight"] = state["tok_emb.weight"]
    ours.load_state_dict(state)
    x = torch.randint(0, V, (2, T))
    compare(ours, theirs, x, L)


@pytest.mark.parametrize("n_kv", [2, 1])
def test_llama_rope_gqa_rmsnorm_swiglu(n_kv):
    hf_cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=96, num_hidden_layers=L,
                                      num_attention_heads=H, num_key_value_heads=n_kv, max_position_embeddings=64,
                                      rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    theirs = randomize(transformers.LlamaForCausalLM(hf_cfg)).eval()
    theta = theirs.model.rotary_emb.inv_freq[1].item() ** (-D / H / 2)  # recover rope base from inv_freq
    ours = build_model(ModelConfig(family="decoder", vocab_size=V, context_length=64, n_layer=L, d_model=D,
                                   n_heads=H, n_kv_heads=n_kv, d_ff=96, position="rope", rope_base=round(theta),
                                   norm="rmsnorm", norm_eps=1e-6, mlp="swiglu", bias=False,
                                   tie_embeddings=False, backend="explicit")).eval()
    sd = theirs.state_dict()
    state = {"tok_emb.weight": sd["model.embed_tokens.weight"], "lm_head.weight": sd["lm_head.weight"],
             "decoder.norm_out.weight": sd["model.norm.weight"]}
    for i in range(L):
        h, b = f"model.layers.{i}.", f"decoder.blocks.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[b + f"self_attn.{name}.weight"] = sd[h + f"self_attn.{name}.weight"]
        for theirs_n, ours_n in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
            state[b + f"mlp.{ours_n}.weight"] = sd[h + f"mlp.{theirs_n}.weight"]
        state[b + "norm_self.weight"] = sd[h + "input_layernorm.weight"]
        state[b + "norm_mlp.weight"] = sd[h + "post_attention_layernorm.weight"]
    ours.load_state_dict(state)
    x = torch.randint(0, V, (2, T))
    compare(ours, theirs, x, L)
