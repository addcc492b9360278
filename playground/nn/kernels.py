"""How attention is computed: PyTorch SDPA with a chosen kernel, or the explicit formula.

The explicit path, ``softmax(Q K^T / sqrt(hs) + bias) V``, materialises the weights and returns
them. The SDPA kernels (flash, memory-efficient, cuDNN, math) never return weights. Which kernel
ran is not guessed: each kernel is forced with ``torch.nn.attention.sdpa_kernel``, and a forced
kernel that cannot run on this device, dtype or mask raises. ``auto`` asks PyTorch which kernel
its dispatcher picks for these very inputs (``torch._fused_sdp_choice``: on Hopper and Blackwell
with a recent cuDNN that is cuDNN attention, elsewhere flash where it can run) and forces that
one, so the kernel named is PyTorch's own choice; should it refuse, the others are tried in
``AUTO_ORDER`` and the refusal is kept (``SdpaRun.refused``).

``sdpa_kernel`` sets process-global flags and ``warnings.catch_warnings`` (which collects
PyTorch's reasons) swaps process-global state, so the forced section runs under one module lock:
two requests forcing different kernels at once each run, and are labelled with, their own.

Running out of device memory is not a refusal: it raises ``OutOfDeviceMemory`` (an ``InputError``
the page renders in the reader's language) at once, after returning PyTorch's cached blocks to
the device; trying another kernel would only need more memory.

PyTorch's rules decide which kernel can run (``torch/backends/cuda``, ``sdp_utils``): on CUDA
flash needs fp16/bf16 and no ``attn_mask`` (``is_causal=True`` is allowed); memory-efficient and
math take a mask. So how a layer calls SDPA (``CALLS``) decides as much as the backend does.

Glossary: B batch, nh heads, Tq queries, Tk keys, hs head dim.
"""
from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from playground.errors import InputError

SDPA_KERNELS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
AUTO_ORDER = ("flash", "efficient", "math")  # after PyTorch's own pick, should it refuse
BACKEND_NAMES = {int(backend): name for name, backend in SDPA_KERNELS.items()}  # SDPBackend value -> kernel
CPU_KERNELS = ("flash", "math")  # what torch's CPU SDPA dispatcher implements (sdp_utils_cpp)
KERNEL_LABELS = {
    "flash": "SDPA flash attention",
    "efficient": "SDPA memory-efficient attention",
    "cudnn": "SDPA cuDNN attention",
    "math": "SDPA math (reference C++)",
    "flex": "FlexAttention (compiled, block-sparse)",
    "explicit": "explicit softmax(QKᵀ/√d)V",
    "implicit": "recurrence (no attention kernel: implicit attention unrolled from the model's own state update)",
}


# How a layer called its kernel: what the page's badge names per layer.
CALLS = ("is_causal", "no mask", "mask", "block mask", "weights")


class KernelUnavailable(ValueError):
    """A forced SDPA kernel cannot run for this device, dtype or input."""


def memory_name(device: str | torch.device) -> str:
    """How a message names a device's memory: 'GPU' for an accelerator, else the device type ('CPU')."""
    kind = torch.device(device).type
    return "GPU" if kind in ("cuda", "mps", "xpu") else kind.upper()


class OutOfDeviceMemory(InputError):
    """The device ran out of memory (PyTorch's ``torch.OutOfMemoryError``) at ``tokens`` tokens, if known.

    An ``InputError``: its ``str`` is English and the page renders it in the reader's language, as
    "Out of GPU memory at 8,192 tokens; try fewer tokens or bf16". ``device`` is the device type.
    """

    def __init__(self, device: str | torch.device, tokens: int | None = None):
        self.device, self.tokens = torch.device(device).type, tokens
        if tokens is None:
            super().__init__("error.out_of_memory", where=memory_name(device))
        else:
            super().__init__("error.out_of_memory_at", where=memory_name(device), tokens=int(tokens))


