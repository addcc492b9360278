"""The page's progress bars: what a handler hands a long job as its ``progress`` callback.

Every update Gradio sends makes its front end rebuild the loading state of the page's components (a
``structuredClone`` of their values), about 15 ms a time on the full page in chromium. A job that reported
each of its steps froze the page: the KV-cache lab's 760 teacher-forced steps kept the browser busy for 11 s
after the server had finished in 3. So a bar counted in steps moves at most once per ``PACE_S``, and always at the end.
"""
from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

import gradio as gr

PACE_S = 0.25  # at most four updates a second: a bar still moves smoothly to the eye


def paced(report: Callable[[int, int], None], pace_s: float = PACE_S) -> Callable[[int, int], None]:
    """``report(done, total)`` forwarded at most once per ``pace_s`` seconds, and always when ``done`` reaches
    ``total`` (so the bar ends full). Safe to call from several threads."""
    lock, last = threading.Lock(), [float("-inf")]

    def call(done: int, total: int) -> None:
        with lock:
            now = time.monotonic()
            if done < total and now - last[0] < pace_s:
                return
            last[0] = now
            report(done, total)
    return call


def step_bar(progress: gr.Progress, describe: Callable[[int, int], str]) -> Callable[[int, int], None]:
    """``report(done, total)`` for a job counted in steps (layers, tokens, teacher-forced steps): the bar at
    done of total with ``describe(done, total)`` as its text, paced."""
    return paced(lambda done, total: progress((done, total), desc=describe(done, total)))


def download_bar(progress: gr.Progress) -> Callable[[float, str], None]:
    """``report(fraction, text)`` for ``hub_source.prepare``. Not paced: a download reports once per file and per
    10 MB chunk, and its texts change in kind (asking the Hub, then each file), so none may be dropped. The
    downloads report from their own threads, which do not carry the event's context, so each report runs in a
    copy of this (the handler's) context."""
    context, lock = contextvars.copy_context(), threading.Lock()

    def report(fraction: float, text: str) -> None:
        with lock:  # one context cannot be entered by two threads at once
            context.run(progress, fraction, text)
    return report
