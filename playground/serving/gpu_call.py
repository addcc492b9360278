"""The one door to the GPU: on a ZeroGPU Space every piece of model work goes through ``call``.

On a Hugging Face ZeroGPU Space a process may touch CUDA only inside a function decorated with
``spaces.GPU``. Each such call runs in a worker process: its arguments and result are pickled, it
may run for its ``duration`` seconds (60 by default), and any exception but a ``gradio.Error``
reaches the visitor as its class name alone. So the page sends all of its model work through
``call(fn, *args, **kwargs)``: a plain call elsewhere, and on a Space a call of the one function
``install`` decorated (``app.py`` does it when ``spaces`` is importable).

``guard`` makes "all" checkable: while it is on, a forward of a model the page loaded (``watch``: the service
watches each model it builds) on the guarded device type, and any work that calls ``check``, fails with
``OutsideGPUCall`` unless it runs inside the door; no other module of the process is touched. On a Space it
guards "cuda" (a clearer failure than CUDA's own); the tests install a stand-in ``spaces`` that pickles like
ZeroGPU, guard "cpu", and drive every endpoint.

The door's state is one object, ``DOOR``: the decorated entry and the guarded device type of this process.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

_INSIDE = contextvars.ContextVar("playground_inside_gpu_call", default=False)
_HOST = contextvars.ContextVar("playground_host_work", default=False)


@dataclass
class Door:
    """This process's GPU door: the decorated entry (None: ``call`` is a plain call) and the device type whose
    model work must run inside it (None: unguarded)."""

    entry: Callable | None = None
    guarded: str | None = None


DOOR = Door()


class OutsideGPUCall(RuntimeError):
    """Model work on the guarded device started outside the GPU call (on ZeroGPU it would fail there)."""


def _enter(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """What the door runs (in ZeroGPU's worker): ``fn(*args, **kwargs)`` with the inside flag set."""
    token = _INSIDE.set(True)
    try:
        return fn(*args, **kwargs)
    finally:
        _INSIDE.reset(token)


def install(decorate: Callable[[Callable], Callable]) -> None:
    """Make ``decorate(entry)`` the door, e.g. ``lambda f: spaces.GPU(f, duration=seconds)``, where ``seconds``
    receives the entry's arguments (fn, args, kwargs)."""
    DOOR.entry = decorate(_enter)


def uninstall() -> None:
    DOOR.entry = None


def reset() -> None:
    """No door and no guard (a test's clean-up)."""
    DOOR.entry, DOOR.guarded = None, None


def installed() -> bool:
    return DOOR.entry is not None


def needs_door(device: str | torch.device | None) -> bool:
    """Whether work on ``device`` crosses the door: with one installed, work on the guarded device type and work that
    names no device do; work on another device (the CPU on a ZeroGPU Space) runs here as host work, and spends
    none of the visitor's GPU time."""
    if DOOR.entry is None:
        return False
    return device is None or DOOR.guarded is None or torch.device(device).type == DOOR.guarded


def inside() -> bool:
    """True within the door (always True where no door is installed: nothing needs one)."""
    return DOOR.entry is None or _INSIDE.get()


def call(fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, through the door when one is installed. On ZeroGPU ``fn``, its arguments and its
    result cross a process boundary: module-level functions and plain data only (no callbacks)."""
    if DOOR.entry is None or _INSIDE.get():
        return _enter(fn, args, kwargs)
    return DOOR.entry(fn, args, kwargs)


@contextmanager
def host_work():
    """Work that runs on the host's CPU by design, outside the door (training in the page: it takes as long as
    it takes, which a GPU call's time limit would cut). ``check`` lets CPU work inside this block pass."""
    token = _HOST.set(True)
    try:
        yield
    finally:
        _HOST.reset(token)


def on_host() -> bool:
    """True inside ``host_work``."""
    return _HOST.get()


def check(device: str | torch.device | None) -> None:
    """Raise ``OutsideGPUCall`` when work on ``device`` starts outside the door while it is guarded."""
    if DOOR.guarded is None or _INSIDE.get() or device is None:
        return
    kind = torch.device(device).type
    if kind == DOOR.guarded and not (kind == "cpu" and _HOST.get()):
        raise OutsideGPUCall(f"model work on {device} outside the GPU call: route it through gpu_call.call")


def _forward_pre_hook(module: torch.nn.Module, args) -> None:
    if DOOR.guarded is None or _INSIDE.get():
        return
    param = next(module.parameters(), None)
    if param is not None:
        check(param.device)


def watch(model: torch.nn.Module) -> torch.nn.Module:
    """Hold ``model``'s forwards to the guard (a forward outside the door on the guarded device fails); the model,
    for chaining. A hook on this model alone: nothing else in the process is watched."""
    model.register_forward_pre_hook(_forward_pre_hook)
    return model


@contextmanager
def guard(device_type: str = "cuda"):
    """While the block runs, watched models' forwards and ``check`` on ``device_type`` must be inside the door."""
    old, DOOR.guarded = DOOR.guarded, device_type
    try:
        yield
    finally:
        DOOR.guarded = old


def start_guard(device_type: str = "cuda") -> None:
    """``guard`` for the life of the process (a ZeroGPU Space, where CUDA outside the door always fails)."""
    DOOR.guarded = device_type
