"""Cancel buttons: which sessions' running jobs their reader asked to stop.

A long job (an analysis, a generation) runs inside ``CANCELS.job(session)`` and reads the check it yields between
steps (an analysis between layers, a generation between tokens), stopping with ``inspect.analysis.Cancelled``.
``press(session)`` (the Cancel button, and a closed tab through ``Blocks.unload``) stops the session's running
jobs; a job still waiting in the queue is taken out of it by Gradio's own ``cancels=``. A press with nothing
running is forgotten, so nothing here outlives its job.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Cancels:
    """Per session: how many jobs run, and whether Cancel was pressed while they did."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str | None, int] = {}
        self._pressed: set[str | None] = set()

    @contextmanager
    def job(self, session: str | None) -> Iterator[Callable[[], bool]]:
        """Run a job for ``session``: yields ``cancelled()``, True once Cancel is pressed for it."""
        with self._lock:
            self._running[session] = self._running.get(session, 0) + 1
        try:
            yield lambda: session in self._pressed
        finally:
            with self._lock:
                self._running[session] -= 1
                if not self._running[session]:
                    del self._running[session]
                    self._pressed.discard(session)

    def press(self, session: str | None) -> bool:
        """Stop ``session``'s running jobs after their current step; False when none runs."""
        with self._lock:
            if session not in self._running:
                return False
            self._pressed.add(session)
            return True

    def running(self, session: str | None) -> bool:
        with self._lock:
            return session in self._running


CANCELS = Cancels()  # the registry of the page's running jobs, one per process
