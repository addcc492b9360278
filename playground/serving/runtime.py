"""What this server runs on, said once in its log at start-up (``app.py``): torch and CUDA versions, the device,
ZeroGPU or not, and what ``auto`` means there (the dtype, the SDPA kernel PyTorch picks, whether FlexAttention
takes masked calls). It reads the SDPA kernels (``nn.kernels``) and FlexAttention (``nn.flex``).
"""
from __future__ import annotations

import logging
import threading

import torch

from playground.nn import flex
from playground.nn.kernels import (KernelUnavailable, OutOfDeviceMemory, auto_kernel, cuda_bf16_native, dtype_name,
                                   run_dtype)
from playground.serving import zerogpu

log = logging.getLogger("playground")
LOGGED = threading.Event()  # set once this process has logged what it runs on
_log_lock = threading.Lock()


def default_device() -> str:
    """The device the page and the benchmarks offer first: "cuda" where a CUDA device is present, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_runtime(device: str | torch.device | None = None) -> str:
    """Torch and CUDA versions, the device, and what ``auto`` means on it (dtype, SDPA kernel, FlexAttention).

    The auto kernel is found by running one small causal call, as the page's models make it. On a
    ZeroGPU Space the CUDA device is not touched (that is allowed only inside a GPU call).
    """
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    lines = [f"torch {torch.__version__}; CUDA {torch.version.cuda or 'none (a CPU build)'}; "
             f"cuDNN {cudnn or 'none'}"]
    kind = torch.device(device or default_device()).type
    if zerogpu.active():
        lines.append("ZeroGPU: all model work runs inside one spaces.GPU call; FlexAttention on CUDA, which compiles "
                     "at run time, is not offered")
    if kind == "cuda" and zerogpu.active():
        lines.append("device: cuda on ZeroGPU: CUDA is reached only inside a GPU call, so the GPU and what auto "
                     "picks on it are not probed at start-up")
        return "\n".join(lines)
    if kind == "cuda":
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        lines.append(f"device: cuda:{index} {props.name} (sm{props.major}{props.minor}, "
                     f"{props.total_memory / 1024 ** 3:.1f} GiB); bf16 native: {cuda_bf16_native()}")
    else:
        lines.append(f"device: {kind} ({torch.get_num_threads()} threads)")
    dtype = run_dtype("auto", kind)
    try:
        kernel = f"SDPA {auto_kernel(kind, dtype)} (PyTorch's pick for a causal prefill, head dim 64)"
    except (KernelUnavailable, OutOfDeviceMemory) as e:
        kernel = f"no SDPA kernel runs: {e}"
    reason = flex.flex_status(kind)
    masked = "FlexAttention" if reason is None else f"SDPA with a dense mask (FlexAttention cannot run: {reason})"
    lines.append(f"auto: dtype {dtype_name(dtype)}; {kernel}; masks past one 128-key block: {masked}")
    return "\n".join(lines)


def log_runtime(device: str | torch.device | None = None) -> bool:
    """Log ``describe_runtime`` once per process (logger "playground", INFO). True if this call logged it."""
    if LOGGED.is_set():
        return False
    with _log_lock:  # two first calls at once log once
        if LOGGED.is_set():
            return False
        LOGGED.set()
    log.info("runtime:\n%s", describe_runtime(device))
    return True
