"""Many visitors at once: API calls started together against a running app, and the app's peak memory.

``parallel_calls(url, calls)`` opens one ``gradio_client.Client`` per call, lets them all start at
the same moment (a barrier) and waits for every answer. ``peak_rss_during(pid, fn)`` resets the
app process's memory high-water mark, runs ``fn`` and reads the peak reached meanwhile.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from playground.nn.timing import peak_rss_bytes, reset_peak_rss, rss_bytes


@dataclass(frozen=True)
class Call:
    """One visitor's API call: ``api_name`` ("/analyze", "/generate") with its keyword arguments."""

    api_name: str
    kwargs: dict = field(default_factory=dict)

    def describe(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.kwargs.items() if k not in ("spec", "prompt"))
        return f"{self.api_name}({options})"


def parallel_calls(url: str, calls: list[Call], timeout_s: float = 600.0) -> list[float]:
    """Run ``calls`` at once, one client each; the seconds each took, in order. The first error is raised."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in calls]  # connected before the start: only the calls overlap
    barrier = threading.Barrier(len(calls))
    seconds: list[float | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            start = time.perf_counter()
            clients[i].predict(api_name=calls[i].api_name, **calls[i].kwargs)
            seconds[i] = time.perf_counter() - start
        except BaseException as e:  # reported below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(calls)} parallel calls failed; first: {errors[0]}") from errors[0]
    if any(s is None for s in seconds):
        raise RuntimeError(f"parallel calls still running after {timeout_s:.0f} s")
    return seconds


def peak_rss_during(pid: int, fn) -> tuple[int, int, bool, object]:
    """(resident bytes before, peak resident bytes, whether the peak was reset at the start, fn's result) of
    process ``pid`` while ``fn()`` runs. Without a reset the peak covers the process's whole life."""
    before = rss_bytes(pid)
    resettable = reset_peak_rss(pid)
    result = fn()
    return before, peak_rss_bytes(pid), resettable, result
