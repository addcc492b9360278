"""The shipped tokenizer round-trips any text and labels every token visibly."""

import json
import random
import unicodedata

import numpy as np
import pytest

from playground.train import tokenizer as tk
from playground.train.tokenizer import Tokenizer

HARD_CASES = [
    "", " ", "   ", "  leading", "trailing  ", "a  b   c", "\n", "\n\n", "a\r\nb", "\t\tx",
    "▁", "▁▁ ▁x", "x▁", "␣⏎", "\x00", "\x00\x01\x1f\x7f", "a\x00b", "\x1b[31mred\x1b[0m",
    "中文 混合 English", "😀", "👨‍👩‍👧‍👦", "🇺🇳", "e\u0301", "\u0301start", "\ufeffbom",
    "\u202eevil\u202c", "zero\u200bwidth", "nb\u00a0sp", "\u3000", "\u2028\u2029", "\uffff",
    "\U0010fffd", "<s></s><pad><unk>", "<0x41>", "⁇", "12345 678", "HAMLET. To be, or not to be",
    "Ω≈ç√∫˜µ≤≥÷", "ﷺ", "ℌ𝔞𝔪𝔩𝔢𝔱", "い\u3099",
]

RANGES = [(0x20, 0x7E), (0x00, 0x1F), (0x80, 0x24F), (0x300, 0x36F), (0x4E00, 0x9FFF),
          (0x1F300, 0x1FAFF), (0x2000, 0x206F), (0xAC00, 0xD7A3), (0x600, 0x6FF),
          (0xE000, 0xF8FF), (0x0, 0x10FFFF)]


def random_string(rng: random.Random) -> str:
    chars = []
    for _ in range(rng.randint(0, 40)):
        roll = rng.random()
        if roll < 0.15:
            chars.append(rng.choice([" ", "  ", "\n", "\t", "▁", "\r\n"]))
            continue
        low, high = rng.choice(RANGES)
        code = rng.randint(low, high)
        if 0xD800 <= code <= 0xDFFF:  # lone surrogates are not text
            code = 0x41
        chars.append(chr(code))
    return "".join(chars)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.load()


def test_shipped_tokenizer_ids_and_size(tok):
    assert 2000 <= tok.vocab_size <= 2100
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (tk.PAD_ID, tk.BOS_ID, tk.EOS_ID) == (0, 1, 2)
    assert tok.labels([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]
    ids = tok.encode("to be", bos=True, eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids[1:-1] == tok.encode("to be")
    assert tok.decode(ids) == "to be"
    card = json.loads((tk.MODEL_DIR / "card.json").read_text())
    assert card["vocab_size"] == tok.vocab_size and card["trainer_options"]["byte_fallback"]


def test_load_resolves_against_package_not_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Tokenizer.load().vocab_size > 0


@pytest.mark.parametrize("text", HARD_CASES)
def test_round_trip_hard_cases(tok, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tk.UNK_ID not in ids


def test_round_trip_random_unicode(tok):
    rng = random.Random(1234)
    for _ in range(500):
        text = random_string(rng)
        ids = tok.encode(text)
        assert tok.decode(ids) == text, repr(text)
        assert tk.UNK_ID not in ids
        assert len(tok.labels(ids)) == len(ids)


def assert_safe_labels(labels):
    for label in labels:
        assert label, "empty label"
        for ch in label:
            assert unicodedata.category(ch) not in tk.HIDDEN_CATEGORIES, (label, ch)


def test_labels_are_visible_and_safe(tok):
    rng = random.Random(99)
    for text in HARD_CASES + [random_string(rng) for _ in range(200)]:
        assert_safe_labels(tok.labels(tok.encode(text)))
    assert_safe_labels(tok.labels(range(tok.vocab_size)))


def test_labels_mark_whitespace_and_group_bytes(tok):
    labels = tok.labels(tok.encode("a b\n\tc"))
    assert "".join(labels) == "a␣b⏎⇥c"
    assert tok.labels(tok.encode("中")) == ["中(1/3)", "中(2/3)", "中(3/3)"]
    assert tok.labels(tok.encode("\x00\x1b")) == ["\\x00", "\\x1b"]
    assert tok.labels(tok.encode("\u0301"))[0].startswith("◌")
    assert tok.labels(tok.encode("😀")[:1]) == ["\\xf0"]  # a stray byte
    assert tk.display_text("") == tk.EMPTY_LABEL


def test_common_words_are_single_pieces(tok):
    assert len(tok.encode(" the")) == 1 and len(tok.encode(" and")) == 1
    text = "To be, or not to be, that is the question:\n"
    assert len(text) / len(tok.encode(text)) > 2.0


@pytest.mark.parametrize("bad", [None, b"bytes", 3, ["a"]])
def test_encode_rejects_non_str(tok, bad):
    with pytest.raises(ValueError, match="str"):
        tok.encode(bad)


def test_encode_rejects_lone_surrogate(tok):
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("a\ud800b")


@pytest.mark.parametrize("bad", [[-1], [10**6], [1.5], "abc", [[1, 2]], [True]])
def test_decode_and_labels_reject_bad_ids(tok, bad):
    with pytest.raises(ValueError):
        tok.decode(bad)
    with pytest.raises(ValueError):
        tok.labels(bad)


def test_decode_accepts_arrays(tok):
    ids = tok.encode("Exeunt.")
    assert tok.decode(np.array(ids)) == tok.decode(ids) == "Exeunt."
    assert tok.decode([]) == ""


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(ValueError, match="nope.model"):
        Tokenizer.load(tmp_path / "nope.model")
    bad = tmp_path / "corrupt.model"
    bad.write_bytes(b"\x00garbage, not a protobuf\xff" * 10)
    with pytest.raises(ValueError, match="corrupt.model"):
        Tokenizer.load(bad)


TINY_TEXT = "".join(f"the cat sat on the mat {i % 7}\nthe dog ate the hat\n" for i in range(200))


def test_train_tiny_tokenizer(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    path = tk.train_tokenizer(corpus, tmp_path / "a", vocab_size=300, val_text="the cat ate\n")
    again = tk.train_tokenizer(TINY_TEXT, tmp_path / "b", vocab_size=300)
    assert path.read_bytes() == again.read_bytes()  # same text, same model
    tiny = Tokenizer.load(path)
    assert tiny.vocab_size == 300 and tiny.pad_id == 0
    for text in ["the cat sat", "  über 😀\x00 ▁\n", ""]:
        assert tiny.decode(tiny.encode(text)) == text
    card = json.loads((path.parent / "card.json").read_text())
    assert card["vocab_size"] == 300 and card["val_chars_per_token"] > 1


def test_train_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        tk.train_tokenizer("\n\n", tmp_path)
    with pytest.raises(ValueError):
        tk.train_tokenizer(b"bytes", tmp_path)
    with pytest.raises(ValueError, match="300"):
        tk.train_tokenizer("".join(chr(0x4E00 + i) for i in range(200)), tmp_path, vocab_size=300)
