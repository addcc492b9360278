"""Multi-head latent attention (``nn.mla``): against transformers' DeepSeek-V2 attention on the same weights, the
absorbed form against the explicit one, decoding through the latent cache against the whole sequence, and the
cache's bytes against the formula."""
import math

import pytest
import torch

from playground.nn.cache import kv_elements_per_token
from playground.nn.mla import LatentCache, MLAShape, MultiHeadLatentAttention

from conftest import require

SHAPE = MLAShape(d_model=32, n_heads=4, kv_lora_rank=12, qk_nope_dim=8, qk_rope_dim=4, v_head_dim=6)


def _module(seed: int = 0) -> MultiHeadLatentAttention:
    torch.manual_seed(seed)
    mla = MultiHeadLatentAttention(SHAPE)
    with torch.no_grad():
        mla.kv_a_layernorm.weight.uniform_(0.5, 1.5)  # not the identity: a norm left out would show
    return mla.eval()


def test_the_absorbed_form_equals_the_explicit_one():
    mla, x = _module(), torch.randn(2, 9, SHAPE.d_model)
    with torch.no_grad():
        explicit, absorbed = mla(x), mla(x, absorbed=True)
    assert torch.allclose(absorbed.out, explicit.out, atol=1e-5)
    assert torch.allclose(absorbed.weights, explicit.weights, atol=1e-6)
    assert torch.allclose(explicit.weights.sum(-1), torch.ones(2, SHAPE.n_heads, 9), atol=1e-6)
    assert torch.all(explicit.weights[..., 0, 1:] == 0)  # causal: the first token sees itself only


@pytest.mark.parametrize("absorbed", [False, True])
def test_decoding_through_the_latent_cache_equals_the_whole_sequence(absorbed):
    mla, x = _module(1), torch.randn(1, 10, SHAPE.d_model)
    cache = LatentCache(1, 10, SHAPE)
    with torch.no_grad():
        whole = mla(x)
        prefill = mla(x[:, :6], cache=cache, absorbed=absorbed)
        steps = [mla(x[:, t:t + 1], start=t, cache=cache, absorbed=absorbed).out for t in range(6, 10)]
    got = torch.cat([prefill.out, *steps], dim=1)
    assert torch.allclose(got, whole.out, atol=1e-5)
    assert cache.length == 10


def test_the_cache_holds_the_latent_and_the_rope_key_per_token():
    """d_c + d_r numbers per token per layer, measured from the tensors allocated, as the formula says; MHA at the
    same heads would hold 2 nh hs."""
    cache = LatentCache(3, 50, SHAPE)
    per_token = cache.nbytes / (3 * 50 * 4)
    assert per_token == SHAPE.kv_lora_rank + SHAPE.qk_rope_dim == SHAPE.cached_per_token
    assert per_token == kv_elements_per_token("MLA", SHAPE.n_heads, SHAPE.qk_head_dim, d_latent=SHAPE.kv_lora_rank,
                                              d_rope=SHAPE.qk_rope_dim)
    assert per_token < kv_elements_per_token("MHA", SHAPE.n_heads, SHAPE.qk_head_dim)


def test_bad_shapes_and_writes_are_refused():
    with pytest.raises(ValueError, match="RoPE key width must be even"):
        MLAShape(32, 4, 12, 8, 3, 6)
    mla, cache = _module(), LatentCache(1, 4, SHAPE)
    with torch.no_grad():
        mla(torch.randn(1, 3, SHAPE.d_model), cache=cache)
        with pytest.raises(ValueError, match="cannot write 3..4"):
            mla(torch.randn(1, 2, SHAPE.d_model), start=3, cache=cache)
        with pytest.raises(ValueError, match="need the cache"):
            mla(torch.randn(1, 2, SHAPE.d_model), start=2)


def _rope_rows(head_rows: torch.Tensor, nope: int, rope: int) -> torch.Tensor:
    """DeepSeek rotates interleaved pairs (2i, 2i+1); the playground rotates halves (i, i + d_r/2): the same
    rotation once the RoPE rows are reordered evens first, then odds."""
    order = list(range(nope)) + [nope + i for i in range(0, rope, 2)] + [nope + i for i in range(1, rope, 2)]
    return head_rows[order]


