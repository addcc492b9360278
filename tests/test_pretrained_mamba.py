"""MambaForCausalLM checkpoints written by transformers load into the playground's Mamba and compute the
same thing: logits within 1e-4 of transformers, cached (step mode) greedy decoding equal to uncached
for 32 steps, and an implicit attention whose check holds on the loaded weights. Settings the mixer
does not have are refused by name."""
import json
import math
import shutil

import pytest
import torch

from conftest import require
from pretrained_fixtures import ENGLISH, MODEL_VOCAB, check_cached_equals_uncached, write_tokenizer
from test_mamba import randomize

transformers = require("transformers", "pip install -r requirements-dev.txt")

from playground import analyze  # noqa: E402
from playground.models.mamba import Mamba  # noqa: E402
from playground.models.pretrained.families import family_for, supported  # noqa: E402
from playground.models.pretrained.families.mamba import display_heads, to_config  # noqa: E402
from playground.models.pretrained.loader import load_folder  # noqa: E402

SMALL = dict(vocab_size=MODEL_VOCAB, hidden_size=64, state_size=16, num_hidden_layers=2, expand=2, conv_kernel=4,
             layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True, use_mambapy=False,
             pad_token_id=0, bos_token_id=0, eos_token_id=0)
KINDS = {
    "tied": dict(SMALL, time_step_rank="auto", tie_word_embeddings=True),   # as mamba-130m-hf
    "untied": dict(SMALL, time_step_rank=6, tie_word_embeddings=False, num_hidden_layers=3),  # an explicit rank
}
PROMPT = ENGLISH + " " + ENGLISH


def write_mamba(folder, seed: int = 0, **config):
    """A random MambaForCausalLM written by transformers (safetensors) and a byte-level BPE tokenizer.json."""
    torch.manual_seed(seed)
    model = randomize(transformers.MambaForCausalLM(transformers.MambaConfig(**config)), seed=seed)
    model.save_pretrained(folder, safe_serialization=True)
    write_tokenizer(folder, bos=False)  # GPT-NeoX's tokenizer, as mamba-130m-hf's, adds no <s>
    return folder


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """kind -> (folder, our model, our tokenizer, the transformers model)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            folder = write_mamba(tmp_path_factory.mktemp(f"hf-mamba-{kind}"), **KINDS[kind])
            model, tok = load_folder(folder)
            ref = transformers.MambaForCausalLM.from_pretrained(folder).eval()
            cache[kind] = folder, model, tok, ref
        return cache[kind]
    return get


def test_mamba_is_a_supported_model_type():
    assert "mamba" in supported() and family_for("mamba").MODEL_TYPES == ("mamba",)


@pytest.mark.parametrize("kind", list(KINDS))
def test_logits_equal_transformers(loaded, kind):
    folder, model, tok, ref = loaded(kind)
    assert isinstance(model, Mamba)
    hf = json.loads((folder / "config.json").read_text())
    assert model.blocks[0].mixer.rank == ref.config.time_step_rank
    assert model.cfg.tie_embeddings == hf["tie_word_embeddings"]
    assert (model.lm_head.weight is model.tok_emb.weight) == hf["tie_word_embeddings"]
    ids = torch.tensor([tok.encode(PROMPT)])
    assert ids.shape[1] > 20
    with torch.no_grad():
        ours = model(ids).logits
        theirs = ref(ids, use_cache=False).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("kind", list(KINDS))
def test_cached_greedy_decoding_equals_uncached(loaded, kind):
    """Step mode from the recurrent state, against the scan over the whole sequence at every step."""
    _, model, tok, ref = loaded(kind)
    prompt = tok.encode(PROMPT)[:20]
    cached = check_cached_equals_uncached(model, prompt)
    with torch.no_grad():  # the last step's logits are transformers' for the whole sequence
        full = ref(torch.tensor([prompt + cached.tokens[:-1]]), use_cache=False).logits[0, -1]
    assert (cached.steps[-1].logits - full).abs().max() < 1e-4


@pytest.mark.parametrize("kind", list(KINDS))
def test_implicit_attention_check_holds_on_the_loaded_weights(loaded, kind):
    """Every layer's alpha, applied to its inputs, gives the scan's output: over the prompt and for a
    token decoded from the state; the page's analysis draws it per channel group."""
    _, model, tok, _ = loaded(kind)
    ids = tok.encode(PROMPT)
    T = len(ids)
    with torch.no_grad():
        records = model(torch.tensor([ids]), capture=True).attentions
        model.setup_cache()
        model(torch.tensor([ids[:-1]]), capture=True)
        last = model(torch.tensor([ids[-1:]]), start_pos=T - 1, capture=True).attentions
        model.clear_cache()
    assert len(records) == len(last) == model.cfg.n_layer
    for rec, step in zip(records, last):
        assert rec.kind == "implicit" and rec.weights.shape == (1, model.cfg.n_heads, T, T)
        assert rec.max_abs_diff < 1e-4 and step.max_abs_diff < 1e-4
        assert (step.weights[0, :, 0] - rec.weights[0, :, -1]).abs().max() < 1e-5  # the same last row
    result = analyze(model, ids, labels=tok.labels(ids))
    assert result.weights("implicit").shape == (model.cfg.n_layer, model.cfg.n_heads, T, T)


def test_config_fields_map_onto_ours():
    cfg = to_config({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280,
                     "state_size": 16, "expand": 2, "conv_kernel": 4, "time_step_rank": 48,
                     "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "intermediate_size": 1536})
    assert (cfg.family, cfg.d_model, cfg.n_layer, cfg.vocab_size) == ("mamba", 768, 24, 50280)
    assert (cfg.d_state, cfg.expand, cfg.d_conv, cfg.norm_eps, cfg.tie_embeddings) == (16, 2, 4, 1e-5, True)
    assert cfg.dt_rank == 0 and math.ceil(768 / 16) == 48  # 48 is "auto" for 768: one config for both
    assert cfg.n_heads == 12  # mamba-130m's 1,536 channels drawn as 12 groups of 128
    assert to_config({**SMALL, "time_step_rank": 6}).dt_rank == 6
    assert [display_heads(d, 2) for d in (768, 1024, 1536, 2048, 2560)] == [12, 16, 24, 32, 40]


@pytest.mark.parametrize("change,field", [
    ({"use_bias": True}, "use_bias"),
    ({"use_conv_bias": False}, "use_conv_bias"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"time_step_rank": 0}, "time_step_rank"),
    ({"time_step_rank": "half"}, "time_step_rank"),
    ({"intermediate_size": 100}, "intermediate_size"),
    ({"state_size": "16"}, "state_size"),
])
def test_unsupported_settings_are_refused_by_name(change, field):
    with pytest.raises(ValueError, match=field):
        to_config({"model_type": "mamba", **SMALL, **change})


def test_a_checkpoint_with_biases_is_refused_by_name(loaded, tmp_path):
    """A real use_bias checkpoint (biases on in_proj and out_proj) is refused for its config, before any tensor."""
    folder = write_mamba(tmp_path / "bias", **dict(KINDS["tied"], use_bias=True))
    with pytest.raises(ValueError, match="use_bias"):
        load_folder(folder)


def test_a_missing_mixer_tensor_is_refused(loaded, tmp_path):
    from safetensors.torch import load_file, save_file

    folder, *_ = loaded("tied")
    copy = shutil.copytree(folder, tmp_path / "missing")
    tensors = load_file(copy / "model.safetensors")
    del tensors["backbone.layers.1.mixer.A_log"]
    save_file(tensors, copy / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="backbone.layers.1.mixer.A_log"):
        load_folder(copy)
