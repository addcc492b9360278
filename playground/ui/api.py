"""What every endpoint shares, whether a button or an API client calls it.

An endpoint takes a model spec as text, a prompt and named options. ``spec`` reads the spec,
``run`` calls a service function; either answers bad input with a ``gr.Error`` in the reader's
language and shows the service's notes as warnings. Running out of device memory is answered the
same way: "Out of GPU memory at N tokens; try fewer tokens or bf16" (``kernels.OutOfDeviceMemory``,
raised where the tokens are known; a bare ``torch.OutOfMemoryError`` from elsewhere says it without them). ``plot`` sends a figure in the shape a
``gr.Plot`` sends it (``{'type': 'plotly', 'plot': '<figure JSON>'}``), so an API client reads
every figure the same way.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import html
import inspect
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable

import gradio as gr
import torch

from playground.inspect.analysis import Cancelled
from playground.models.memory import release_freed
from playground.nn.timing import rss_bytes
from playground.nn.kernels import OutOfDeviceMemory, release_cached_memory
from playground.serving.memory_ledger import LEDGER
from playground.zoo import ModelSpec
from .cancels import page_own
from .initial import set_initial
from .lang import Words, visitor_error


def spec(w: Words, text: str) -> ModelSpec:
    try:
        return ModelSpec.parse(text)
    except ValueError as e:
        raise w.error(e) from None


def rendered(w: Words, e: ValueError | torch.OutOfMemoryError, device: str | None, prefix: str = "") -> gr.Error:
    """A bad input (a ValueError) or a device out of memory as the gr.Error the visitor reads, in ``w``'s language;
    out of memory first releases what PyTorch caches on ``device`` (default: CUDA, the memory it raises it for)."""
    if isinstance(e, torch.OutOfMemoryError):
        device = device or "cuda"
        release_cached_memory(device)
        e = OutOfDeviceMemory(device)
    return visitor_error(prefix + str(w.render(e)))


def checked(w: Words, fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, a check or a figure worked out before a request runs: its ValueError as a gr.Error in
    ``w``'s language (no request line: the request it belongs to writes that)."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, torch.OutOfMemoryError) as e:
        raise rendered(w, e, kwargs.get("device")) from None


@contextlib.contextmanager
def admitted(w: Words, nbytes: int, what: str):
    """The block admitted by the server's memory check (``LEDGER.admit``) for ``nbytes``: its refusal as a
    ``gr.Error`` in ``w``'s language; errors inside the block pass as they are."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(LEDGER.admit(nbytes, what))
        except ValueError as e:
            raise rendered(w, e, None) from None
        yield


def run(w: Words, fn: Callable, *args, where: str = "", **kwargs):
    """``fn(*args, **kwargs)`` -> (result, notes): the result, with notes shown as warnings and a
    ValueError as a gr.Error (prefixed with ``where``, e.g. which of two models it concerns).

    Every call writes one line to the operator's log (logger ``playground.requests``, JSON): what was asked
    (``request_line``), how long it took and how it ended (ok, refused with the visitor's message, or the
    exception's type, its traceback logged once)."""
    prefix = f"{where}: " if where else ""
    line, start = request_line(fn, args, kwargs), time.perf_counter()
    facts = _FACTS.set(line)  # what the request learns on its way (``describe``) goes into its line
    try:
        result, notes = fn(*args, **kwargs)
    except Cancelled:  # the reader pressed Cancel: the caller says so in the words of its tab
        _log_request(line, start, "cancelled", "")
        raise
    except gr.Error as e:  # rendered inside a GPU call (``ui.gpu``): add the prefix it could not know
        _log_request(line, start, "refused", str(e.message))
        if prefix:
            said = prefix + str(e.message)
            e = GpuRefused(said) if isinstance(e, GpuRefused) else visitor_error(said)
        raise e from None
    except (ValueError, torch.OutOfMemoryError) as e:
        error = rendered(w, e, kwargs.get("device"), prefix)
        _log_request(line, start, "refused", str(error.message))
        raise error from None
    except BaseException as e:
        _log_request(line, start, type(e).__name__, "")
        REQUESTS.exception("request failed: %s", line.get("route"))
        raise
    finally:
        _FACTS.reset(facts)
        release_freed()  # what the request freed goes back to the system, not into its thread's malloc arena
    _log_request(line, start, "ok", "")
    for note in notes:
        w.warn(prefix + w.render(note))
    return result


REQUESTS = logging.getLogger("playground.requests")
_FACTS = contextvars.ContextVar("playground_request_line", default=None)


