"""Tiny Hugging Face checkpoints written by ``transformers`` itself, for tests that need a real folder.

``write_checkpoint(kind, folder, **overrides)`` writes ``config.json`` + ``model.safetensors`` with
``save_pretrained(safe_serialization=True)`` from a random model built in eager attention, and
``tokenizer.json`` (+ ``tokenizer_config.json``): a byte-level BPE trained by ``tokenizers`` on a
paragraph of English and Chinese. ``reference(folder)`` loads the same folder with ``transformers``.
No network is used. The serving, UI, browser and benchmark tests build their folders with these.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from playground.bench.hf_folder import byte_level_bpe

PARAGRAPH = (
    "Attention lets every token look back at the tokens before it. The keys and values of earlier tokens "
    "are cached, so a new token only computes its own query. A sliding window keeps the cache small; "
    "grouped queries share their keys and values. The quick brown fox jumps over the lazy dog.\n"
    "注意力机制让每个词回看前面的词。我们在浏览器里观察每一个注意力头，也观察缓存如何增长。"
)
ENGLISH = "The keys and values are cached; attention looks back."
CHINESE = "注意力机制让模型回看上下文。"
TOKENIZER_VOCAB = 384
MODEL_VOCAB = 400          # >= the tokenizer's vocabulary
SPECIAL = ["<|endoftext|>", "<s>", "</s>"]

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=MODEL_VOCAB, max_position_embeddings=128, rms_norm_eps=1e-6)
KINDS = {
    # GPT-2: learned positions, fused c_attn, tied embeddings
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=MODEL_VOCAB, n_positions=128,
                                bos_token_id=0, eos_token_id=0)),
    # Llama with tied embeddings (SmolLM2-style), GQA 4:2
    "llama": ("LlamaConfig", dict(SMALL, tie_word_embeddings=True)),
    # Llama 3.x: untied, rope_theta 5e5 and rope_scaling llama3
    "llama3": ("LlamaConfig", dict(SMALL, tie_word_embeddings=False, rope_parameters=dict(
        rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16))),
    # linear position interpolation, and Llama's attention_bias (q, k, v, o) and mlp_bias
    "llama-linear": ("LlamaConfig", dict(SMALL, tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                                         rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=4.0))),
    # Qwen2: q/k/v biases, rope_theta 1e6, tied
    "qwen2": ("Qwen2Config", dict(SMALL, tie_word_embeddings=True,
                                  rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    # Mistral: a sliding window of 8 keys
    "mistral": ("MistralConfig", dict(SMALL, tie_word_embeddings=False, sliding_window=8)),
}


@lru_cache(maxsize=1)
def tokenizer_json() -> str:
    """A byte-level BPE tokenizer trained on PARAGRAPH, as tokenizer.json text (trained once per process)."""
    return byte_level_bpe([PARAGRAPH], TOKENIZER_VOCAB, SPECIAL)


def write_tokenizer(folder: str | Path, bos: bool = False) -> Path:
    """Write tokenizer.json and tokenizer_config.json into ``folder``; with ``bos`` its post-processor
    prepends ``<s>`` to every text (as Llama's tokenizers do)."""
    from tokenizers import Tokenizer, processors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.from_str(tokenizer_json())
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
    (folder / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    settings = {"tokenizer_class": "TokenizersBackend", "bos_token": "<s>", "eos_token": "</s>",
                "add_bos_token": bos, "model_max_length": 128}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder


def write_checkpoint(kind: str, folder: str | Path, *, seed: int = 0, tokenizer: bool = True,
                     **overrides) -> Path:
    """Write a random ``kind`` checkpoint (a key of KINDS) into ``folder``; ``overrides`` change the config."""
    import transformers

    name, fields = KINDS[kind]
    config = getattr(transformers, name)(**{**fields, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # transformers initialises biases and norms to 0 / 1: make every tensor count
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer:
        write_tokenizer(folder, bos=name != "GPT2Config")
    return folder


def reference(folder: str | Path):
    """The transformers model of a folder, in eager attention (so it returns attention weights), eval mode."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    return model.eval()


@contextmanager
def local_models(root: Path):
    """$PLAYGROUND_LOCAL_MODELS set to ``root`` for the block, restored after."""
    before = os.environ.get("PLAYGROUND_LOCAL_MODELS")
    os.environ["PLAYGROUND_LOCAL_MODELS"] = str(root)
    try:
        yield root
    finally:
        if before is None:
            os.environ.pop("PLAYGROUND_LOCAL_MODELS", None)
        else:
            os.environ["PLAYGROUND_LOCAL_MODELS"] = before


@contextmanager
def operator_models(root: Path, kinds, prefix: str):
    """$PLAYGROUND_LOCAL_MODELS set to ``root`` holding ``<prefix>-<kind>`` for each kind, restored after."""
    for kind in kinds:
        write_checkpoint(kind, root / f"{prefix}-{kind}")
    with local_models(root):
        yield root


@contextmanager
def any_models(root: Path, names, prefix: str):
    """$PLAYGROUND_LOCAL_MODELS set to ``root`` holding ``<prefix>-<name>`` for each architecture of
    ``playground.bench.hf_archs`` (random weights, transformers' own classes) with a byte-level tokenizer that has
    ``[MASK]``, restored after."""
    from playground.bench import hf_archs

    tokenizer = byte_level_bpe([PARAGRAPH], 300, [*SPECIAL, "[MASK]"])
    for name in names:
        hf_archs.save(name, root / f"{prefix}-{name}")
        (root / f"{prefix}-{name}" / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
    with local_models(root):
        yield root


@contextmanager
def served_page():
    """The page built and served in this process (so environment set here reaches it); yields its URL."""
    from playground.bench.browser import free_port
    from playground.ui import build_app, launch_options, queue_options

    demo = build_app(warm_up=False)
    port = free_port()
    demo.queue(**queue_options()).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                                   quiet=True, **launch_options())
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def check_cached_equals_uncached(model, prompt: list[int], steps: int = 32):
    """Greedy decoding with the KV cache (or recurrent state) gives the tokens, and at every step the logits
    within 1e-4, of recomputing the whole sequence without it. Returns the cached generation."""
    from playground import generate

    cached = generate(model, prompt, steps, use_cache=True)
    uncached = generate(model, prompt, steps, use_cache=False)
    assert len(cached.tokens) == steps and cached.tokens == uncached.tokens
    for a, b in zip(cached.steps, uncached.steps):
        assert (a.logits - b.logits).abs().max() < 1e-4
    return cached
