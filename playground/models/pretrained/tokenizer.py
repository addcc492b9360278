"""The tokenizer of a Hugging Face checkpoint folder, read from ``tokenizer.json`` by ``tokenizers``.

``encode`` gives the ids ``transformers``' ``AutoTokenizer`` gives for the same folder: the
tokenizer's own post-processor adds what the family prepends (Llama 3's ``<|begin_of_text|>``,
Llama 2's ``<s>``). transformers 5 builds its tokenizers from tokenizer.json the same way and does
not apply tokenizer_config.json's ``add_bos_token`` on top (measured with 5.24 for
``LlamaTokenizer``, ``PreTrainedTokenizerFast`` and ``TokenizersBackend``), so neither does this.

``labels`` follows the shipped tokenizer's conventions (``playground.train.tokenizer``): spaces
show as ␣ (GPT-2's byte-level ``Ġ`` and sentencepiece's ``▁`` alike), newlines as ⏎, control
characters escaped, special tokens by name. A character whose UTF-8 bytes are split over several
tokens labels each of them with the character and its part, ``中(1/2) 中(2/2)``; a byte that
belongs to no valid character shows as ``\\xe4``.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import re
from collections.abc import Iterable
from functools import cached_property, lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from playground.models.labels import display_text, utf8_length
from playground.models.pretrained.marian_tokenizer import MarianTokenizer, is_marian_folder

TOKENIZER = "tokenizer.json"
BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # sentencepiece byte fallback
SPACE_SYMBOL = "\u2581"  # sentencepiece's "▁"


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character standing for each byte (``Ġ`` for 0x20), inverted."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _uses_byte_level(spec: dict) -> bool:
    def kinds(node) -> list[str]:
        if not isinstance(node, dict):
            return []
        inner = node.get("decoders") or node.get("pretokenizers") or []
        return [node.get("type")] + [k for child in inner for k in kinds(child)]
    return "ByteLevel" in kinds(spec.get("decoder")) + kinds(spec.get("pre_tokenizer"))


class HubTokenizer:
    """encode / decode / labels over a ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer: Tokenizer, path: Path | None = None):
        self._tok, self.path = tokenizer, path
        tokenizer.no_truncation()  # AutoTokenizer(text) neither truncates nor pads unless asked
        tokenizer.no_padding()
        spec = json.loads(tokenizer.to_str())
        self._byte_level = _uses_byte_level(spec)
        self._special = {t["id"] for t in spec.get("added_tokens", []) if t.get("special")}

    @classmethod
    def from_folder(cls, folder: str | Path) -> "HubTokenizer":
        """Read ``tokenizer.json`` (a Marian checkpoint, which ships none: its SentencePiece models and vocab.json,
        ``marian_tokenizer``); ValueError naming what is wrong."""
        path = Path(folder) / TOKENIZER
        if not path.is_file() and is_marian_folder(Path(folder)):
            return MarianTokenizer(folder)
        if not path.is_file():
            raise ValueError(f"{TOKENIZER} not found in {folder}: the playground reads tokenizers only from it "
                             "(the 'tokenizers' library's format)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises plain Exceptions for any malformed file
            raise ValueError(f"{path} is not a tokenizer the 'tokenizers' library can read: {e}") from None
        return cls(tokenizer, path)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @cached_property
    def fingerprint(self) -> str:
        """A hash of the whole tokenizer (vocabulary, merges, normalizer, pre- and post-processing): two
        tokenizers with the same fingerprint turn a text into the same ids, so their models' heads compare."""
        return hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of ``text``, with the special tokens the family adds (as ``AutoTokenizer(text)``);
        ``special=False``: the bare pieces of the text (a piece inside a sequence, e.g. a target token)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=special).ids

    def token_to_id(self, token: str) -> int | None:
        """The id of a token of the vocabulary (added tokens included), or None."""
        return self._tok.token_to_id(token)

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        """ids as Python ints, each >= 0. An id past the tokenizer's vocabulary is allowed: a model's
        embedding often has more rows than its tokenizer has tokens (Qwen2.5: 151,936 for 151,665)."""
        checked = []
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
                raise ValueError(f"token ids must be non-negative integers, got {i!r}")
            checked.append(int(i))
        return checked

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (special tokens, and ids the tokenizer lacks, decode to nothing)."""
        return self._tok.decode(self._check_ids(ids), skip_special_tokens=True)

    def _is_byte_piece(self, token: str) -> bool:
        """A sentencepiece byte-fallback piece (``<0xE4>``): a byte, even where it is listed as special."""
        return not self._byte_level and BYTE_PIECE.fullmatch(token) is not None

    def _bytes_of(self, token: str) -> bytes:
        if self._byte_level:
            table = byte_decoder()
            if all(ch in table for ch in token):
                return bytes(table[ch] for ch in token)
            return token.encode("utf-8")
        piece = BYTE_PIECE.fullmatch(token)
        if piece:
            return bytes([int(piece.group(1), 16)])
        return token.replace(SPACE_SYMBOL, " ").encode("utf-8")

    def labels(self, ids: Iterable[int]) -> list[str]:
        """One readable, non-empty plain-text label per id, for heatmap axes (see the module docstring)."""
        ids = self._check_ids(ids)
        tokens = [self._tok.id_to_token(i) for i in ids]  # None: an embedding row past the vocabulary
        shown_by_name = [token is None or (i in self._special and not self._is_byte_piece(token))
                         for i, token in zip(ids, tokens)]
        pieces = [b"" if named else self._bytes_of(token) for named, token in zip(shown_by_name, tokens)]
        owner = [k for k, piece in enumerate(pieces) for _ in piece]  # token index of every byte
        stream = b"".join(pieces)
        parts: list[list[str]] = [[] for _ in ids]
        at = 0
        while at < len(stream):
            n = utf8_length(stream[at])
            char = None
            if n and at + n <= len(stream):
                try:
                    char = stream[at:at + n].decode("utf-8")
                except UnicodeDecodeError:
                    pass
            if char is None:  # a byte of no valid character
                parts[owner[at]].append(f"\\x{stream[at]:02x}")
                at += 1
                continue
            spanned = sorted(set(owner[at:at + n]))
            for k, token in enumerate(spanned):
                shown = display_text(char)
                parts[token].append(shown if len(spanned) == 1 else f"{shown}({k + 1}/{len(spanned)})")
            at += n
        return [(tokens[k] or f"<unused {ids[k]}>") if shown_by_name[k] else ("".join(parts[k]) or display_text(""))
                for k in range(len(ids))]
