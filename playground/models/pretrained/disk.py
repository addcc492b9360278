"""The Hugging Face cache under a disk budget: on a public Space any visitor can open any model, so the cache must
not grow without bound.

Before a download ``make_room`` reads the cache (``huggingface_hub.scan_cache_dir``) and, while the cache plus
the download would pass the budget, deletes whole repositories (their folder in the cache), least recently used
first, never one that is being downloaded or that a caller says is in use (a loaded model). A
model larger than the whole budget, or a cache that cannot be freed enough, is refused with a message.

The budget is ``$PLAYGROUND_HUB_DISK_GB`` GB, else ``DEFAULT_SHARE`` of what the cache's disk has free plus what
the cache already holds.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from playground.models.pretrained.budget import size

ENV_DISK_GB = "PLAYGROUND_HUB_DISK_GB"
DEFAULT_SHARE = 0.5

# The registry of repositories being downloaded now, in this process: never deleted to make room for another.
DOWNLOADING: dict[str, int] = {}
_lock = threading.Lock()


class DiskFull(ValueError):
    """A download that does not fit the disk budget, with why and what to do."""


def cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cache_bytes() -> int:
    from huggingface_hub import scan_cache_dir

    folder = cache_dir()
    return scan_cache_dir(folder).size_on_disk if folder.is_dir() else 0


def budget_bytes() -> int:
    """The most the Hugging Face cache may hold, in bytes (see the module docstring)."""
    raw = os.environ.get(ENV_DISK_GB, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            raise DiskFull(f"{ENV_DISK_GB}={raw!r} is not a number of GB") from None
        if gb <= 0:
            raise DiskFull(f"{ENV_DISK_GB} must be positive, got {raw}")
        return int(gb * 1e9)
    folder = cache_dir()
    probe = folder if folder.is_dir() else next(p for p in folder.parents if p.is_dir())
    return int(DEFAULT_SHARE * (shutil.disk_usage(probe).free + _cache_bytes()))


@contextmanager
def downloading(repo: str):
    """Mark ``repo`` as being downloaded for the block: ``make_room`` never deletes it meanwhile."""
    with _lock:
        DOWNLOADING[repo] = DOWNLOADING.get(repo, 0) + 1
    try:
        yield
    finally:
        with _lock:
            DOWNLOADING[repo] -= 1
            if not DOWNLOADING[repo]:
                del DOWNLOADING[repo]


def make_room(repo: str, need: int, keep: Iterable[str] = (), budget: int | None = None,
              forget: Callable[[str], None] | None = None) -> list[str]:
    """Delete least recently used repositories from the cache until ``need`` more bytes of ``repo`` fit the budget.

    Args:
        need: the bytes the download will add. keep: repositories in use (loaded models): never deleted.
        forget: called with each deleted repository (a caller that remembered its folder drops it).
    Returns:
        The repositories deleted, oldest first. Raises DiskFull when the model alone is larger than the budget, or
        when deleting every repository not in use would not make room.
    """
    from huggingface_hub import scan_cache_dir

    budget = budget_bytes() if budget is None else budget
    if need > budget:
        raise DiskFull(f"{repo} needs {size(need)} on disk but this server keeps at most {size(budget)} of models; "
                       f"an operator raises the limit with {ENV_DISK_GB} (in GB), or pick a smaller model")
    folder = cache_dir()
    if not folder.is_dir():
        return []
    info = scan_cache_dir(folder)
    total = info.size_on_disk
    need -= sum(r.size_on_disk for r in info.repos if r.repo_id == repo)  # what an earlier download left is kept
    with _lock:
        protected = {repo, *keep, *DOWNLOADING}
    candidates = sorted((r for r in info.repos if r.repo_type == "model" and r.repo_id not in protected),
                        key=lambda r: r.last_accessed)
    deleted = []
    for old in candidates:
        if total + need <= budget:
            break
        # the repository's own folder (blobs, snapshots, refs): delete_revisions takes commit hashes, which would
        # also strike another repository pinned at the same commit
        shutil.rmtree(old.repo_path, ignore_errors=True)
        total -= old.size_on_disk
        deleted.append(old.repo_id)
        if forget is not None:
            forget(old.repo_id)
    if total + need > budget:
        raise DiskFull(f"{repo} needs {size(need)} on disk and the models in use already hold {size(total)} of the "
                       f"{size(budget)} this server keeps; try again when fewer models are open, or an operator "
                       f"raises {ENV_DISK_GB}")
    return deleted
