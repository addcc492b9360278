"""A ZeroGPU Space: what it is and what it changes in this process.

On ZeroGPU (``SPACES_ZERO_GPU`` set, read as the ``spaces`` package reads it) CUDA may be initialised only
inside a ``spaces.GPU`` call, never at start-up, and a GPU call should not spend its time compiling.
``restrict_kernels`` says so to the kernels that care: FlexAttention, which TorchInductor compiles at run
time, is refused on CUDA with that reason (``nn.flex.refuse``), and SDPA with a mask runs in its place.
``app.py`` calls it once at start-up; nothing below the serving layer reads the environment.
"""
from __future__ import annotations

import os

from playground.nn import flex

FLEX_REFUSED = ("FlexAttention compiles its kernel at run time, which ZeroGPU does not allow: SDPA with a mask "
                "runs instead")


def active() -> bool:
    """Whether this process is a ZeroGPU Space."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def restrict_kernels() -> None:
    """What ZeroGPU allows, told to the kernels: FlexAttention is not offered on CUDA."""
    flex.refuse("cuda", FLEX_REFUSED)