def describe(**facts) -> None:
    """Add ``facts`` (the prompt's tokens, the time estimate) to the log line of the request this code runs in; a
    call outside ``run`` (a notebook, a test) has no line, and nothing happens."""
    line = _FACTS.get()
    if line is not None:
        line.update(facts)


def request_line(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """What a call asks for, as the log line names it: the service function (through a GPU door, the one it
    carries), the model spec, the prompt's length in characters, the device, backend and dtype."""
    inner = next((a for a in args if callable(a) and not isinstance(a, (Words, ModelSpec))), None)
    route = getattr(inner if getattr(fn, "__name__", "") == "work" and inner else fn, "__name__", str(fn))
    spec_ = next((a for a in args if isinstance(a, ModelSpec)), kwargs.get("spec"))
    text = next((a for a in args if isinstance(a, str)), None)
    line = {"route": route, "spec": None if spec_ is None else str(spec_),
            "prompt_chars": None if text is None else len(text)}
    line.update({k: kwargs[k] for k in ("device", "backend", "dtype", "max_new_tokens") if k in kwargs})
    return line


def _log_request(line: dict, start: float, outcome: str, message: str) -> None:
    """One JSON line per request for the operator: what it asked, how long, how it ended, and the server's memory
    after it (``held_mb``: the memory check's sources, what the process holds besides is ``rss_mb`` minus them)."""
    memory = {"held_mb": {name: round(n / 1e6, 1) for name, n in LEDGER.held().items()}}
    try:
        memory["rss_mb"] = round(rss_bytes() / 1e6, 1)
    except ValueError:  # no /proc here (not Linux): the line goes without it
        pass
    REQUESTS.info(json.dumps({**line, "ms": round((time.perf_counter() - start) * 1e3, 1), "outcome": outcome,
                              **({"message": message[:300]} if message else {}), **memory}, ensure_ascii=False))


@dataclass
class FirstView:
    """A tab's own handler, run once when the page opens so the tab is never blank, then what follows it
    (``then``: (fn, inputs, outputs) run after it, as its button's ``.then`` does)."""

    fn: Callable
    inputs: list
    outputs: list
    then: tuple | None = None


class FirstViews:
    """One page's first views: each tab adds its own while the page is built (``add``), and the page chains them
    after its landing analysis (``chain``, see ``run_first_views``)."""

    def __init__(self):
        self.views: list[FirstView] = []

    def add(self, fn: Callable, inputs: list, outputs: list, then: tuple | None = None) -> None:
        """Draw a tab's first view when the page opens, with the controls' default values: ``fn`` is the handler
        of the tab's button. A ``gr.Error`` (the controls hold something the page cannot run) leaves the outputs
        as they are, and the button then says why."""
        self.views.append(FirstView(fn, inputs, outputs, then))

    def chain(self, event, precompute: bool = False):
        return run_first_views(event, self.views, precompute)


def _same(a, b) -> bool:
    """Whether two input values are equal (values Gradio cannot compare, such as tables, count as different)."""
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: tensors of more than one value
        return False


def _request_of(args: tuple, kwargs: dict) -> gr.Request | None:
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, gr.Request)), None)


def _special_args(fn: Callable) -> dict[str, str]:
    """The parameters Gradio fills itself in ``fn``'s signature: name -> "request" (annotated ``gr.Request``) or
    "progress" (a ``gr.Progress`` default)."""
    return {name: "progress" if isinstance(p.default, gr.Progress) else "request"
            for name, p in inspect.signature(fn).parameters.items()
            if isinstance(p.default, gr.Progress) or p.annotation in (gr.Request, "gr.Request")}


def _call_as_page(fn: Callable, inputs: list) -> tuple[list, object]:
    """``fn`` called as its event would call it, with the inputs' starting values and no request (the page's
    own language): (the values passed, what it returned)."""
    values = [c.value for c in inputs]
    asks = [name for name, kind in _special_args(fn).items() if kind == "request"]
    return values, fn(*values, **{name: None for name in asks})


def built_in(fn: Callable, inputs: list, outputs: list) -> tuple | None:
    """``fn`` computed now, as the page would call it on open, and its return written into ``outputs``
    (``initial``): what the page then shows, (its language, the input values), for ``shows``; None where
    ``fn`` refused its starting values (a ``gr.Error``), and nothing was written."""
    try:
        values, returned = _call_as_page(fn, inputs)
    except gr.Error as e:  # the page is built without this view: the operator's log says why, once
        REQUESTS.warning("a first view was not built into the page: %s", e.message)
        return None
    set_initial(outputs, list(returned))
    return Words(None).lang, values


