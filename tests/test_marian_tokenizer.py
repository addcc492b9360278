"""A Marian checkpoint's tokenizer (two SentencePiece models and vocab.json, no tokenizer.json) against transformers'
own MarianTokenizer on files the test writes: the same ids, the same decoded text."""
from __future__ import annotations

import json

import pytest

from conftest import require

TEXT = ("Attention lets every token look back at the tokens before it. The keys and values of earlier tokens are "
        "cached, so a new token only computes its own query. 注意力机制让每个词回看前面的词。")


@pytest.fixture(scope="module")
def marian_folder(tmp_path_factory):
    require("transformers", "pip install -r requirements-dev.txt")
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("marian")
    for name in ("source", "target"):
        spm.SentencePieceTrainer.train(sentence_iterator=iter([TEXT] * 20), model_prefix=str(folder / name),
                                       vocab_size=60, model_type="unigram", character_coverage=1.0,
                                       minloglevel=2)
        (folder / f"{name}.model").rename(folder / f"{name}.spm")
    pieces = ["</s>", "<unk>"] + [spm.SentencePieceProcessor(model_file=str(folder / "source.spm")).id_to_piece(i)
                                  for i in range(3, 60)]
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces))}
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


def test_the_ids_and_the_text_are_transformers_own(marian_folder):
    from transformers import MarianTokenizer as Reference

    from playground.models.pretrained.tokenizer import HubTokenizer

    import warnings

    with warnings.catch_warnings():  # without sacremoses it normalises no punctuation, as ours does: the reference
        warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")
        ref = Reference(source_spm=str(marian_folder / "source.spm"), target_spm=str(marian_folder / "target.spm"),
                        vocab=str(marian_folder / "vocab.json"))
    ours = HubTokenizer.from_folder(marian_folder)
    for text in (TEXT, "The keys are cached.", "词"):
        ids = ours.encode(text)
        assert ids == ref(text).input_ids
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True)
    assert ours.labels(ours.encode("The keys"))[-1] == "</s>" and "␣" in "".join(ours.labels(ours.encode("a b")))
    assert ours.token_to_id("</s>") == 0 and ours.vocab_size == len(json.loads((marian_folder / "vocab.json").read_text()))


def test_a_broken_marian_folder_says_which_files(marian_folder, tmp_path):
    from playground.models.pretrained.tokenizer import HubTokenizer

    for name in ("source.spm", "target.spm"):
        (tmp_path / name).write_bytes(b"not a model")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ValueError, match="Marian tokenizer files"):
        HubTokenizer.from_folder(tmp_path)