def test_it_computes_what_transformers_deepseek_v2_attention_computes():
    require("transformers", "pip install -r requirements-dev.txt")
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Attention, DeepseekV2RotaryEmbedding

    s = SHAPE
    config = DeepseekV2Config(hidden_size=s.d_model, num_attention_heads=s.n_heads, num_key_value_heads=s.n_heads,
                              kv_lora_rank=s.kv_lora_rank, q_lora_rank=None, qk_nope_head_dim=s.qk_nope_dim,
                              qk_rope_head_dim=s.qk_rope_dim, v_head_dim=s.v_head_dim, rms_norm_eps=s.norm_eps,
                              attention_bias=False, num_hidden_layers=1, vocab_size=64)
    config._attn_implementation = "eager"
    torch.manual_seed(3)
    theirs = DeepseekV2Attention(config, layer_idx=0).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.3)
    ours = MultiHeadLatentAttention(s).eval()
    q = theirs.q_proj.weight.view(s.n_heads, s.qk_head_dim, s.d_model)
    kv_a = theirs.kv_a_proj_with_mqa.weight
    with torch.no_grad():
        ours.q_proj.weight.copy_(torch.cat([_rope_rows(h, s.qk_nope_dim, s.qk_rope_dim) for h in q]))
        ours.kv_a_proj_with_mqa.weight.copy_(_rope_rows(kv_a, s.kv_lora_rank, s.qk_rope_dim))
        ours.kv_a_layernorm.weight.copy_(theirs.kv_a_layernorm.weight)
        ours.kv_b_proj.weight.copy_(theirs.kv_b_proj.weight)
        ours.o_proj.weight.copy_(theirs.o_proj.weight)
    T = 7
    x = torch.randn(2, T, s.d_model)
    positions = torch.arange(T)[None].expand(2, T)
    causal = torch.full((T, T), float("-inf")).triu(1)[None, None].expand(2, 1, T, T)
    with torch.no_grad():
        rope = DeepseekV2RotaryEmbedding(config)(x, positions)
        expected, expected_weights = theirs(x, attention_mask=causal, position_embeddings=rope)
        got = ours(x)
    assert math.isclose(theirs.scaling, ours.scaling, rel_tol=1e-6)
    assert torch.allclose(got.out, expected, atol=1e-5)
    assert torch.allclose(got.weights, expected_weights, atol=1e-6)


# --- MLA as a zoo variant: the playground's layer (nn.latent_attention) in a model -----------------------------------

MLA_FIELDS = dict(kv_lora_rank=16, qk_rope_dim=4, attn_bias="none")  # the tiny config's heads are 8 wide


def _inputs(start: int, T: int):
    from playground.nn.attention import AttentionInputs
    from playground.nn.masks import MaskRule, positions

    pos = positions(start, T)
    return AttentionInputs(input_pos=pos, k_pos=positions(0, start + T), rule=MaskRule("causal"), q_start=start,
                           k_start=0)


def _layer_and_reference():
    """A zoo MLA model's first layer, and ``nn.mla``'s module (checked against transformers above) on its weights."""
    from conftest import tiny_model
    from playground.nn.latent_attention import mla_shape

    model = tiny_model(**MLA_FIELDS)
    layer = model.decoder.blocks[0].self_attn
    with torch.no_grad():
        layer.latent.kv_a_layernorm.weight.uniform_(0.5, 1.5)
    reference = MultiHeadLatentAttention(mla_shape(model.cfg))
    reference.load_state_dict({**layer.latent.state_dict(), "o_proj.weight": layer.o_proj.weight})
    return model, layer, reference.eval()