def shows(shown: tuple | None, lang: str, values: list) -> bool:
    """Whether a call in ``lang`` with these input values is what the page was built showing (``built_in``)."""
    if shown is None:
        return False
    built_lang, built_values = shown
    return lang == built_lang and len(values) == len(built_values) and all(
        _same(a, b) for a, b in zip(values, built_values))


class GpuRefused(gr.Error):
    """ZeroGPU refused a GPU call (``ui.gpu.work``): the reason in the visitor's words, with what to do next. A tab's
    first view shows it in the tab (``refusal_outputs``) rather than leaving the tab blank. Not a fault of the
    server's: the log says it in one line, with no traceback."""

    def __init__(self, message: str):
        super().__init__(message, print_exception=False)


def refusal_outputs(outputs: list, message: str) -> list | None:
    """A first view's outputs saying ``message``: in its first text output (a Markdown or HTML block), the others
    as they are; None when it has none to say it in."""
    at = next((i for i, o in enumerate(outputs) if isinstance(o, (gr.Markdown, gr.HTML))), None)
    if at is None:
        return None
    values = [gr.skip()] * len(outputs)
    values[at] = f"<div class='refusal'>{html.escape(message)}</div>"
    return values


def _first_view(fn: Callable, outputs: list, shown: tuple | None):
    """``fn`` as a first view: a ``gr.Error`` leaves the outputs as they are, and so does a call the page
    already shows (``shown``: from ``built_in``)."""
    @functools.wraps(fn)  # the same signature: Gradio passes the request where fn asks for one
    def first_view(*args, **kw):
        given = [a for a in args if not isinstance(a, gr.Request)]
        if shows(shown, Words(_request_of(args, kw)).lang, given):
            return [gr.skip()] * len(outputs)
        try:
            with page_own():  # the page's own work, not a job the visitor started
                return fn(*args, **kw)
        except GpuRefused as e:  # no GPU time for this visitor now: the tab says so, and what to do
            REQUESTS.warning("a first view was refused a GPU: %s", e.message)
            said = refusal_outputs(outputs, e.message)
            if said is None:
                raise
            return said
        except gr.Error as e:  # the tab stays as the page built it; the operator's log says why
            REQUESTS.warning("a first view was not computed: %s", e.message)
            return [gr.skip()] * len(outputs)
    return first_view


@dataclass
class Batched:
    """Several handlers run as one event (``run_first_views``): ``steps`` are (fn, inputs, outputs); each fn gets
    its own slice of the event's inputs, and the request and progress tracker where its signature asks for them,
    and their outputs follow one another."""

    steps: list[tuple[Callable, list, list]]

    def __post_init__(self):
        self._special = [_special_args(fn) for fn, _, _ in self.steps]  # read once, not on every page load

    @property
    def inputs(self) -> list:
        return [c for _, inputs, _ in self.steps for c in inputs]

    @property
    def outputs(self) -> list:
        return [c for _, _, outputs in self.steps for c in outputs]

    def __call__(self, request: gr.Request, progress=gr.Progress(), *values) -> list:  # Gradio fills the first two
        returned, at = [], 0
        filled = {"request": request, "progress": progress}
        for (fn, inputs, outputs), special in zip(self.steps, self._special):
            out = fn(*values[at:at + len(inputs)], **{name: filled[kind] for name, kind in special.items()})
            at += len(inputs)
            returned.extend([out] if len(outputs) == 1 else out)
        return returned


def run_first_views(event, views: list[FirstView], precompute: bool = False):
    """Run the first views after ``event`` (the landing analysis): the overview the reader sees first is not
    queued behind them on a small machine. Every view's handler runs in one event, then every view's ``then`` in
    another: each event costs the browser a round trip and a pass over the page's state, whatever it holds.
    ``precompute``: each view is computed now, in the page's own language, and written into the page
    (``built_in``); on load a view then runs only where the page differs (a share link's model, another
    language)."""
    firsts, thens = [], []
    for view in views:
        shown = built_in(view.fn, view.inputs, view.outputs) if precompute else None
        firsts.append((_first_view(view.fn, view.outputs, shown), view.inputs, view.outputs))
        if view.then is not None:  # built in only after a first step that was: it reads that step's outputs
            fn, inputs, outputs = view.then
            after = built_in(fn, inputs, outputs) if shown is not None else None
            thens.append((_first_view(fn, outputs, after), inputs, outputs))
    for steps in (firsts, thens):
        if steps:
            batch = Batched(steps)
            event = event.then(batch, batch.inputs, batch.outputs, api_visibility="private")
    return event


def plot(figure) -> dict | None:
    return None if figure is None else {"type": "plotly", "plot": figure.to_json()}