def release_cached_memory(device: str | torch.device) -> None:
    """Give the blocks PyTorch's CUDA allocator holds back to the device (after an out-of-memory)."""
    if torch.device(device).type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def causes(error: BaseException | None) -> list[BaseException]:
    """``error`` and what caused it, outermost first: ``__cause__``, ``__context__`` and the
    ``inner_exception`` a compiler's wrapper (``torch._dynamo.exc.BackendCompilerFailed``) keeps."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = getattr(error, "inner_exception", None) or error.__cause__ or error.__context__
    return chain


def out_of_memory(error: BaseException | None) -> torch.OutOfMemoryError | None:
    """The ``torch.OutOfMemoryError`` that is ``error`` or caused it (a compiler may wrap one), else None."""
    return next((e for e in causes(error) if isinstance(e, torch.OutOfMemoryError)), None)


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, bias: Tensor | None = None, *,
    return_lse: bool = False,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """softmax(Q K^T / sqrt(hs) + bias) V, with the weights.

    Args:
        q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs).
        mask: bool, broadcastable to (B, nh, Tq, Tk); True where a query may attend.
        bias: float, broadcastable to (B, nh, Tq, Tk) (ALiBi).
        return_lse: also return each row's log-sum-exp of the scores (B, nh, Tq) float32.
    Returns:
        out (B, nh, Tq, hs) and weights (B, nh, Tq, Tk), exactly 0 where the mask forbids (and lse).
    """
    # float32 before the product: scores rounded to bf16 would give an lse the rebuild (in float32) disagrees with
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, nh, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(q.dtype)
    if return_lse:
        return weights @ v, weights, scores.logsumexp(-1)
    return weights @ v, weights


def cpu_flash_with_lse(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                       is_causal: bool = False, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """The CPU flash kernel SDPA dispatches to, called so that it also hands back its log-sum-exp.

    Returns out (B, nh, Tq, hs) and lse (B, nh, Tq) float32. A bool mask becomes the additive float
    mask this op takes (it refuses a bool one).
    """
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, is_causal, attn_mask=attn_mask,
                                                                           scale=scale)
    return out, lse.float()


def sdpa_mask(mask: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """The ``attn_mask`` argument of SDPA: the bool mask, or bias with -inf where forbidden."""
    if bias is None:
        return mask
    bias = bias.to(dtype)
    out = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    return out[None] if out.dim() == 3 else out  # SDPA kernels take 2-D or 4-D masks: (1, nh, Tq, Tk)


TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # by name


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def cuda_bf16_native() -> bool:
    """Whether the CUDA device computes in bfloat16 itself (sm80 and later). Before Ampere (a T4, sm75)
    PyTorch runs bf16 through emulation, where neither flash nor memory-efficient attention takes it."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def run_dtype(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype a model runs in: a name from ``config.DTYPES``; ``auto`` is bfloat16 on a CUDA device
    that computes in it natively (float16 on one that does not, e.g. a T4), float32 on the CPU."""
    if name == "auto":
        if torch.device(device).type != "cuda":
            return torch.float32
        return torch.bfloat16 if cuda_bf16_native() else torch.float16
    if name not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: auto, {', '.join(TORCH_DTYPES)}")
    return TORCH_DTYPES[name]


_forced = threading.Lock()  # sdpa_kernel's flags and catch_warnings are process-global


@dataclass
class SdpaRun:
    """One SDPA call: the output (B, nh, Tq, hs), the kernel that ran, and the kernels tried before it
    that refused ("name: PyTorch's reason"; only ``auto`` tries more than one)."""

    out: Tensor
    kernel: str
    refused: tuple[str, ...] = ()
    lse: Tensor | None = None  # (B, nh, Tq) the kernel's log-sum-exp, where it hands one back (return_lse)


def pytorch_choice(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                   is_causal: bool = False) -> str | None:
    """The kernel PyTorch's own dispatcher picks for these inputs with every kernel enabled
    (``torch._fused_sdp_choice``), or None when it names none of ours. Call it under ``_forced``."""
    try:
        choice = torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal)
    except RuntimeError:  # no kernel at all for these inputs: the forced attempts say why
        return None
    return BACKEND_NAMES.get(int(choice))


def sdpa_call(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, kernel: str = "auto", is_causal: bool = False,
    return_lse: bool = False, scale: float | None = None,
) -> SdpaRun:
    """Scaled dot-product attention on a forced kernel (``auto``: PyTorch's own pick, see the module docstring).

    ``scale`` multiplies q . k (None: 1 / sqrt(hs)).

    Raises:
        KernelUnavailable, with PyTorch's reason, when the forced kernel (or, for ``auto``, every kernel)
        cannot run. OutOfDeviceMemory when the device runs out of memory (no other kernel is tried).
    """
    if kernel != "auto" and kernel not in SDPA_KERNELS:
        raise ValueError(f"unknown SDPA kernel {kernel!r}; valid: auto, {', '.join(SDPA_KERNELS)}")
    reasons = []
    with _forced:
        if kernel == "auto":
            first = pytorch_choice(q, k, v, attn_mask, is_causal)
            names = tuple(dict.fromkeys((first, *AUTO_ORDER) if first else AUTO_ORDER))
        else:
            names = (kernel,)
        for name in names:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    with sdpa_kernel(SDPA_KERNELS[name]):
                        if return_lse and name == "flash" and q.device.type == "cpu":
                            out, lse = cpu_flash_with_lse(q, k, v, attn_mask, is_causal, scale)
                            return SdpaRun(out, name, tuple(reasons), lse)
                        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                                             scale=scale)
                    return SdpaRun(out, name, tuple(reasons))
                except torch.OutOfMemoryError as e:
                    release_cached_memory(q.device)
                    raise OutOfDeviceMemory(q.device, tokens=k.shape[-2]) from e
                except RuntimeError as e:
                    why = "; ".join(str(w.message) for w in caught) or str(e).splitlines()[0]
                    if q.device.type == "cpu" and name not in CPU_KERNELS:
                        why = f"PyTorch's CPU dispatcher has only the flash and math kernels ({why})"
                    reasons.append(f"{name}: {why}")
    raise KernelUnavailable(
        f"SDPA kernel {kernel!r} cannot run on {q.device.type} with {dtype_name(q.dtype)} "
        f"inputs: {' | '.join(reasons)}. Choose another backend (math and explicit always run)."
    )


def sdpa(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, kernel: str = "auto", is_causal: bool = False,
    *, return_lse: bool = False,
) -> tuple[Tensor, str] | tuple[Tensor, str, Tensor | None]:
    """Scaled dot-product attention on a forced kernel. Returns (out (B, nh, Tq, hs), kernel that ran).

    With ``return_lse`` a third item is the kernel's own log-sum-exp per query row (B, nh, Tq) where
    the kernel that ran hands it back (the CPU flash kernel, through ``cpu_flash_with_lse``), else None.
    Raises KernelUnavailable, with PyTorch's reason, when the forced kernel (or, for ``auto``,
    every kernel) cannot run; OutOfDeviceMemory when the device runs out of memory.
    """
    run = sdpa_call(q, k, v, attn_mask, kernel=kernel, is_causal=is_causal, return_lse=return_lse)
    return (run.out, run.kernel, run.lse) if return_lse else (run.out, run.kernel)


def probe(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, head_dim: int = 64) -> dict[str, str | None]:
    """Which SDPA kernels can run here: {kernel: None if it runs, else PyTorch's reason}."""
    q = torch.randn(1, 2, 16, head_dim, device=device, dtype=dtype)
    result: dict[str, str | None] = {}
    for name in SDPA_KERNELS:
        try:
            sdpa(q, q, q, kernel=name, is_causal=True)
            result[name] = None
        except KernelUnavailable as e:
            result[name] = str(e)
    return result


def auto_kernel(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """The kernel PyTorch runs for a plain causal call on this device and dtype."""
    q = torch.randn(1, 2, 16, 64, device=device, dtype=dtype)
    return sdpa(q, q, q, kernel="auto", is_causal=True)[1]