@pytest.mark.parametrize("backend", ["explicit", "math", "flash", "flex"])
def test_the_zoo_layer_equals_nn_mla_explicitly_and_absorbed_through_its_cache(backend):
    """Without a cache the layer rebuilds every head's keys (explicit form); with one it scores the cached latents
    (absorbed form), prefill of 6 tokens then one at a time. Both equal nn.mla's output, on every kernel."""
    model, layer, reference = _layer_and_reference()
    layer.backend = backend
    x = torch.randn(1, 11, model.cfg.d_model, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = reference(x).out
        assert torch.allclose(layer(x, _inputs(0, 11)), want, atol=1e-5)
        layer.cache = layer.new_cache(1, 11, torch.float32, "cpu")
        got = [layer(x[:, :6], _inputs(0, 6))] + [layer(x[:, t:t + 1], _inputs(t, 1)) for t in range(6, 11)]
    assert torch.allclose(torch.cat(got, dim=1), want, atol=1e-5)
    # what the cache holds, measured: one row of d_c + d_r numbers per position, no value
    assert layer.cache.k.shape == (1, 1, 11, 16 + 4) and layer.cache.v.numel() == 0
    assert layer.cache.bytes_used == layer.cache.bytes_allocated == 11 * (16 + 4) * 4


def test_an_mla_model_decodes_through_its_latent_cache_as_it_reads_the_whole_text():
    from conftest import tiny_model

    model = tiny_model(**MLA_FIELDS)
    assert model.cfg.variant == "MLA"
    ids = torch.randint(0, model.cfg.vocab_size, (1, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = model(ids, capture=True)
        model.setup_cache(1, 12)
        steps = [model(ids[:, :5]).logits] + [model(ids[:, t:t + 1], start_pos=t, capture=True).logits
                                              for t in range(5, 12)]
        cached = model.cache_bytes()
    assert torch.allclose(torch.cat(steps, dim=1), whole.logits, atol=1e-5)
    assert cached == model.cfg.n_layer * 12 * (16 + 4) * 4  # d_c + d_r a position a layer, against MHA's 2 nh hs
    for rec in whole.attentions:  # the explicit form's records: a map per head, rebuilt exactly
        assert rec.source.n_kv_heads == 4 and rec.max_abs_diff < 1e-5
        assert torch.allclose(rec.weights.sum(-1), torch.ones(1, 4, 12), atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    (dict(position="alibi"), "needs position='rope'"),
    (dict(n_kv_heads=2), "n_kv_heads must equal n_heads"),
    (dict(qk_rope_dim=3), "must be even"),
    (dict(qk_rope_dim=8), "below head_dim"),
    (dict(family="encdec"), "decoder-only and prefix"),
])
def test_an_mla_config_that_cannot_be_built_is_refused_by_name(fields, message):
    from conftest import tiny_config

    with pytest.raises(ValueError, match=message):
        tiny_config(**{**MLA_FIELDS, **fields})


def test_inside_a_head_says_it_does_not_step_through_mla():
    from conftest import tiny_model
    from playground.errors import InputError
    from playground.inspect.step_through import step_through

    with pytest.raises(InputError, match="one latent per token"):
        step_through(tiny_model(**MLA_FIELDS), [1, 2, 3], 0, 0)


def test_the_zoo_mla_checkpoint_loads_caches_its_latent_and_reports_its_bits_per_char():
    """``zoo:lab-mla``: trained at a 512-token context; its card's bits/char, and its cache measured while decoding."""
    from playground import zoo
    from playground.models.checkpoint import read_card

    card = read_card(zoo.MODELS_DIR / "lab-mla")
    assert 1.5 < card["val_bits_per_char"] < 3 and card["steps"] == 900
    model = zoo.load_spec("zoo:lab-mla").eval()
    cfg = model.cfg
    assert cfg.variant == "MLA" and cfg.context_length == 512 and (cfg.kv_lora_rank, cfg.qk_rope_dim) == (64, 16)
    ids = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model(ids).logits
        model.setup_cache(1, 40)
        steps = [model(ids[:, :20]).logits] + [model(ids[:, t:t + 1], start_pos=t).logits for t in range(20, 40)]
    assert torch.allclose(torch.cat(steps, dim=1), whole, atol=1e-4)
    assert model.cache_bytes() == cfg.n_layer * 40 * (64 + 16) * 4


def test_the_picker_says_where_mla_runs_in_the_readers_language():
    from playground.ui import service
    from playground.ui.i18n import render

    assert str(service.resolve("decoder", "MLA", "rope")[0]) == "zoo:lab-mla"  # the shipped MLA model
    for family, position in (("decoder", "alibi"), ("encdec", "rope")):
        with pytest.raises(ValueError) as info:
            service.resolve(family, "MLA", position)
        assert "decoder-only and prefix models with RoPE" in str(info.value)
        assert "仅解码器与前缀模型" in render(info.value, "zh-CN")
