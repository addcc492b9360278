"""The tokenizer of a Marian translation checkpoint (``Helsinki-NLP/opus-mt-*``), which ships no tokenizer.json.

A Marian folder holds two SentencePiece models, ``source.spm`` for the text to translate and ``target.spm`` for the
translation, and one ``vocab.json`` that maps their pieces to the model's ids (not SentencePiece's own ids). As
``transformers``' ``MarianTokenizer`` does: the source text is cut into pieces by source.spm, each piece takes its id
from vocab.json (``<unk>`` for a piece it lacks), and ``</s>`` ends the sequence; ids go back to pieces through
vocab.json and to text through target.spm. Both files are data (a protobuf and JSON): nothing is unpickled.

The interface is ``HubTokenizer``'s (encode, decode, labels, vocab_size, fingerprint, token_to_id), so the page reads
a Marian model as any other.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

from playground.models.labels import display_text

SOURCE, TARGET, VOCAB = "source.spm", "target.spm", "vocab.json"
SPACE_SYMBOL = "\u2581"
SPECIAL = ("</s>", "<unk>", "<pad>")


def is_marian_folder(folder: Path) -> bool:
    return all((Path(folder) / name).is_file() for name in (SOURCE, TARGET, VOCAB))


class MarianTokenizer:
    """encode / decode / labels of a Marian checkpoint's SentencePiece models and vocab.json."""

    def __init__(self, folder: str | Path):
        import sentencepiece

        folder = Path(folder)
        try:
            vocab = json.loads((folder / VOCAB).read_text(encoding="utf-8"))
            self._source = sentencepiece.SentencePieceProcessor(model_file=str(folder / SOURCE))
            self._target = sentencepiece.SentencePieceProcessor(model_file=str(folder / TARGET))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RuntimeError) as e:
            raise ValueError(f"the Marian tokenizer files ({SOURCE}, {TARGET}, {VOCAB}) cannot be read: "
                             f"{str(e).splitlines()[0]}") from None
        if not isinstance(vocab, dict) or "<unk>" not in vocab or "</s>" not in vocab:
            raise ValueError(f"{VOCAB} must map pieces to ids and hold <unk> and </s>")
        self._vocab = {str(k): int(v) for k, v in vocab.items()}
        self._pieces = {v: k for k, v in self._vocab.items()}
        self._files = [folder / name for name in (SOURCE, TARGET, VOCAB)]
        self.path = folder / VOCAB

    @property
    def vocab_size(self) -> int:
        return max(self._pieces) + 1

    @cached_property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self._files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """The source text's ids, ``</s>`` at the end (``special=False``: the pieces alone)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        unk = self._vocab["<unk>"]
        ids = [self._vocab.get(piece, unk) for piece in self._source.encode(text, out_type=str)]
        return ids + [self._vocab["</s>"]] if special else ids

    def decode(self, ids: Iterable[int]) -> str:
        """A translation's text: its pieces through target.spm, special tokens left out."""
        pieces = [self._pieces.get(int(i)) for i in ids]
        return self._target.decode_pieces([p for p in pieces if p is not None and p not in SPECIAL]).strip()

    def labels(self, ids: Iterable[int]) -> list[str]:
        """One label per id: the piece, ``▁`` shown as ␣, special tokens by name."""
        out = []
        for i in ids:
            piece = self._pieces.get(int(i))
            if piece is None:
                out.append(f"<unused {int(i)}>")
            elif piece in SPECIAL:
                out.append(piece)
            else:
                out.append(display_text(piece.replace(SPACE_SYMBOL, " ")) or display_text(""))
        return out
