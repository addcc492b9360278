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


def on_open(demo: gr.Blocks, fn: Callable, inputs: list, outputs: list, **kwargs):
    """Run a tab's own handler ``fn`` once when the page opens, with the controls' default values, so the tab
    is never blank; a ``gr.Error`` (the controls hold something the page cannot run) leaves the outputs as
    they are, and the tab's button then says why. Returns the event (``.then`` chains after it)."""
    @functools.wraps(fn)  # the same signature: Gradio passes the request where fn asks for one
    def first_view(*args, **kw):
        try:
            return fn(*args, **kw)
        except gr.Error:
            return [gr.skip()] * len(outputs)

    return demo.load(first_view, inputs, outputs, api_visibility="private", **kwargs)


def plot(figure) -> dict | None:
    return None if figure is None else {"type": "plotly", "plot": figure.to_json()}
