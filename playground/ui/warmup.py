"""FlexAttention's one compile per process, started with the page in a background thread, and the line
that says where it stands: compiling (first use, ~15 s), ready, not started (it compiles on first use), or why it
cannot run here."""
from __future__ import annotations

import atexit
import threading

import gradio as gr

from playground.nn import flex
from .lang import Words


class FlexWarmUp:
    """FlexAttention compiled once per process (about 10-15 s on a CPU), in a background thread, so the first
    analysis that uses it does not wait for the compiler. ``state()``: running | ready | unavailable | cold."""

    def __init__(self):
        self.thread: threading.Thread | None = None
        self.reason: str | None = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="flex-warm-up", daemon=True)
                self.thread.start()
                # a process that ends while the compiler runs in this thread would abort in C++ ("terminate
                # called without an active exception"): at exit, let the compile finish first
                atexit.register(self.wait)

    def _run(self) -> None:
        try:
            self.reason = flex.flex_status()
            if self.reason is None:
                self.reason = flex.warm_up()  # None, or why the zoo's kernel did not compile
        except Exception as e:  # a compiler that fails: the page says why, auto falls back to SDPA with a mask
            self.reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        finally:
            self.done.set()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until a started warm-up has finished (a second compile beside it would only slow both)."""
        if self.thread is not None:
            self.done.wait(timeout)

    def state(self) -> str:
        """running | ready | unavailable, or cold: never started (a ZeroGPU Space compiles nothing at start-up),
        where FlexAttention compiles on first use if it can run at all."""
        if self.thread is None:
            self.reason = flex.flex_status()
            return "cold" if self.reason is None else "unavailable"
        if not self.done.is_set():
            return "running"
        return "ready" if self.reason is None else "unavailable"


FLEX = FlexWarmUp()


def flex_note(request: gr.Request):
    """The line under the intro: compiling, ready or unavailable (with the reason); the timer stops once settled."""
    w, state = Words(request), FLEX.state()
    text = (w("flex.unavailable", reason=FLEX.reason) if state == "unavailable" else
            w("flex.compiling") if state == "running" else w("flex.cold") if state == "cold" else w("flex.ready"))
    return gr.update(value=text), gr.Timer(active=state == "running")
