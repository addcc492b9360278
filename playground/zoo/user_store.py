"""Models trained in the page, kept within bounds: at most ``max_models()`` of them, each for ``max_days()``.

Every visitor of a public server can train, and each model takes a folder under ``registry.USER_DIR``. Before a
new run starts, ``prune`` deletes the models past their age (by their card's time) and then the oldest ones until
the new one fits under the count. The operator sets both: ``$PLAYGROUND_USER_MODELS_MAX`` and
``$PLAYGROUND_USER_MODELS_DAYS``.
"""
from __future__ import annotations

import os
import shutil
import time

from playground.errors import InputError
from playground.zoo import registry

MAX_ENV, DAYS_ENV = "PLAYGROUND_USER_MODELS_MAX", "PLAYGROUND_USER_MODELS_DAYS"
MAX_MODELS, MAX_DAYS = 24, 7.0  # defaults


def _positive(env: str, default: float) -> float:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InputError("error.positive_env", env=env, value=text)
    return value


def max_models() -> int:
    return int(_positive(MAX_ENV, MAX_MODELS))


def max_days() -> float:
    return _positive(DAYS_ENV, MAX_DAYS)


def prune(now: float | None = None, folder=None) -> list[str]:
    """Delete trained models older than ``max_days()``, then the oldest until one more fits under
    ``max_models()``; the names deleted, oldest first."""
    folder = registry.USER_DIR if folder is None else folder
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    models = sorted(((card.stat().st_mtime, card.parent) for card in folder.glob(f"*/{registry.CARD}")),
                    key=lambda m: m[0])  # oldest first
    expired = [path for made, path in models if now - made > max_days() * 86400]
    kept = [path for _, path in models if path not in expired]
    over = kept[:max(0, len(kept) - max_models() + 1)]
    gone = []
    for path in expired + over:
        shutil.rmtree(path, ignore_errors=True)
        gone.append(path.name)
    return gone
