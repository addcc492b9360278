"""Loaded weights kept under a memory budget: least recently used goes first.

A server holds each model's ``Weights`` (``models.shared``) once per key (the caller's: a model,
a device, a dtype) in a ``WeightCache``. Before a load, the cache makes room for the model's
estimated size, dropping the least recently used weights until it fits the budget; a model larger
than the whole budget is refused (``InputError`` naming both sizes and ``BUDGET_ENV``).

Eviction only drops the cache's reference: a request that holds an instance over evicted weights
keeps its tensors alive and runs to the end; the memory is freed when the last one finishes.
``get`` says what happened in its ``Checkout``: which models this load evicted, and whether this
model had been evicted before and is now loaded again, so a page can tell its reader.

Thread-safe: one lock guards the table (held for bookkeeping only) and one lock per key is held
around that key's load, so two requests for one model load it once and requests for other models
are not held up by it.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from playground.errors import InputError
from playground.models.shared import Weights

BUDGET_ENV = "PLAYGROUND_MODEL_MEMORY_GB"
DEFAULT_SHARE = 0.5  # of the machine's memory, when BUDGET_ENV is not set
GB = 1e9


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_budget(env: str = BUDGET_ENV, share: float = DEFAULT_SHARE) -> int:
    """Bytes a cache may hold: ``env`` in GB, else ``share`` of the machine's memory."""
    text = os.environ.get(env, "").strip()
    if not text:
        return int(share * machine_memory())
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not gb > 0:  # NaN fails too
        raise InputError("error.memory_budget", env=env, value=text)
    return int(gb * GB)


@dataclass(frozen=True)
class Checkout:
    """What ``WeightCache.get`` hands out: the weights, the names of the models its load evicted
    (oldest first), and whether this model had been evicted and was loaded again."""

    weights: Weights
    evicted: tuple[str, ...] = ()
    reloaded: bool = False


class WeightCache:
    """``Weights`` (or anything with ``nbytes``) by key under a byte budget (``budget``: fixed bytes, or None to
    read ``memory_budget(env, share)`` at each load, so the environment variable can change while serving).
    ``too_large``: the error code of an entry larger than the whole budget. The server's analyses use the
    same cache (``ui.service.ANALYSES``)."""

    def __init__(self, budget: int | None = None, env: str = BUDGET_ENV, share: float = DEFAULT_SHARE,
                 too_large: str = "error.model_too_large"):
        self.budget, self.env, self.share, self.too_large = budget, env, share, too_large
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Weights] = OrderedDict()  # least recently used first
        self._names: dict[Hashable, str] = {}
        self._loading: dict[Hashable, threading.Lock] = {}
        self._reserved: dict[Hashable, int] = {}   # bytes promised to loads under way
        self._evicted: set[Hashable] = set()        # evicted and not loaded since

    def limit(self) -> int:
        return self.budget if self.budget is not None else memory_budget(self.env, self.share)

    def get(self, key: Hashable, load: Callable[[], Weights], estimate: Callable[[], int], name: str) -> Checkout:
        """The weights under ``key``, loaded by ``load()`` if absent.

        Args:
            estimate: the bytes the weights will hold (from the config; asked on a miss only),
                checked against the budget before anything is loaded.
            name: how messages name the model.
        """
        hit = self._hit(key)
        if hit is not None:
            return Checkout(hit)
        with self._lock:
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key; other keys go on
            hit = self._hit(key)
            if hit is not None:  # loaded by the request this one waited for
                return Checkout(hit)
            limit, size = self.limit(), estimate()
            if size > limit:
                raise InputError(self.too_large, name=name, size_mb=round(size / 1e6),
                                 budget_mb=round(limit / 1e6), env=self.env)
            with self._lock:
                evicted = self._make_room(size, limit)
                self._reserved[key] = size
            try:
                weights = load()
            finally:
                with self._lock:
                    self._reserved.pop(key, None)
            with self._lock:
                self._entries[key], self._names[key] = weights, name
                evicted += self._make_room(0, limit)  # the estimate was short: make room for what was loaded
                reloaded = key in self._evicted
                self._evicted.discard(key)
        return Checkout(weights, tuple(evicted), reloaded)

    def _hit(self, key: Hashable) -> Weights | None:
        with self._lock:
            weights = self._entries.get(key)
            if weights is not None:
                self._entries.move_to_end(key)
                getattr(weights, "touch", lambda: None)()
            return weights

    def _make_room(self, size: int, limit: int) -> list[str]:
        """Evict least recently used entries until ``size`` more bytes fit (the lock is held). The newest
        entry stays: it is the one just loaded, or room is being made for a model that fits alone."""
        evicted = []
        while len(self._entries) > (0 if size else 1) and self.held() + size > limit:
            key, _ = self._entries.popitem(last=False)
            self._evicted.add(key)
            evicted.append(self._names.pop(key))
        return evicted

    def held(self) -> int:
        """Bytes held by the cached weights and promised to loads under way."""
        return sum(w.nbytes for w in self._entries.values()) + sum(self._reserved.values())

    def contents(self) -> list[tuple[str, int]]:
        """(name, bytes) of each cached model, least recently used first."""
        with self._lock:
            return [(self._names[k], w.nbytes) for k, w in self._entries.items()]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._names.clear()
            self._evicted.clear()
