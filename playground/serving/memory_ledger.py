"""One admission check for the server's memory: everything a request leaves behind or holds while it runs.

The server keeps several kinds of things in memory, each with its own store and its own least-recently-used
budget: loaded weights (``ui.service.loading.WEIGHTS``), analyses (``ui.service.analyses.ANALYSES``),
generation timelines in visitors' sessions, exports being written, the kernel lab's score matrices. Each budget
holds on its own, but together they could still pass what the machine has. ``Ledger`` adds them up:

- each store registers a *source*: a function giving the bytes it holds now (weights evicted from a store but
  still used by a running request count: ``WeightCache.in_use``), and optionally a way to free its least
  recently used entry (``free_one``) when the whole server needs the room;
- work that is about to allocate asks ``admit(nbytes, what)`` first: a context manager that reserves the bytes
  while the work runs. When the sources and the reservations plus ``nbytes`` pass the limit, the ledger frees
  entries (the sources that can, in the order they registered) until it fits, and otherwise refuses with an
  ``InputError`` naming the sizes (``error.memory_full``): the request waits for nothing and fails at once.

The limit is ``$PLAYGROUND_MEMORY_GB``, else ``DEFAULT_SHARE`` of the machine's memory (its cgroup's limit where
lower); the rest is left to Python, Gradio and the allocator.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from playground.errors import InputError
from playground.models.weight_cache import memory_budget

MEMORY_ENV = "PLAYGROUND_MEMORY_GB"
DEFAULT_SHARE = 0.8  # of the machine's memory, when MEMORY_ENV is not set


@dataclass
class Source:
    """One kind of thing the server holds: ``held()`` its bytes now; ``free_one()`` drops its least recently used
    entry and says whether it dropped one (None: nothing of it can be dropped, such as a visitor's timeline)."""

    name: str
    held: Callable[[], int]
    free_one: Callable[[], bool] | None = None


class Ledger:
    """The server's memory, added up over its sources and the work in flight (see the module's docstring)."""

    def __init__(self, budget: int | None = None, env: str = MEMORY_ENV, share: float = DEFAULT_SHARE):
        self.budget, self.env, self.share = budget, env, share
        self._lock = threading.Lock()
        self._sources: list[Source] = []
        self._flight: dict[int, tuple[str, int]] = {}  # reservation id -> (what, bytes)
        self._next = 0

    def limit(self) -> int:
        return self.budget if self.budget is not None else memory_budget(self.env, self.share)

    def register(self, name: str, held: Callable[[], int], free_one: Callable[[], bool] | None = None) -> None:
        """Count ``held()`` from now on (a source registered again under its name replaces the old one)."""
        with self._lock:
            self._sources = [s for s in self._sources if s.name != name] + [Source(name, held, free_one)]

    def held(self) -> dict[str, int]:
        """Bytes by source, and ``in flight`` for the reservations of work under way."""
        with self._lock:
            return self._held()

    def _held(self) -> dict[str, int]:
        out = {s.name: int(s.held()) for s in self._sources}
        out["in flight"] = sum(n for _, n in self._flight.values())
        return out

    @contextmanager
    def admit(self, nbytes: int, what: str) -> Iterator[None]:
        """Reserve ``nbytes`` for ``what`` while the block runs, freeing stored entries to make room; an
        ``InputError`` (``error.memory_full``) when even that cannot make room."""
        nbytes = max(0, int(nbytes))
        limit = self.limit()
        with self._lock:
            while sum(self._held().values()) + nbytes > limit and self._free_one():
                pass
            total = sum(self._held().values())
            if total + nbytes > limit:
                raise InputError("error.memory_full", what=what, size_mb=round(nbytes / 1e6),
                                 held_mb=round(total / 1e6), limit_mb=round(limit / 1e6), env=self.env)
            self._next += 1
            ticket = self._next
            self._flight[ticket] = (what, nbytes)
        try:
            yield
        finally:
            with self._lock:
                del self._flight[ticket]

    def _free_one(self) -> bool:
        """Drop one least recently used entry of the first source that has one (the lock is held)."""
        return any(s.free_one is not None and s.free_one() for s in self._sources)


LEDGER = Ledger()  # the registry of the server's memory, one per process
