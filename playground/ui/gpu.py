"""The page's model work through the GPU door (``serving.gpu_call``), its errors already in the visitor's words.

``work(w, fn, *args, **kwargs)`` runs ``fn`` through the door. Inside it a bad input (a ValueError, such as
an empty prompt or a kernel this device refuses) or running out of device memory becomes a ``gr.Error``
rendered in the visitor's language: on ZeroGPU only a ``gr.Error`` comes back from the worker with its words,
anything else arrives as its class name.

``install(spaces, guard)`` (``app.py``, on a ZeroGPU Space) makes the door ``spaces.GPU``, with each call's
duration from the estimate each call carries (``work(..., gpu_seconds=...)``) and ``DEFAULT_SECONDS``
for a call without one, and guards the accelerator: model work that would touch it outside
the door fails at once with ``OutsideGPUCall``. Work on another device (the CPU) does not cross the door.
When ZeroGPU refuses a call (the quota is spent, the Space's limit is reached), ``work`` raises
``api.GpuRefused``: a ``gr.Error`` in the visitor's language saying what to do, which a tab's first view
shows in the tab.
"""
from __future__ import annotations

from typing import Callable

import gradio as gr
import torch

from playground.serving import gpu_call
from playground.serving.lanes import ANALYZE, Lane
from . import api
from .cancels import current_cancelled
from .lang import Words

DEFAULT_SECONDS = 60          # ZeroGPU's own default
# a short estimate still pays for moving the weights; a long one waits longer in ZeroGPU's queue
MIN_SECONDS, MAX_SECONDS = 15, 240


def _rendered(lang: str, fn: Callable, args: tuple, kwargs: dict, gpu_seconds: float | None = None):
    """``fn(*args, **kwargs)`` with its errors as ``gr.Error``s in ``lang`` (this runs in ZeroGPU's worker);
    ``gpu_seconds`` is the call's estimate, read by the door's ``seconds`` before it starts."""
    try:
        return fn(*args, **kwargs)
    except gr.Error:  # already in the visitor's words (a gr.Error is a ValueError too)
        raise
    except (ValueError, torch.OutOfMemoryError) as e:
        raise api.rendered(Words(lang=lang), e, kwargs.get("device")) from None


def watch(progress=None, cancelled=None) -> dict:
    """The progress and cancel callbacks a long job takes, as keyword arguments: none behind a GPU door, whose
    work runs in another process that no callback crosses (there a job runs without a progress bar or Cancel)."""
    return {} if gpu_call.installed() else dict(progress=progress, cancelled=cancelled)


def work(w: Words, fn: Callable, *args, gpu_seconds: float | None = None, lane: Lane = ANALYZE, **kwargs):
    """``fn(*args, **kwargs)`` on one of ``lane``'s workers (``serving.lanes``: refused at once when its waiting
    room is full, left when the visitor's job is cancelled while waiting), through the GPU door, asking for
    ``gpu_seconds`` (the call's own estimate; None: ``DEFAULT_SECONDS``); there, a bad input comes back as a
    ``gr.Error`` in ``w``'s language (with no door installed, a plain call whose errors are the caller's to
    answer)."""
    with lane.enter(current_cancelled()):
        if not gpu_call.installed():
            return fn(*args, **kwargs)
        if not gpu_call.needs_door(kwargs.get("device")):  # the CPU on a ZeroGPU Space: no GPU time spent
            with gpu_call.host_work():
                return fn(*args, **kwargs)
        try:
            return gpu_call.call(_rendered, w.lang, fn, args, kwargs, gpu_seconds)
        except gr.Error as e:
            if not str(getattr(e, "title", "")).startswith("ZeroGPU"):  # the work's own error, already in words
                raise
            # the door itself said no (the visitor's GPU quota, the Space's, a duration past the cap): their
            # language, and what to do next
            raise api.GpuRefused(w("error.gpu_refused", detail=e.message)) from None


def seconds(entry: Callable, args: tuple, kwargs: dict) -> int:
    """The door's duration for one call: the door runs entry(_rendered, (lang, fn, args, kwargs, gpu_seconds), {})."""
    estimate = args[4] if len(args) == 5 else None
    if estimate is None:
        return DEFAULT_SECONDS
    return int(min(MAX_SECONDS, max(MIN_SECONDS, estimate)))


def install(spaces, guard: str = "cuda") -> None:
    """Make ``spaces.GPU`` the door for all model work, and fail model work on ``guard`` outside it."""
    gpu_call.install(lambda entry: spaces.GPU(entry, duration=seconds))
    gpu_call.start_guard(guard)
