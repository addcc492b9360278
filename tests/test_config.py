import json

import pytest

from playground.config import ModelConfig, from_name, PRESETS

BAD_CONFIGS = [
    (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
    (dict(n_heads=4, n_kv_heads=8), "n_kv_heads"),
    (dict(d_model=30, n_heads=4), "n_heads"),
    (dict(d_model=36, n_heads=4, position="rope"), "rope"),  # head dim 9
    (dict(sliding_window=200, context_length=128), "sliding_window"),
    (dict(sliding_window=-1), "sliding_window"),
    (dict(family="gpt"), "family"),
    (dict(position="xpos"), "position"),
    (dict(norm="batchnorm"), "norm"),
    (dict(norm_placement="middle"), "norm_placement"),
    (dict(mlp="relu2"), "mlp"),
    (dict(backend="xformers"), "backend"),  # cudnn became a backend (SDPBackend.CUDNN_ATTENTION)
    (dict(n_layer=0), "n_layer"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(d_model=2.5), "d_model"),
    (dict(dropout=1.5), "dropout"),
    (dict(family="mamba", position="rope"), "position"),
    (dict(family="rwkv", position="none", n_heads=4, n_kv_heads=2), "n_kv_heads"),
    (dict(family="mamba", position="none", d_state=0), "d_state"),
    (dict(family="mamba", position="none", dt_rank=-1), "dt_rank"),
    (dict(family="mamba", position="none", dt_rank=2.5), "dt_rank"),
    (dict(position="sinusoidal", d_model=33, n_heads=1, n_kv_heads=1), "sinusoidal"),
    (dict(attn_bias="qk"), "attn_bias"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_scaling"),
    (dict(rope_scaling={"rope_type": "linear"}), "rope_scaling"),
    (dict(rope_scaling={"rope_type": "linear", "factor": -2.0}), "rope_scaling"),
    (dict(rope_scaling=[4.0]), "rope_scaling"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
                        "original_max_position_embeddings": 8192}), "rope_scaling"),
]


@pytest.mark.parametrize("kwargs,field", BAD_CONFIGS)
def test_bad_config_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as err:
        ModelConfig(**kwargs)
    assert field in str(err.value)
    assert len(str(err.value)) > 20  # says what would be valid


def test_variant_from_n_kv_heads():
    assert ModelConfig(n_heads=8, n_kv_heads=8, d_model=64).variant == "MHA"
    assert ModelConfig(n_heads=8, n_kv_heads=2, d_model=64).variant == "GQA"
    assert ModelConfig(n_heads=8, n_kv_heads=1, d_model=64).variant == "MQA"


def test_json_round_trip(tmp_path):
    cfg = ModelConfig(family="prefix", position="alibi", n_kv_heads=2, sliding_window=16, norm="rmsnorm")
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg
    assert json.loads((tmp_path / "config.json").read_text())["position"] == "alibi"


def test_unknown_field_and_bad_json_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown config field"):
        ModelConfig.from_dict({"family": "decoder", "n_embd": 3})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        ModelConfig.load(tmp_path / "bad.json")


def test_presets_build():
    for name in PRESETS:
        assert from_name(name).family in ("decoder", "prefix", "encdec")
    assert from_name("llama-tiny", n_kv_heads=1).variant == "MQA"
    with pytest.raises(ValueError, match="unknown preset"):
        from_name("gpt5")


def test_attention_biases_per_projection():
    assert [ModelConfig(bias=True).attn_has_bias(p) for p in "qkvo"] == [True] * 4  # auto: as bias
    assert [ModelConfig(bias=False).attn_has_bias(p) for p in "qkvo"] == [False] * 4
    assert [ModelConfig(bias=False, attn_bias="qkv").attn_has_bias(p) for p in "qkvo"] == [True, True, True, False]
    assert [ModelConfig(bias=True, attn_bias="none").attn_has_bias(p) for p in "qkvo"] == [False] * 4


def test_rope_scaling_round_trips(tmp_path):
    scaling = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    cfg = ModelConfig(norm="rmsnorm", mlp="gelu_tanh", rope_scaling=scaling, attn_bias="qkvo")
    cfg.save(tmp_path / "config.json")
    assert ModelConfig.load(tmp_path / "config.json") == cfg
