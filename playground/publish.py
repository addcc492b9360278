"""Publish this checkout as a Hugging Face Space, in one command:

    python -m playground.publish OWNER/NAME [--private] [--dry-run] [--hardware NAME]

The Hub refuses a git push that carries binary files outside its large-file storage, and the
shipped checkpoints (``models/*/model.safetensors``) and the tokenizer are such files. This command
therefore uploads with ``huggingface_hub`` (``HfApi.upload_folder``), which puts binaries in the
Hub's storage itself; this repository's own ``.gitattributes`` is neither needed nor touched (its
checkpoints stay plain files in its history), and the Space keeps the one the Hub wrote for it.

What is sent: exactly the files git tracks in the checkout (``git ls-files``), as they are in the working tree,
less what only this machine needs even when tracked (``IGNORE``: ``.gitattributes``, optimizer states, the
browser tests' artifacts, the models trained in the page). An untracked ``.env``, log or notebook is never sent.
A republish deletes from the Space every file the checkout no longer has (``delete_patterns``; the Hub keeps the
Space's own ``.gitattributes``). ``--dry-run`` lists the files and the total size without contacting the Hub. The
Space is created (Gradio SDK) if it does not exist; README.md's front matter configures it.
``--hardware`` then asks the Hub for that hardware (``cpu-basic``, ``zero-a10g`` for ZeroGPU, ``l4x1``, ...;
README.md's "Space hardware" says what runs where).
"""
from __future__ import annotations

import argparse
import glob
import re
import subprocess
import sys
from pathlib import Path

from huggingface_hub import HfApi, SpaceHardware
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from playground.models.pretrained.hub import is_hub_id
from playground.paths import ROOT, RUNS_DIR
from playground.zoo.registry import USER_DIR

IGNORE = [  # fnmatch patterns on paths relative to the checkout ('*' also matches '/')
    ".git/*", ".gitattributes",                                 # history; the Space has its own LFS rules
    ".venv/*", "venv/*",                                        # virtual environments
    "__pycache__/*", "*/__pycache__/*", "*.pyc",                # bytecode
    ".pytest_cache/*", "*/.pytest_cache/*", ".mypy_cache/*", ".ruff_cache/*", ".cache/*",
    ".ipynb_checkpoints/*", "*/.ipynb_checkpoints/*", "*.egg-info/*", ".DS_Store", "*/.DS_Store",
    "tests/artifacts/*",                                        # screenshots and traces of browser tests
    "data/*",                                                   # training data prepared at run time
    "models/*/train_state*",                                    # optimizer states of the shipped runs
]
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def ignore_patterns() -> list[str]:
    """IGNORE plus the run folders (runs/, the page's trained models) where they lie inside the checkout."""
    extra = []
    for folder in (RUNS_DIR, USER_DIR):
        try:
            extra.append(Path(folder).resolve().relative_to(ROOT).as_posix() + "/*")
        except ValueError:  # outside the checkout (PLAYGROUND_USER_MODELS elsewhere): nothing to leave out
            pass
    return IGNORE + extra


def tracked(root: Path = ROOT) -> list[str]:
    """The files git tracks under ``root`` that exist in the working tree, relative to it; ValueError outside a
    git checkout (nothing could say which files are the project's)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--full-name", "."], capture_output=True,
                             check=True).stdout
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             check=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ValueError("publish uploads the files git tracks: run it in a git checkout of the playground") from None
    base = Path(top).resolve()
    paths = [(base / name).relative_to(root).as_posix() for name in out.decode().split("\0") if name]
    return sorted(p for p in paths if (root / p).is_file())


def plan(root: Path = ROOT) -> list[tuple[str, int]]:
    """(path relative to ``root``, bytes) of every file the upload sends, sorted: the tracked files, less
    ``ignore_patterns()`` and huggingface_hub's own ``DEFAULT_IGNORE_PATTERNS``."""
    root = Path(root).resolve()
    kept = filter_repo_objects(tracked(root), ignore_patterns=ignore_patterns() + DEFAULT_IGNORE_PATTERNS)
    return [(path, (root / path).stat().st_size) for path in kept]


def app_file(root: Path = ROOT) -> str:
    """The Space's entry point named by README.md's front matter (``app_file:``)."""
    readme = Path(root) / "README.md"
    match = FRONT_MATTER.match(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    entry = match and re.search(r"^app_file:\s*(\S+)\s*$", match.group(1), re.M)
    if not entry:
        raise ValueError(f"{readme} has no front matter with app_file: a Space needs one (see the Hub's Spaces docs)")
    return entry.group(1).strip("'\"")


def size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB" if n_bytes >= 2**20 else f"{n_bytes / 1024:.1f} kB"


HARDWARE = [h.value for h in SpaceHardware]


def publish(repo_id: str, *, private: bool = False, dry_run: bool = False, hardware: str | None = None,
            root: Path = ROOT, api: HfApi | None = None, out=print) -> list[tuple[str, int]]:
    """Create the Space ``repo_id`` (Gradio) if needed and upload the checkout to it; return what was sent.

    With ``dry_run`` nothing is created or sent: the files and the total size are written to ``out``.
    ``hardware``: a ``huggingface_hub.SpaceHardware`` value the Space is then asked to run on."""
    if not is_hub_id(repo_id):
        raise ValueError(f"A Space is named OWNER/NAME (letters, digits, '.', '_', '-'), got {repo_id!r}")
    if hardware is not None and hardware not in HARDWARE:
        raise ValueError(f"unknown Space hardware {hardware!r}; the Hub offers: {', '.join(HARDWARE)}")
    files = plan(root)
    entry = app_file(root)
    if entry not in {path for path, _ in files}:
        raise ValueError(f"README.md names app_file {entry!r}, which the upload would not contain")
    total = sum(n for _, n in files)
    if dry_run:
        for path, n in files:
            out(f"{size(n):>10}  {path}")
        out(f"{len(files)} files, {size(total)} would be uploaded to the Space {repo_id} (dry run: nothing sent)")
        return files
    api = api or HfApi()
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    out(f"Uploading {len(files)} files ({size(total)}) to {url}")
    api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(Path(root).resolve()),
                      allow_patterns=[glob.escape(path) for path, _ in files],  # exactly the tracked files
                      ignore_patterns=ignore_patterns(),  # upload_folder adds DEFAULT_IGNORE_PATTERNS itself
                      delete_patterns=["*"],  # what the checkout no longer has goes (the Hub keeps .gitattributes)
                      commit_message="Publish the Attention Playground")
    if hardware is not None:
        api.request_space_hardware(repo_id, SpaceHardware(hardware))
        out(f"Asked for hardware {hardware}")
    out(f"Done: https://huggingface.co/spaces/{repo_id}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.publish",
                                     description="Upload this checkout to a Hugging Face Space (created if needed).")
    parser.add_argument("repo_id", metavar="OWNER/NAME", help="the Space, e.g. alice/attention-playground")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--dry-run", action="store_true", help="list the files and the total size; send nothing")
    parser.add_argument("--hardware", metavar="NAME",
                        help=f"ask the Hub for this hardware after the upload ({', '.join(HARDWARE)})")
    args = parser.parse_args(argv)
    try:
        publish(args.repo_id, private=args.private, dry_run=args.dry_run, hardware=args.hardware)
    except LocalTokenNotFoundError:
        print("error: not logged in to the Hub: run `hf auth login` or set HF_TOKEN to a token with write "
              "access", file=sys.stderr)
        return 1
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        hint = " (log in with `hf auth login` or set HF_TOKEN to a token with write access)" \
            if status in (401, 403) else ""
        print(f"error: the Hub refused: {e}{hint}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
