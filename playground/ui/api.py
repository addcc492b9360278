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

import functools
from dataclasses import dataclass
from typing import Callable

import gradio as gr
import torch

from playground.nn.kernels import OutOfDeviceMemory, release_cached_memory
from playground.zoo import ModelSpec
from .lang import Words


def spec(w: Words, text: str) -> ModelSpec:
    try:
        return ModelSpec.parse(text)
    except ValueError as e:
        raise w.error(e) from None


def run(w: Words, fn: Callable, *args, where: str = "", **kwargs):
    """``fn(*args, **kwargs)`` -> (result, notes): the result, with notes shown as warnings and a
    ValueError as a gr.Error (prefixed with ``where``, e.g. which of two models it concerns)."""
    prefix = f"{where}: " if where else ""
    try:
        result, notes = fn(*args, **kwargs)
    except gr.Error as e:  # rendered inside a GPU call (``ui.gpu``): add the prefix it could not know
        raise (gr.Error(prefix + str(e.message)) if prefix else e) from None
    except ValueError as e:
        raise gr.Error(prefix + str(w.render(e))) from None
    except torch.OutOfMemoryError:
        device = kwargs.get("device") or "cuda"  # PyTorch raises it for an accelerator's memory
        release_cached_memory(device)
        raise gr.Error(prefix + str(w.render(OutOfDeviceMemory(device)))) from None
    for note in notes:
        w.warn(prefix + w.render(note))
    return result


@dataclass
class FirstView:
    """A tab's own handler, run once when the page opens so the tab is never blank (``on_open``), then what
    follows it (``then``: (fn, inputs, outputs) run after it, as its button's ``.then`` does)."""

    fn: Callable
    inputs: list
    outputs: list
    then: tuple | None = None


FIRST_VIEWS: list[FirstView] = []  # filled while the page is built; ``run_first_views`` chains them


def on_open(fn: Callable, inputs: list, outputs: list, then: tuple | None = None) -> None:
    """Draw a tab's first view when the page opens, with the controls' default values: ``fn`` is the handler of
    the tab's button. A ``gr.Error`` (the controls hold something the page cannot run) leaves the outputs as
    they are, and the button then says why."""
    FIRST_VIEWS.append(FirstView(fn, inputs, outputs, then))


def run_first_views(event, views: list[FirstView]):
    """Chain the first views one after another after ``event`` (the landing analysis): the overview the reader
    sees first is not queued behind them on a small machine."""
    for view in views:
        @functools.wraps(view.fn)  # the same signature: Gradio passes the request where fn asks for one
        def first_view(*args, _view=view, **kw):
            try:
                return _view.fn(*args, **kw)
            except gr.Error:
                return [gr.skip()] * len(_view.outputs)

        event = event.then(first_view, view.inputs, view.outputs, api_visibility="private")
        if view.then is not None:
            event = event.then(*view.then, api_visibility="private")
    return event


def plot(figure) -> dict | None:
    return None if figure is None else {"type": "plotly", "plot": figure.to_json()}
