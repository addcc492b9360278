"""A stand-in for Hugging Face's ``spaces`` package on a ZeroGPU Space, where this machine's CPU plays the GPU.

It keeps ZeroGPU's rules (the Hub's ZeroGPU documentation; ``spaces`` 0.51's ``zero`` wrappers):

- the accelerator may be used only inside a function decorated with ``GPU``: here every torch module's
  forward outside such a call fails ("CUDA ... outside a GPU call"), unless the project marks it as host work
  that stays on the CPU on purpose (``playground.serving.gpu_call.host_work``);
- each call's arguments and result are pickled, as they cross into and out of a worker process;
- an exception other than ``gradio.Error`` reaches the caller as its class name alone;
- ``duration`` may be a number or a function of the call's arguments; each call's is logged;
- a visitor's quota: with ``$STANDIN_SPACES_QUOTA_S`` set, the seconds left, less each call's duration; a call
  asking for more than is left is refused before it runs with the ``gradio.Error`` ``spaces`` raises (titled
  "ZeroGPU quota exceeded", its message naming the seconds asked and left).

Every call and every violation is appended as a JSON line to ``$STANDIN_SPACES_LOG`` when it is set.
"""
import contextvars
import json
import os
import pickle
import traceback

import gradio as gr
import torch

_INSIDE = contextvars.ContextVar("standin_spaces_inside", default=False)
LOG = os.environ.get("STANDIN_SPACES_LOG")
QUOTA = {"left": float(os.environ.get("STANDIN_SPACES_QUOTA_S", "inf"))}


def _log(**event) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


def _on_host() -> bool:
    from playground.serving import gpu_call

    return gpu_call.on_host()


def _outside_gpu(module, args) -> None:
    if _INSIDE.get() or _on_host():
        return
    where = "".join(traceback.format_stack(limit=12)[:-1])
    _log(event="violation", module=type(module).__name__, stack=where)
    raise RuntimeError("CUDA has been initialized outside a GPU call (stand-in ZeroGPU)")


torch.nn.modules.module.register_module_forward_pre_hook(_outside_gpu)


def GPU(task=None, *, duration=None, size=None):
    if task is None:
        return lambda f: GPU(f, duration=duration, size=size)

    def call(*args, **kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
        if seconds > QUOTA["left"]:  # as spaces.zero.client.schedule refuses it, before any worker starts
            _log(event="refused", duration=seconds, left=QUOTA["left"])
            raise gr.Error(f"You have exceeded your free ZeroGPU quota ({round(seconds)}s requested vs. "
                           f"{round(QUOTA['left'])}s left). Try again in 0:42:00.",
                           title="ZeroGPU quota exceeded", print_exception=False)
        QUOTA["left"] -= seconds
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # into the worker
        token = _INSIDE.set(True)
        try:
            result = task(*args, **kwargs)
        except gr.Error as e:
            _log(event="call", duration=seconds, error="gr.Error", message=str(e.message))
            raise gr.Error(e.message, print_exception=e.print_exception) from None  # spaces passes it on as it is
        except Exception as e:  # ZeroGPU keeps the class name only
            _log(event="call", duration=seconds, error=type(e).__name__, message=str(e)[:300])
            raise RuntimeError(type(e).__name__) from None
        finally:
            _INSIDE.reset(token)
        _log(event="call", duration=seconds)
        return pickle.loads(pickle.dumps(result))  # back from the worker

    return call
