"""Hugging Face checkpoints written by transformers open through ``load_folder`` and compute what transformers does.

For the checkpoint kinds of ``pretrained_fixtures`` (GPT-2, Llama with tied and untied embeddings, Llama 3 and linear
rope scaling, Llama's biases, Qwen2's q/k/v biases with rope_theta 1e6, Mistral's sliding window) a tiny random
checkpoint is opened by ``load_folder`` and compared with ``transformers`` on the same folder: logits, the recorded
weights against eager attention, cached against uncached greedy decoding, and token ids against ``AutoTokenizer``.
The files of the Hub's older layouts (rope_theta and rope_scaling, GPT-2's unprefixed names and saved mask buffers),
shards and dtypes each have a case.
"""
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import require
from pretrained_fixtures import CHINESE, ENGLISH, KINDS, MODEL_VOCAB, check_cached_equals_uncached, reference

transformers = require("transformers", "pip install -r requirements-dev.txt")

from playground import analyze, generate  # noqa: E402
from playground.models.pretrained.loader import load_folder  # noqa: E402

PROMPT = ENGLISH + " " + CHINESE  # English and Chinese, over 20 tokens


@pytest.fixture(scope="module")
def loaded(hf_checkpoint):
    """kind -> (folder, our model, our tokenizer, the transformers model)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            folder = hf_checkpoint(kind)
            model, tok = load_folder(folder)
            cache[kind] = folder, model, tok, reference(folder)
        return cache[kind]
    return get


@pytest.mark.parametrize("kind", list(KINDS))
def test_logits_and_attention_equal_transformers(loaded, kind):
    _, model, tok, ref = loaded(kind)
    ids = torch.tensor([tok.encode(PROMPT)])
    assert ids.shape[1] > 20
    with torch.no_grad():
        ours = model(ids, capture=True)
        theirs = ref(ids, output_attentions=True)
    assert ours.logits.shape == theirs.logits.shape
    assert (ours.logits - theirs.logits).abs().max() < 1e-4
    assert len(ours.attentions) == len(theirs.attentions) == model.cfg.n_layer
    for record, weights in zip(ours.attentions, theirs.attentions):
        assert record.weights.shape == weights.shape  # (B, nh, T, T)
        assert (record.weights - weights).abs().max() < 1e-5


@pytest.mark.parametrize("kind", list(KINDS))
def test_cached_greedy_decoding_equals_uncached(loaded, kind):
    _, model, tok, ref = loaded(kind)
    prompt = tok.encode(PROMPT)[:20]
    cached = check_cached_equals_uncached(model, prompt)
    with torch.no_grad():  # the last step's logits are transformers' for the whole sequence
        full = ref(torch.tensor([prompt + cached.tokens[:-1]])).logits[0, -1]
    assert (cached.steps[-1].logits - full).abs().max() < 1e-4


def test_mistral_window_cuts_the_prompt_and_the_cache(loaded):
    _, model, tok, _ = loaded("mistral")
    assert model.cfg.sliding_window == 8
    ids = tok.encode(PROMPT)[:20]
    with torch.no_grad():
        records = model(torch.tensor([ids]), capture=True).attentions
    weights = records[0].weights[0, 0]  # (T, T)
    assert (weights[19, :12] == 0).all() and (weights[19, 12:] > 0).all()  # the query's own key and 7 before
    cfg = model.cfg
    per_position = cfg.n_layer * 2 * cfg.n_kv_heads * cfg.head_dim * 4  # K and V, float32
    steps = generate(model, ids, 4, record=True).steps
    assert [s.keys_held for s in steps[1:]] == [8] * 3  # each decoded query is handed its window, no more
    assert max(s.cache_bytes for s in steps) <= per_position * 8  # the cache holds a window, not the sequence


def test_token_ids_equal_autotokenizer(loaded):
    for kind in ("gpt2", "llama"):
        folder, _, tok, _ = loaded(kind)
        auto = transformers.AutoTokenizer.from_pretrained(folder)
        for text in (ENGLISH, CHINESE, ""):
            assert tok.encode(text) == auto(text)["input_ids"], (kind, text)
        assert tok.decode(tok.encode(ENGLISH)) == ENGLISH
        assert tok.decode(tok.encode(CHINESE)) == CHINESE
    llama_tok = loaded("llama")[2]
    assert llama_tok.encode(ENGLISH)[0] == auto.bos_token_id  # its post-processor prepends <s>


def test_labels_show_spaces_and_split_characters(loaded):
    _, _, tok, _ = loaded("gpt2")
    ids = tok.encode("the keys 注意力机制")
    labels = tok.labels(ids)
    assert len(labels) == len(ids) and all(labels)
    assert "␣keys" in labels  # byte-level Ġ shown as a visible space
    assert not any("Ġ" in label for label in labels)
    split = [label for label in labels if "(" in label]  # 机 and 制 are split over byte tokens
    assert split and all(part in "".join(split) for part in ("机(1/", "制("))
    assert tok.labels(tok.encode("\n"))[0] == "⏎"
    stray = tok.labels([tok.encode("机")[0]])[0]  # the first byte of 机 alone is no character
    assert stray.startswith("\\x")
    bos = loaded("llama")[2]
    assert bos.labels(bos.encode("the"))[0] == "<s>"  # special tokens keep their names
    # the model's embedding has rows past the tokenizer's vocabulary (as Qwen2.5's does): a model may emit them
    past = MODEL_VOCAB - 1
    assert tok.vocab_size < MODEL_VOCAB
    assert tok.labels(np.array([past, ids[0]])) == [f"<unused {past}>", labels[0]]
    assert tok.decode([ids[0], past]) == tok.decode([ids[0]])
    with pytest.raises(ValueError, match="non-negative"):
        tok.labels([-1])


def test_playground_api_runs_on_a_loaded_model(loaded):
    _, model, tok, _ = loaded("qwen2")
    ids = tok.encode(PROMPT)
    result = analyze(model, ids, labels=tok.labels(ids))
    weights = result.weights("self")
    assert weights.shape == (model.cfg.n_layer, model.cfg.n_heads, len(ids), len(ids))
    assert json.dumps(result.config)  # the rope parameters stay JSON-able
    assert result.config["model_type"] == "qwen2" and result.config["variant"] == "GQA"


def test_an_analysis_holds_the_bytes_it_reports(loaded):
    """GPT-2 splits q and k from one fused projection: the stored analysis keeps its own q and k, not the
    fused buffer behind them (which would also hold v), so the bytes the store counts are the bytes held."""
    from playground.models.shared import storage_bytes
    _, model, tok, _ = loaded("gpt2")
    result = analyze(model, tok.encode(PROMPT))
    sources = [m.source for m in result.maps]
    held = storage_bytes([t for s in sources for t in (s.q, s.k, s.lse)])
    assert held == sum(s.nbytes for s in sources) > 0


def test_configs_read_from_the_hub_layout_too(hf_checkpoint, tmp_path, loaded):
    """The Hub's config.json files carry rope_theta and rope_scaling (type or rope_type), not transformers 5's
    rope_parameters; GPT-2's tensors on the Hub have no 'transformer.' prefix and carry attn.bias buffers (saved
    masks, not weights: they open, not refused as tensors the config has no place for)."""
    folder = shutil.copytree(hf_checkpoint("llama3"), tmp_path / "llama3")
    config = json.loads((folder / "config.json").read_text())
    params = config.pop("rope_parameters")
    config["rope_theta"] = params.pop("rope_theta")
    config["rope_scaling"] = params
    (folder / "config.json").write_text(json.dumps(config))
    model, tok = load_folder(folder)
    ids = torch.tensor([tok.encode(PROMPT)])
    reference_model = loaded("llama3")[1]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference_model(ids).logits)
        config.pop("rope_scaling")  # ignoring the scaling is a visible error: the trap is real
        (folder / "config.json").write_text(json.dumps(config))
        assert (load_folder(folder)[0](ids).logits - model(ids).logits).abs().max() > 1e-3

    from safetensors.torch import load_file, save_file
    gpt2 = shutil.copytree(hf_checkpoint("gpt2"), tmp_path / "gpt2")
    state = {k.removeprefix("transformer."): v for k, v in load_file(gpt2 / "model.safetensors").items()}
    n_positions = json.loads((gpt2 / "config.json").read_text())["n_positions"]
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.ones(1, 1, n_positions, n_positions).tril()
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, gpt2 / "model.safetensors")
    model, tok = load_folder(gpt2)
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded("gpt2")[1](ids).logits)


def test_sharded_checkpoint_and_dtype(hf_checkpoint, tmp_path, loaded):
    folder = shutil.copytree(hf_checkpoint("mistral"), tmp_path / "sharded")
    ref = reference(folder)
    (folder / "model.safetensors").unlink()
    ref.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) > 2
    model, tok = load_folder(folder)
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded("mistral")[1](ids).logits)
    half, _ = load_folder(folder, dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert (half(ids).logits.float() - model(ids).logits).abs().max() < 0.1


def test_a_long_context_model_allocates_only_what_a_call_needs(hf_checkpoint):
    """context_length is max_position_embeddings (32k here); generating 4 tokens after a short prompt
    allocates a cache for those positions, not for 32k."""
    model, tok = load_folder(hf_checkpoint("qwen2", max_position_embeddings=32768))
    assert model.cfg.context_length == 32768
    prompt = tok.encode(ENGLISH)
    steps = generate(model, prompt, 4).steps
    cfg = model.cfg
    per_position = cfg.n_layer * 2 * cfg.n_kv_heads * cfg.head_dim * 4  # K and V, float32
    assert steps[-1].cache_bytes == per_position * (len(prompt) + 3)  # the last token is not fed back
    assert steps[-1].cache_bytes_allocated < per_position * 1024


def test_sentencepiece_style_tokenizer_labels_and_ids(tmp_path):
    """Llama 2 / Mistral tokenizer.json files: '▁' for spaces and <0xNN> byte-fallback pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    from playground.models.pretrained.tokenizer import HubTokenizer

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator([ENGLISH * 4], trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                                               show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    ours = HubTokenizer.from_folder(tmp_path)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "the keys 中"
    ids = ours.encode(text)
    assert ids == auto(text)["input_ids"]
    labels = ours.labels(ids)
    assert labels[-3:] == ["中(1/3)", "中(2/3)", "中(3/3)"]  # three <0xNN> pieces spell one character
    pieces = [ours._tok.id_to_token(i) for i in ids]
    assert all(label == piece.replace("▁", "␣") for label, piece in zip(labels[:-3], pieces))  # ▁ shown as ␣
    assert "␣" in "".join(labels)
    assert ours.decode(ids) == auto.decode(ids, skip_special_tokens=True)


def test_qwen2_sliding_window_follows_use_sliding_window(hf_checkpoint, tmp_path):
    """use_sliding_window with max_window_layers: the first layers full, the rest sliding, as transformers reads it;
    each layer's label and its weights say which."""
    folder = hf_checkpoint("qwen2", use_sliding_window=True, sliding_window=8, max_window_layers=0)
    model, tok = load_folder(folder)
    assert model.cfg.sliding_window == 8
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert (model(ids).logits - reference(folder)(ids).logits).abs().max() < 1e-4
    mixed = shutil.copytree(folder, tmp_path / "mixed")
    config = json.loads((mixed / "config.json").read_text())
    config.pop("layer_types", None)
    (mixed / "config.json").write_text(json.dumps({**config, "max_window_layers": 1}))
    model, _ = load_folder(mixed)
    with torch.no_grad():
        out = model(ids, capture=True)
        assert (out.logits - reference(mixed)(ids).logits).abs().max() < 1e-4
    full, sliding = (rec.weights[0, 0, -1] for rec in out.attentions)  # the last query's row in each layer
    assert (full > 0).all() and (sliding[:-8] == 0).all() and (sliding[-8:] > 0).all()
