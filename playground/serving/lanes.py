"""Lanes: each kind of heavy work has its own workers and its own bounded waiting room.

Gradio's queue has one size for the whole app, so one client sending many long requests could fill it for
everyone, cheap reads included. Model work instead enters a ``Lane`` (``ui.gpu.work`` does, for every piece of it):
at most ``workers`` jobs run in it at once, at most ``waiting`` more wait for a worker, and the next is refused at
once (``InputError`` ``error.lane_full``) with what to do. A job waiting in a lane leaves it when its reader
cancels (``cancelled()`` turns True: ``error.lane_cancelled``). The page lets ``admitted`` events of a lane
through Gradio's own queue (``concurrency_limit``), so requests wait here, counted per lane, not in the shared
queue; cheap reads of stored analyses never enter a lane.

A job already inside a lane (a view that computes an analysis on its way) does not queue behind itself: entering
again on the same thread of work passes straight through.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from playground.errors import InputError

_INSIDE = contextvars.ContextVar("playground_inside_lane", default=None)
POLL_S = 0.1  # how often a waiting job looks at its cancel flag


class Lane:
    """One kind of work: ``workers`` run at once, ``waiting`` more may wait; ``admitted`` = both."""

    def __init__(self, name: str, workers: int, waiting: int):
        self.name, self.workers, self.waiting = name, workers, waiting
        self._lock = threading.Lock()
        self._free = threading.Semaphore(workers)
        self._running = 0
        self._queued = 0

    @property
    def admitted(self) -> int:
        return self.workers + self.waiting

    def counts(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._lock:
            return self._running, self._queued

    @contextmanager
    def enter(self, cancelled: Callable[[], bool] | None = None) -> Iterator[None]:
        """Run the block on one of the lane's workers, waiting for one if the waiting room has a place."""
        if _INSIDE.get() is not None:  # already in a lane: this is part of that job
            yield
            return
        with self._lock:
            if self._running >= self.workers and self._queued >= self.waiting:
                raise InputError("error.lane_full", lane=self.name, running=self._running, waiting=self._queued)
            self._queued += 1
        try:
            while not self._free.acquire(timeout=POLL_S):
                if cancelled is not None and cancelled():
                    raise InputError("error.lane_cancelled", lane=self.name)
        finally:
            with self._lock:
                self._queued -= 1
        with self._lock:
            self._running += 1
        token = _INSIDE.set(self.name)
        try:
            yield
        finally:
            _INSIDE.reset(token)
            with self._lock:
                self._running -= 1
            self._free.release()


# the registry of the server's lanes: analyses and every view that computes, and generation
ANALYZE = Lane("analyze", workers=2, waiting=8)
GENERATE = Lane("generate", workers=2, waiting=8)
