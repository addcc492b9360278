"""Subword tokenizer: a small sentencepiece BPE model that round-trips any text.

The shipped model (``models/tokenizer/tokenizer.model``, about 2k pieces) is trained on the
*train* works of the Shakespeare corpus only (see :mod:`playground.train.data`) by
``python -m playground.train.tokenizer train``, which also writes ``card.json``.

Why each trainer option (:data:`TRAINER_OPTIONS`) is set:

* ``byte_fallback``: a character outside the vocabulary (emoji, CJK, control characters) is
  encoded as its UTF-8 bytes, pieces ``<0x00>`` .. ``<0xFF>``, never as ``<unk>``.
* ``normalization_rule_name="identity"``, ``add_dummy_prefix=False``,
  ``remove_extra_whitespaces=False``: the text is kept exactly as typed (no NFKC, no invented
  leading space, no collapsed spaces), so ``decode(encode(s)) == s``.
* ``allow_whitespace_only_pieces``: runs of spaces (verse indentation) can be one piece.
* ``num_threads=1``: the BPE merges depend on the thread count; one thread is reproducible.

sentencepiece writes a space as ``▁`` (U+2581) inside pieces and turns every ``▁`` back into a
space on decode, so a literal ``▁`` in the text is encoded by :meth:`Tokenizer.encode` as its
three byte pieces instead. Newlines never occur inside pieces (training is line by line); a
newline is the byte piece ``<0x0A>``.

Reserved ids: ``PAD_ID = 0``, ``BOS_ID = 1`` (``<s>``), ``EOS_ID = 2`` (``</s>``),
``UNK_ID = 3`` (``<unk>``, which byte fallback never produces).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shlex
import sys
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np
import sentencepiece as spm

from playground.models import labels
from playground.models.labels import display_text
from playground.models.labels import utf8_length as _utf8_length
from playground.paths import MODELS_DIR
from playground.train import data
from playground.train import tasks

MODEL_DIR = MODELS_DIR / "tokenizer"
DEFAULT_MODEL = MODEL_DIR / "tokenizer.model"
DEFAULT_VOCAB_SIZE = 2048
PAD_ID, BOS_ID = tasks.PAD_ID, tasks.BOS_ID  # shared with the synthetic tasks
EOS_ID, UNK_ID = 2, 3
SPACE_SYMBOL = "\u2581"  # sentencepiece's space marker "▁"
EMPTY_LABEL, HIDDEN_CATEGORIES = labels.EMPTY_LABEL, labels.HIDDEN_CATEGORIES  # label conventions (models.labels)

TRAINER_OPTIONS = MappingProxyType({
    "model_type": "bpe",
    "character_coverage": 0.9995,
    "byte_fallback": True,
    "normalization_rule_name": "identity",
    "add_dummy_prefix": False,
    "remove_extra_whitespaces": False,
    "allow_whitespace_only_pieces": True,
    "split_digits": True,
    "pad_id": PAD_ID, "bos_id": BOS_ID, "eos_id": EOS_ID, "unk_id": UNK_ID,
    "max_sentence_length": 1 << 14,  # bytes; longer lines would be dropped from training
    "input_sentence_size": 0,  # train on every line, no sampling
    "num_threads": 1,
})

class Tokenizer:
    """A sentencepiece model with byte fallback: any string in, readable labels out."""

    def __init__(self, processor: spm.SentencePieceProcessor, path: Path | None = None):
        self._sp = processor
        self.path = path
        self._byte_ids = [processor.piece_to_id(f"<0x{b:02X}>") for b in range(256)]
        self._byte_of = {i: b for b, i in enumerate(self._byte_ids)}
        if any(not processor.is_byte(i) for i in self._byte_ids):
            raise ValueError(f"tokenizer {path} has no byte-fallback pieces, so some text would "
                             "become <unk>; train one with `python -m playground.train.tokenizer train`")
        self._space_symbol_ids = [self._byte_ids[b] for b in SPACE_SYMBOL.encode("utf-8")]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Tokenizer":
        """Load a sentencepiece model file (default: the shipped ``models/tokenizer``)."""
        path = Path(path) if path is not None else DEFAULT_MODEL
        if not path.is_file():
            raise ValueError(f"tokenizer file {path} does not exist")
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(path.read_bytes())
        except (RuntimeError, OSError, TypeError) as err:
            raise ValueError(f"tokenizer file {path} is not a sentencepiece model: {err}") from None
        return cls(processor, path)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the sentencepiece model, as ``HubTokenizer.fingerprint``: equal fingerprints, same ids
        for the same text."""
        return hashlib.sha256(self._sp.serialized_model_proto()).hexdigest()

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    def encode(self, text: str, *, bos: bool = False, eos: bool = False, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``bos`` / ``eos`` add the boundary tokens, unless ``special`` is False (the
        bare pieces of the text, as ``HubTokenizer.encode(text, special=False)``)."""
        bos, eos = bos and special, eos and special
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"text is not valid Unicode at index {err.start} "
                             f"({text[err.start]!r}, a lone surrogate)") from None
        ids = [self.bos_id] if bos else []
        for i, part in enumerate(text.split(SPACE_SYMBOL)):
            if i:
                ids.extend(self._space_symbol_ids)
            if part:
                ids.extend(self._sp.encode(part))
        if eos:
            ids.append(self.eos_id)
        return ids

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        array = np.asarray(ids if not isinstance(ids, (str, bytes)) else None)
        if array.size == 0 and array.ndim == 1:
            return []
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"expected a 1-D sequence of integer token ids, got {ids!r:.80}")
        if array.min() < 0 or array.max() >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), got "
                             f"min {array.min()} max {array.max()}")
        return array.tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (special tokens decode to nothing)."""
        return self._sp.decode(self._check_ids(ids))

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """The raw sentencepiece pieces of ids (``▁the``, ``<0x0A>``)."""
        return [self._sp.id_to_piece(i) for i in self._check_ids(ids)]

    def labels(self, ids: Iterable[int]) -> list[str]:
        """One readable, non-empty plain-text label per id, for heatmap axes.

        Spaces show as ␣, newlines as ⏎, tabs as ⇥, other control characters escaped. Byte
        pieces that together spell one character are each labelled with that character and
        their place in it (``中(1/3) 中(2/3) 中(3/3)``); a stray byte shows as ``\\xf0``.
        Special tokens keep their names (``<s>``).
        """
        ids = self._check_ids(ids)
        out: list[str] = []
        i = 0
        while i < len(ids):
            if ids[i] not in self._byte_of:
                piece = self._sp.id_to_piece(ids[i])
                special = self._sp.is_control(ids[i]) or self._sp.is_unknown(ids[i])
                out.append(piece if special else display_text(piece.replace(SPACE_SYMBOL, " ")))
                i += 1
                continue
            lead = self._byte_of[ids[i]]
            n = _utf8_length(lead)
            run = [self._byte_of.get(t) for t in ids[i:i + n]]
            char = None
            if n > 1 and len(run) == n and None not in run:
                try:
                    char = bytes(run).decode("utf-8")
                except UnicodeDecodeError:
                    pass
            if char is None:
                out.append(display_text(chr(lead)) if lead < 0x80 else f"\\x{lead:02x}")
                i += 1
            else:
                shown = display_text(char)
                out.extend(f"{shown}({k + 1}/{n})" for k in range(n))
                i += n
        return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train_tokenizer(text_or_path: str | os.PathLike, out_dir: str | os.PathLike,
                    vocab_size: int = DEFAULT_VOCAB_SIZE, *, val_text: str | None = None,
                    card_extra: Mapping[str, object] | None = None) -> Path:
    """Train a BPE tokenizer; write ``tokenizer.model`` and ``card.json`` into ``out_dir``.

    ``text_or_path`` is the training text itself (a ``str``) or a UTF-8 file (a path object).
    Give it the train split only. ``val_text``, when given, is used to measure characters per
    token for the card. Returns the path of ``tokenizer.model``; same input, same bytes.
    """
    if isinstance(text_or_path, os.PathLike):
        text = data.read_utf8(text_or_path)
    elif isinstance(text_or_path, str):
        text = text_or_path
    else:
        raise ValueError(f"expected training text (str) or a path, got {type(text_or_path).__name__}")
    lines = [line for line in text.splitlines() if line]
    if not lines:
        raise ValueError("no text to train the tokenizer on")
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                       vocab_size=vocab_size, minloglevel=2, **TRAINER_OPTIONS)
    except RuntimeError as err:
        raise ValueError(f"sentencepiece could not train a {vocab_size}-piece model: {err}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "tokenizer.model"
    model_path.write_bytes(model.getvalue())
    card: dict[str, object] = {
        "kind": "sentencepiece",
        "sentencepiece_version": spm.__version__,
        "vocab_size": vocab_size,
        "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID},
        "trainer_options": dict(TRAINER_OPTIONS),
        "train_chars": len(text),
        "train_text_sha256": _sha256(text.encode("utf-8")),
        "model_sha256": _sha256(model.getvalue()),
    }
    if val_text:
        n_tokens = len(Tokenizer.load(model_path).encode(val_text))
        card["val_chars"] = len(val_text)
        card["val_tokens"] = n_tokens
        card["val_chars_per_token"] = round(len(val_text) / n_tokens, 4)
    card.update(card_extra or {})
    (out_dir / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return model_path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m playground.train.tokenizer",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_p = sub.add_parser("train", help="train on the corpus's train split")
    train_p.add_argument("--corpus", type=Path, default=None,
                         help="fetched corpus folder or a UTF-8 text file (default data/shakespeare)")
    train_p.add_argument("--out", type=Path, default=MODEL_DIR)
    train_p.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    args = parser.parse_args(argv)
    corpus = data.load_corpus(args.corpus)
    extra = {
        "command": shlex.join(["python", "-m", "playground.train.tokenizer", *argv]),
        "data": {"source": corpus.source, "sha256": corpus.sha256, "split": corpus.split,
                 "train_works": list(corpus.train_works), "val_works": list(corpus.val_works)},
    }
    path = train_tokenizer(corpus.train_text, args.out, args.vocab_size,
                           val_text=corpus.val_text, card_extra=extra)
    card = json.loads((path.parent / "card.json").read_text())
    print(f"wrote {path} ({path.stat().st_size:,} bytes); "
          f"{card['val_chars_per_token']} chars per token on validation")


if __name__ == "__main__":
    main()
