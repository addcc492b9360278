"""Cancel buttons, and one heavy job per session: which sessions' running jobs their reader asked to stop.

A long job (an analysis, a generation) runs inside ``CANCELS.job(session)`` and reads the check it yields between
steps (an analysis between layers, a generation between tokens), stopping with ``inspect.analysis.Cancelled``.
``press(session)`` (the Cancel button, and a closed tab through ``Blocks.unload``) stops the session's running
jobs; a job still waiting in the queue is taken out of it by Gradio's own ``cancels=``. A press with nothing
running is forgotten, so nothing here outlives its job.

A job a visitor starts (Analyze, Generate, and /analyze, /generate, /compare) is ``exclusive``: a session runs one
at a time, and a second is refused with a message while the first runs, so one visitor cannot hold both slots
of a lane. The page's own first views (``page_own``) are not counted: they are not the visitor's doing.
"""
from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr

from playground.ui.i18n import MessageError

_PAGE_OWN = contextvars.ContextVar("playground_page_own_job", default=False)
_CANCELLED = contextvars.ContextVar("playground_job_cancelled", default=None)


def current_cancelled() -> Callable[[], bool] | None:
    """The ``cancelled()`` of the job this code runs in (``Cancels.job``), or None outside one: what a job waiting
    for a worker (``serving.lanes``) reads to leave when its reader cancels."""
    return _CANCELLED.get()


@contextmanager
def page_own():
    """Jobs started inside this block are the page's own (its first views), not the visitor's: never exclusive."""
    token = _PAGE_OWN.set(True)
    try:
        yield
    finally:
        _PAGE_OWN.reset(token)


class Cancels:
    """Per session: how many jobs run, and whether Cancel was pressed while they did."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: dict[str | None, int] = {}
        self._exclusive: set[str | None] = set()  # sessions running a job they started
        self._pressed: set[str | None] = set()

    @contextmanager
    def job(self, session: str | None, exclusive: bool = False) -> Iterator[Callable[[], bool]]:
        """Run a job for ``session``: yields ``cancelled()``, True once Cancel is pressed for it. ``exclusive`` (a
        job the visitor started): ``MessageError`` ("error.one_job") while the session runs another such job."""
        exclusive = exclusive and session is not None and not _PAGE_OWN.get()
        with self._lock:
            if exclusive and session in self._exclusive:
                raise MessageError("error.one_job")
            self._running[session] = self._running.get(session, 0) + 1
            if exclusive:
                self._exclusive.add(session)
        cancelled = lambda: session in self._pressed  # noqa: E731
        token = _CANCELLED.set(cancelled)
        try:
            yield cancelled
        finally:
            _CANCELLED.reset(token)
            with self._lock:
                if exclusive:
                    self._exclusive.discard(session)
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


def cancel(request: gr.Request):
    """The Cancel buttons' handler, and a closed tab's: stop this session's running jobs after their current step."""
    CANCELS.press(getattr(request, "session_hash", None))


def cancel_job(request: gr.Request = None) -> bool:
    """/cancel: stop this client's running job (an analysis, a generation, a comparison) after its current step,
    or take it out of its lane while it waits for a worker; True when one was running. A client (one
    ``gradio_client.Client``) is one session: call it from the client that started the job."""
    return CANCELS.press(getattr(request, "session_hash", None))


@contextmanager
def visitor_job(w, request) -> Iterator[Callable[[], bool]]:
    """``CANCELS.job`` for a job the visitor started (exclusive), yielding its ``cancelled()``; a second one of the
    same session is refused with a gr.Error in ``w``'s language (``w``: the request's ``lang.Words``)."""
    try:
        with CANCELS.job(getattr(request, "session_hash", None), exclusive=True) as cancelled:
            yield cancelled
    except MessageError as e:
        if e.code != "error.one_job":
            raise
        raise w.error(e) from None
