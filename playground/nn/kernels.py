"""How attention is computed: PyTorch SDPA with a chosen kernel, or the explicit formula.

The explicit path, ``softmax(Q K^T / sqrt(hs) + bias) V``, materialises the weights and returns
them. The SDPA kernels (flash, memory-efficient, cuDNN, math) never return weights. Each is called as
PyTorch's dispatcher calls it, one ATen op per kernel (``RUNNERS``), so the kernel named is the one
that ran, and the fused ones hand back their own log-sum-exp per query row (flash on the CPU and on
CUDA, memory-efficient and cuDNN on CUDA; math has none, and ``nn.rebuild`` streams it). The choice is
made per call: no process-global flag is set (``torch.nn.attention.sdpa_kernel``) and no lock is held
around a kernel, so concurrent requests each run their own. ``auto`` asks PyTorch which kernel its
dispatcher picks for these very inputs (``torch._fused_sdp_choice``: on Hopper and Blackwell with a
recent cuDNN that is cuDNN attention, elsewhere flash where it can run) and runs that one; should it
refuse, the others are tried in ``AUTO_ORDER`` and the refusal is kept (``SdpaRun.refused``).

Which kernel can run is PyTorch's rule (``torch/backends/cuda``, ``sdp_utils``), checked before the
call (``refusal``): the CPU has flash and math; on CUDA ``torch.backends.cuda.can_use_*`` decides, and
its reasons are read only for a kernel it refuses. Flash on CUDA needs fp16/bf16 and no ``attn_mask``
(``is_causal=True`` is allowed); memory-efficient and math take a mask. So how a layer calls SDPA
(``CALLS``) decides as much as the backend does.

Running out of device memory is not a refusal: it raises ``OutOfDeviceMemory`` (an ``InputError``
the page renders in the reader's language) at once, after returning PyTorch's cached blocks to
the device; trying another kernel would only need more memory.

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
from torch.nn.attention import SDPBackend

from playground.errors import InputError
from playground.nn.masks import to_additive

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


@dataclass
class SdpaRun:
    """One SDPA call: the output (B, nh, Tq, hs), the kernel that ran, and the kernels tried before it
    that refused ("name: PyTorch's reason"; only ``auto`` tries more than one)."""

    out: Tensor
    kernel: str
    refused: tuple[str, ...] = ()
    lse: Tensor | None = None  # (B, nh, Tq) float32 the kernel's log-sum-exp, where it hands one back (return_lse)


def pytorch_choice(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                   is_causal: bool = False) -> str | None:
    """The kernel PyTorch's own dispatcher picks for these inputs with every kernel enabled
    (``torch._fused_sdp_choice``), or None when it names none of ours."""
    try:
        choice = torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, is_causal)
    except RuntimeError:  # no kernel at all for these inputs: the forced attempts say why
        return None
    return BACKEND_NAMES.get(int(choice))


# ----------------------------------------------------------------------------- one SDPA kernel, called per call

def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A bool mask as the additive mask the fused kernels take (``masks.to_additive``); a float one as it is."""
    return to_additive(mask, dtype) if mask is not None and mask.dtype == torch.bool else mask


def _padded(t: Tensor, multiple: int) -> Tensor:
    """``t`` with its last dim zero-padded to a multiple of ``multiple`` (as SDPA pads before a fused kernel)."""
    extra = -t.shape[-1] % multiple
    return F.pad(t, (0, extra)) if extra else t


def _bias(mask: Tensor | None, q: Tensor, k: Tensor) -> Tensor | None:
    """The (B, nh, Tq, Tk) float bias the memory-efficient and cuDNN kernels take, its rows 16-element aligned
    (padded, then viewed back to Tk, as SDPA's ``preprocess_mask`` does)."""
    bias = _float_mask(mask, q.dtype)
    if bias is None:
        return None
    while bias.dim() < 4:
        bias = bias[None]
    bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    if k.shape[2] % 16:
        bias = _padded(bias, 16)[..., :k.shape[2]]
    return bias


def _flash(q, k, v, mask, is_causal, scale):
    """The flash kernel: on the CPU ``_scaled_dot_product_flash_attention_for_cpu`` (it takes an additive mask),
    on CUDA ``_scaled_dot_product_flash_attention`` (no mask; the head dim padded to a multiple of 8)."""
    if q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, is_causal, attn_mask=_float_mask(mask, q.dtype), scale=scale)
        return out, lse
    if mask is not None:
        raise KernelUnavailable("PyTorch's flash kernel takes no attn_mask (only is_causal)")
    hs = q.shape[-1]
    out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(
        _padded(q, 8), _padded(k, 8), _padded(v, 8), 0.0, is_causal, False, scale=scale or 1 / math.sqrt(hs))
    return out[..., :v.shape[-1]], lse


