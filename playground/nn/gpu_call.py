"""The one door to the GPU: on a ZeroGPU Space every piece of model work goes through ``call``.

On a Hugging Face ZeroGPU Space a process may touch CUDA only inside a function decorated with
``spaces.GPU``. Each such call runs in a worker process: its arguments and result are pickled, it
may run for its ``duration`` seconds (60 by default), and any exception but a ``gradio.Error``
reaches the visitor as its class name alone. So the page sends all of its model work through
``call(fn, *args, **kwargs)``: a plain call elsewhere, and on a Space a call of the one function
``install`` decorated (``app.py`` does it when ``spaces`` is importable).

``guard`` makes "all" checkable: while it is on, every forward of a torch module on the guarded
device type, and every kernel timing that calls ``check``, fails with ``OutsideGPUCall`` unless it
runs inside the door. On a Space it guards "cuda" (a clearer failure than CUDA's own); the tests
install a stand-in ``spaces`` that pickles like ZeroGPU, guard "cpu", and drive every endpoint.
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import torch

_INSIDE = contextvars.ContextVar("playground_inside_gpu_call", default=False)
_HOST = contextvars.ContextVar("playground_host_work", default=False)
_door: Callable | None = None      # the decorated entry, or None: ``call`` is a plain call
_guarded: str | None = None        # the device type whose work must run inside the door
_hook = None


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
    global _door
    _door = decorate(_enter)


def uninstall() -> None:
    global _door
    _door = None


def reset() -> None:
    """No door and no guard (a test's clean-up)."""
    global _door, _guarded, _hook
    _door, _guarded = None, None
    if _hook is not None:
        _hook.remove()
        _hook = None


def installed() -> bool:
    return _door is not None


def inside() -> bool:
    """True within the door (always True where no door is installed: nothing needs one)."""
    return _door is None or _INSIDE.get()


def call(fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, through the door when one is installed. On ZeroGPU ``fn``, its arguments and its
    result cross a process boundary: module-level functions and plain data only (no callbacks)."""
    if _door is None or _INSIDE.get():
        return _enter(fn, args, kwargs)
    return _door(fn, args, kwargs)


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
    if _guarded is None or _INSIDE.get() or device is None:
        return
    kind = torch.device(device).type
    if kind == _guarded and not (kind == "cpu" and _HOST.get()):
        raise OutsideGPUCall(f"model work on {device} outside the GPU call: route it through gpu_call.call")


def _forward_pre_hook(module: torch.nn.Module, args) -> None:
    if _INSIDE.get():
        return
    param = next(module.parameters(recurse=False), None)
    if param is None:
        return
    check(param.device)


@contextmanager
def guard(device_type: str = "cuda"):
    """While the block runs, every module forward and ``check`` on ``device_type`` must be inside the door."""
    global _guarded
    old, _guarded = _guarded, device_type
    handle = torch.nn.modules.module.register_module_forward_pre_hook(_forward_pre_hook)
    try:
        yield
    finally:
        handle.remove()
        _guarded = old


def start_guard(device_type: str = "cuda") -> None:
    """``guard`` for the life of the process (a ZeroGPU Space, where CUDA outside the door always fails)."""
    global _guarded, _hook
    if _hook is None:
        _hook = torch.nn.modules.module.register_module_forward_pre_hook(_forward_pre_hook)
    _guarded = device_type
