"""Loaded weights kept under a memory budget: least recently used goes first.

A server holds each model's ``Weights`` (``models.shared``) once per key (the caller's: a model,
a device, a dtype) in a ``WeightCache``. Before a load, the cache makes room for the model's
estimated size, dropping the least recently used weights until it fits the budget; a model larger
than the whole budget is refused (``InputError`` naming both sizes and ``BUDGET_ENV``). An entry whose estimate fell
short is measured once loaded: room is made for its real size, and one larger than the whole budget serves the
request that loaded it and is not kept (``Checkout.kept``), so it never pushes everything else out and stays. The budget
is the machine's memory, or its container's (cgroup) limit where that is lower (``models.memory``).
Weights bound for a CUDA device (``get``'s ``device``) must also fit the memory free on it, after
dropping, least recently used first, cached weights on that device if that makes room.

Eviction only drops the cache's reference: a request that holds an instance over evicted weights
keeps its tensors alive and runs to the end; the memory is freed when the last one finishes. Until then
``in_use`` still counts them, for the server's one memory check (``serving.memory_ledger``), which a cache
joins through ``admit``: every load is admitted by it first, and it may ask the cache to ``free_one``.
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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from playground.errors import InputError
from playground.models import memory
from playground.models.shared import Weights

BUDGET_ENV = "PLAYGROUND_MODEL_MEMORY_GB"
DEFAULT_SHARE = 0.5  # of the machine's memory, when BUDGET_ENV is not set
GB = 1e9
MAX_EVICTED_KEYS = 1024  # evicted keys remembered for the "loaded again" note


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's physical memory, or its cgroup's limit if lower."""
    return memory.host_total()


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
    (oldest first), whether this model had been evicted and was loaded again, and whether the cache kept it (an
    entry whose real size turned out larger than the whole budget serves this request alone)."""

    weights: Weights
    evicted: tuple[str, ...] = ()
    reloaded: bool = False
    kept: bool = True


class WeightCache:
    """``Weights`` (or anything with ``nbytes``) by key under a byte budget (``budget``: fixed bytes, or None to
    read ``memory_budget(env, share)`` at each load, so the environment variable can change while serving).
    ``too_large``: the error code of an entry larger than the whole budget. The server's analyses use the
    same cache (``ui.service.ANALYSES``). ``admit(nbytes, name)``: a context manager each load runs inside,
    which may refuse it (``serving.memory_ledger.Ledger.admit``; default: admits everything)."""

    def __init__(self, budget: int | None = None, env: str = BUDGET_ENV, share: float = DEFAULT_SHARE,
                 too_large: str = "error.model_too_large",
                 admit: Callable[[int, str], AbstractContextManager] | None = None):
        self.budget, self.env, self.share, self.too_large = budget, env, share, too_large
        self.admit = admit or (lambda nbytes, name: nullcontext())
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Weights] = OrderedDict()  # least recently used first
        self._names: dict[Hashable, str] = {}
        self._loading: dict[Hashable, list] = {}   # key -> [its lock, requests holding or waiting for it]
        self._reserved: dict[Hashable, int] = {}   # bytes promised to loads under way
        self._evicted: OrderedDict[Hashable, None] = OrderedDict()  # evicted and not loaded since, newest last
        self._devices: dict[Hashable, str] = {}     # the CUDA device of weights held there
        self._gone = memory.LiveBytes()  # evicted entries, while a running request still uses them

    def limit(self) -> int:
        return self.budget if self.budget is not None else memory_budget(self.env, self.share)

    def get(self, key: Hashable, load: Callable[[], Weights], estimate: Callable[[], int], name: str,
            device: str | torch.device | None = None) -> Checkout:
        """The weights under ``key``, loaded by ``load()`` if absent.

        Args:
            estimate: the bytes the weights will hold (from the config; asked on a miss only),
                checked against the budget before anything is loaded.
            name: how messages name the model.
            device: where ``load`` puts the weights; on CUDA they must also fit the device's free memory
                (``torch.cuda.mem_get_info``), counting cached weights there that may be dropped for them.
        """
        hit = self._hit(key)
        if hit is not None:
            return Checkout(hit)
        with self._lock:  # the key's lock lives while a request holds or waits for it
            entry = self._loading.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:  # one load per key; other keys go on
                return self._load(key, load, estimate, name, device)
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    del self._loading[key]

    def _load(self, key: Hashable, load: Callable[[], Weights], estimate: Callable[[], int], name: str,
              device: str | torch.device | None) -> Checkout:
        """``get`` on a miss, holding the key's lock."""
        hit = self._hit(key)
        if hit is not None:  # loaded by the request this one waited for
            return Checkout(hit)
        limit, size = self.limit(), estimate()
        if size > limit:
            raise InputError(self.too_large, name=name, size_mb=round(size / 1e6),
                             budget_mb=round(limit / 1e6), env=self.env)
        gpu = str(torch.device(device)) if memory.on_cuda(device) else None
        with self._lock:
            evicted = [] if gpu is None else self._make_device_room(size, gpu, name)
            evicted += self._make_room(size, limit)
            self._reserved[key] = size
        try:
            with self.admit(size, name):
                weights = load()
        finally:
            with self._lock:
                self._reserved.pop(key, None)
        with self._lock:
            reloaded = self._evicted.pop(key, False) is None
            if weights.nbytes > limit:  # the estimate fell short of even the whole budget: serve, do not keep
                self._gone.add(weights, weights.nbytes)  # counted by ``in_use`` while this request holds it
                return Checkout(weights, tuple(evicted), reloaded, kept=False)
            self._entries[key], self._names[key] = weights, name
            if gpu is not None:
                self._devices[key] = gpu
            evicted += self._make_room(0, limit)  # the estimate was short: make room for what was loaded
        return Checkout(weights, tuple(evicted), reloaded)

    def peek(self, key: Hashable):
        """The entry under ``key`` (now the most recently used), or None: never loads."""
        return self._hit(key)

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
            key = next(iter(self._entries))
            evicted.append(self._evict(key))
        return evicted

    def _make_device_room(self, size: int, device: str, name: str) -> list[str]:
        """Evict least recently used weights on CUDA ``device`` until ``size`` bytes are free there (the lock is
        held); refuse, evicting nothing, when even all of them would not make room. Weights a running request
        still holds are freed when it ends: the room counted for them comes a moment later."""
        free = memory.device_memory(device)[0]
        there = [key for key in self._entries if self._devices.get(key) == device]  # least recently used first
        if size > free + sum(self._entries[key].nbytes for key in there):
            raise InputError("error.model_too_large_device", name=name, size_mb=round(size / 1e6), device=device,
                             free_mb=round(free / 1e6))
        evicted = []
        for key in there:
            if size <= free:
                break
            free += self._entries[key].nbytes
            evicted.append(self._evict(key))
        return evicted

    def _evict(self, key: Hashable) -> str:
        entry = self._entries.pop(key)
        self._gone.add(entry, entry.nbytes)  # counted by ``in_use`` until the last request using it lets it go
        self._devices.pop(key, None)
        self._evicted[key] = None
        while len(self._evicted) > MAX_EVICTED_KEYS:  # remembered for the "loaded again" note, not forever
            self._evicted.popitem(last=False)
        return self._names.pop(key)

    def held(self) -> int:
        """Bytes held by the cached weights and promised to loads under way."""
        return sum(w.nbytes for w in self._entries.values()) + sum(self._reserved.values())

    def in_use(self) -> int:
        """Bytes of the cached entries and of evicted ones a running request still holds."""
        with self._lock:
            return sum(w.nbytes for w in self._entries.values()) + self._gone.total()

    def free_one(self) -> bool:
        """Evict the least recently used entry (the server's memory check needs room); False when empty."""
        with self._lock:
            if not self._entries:
                return False
            self._evict(next(iter(self._entries)))
            return True

    def contents(self) -> list[tuple[str, int]]:
        """(name, bytes) of each cached model, least recently used first."""
        with self._lock:
            return [(self._names[k], w.nbytes) for k, w in self._entries.items()]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._names.clear()
            self._evicted.clear()
            self._devices.clear()