def _efficient(q, k, v, mask, is_causal, scale):
    """The memory-efficient kernel (``_scaled_dot_product_efficient_attention``), asked for its log-sum-exp,
    which it pads to a multiple of 32 rows."""
    out, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, _bias(mask, q, k), True, 0.0, is_causal, scale=scale)
    return out, lse[..., :q.shape[2]]


def _cudnn(q, k, v, mask, is_causal, scale):
    """cuDNN attention (``_scaled_dot_product_cudnn_attention``), asked for its log-sum-exp: (B, nh, Tq, 1)."""
    out, lse, *_ = torch.ops.aten._scaled_dot_product_cudnn_attention(
        q, k, v, _bias(mask, q, k), True, 0.0, is_causal, False, scale=scale)
    return out, lse.reshape(q.shape[:3])


def _math(q, k, v, mask, is_causal, scale):
    """The math kernel (``_scaled_dot_product_attention_math``, PyTorch's reference): no log-sum-exp."""
    mask = _float_mask(mask, q.dtype)  # the raw op would read a bool mask as 0 and 1 added to the scores
    out, _ = torch.ops.aten._scaled_dot_product_attention_math(q, k, v, mask, 0.0, is_causal, None, scale=scale)
    return out, None


# kernel -> the call: (q, k, v, mask, is_causal, scale) -> (out (B, nh, Tq, hs), lse (B, nh, Tq) or None)
RUNNERS = {"flash": _flash, "efficient": _efficient, "cudnn": _cudnn, "math": _math}
_CAN_USE = {"flash": "can_use_flash_attention", "efficient": "can_use_efficient_attention",
            "cudnn": "can_use_cudnn_attention"}  # PyTorch's own checks of a CUDA kernel's constraints
_reasons = threading.Lock()  # PyTorch says why as Python warnings, which are process-global


def refusal(name: str, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> str | None:
    """Why kernel ``name`` cannot run these inputs here, in PyTorch's words, or None. The CPU has flash and
    math (``CPU_KERNELS``); on CUDA each fused kernel is checked by PyTorch's own rules
    (``torch.backends.cuda.can_use_*``), and only a refusal reads its reasons."""
    kind = q.device.type
    if kind == "cpu":
        return None if name in CPU_KERNELS else "PyTorch's CPU dispatcher has only the flash and math kernels"
    if kind != "cuda" or name == "math":
        return None
    check = getattr(torch.backends.cuda, _CAN_USE[name])
    params = torch.backends.cuda.SDPAParams(q, k, v, mask, 0.0, is_causal, False)
    if check(params, False):
        return None
    with _reasons, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(params, True)
    return "; ".join(str(w.message) for w in caught) or f"PyTorch's {_CAN_USE[name]} refuses these inputs"


def sdpa_call(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, kernel: str = "auto", is_causal: bool = False,
    return_lse: bool = False, scale: float | None = None,
) -> SdpaRun:
    """Scaled dot-product attention on one kernel (``auto``: PyTorch's own pick, see the module docstring).

    ``scale`` multiplies q . k (None: 1 / sqrt(hs)). With ``return_lse`` the run carries the kernel's own
    log-sum-exp (B, nh, Tq) float32 where the kernel that ran hands one back (every kernel but math).

    Raises:
        KernelUnavailable, with PyTorch's reason, when the kernel (or, for ``auto``, every kernel) cannot run.
        OutOfDeviceMemory when the device runs out of memory (no other kernel is tried).
    """
    if kernel != "auto" and kernel not in SDPA_KERNELS:
        raise ValueError(f"unknown SDPA kernel {kernel!r}; valid: auto, {', '.join(SDPA_KERNELS)}")
    if kernel == "auto":
        first = pytorch_choice(q, k, v, attn_mask, is_causal)
        names = tuple(dict.fromkeys((first, *AUTO_ORDER) if first else AUTO_ORDER))
    else:
        names = (kernel,)
    reasons = []
    for name in names:
        why = refusal(name, q, k, v, attn_mask, is_causal)
        if why is None:
            try:
                out, lse = RUNNERS[name](q, k, v, attn_mask, is_causal, scale)
            except torch.OutOfMemoryError as e:
                release_cached_memory(q.device)
                raise OutOfDeviceMemory(q.device, tokens=k.shape[-2]) from e
            except (RuntimeError, KernelUnavailable) as e:  # PyTorch's own check inside the op
                why = str(e).splitlines()[0]
            else:
                return SdpaRun(out, name, tuple(reasons), lse.float() if return_lse and lse is not None else None)
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
    the kernel that ran hands it back (all but math), else None.
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
