"""A random GPT-2-shaped Hugging Face checkpoint folder, written by ``transformers`` (no download).

``write_gpt2(folder, shape)`` writes ``config.json`` + ``model.safetensors`` with
``save_pretrained(safe_serialization=True)`` from a randomly initialised ``GPT2LMHeadModel``, and a
``tokenizer.json``: a byte-level BPE trained by ``tokenizers`` on the text the playground ships
(the page's example prompts and its English strings), so its vocabulary is whatever that text
reaches (at most ``TOKENIZER_VOCAB``; the loader accepts a tokenizer smaller than the model's vocabulary).
A folder that already holds this shape is reused as it is.

``transformers`` writes the files (requirements.txt): without it, ``write_gpt2`` raises a ValueError saying so.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from playground import paths

SHAPES = {
    # transformers' GPT2Config() defaults: GPT-2 small, 124M parameters
    "small": dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257),
    # a seconds-long stand-in for tests: same layout, learned positions long enough for a 128-token
    # prompt and 256 new tokens
    "tiny": dict(n_embd=64, n_layer=2, n_head=4, n_positions=512, vocab_size=512),
}
TOKENIZER_VOCAB = 512  # the BPE trainer's ceiling; the shipped text reaches fewer
SPECIAL = ["<|endoftext|>"]


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError("this benchmark writes its checkpoint with `transformers`: "
                         "pip install -r requirements.txt") from None
    return transformers


def shipped_text() -> list[str]:
    """The text the playground ships: the page's example prompts and its English strings."""
    examples = json.loads((paths.ASSETS_DIR / "examples.json").read_text(encoding="utf-8"))
    strings = json.loads((paths.ASSETS_DIR / "strings" / "en.json").read_text(encoding="utf-8"))
    return [*examples, *(v for v in strings.values() if isinstance(v, str))]


def byte_level_bpe(texts: list[str], vocab_size: int, special: list[str]) -> str:
    """A byte-level BPE (GPT-2's pre-tokenizer and decoder) trained on ``texts``, as tokenizer.json text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok.to_str()


def tokenizer_json() -> str:
    """The benchmark's tokenizer: ``byte_level_bpe`` on ``shipped_text``."""
    return byte_level_bpe(shipped_text(), TOKENIZER_VOCAB, SPECIAL)


def holds(folder: Path, shape: str) -> bool:
    """True when ``folder`` already holds a complete checkpoint of this shape."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = SHAPES[shape]
    return (config.get("model_type") == "gpt2" and all(config.get(k) == v for k, v in wanted.items())
            and (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file())


def write_gpt2(folder: str | Path, shape: str = "small", seed: int = 0) -> Path:
    """The folder holding a random GPT-2 checkpoint of ``shape`` (a key of SHAPES), written unless already there."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    folder = Path(folder)
    if holds(folder, shape):
        return folder
    transformers = _transformers()
    config = transformers.GPT2Config(**SHAPES[shape], bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_text(tokenizer_json(), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": SPECIAL[0], "eos_token": SPECIAL[0], "model_max_length": config.n_positions}), encoding="utf-8")
    return folder
