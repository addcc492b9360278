"""FlexAttention: the mask rule and ALiBi compiled into one fused, block-sparse kernel.

PyTorch's FlexAttention (``torch.nn.attention.flex_attention``) takes the mask as a function
``mask_mod(b, h, q_idx, kv_idx) -> bool`` and a bias as ``score_mod(score, b, h, q_idx, kv_idx)``.
A BlockMask sorts the (query block x key block) tiles of 128 x 128 into skipped (nothing visible), full
(everything visible: no mask applied) and partial (the mask is applied inside the tile); the kernel never
touches a skipped tile. ``blocks_from_rule`` sorts them from the rule's arithmetic on each tile's corners,
without evaluating the mask at every (query, key) pair as ``create_block_mask`` does (T x T at every length).

The kernel is compiled by TorchInductor (a C++ compiler on the CPU, Triton on CUDA) once per
process, with dynamic shapes. The mask and score functions are made by the same code on every
call and read the rule's numbers, the offsets, the padding and the ALiBi slopes from captured
tensors, so a new prompt length, batch, rule, window, prefix, padding or ALiBi slope reuses the
compiled kernel. A single query (one decoding step) compiles once more, and so does a new head
count, head size or dtype (one per model shape). Without ALiBi the slopes are zeros: one kernel
serves both.

What can fail, and what it means: a missing toolchain (no C++ compiler, no Triton) means
FlexAttention cannot run on that device type at all. A failed compile (TorchInductor, Triton, or
the kernel's own limits such as CUDA's head dim of at least 16 or a shared-memory limit at one
head size) means it cannot run for that (device type, dtype, head dim), and only that: other
models keep it. Any other failure of one call says so for that call only. Running out of device
memory raises ``kernels.OutOfDeviceMemory``, as SDPA does.

Glossary: B batch, nh heads, Tq queries, Tk keys, hs head dim.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx.experimental._config as shape_config
from torch import Tensor
from torch._dynamo import config as dynamo_config
from torch._inductor import config as inductor_config
from torch.nn.attention.flex_attention import AuxRequest, BlockMask
from torch.nn.attention.flex_attention import flex_attention as _flex_attention

from playground.nn.kernels import (OutOfDeviceMemory, causes, dtype_name, out_of_memory, release_cached_memory,
                                   run_dtype)
from playground.nn.block_mask import blocks_from_rule
from playground.nn.masks import MaskRule, allowed

# Each model shape (head count, head size, dtype) compiles a prompt and a decoding-step kernel;
# past torch's default of 8 compiled versions it would silently run FlexAttention unfused.
RECOMPILE_LIMIT = 64

CUDA_MIN_HEAD_DIM = 16               # Triton's tl.dot: TorchInductor refuses FlexAttention on CUDA below it
# where a compile failure's exception classes live (NotImplementedError: a kernel's documented limit)
COMPILER_MODULES = ("torch._dynamo", "torch._inductor", "triton")


@dataclass
class KernelState:
    """What this process knows of the compiled kernel: the one place FlexAttention's state lives."""

    compile_lock: threading.RLock = field(default_factory=threading.RLock)  # one compile or call at a time
    status_lock: threading.Lock = field(default_factory=threading.Lock)    # flex_status answers during a compile
    compiled: object = None                       # the compiled flex_attention, made on first use
    status: dict = field(default_factory=dict)    # device type -> None (toolchain present) or why it cannot run
    failed: dict = field(default_factory=dict)    # (device type, dtype, head_dim) -> why its compile failed
    last_block_mask: tuple | None = None          # (key, key_valid, BlockMask) of the last call
    warm: set = field(default_factory=set)        # (device type, dtype, heads, head_dim) warm_up compiled for
    refused: dict = field(default_factory=dict)   # device type -> why the deployment does not run it there (refuse)


KERNEL = KernelState()


@contextlib.contextmanager
def _compile_settings():
    """The settings every compile and call of the kernel runs under.

    Without duck sizing, sizes that happen to be equal (2 sequences and 2 query blocks) do not
    share one symbol, which would recompile when they differ and breaks the CPU kernel's code for
    the captured (B, Tk) padding tensor; size-oblivious sizes keep a batch of 1 or a single block
    from compiling a kernel of their own. The bounds checks inductor adds to captured-tensor
    reads name a variable the CPU template does not declare under dynamic shapes (torch 2.13);
    every read here is in bounds by construction (a rule number, a head, a key of the batch).
    """
    with (shape_config.patch(use_duck_shape=False, backed_size_oblivious=True),
          inductor_config.patch(assert_indirect_indexing=False),
          dynamo_config.patch(recompile_limit=RECOMPILE_LIMIT)):
        yield


# Whether the compiled kernel hands back its log-sum-exp on a device type: torch 2.13's CPU template does not
# ("return_lse is not supported yet"); there ``nn.rebuild.streamed_lse`` computes it.
LSE_ON = {"cuda": True, "cpu": False}


class FlexUnavailable(ValueError):
    """FlexAttention cannot be compiled or run here; the message says why."""


def _device_type(device: str | torch.device | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def _toolchain_reason(device_type: str) -> str | None:
    """Why TorchInductor cannot build a kernel for this device type, or None."""
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed: TorchInductor needs it to compile FlexAttention on CUDA"
    if device_type != "cpu":
        return f"FlexAttention is compiled here for the CPU and CUDA only, not {device_type}"
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        get_cpp_compiler()
    except InvalidCxxCompiler:
        return (f"no C++ compiler found (tried {', '.join(str(c) for c in inductor_config.cpp.cxx)}): "
                "TorchInductor needs one (g++ or clang++) to compile FlexAttention on the CPU")
    return None


def is_compile_failure(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) comes from compiling the kernel: an exception of TorchDynamo,
    TorchInductor or Triton (a C++ or Triton compile error, an out-of-resource limit of one kernel), or a
    NotImplementedError (a limit the lowering states, such as CUDA's head dim below 16)."""
    return any(isinstance(e, NotImplementedError) or type(e).__module__.startswith(COMPILER_MODULES)
               for e in causes(error))


def _failure_reason(error: Exception, compiled: bool = True, key: tuple | None = None) -> str:
    """A one-line reason from a compile or run failure."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if not compiled:
        return f"FlexAttention failed to run: {type(error).__name__}: {first[:300]}"
    where = "" if key is None else f" for {dtype_name(key[1])} at head dim {key[2]} on {key[0]}"
    return f"FlexAttention failed to compile{where}: {type(error).__name__}: {first[:300]}"


def refuse(device_type: str, reason: str) -> None:
    """Do not run FlexAttention on ``device_type`` in this process, for ``reason`` (what ``flex_status`` then
    says): a deployment's rule, such as ZeroGPU's against compiling inside a GPU call (``serving.zerogpu``)."""
    with KERNEL.status_lock:
        KERNEL.refused[device_type] = reason


def flex_status(device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                head_dim: int | None = None) -> str | None:
    """None when FlexAttention can run here, else the reason; ``device`` defaults to CUDA when present.

    For a device type: whether its toolchain (C++ compiler, Triton) is present, checked once per
    process. With ``dtype`` and ``head_dim`` too: whether that kernel can be compiled here, by the
    kernel's documented limits and by an earlier compile of it that failed (``flex_attention``
    records that, for that key only).
    """
    kind = _device_type(device)
    with KERNEL.status_lock:
        if kind in KERNEL.refused:
            return KERNEL.refused[kind]
        if kind not in KERNEL.status:
            KERNEL.status[kind] = _toolchain_reason(kind)
        if KERNEL.status[kind] is not None:
            return KERNEL.status[kind]
        if head_dim is not None and kind == "cuda" and head_dim < CUDA_MIN_HEAD_DIM:
            return (f"FlexAttention on CUDA needs a head dim of at least {CUDA_MIN_HEAD_DIM} (Triton's tl.dot); "
                    f"this model's is {head_dim}")
        if dtype is not None and head_dim is not None:
            return KERNEL.failed.get((kind, dtype, head_dim))
        return None


def is_warm(device: str | torch.device | None = None) -> bool:
    """Whether ``warm_up`` has compiled a kernel for this device type."""
    return any(key[0] == _device_type(device) for key in KERNEL.warm)


def _compiled_flex():
    if KERNEL.compiled is None:
        KERNEL.compiled = torch.compile(_flex_attention, dynamic=True)
    return KERNEL.compiled


def warm_up(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None, heads: int = 4, head_dim: int = 32
) -> str | None:
    """Compile the kernel now, for a prompt and for a single decoding query; idempotent, thread-safe.

    The kernel is specialised to a head count and head size (the zoo's 4 heads of 32 by default);
    any length, rule, padding or ALiBi then reuses it. ``dtype`` defaults to float32 on the CPU and
    bfloat16 on CUDA (float16 where the device has no native bf16). A failed compile becomes
    ``flex_status``'s reason for that dtype and head dim instead of raising. Returns that status
    (None: FlexAttention can run for this dtype and head dim).
    """
    kind = _device_type(device)
    if dtype is None:
        dtype = run_dtype("auto", kind)
    key = (kind, dtype, heads, head_dim)
    with KERNEL.compile_lock:
        if key in KERNEL.warm or flex_status(kind, dtype, head_dim) is not None:
            return flex_status(kind, dtype, head_dim)
        try:
            for tq, tk in ((130, 130), (1, 130)):
                q = torch.zeros(2, heads, tq, head_dim, device=kind, dtype=dtype)
                k, v = (torch.zeros(2, heads, tk, head_dim, device=kind, dtype=dtype) for _ in range(2))
                flex_attention(q, k, v, MaskRule("causal"), q_start=tk - tq, k_start=0,
                               return_lse=LSE_ON[kind])
            KERNEL.warm.add(key)
        except (FlexUnavailable, OutOfDeviceMemory):  # only a failed compile is a status (below)
            pass
        return flex_status(kind, dtype, head_dim)


def _mask_mod(numbers: Tensor, key_valid: Tensor):
    """mask_mod reading the rule from ``numbers`` = (sees_all, prefix_len, window, q_start, k_start)."""

    def mask_mod(b, h, q_idx, kv_idx):
        q_pos, k_pos = q_idx + numbers[3], kv_idx + numbers[4]
        return allowed(q_pos, k_pos, numbers[0] > 0, numbers[1], numbers[2]) & key_valid[b, kv_idx]

    return mask_mod


def _alibi_mod(slopes: Tensor, numbers: Tensor):
    """score_mod adding -slope[h] * |q_pos - k_pos|, as ``nn.position.alibi_bias``."""

    def score_mod(score, b, h, q_idx, kv_idx):
        distance = (q_idx + numbers[3] - kv_idx - numbers[4]).abs()
        return score - slopes[h] * distance

    return score_mod


def block_mask_for(
    rule: MaskRule, B: int, Tq: int, Tk: int, *, q_start: int, k_start: int,
    key_valid: Tensor | None = None, device: str | torch.device = "cpu",
) -> BlockMask:
    """The BlockMask FlexAttention uses for this rule, offsets and padding (no attention computed).

    It is sorted from the rule tile by tile (``blocks_from_rule``, no (Tq, Tk) tensor), and the last one is
    kept: the layers of one forward pass share it.
    """
    device = torch.device(device)
    if key_valid is not None:
        if tuple(key_valid.shape) != (B, Tk):
            raise ValueError(f"key_valid must be (B, Tk) = ({B}, {Tk}), got {tuple(key_valid.shape)}")
        key_valid = key_valid.to(device=device, dtype=torch.bool)
    key = (rule, B, Tq, Tk, q_start, k_start, device)
    with KERNEL.compile_lock:
        if KERNEL.last_block_mask is not None:
            last_key, last_valid, block_mask = KERNEL.last_block_mask
            same_valid = (last_valid is None) == (key_valid is None) and (
                key_valid is None or torch.equal(last_valid, key_valid))
            if last_key == key and same_valid:
                return block_mask
        numbers = _numbers(rule, q_start, k_start, device)
        valid = torch.ones(B, Tk, dtype=torch.bool, device=device) if key_valid is None else key_valid.clone()
        block_mask = blocks_from_rule(rule, B, Tq, Tk, q_start=q_start, k_start=k_start, key_valid=valid,
                                      mask_mod=_mask_mod(numbers, valid))
        KERNEL.last_block_mask = (key, None if key_valid is None else valid, block_mask)
        return block_mask


def _numbers(rule: MaskRule, q_start: int, k_start: int, device: torch.device) -> Tensor:
    return torch.tensor([*rule.numbers(), q_start, k_start], device=device)  # (5,)


def flex_attention(
    q: Tensor, k: Tensor, v: Tensor, rule: MaskRule, *, q_start: int, k_start: int,
    key_valid: Tensor | None = None, alibi_slopes: Tensor | None = None, return_lse: bool = False,
) -> tuple[Tensor, BlockMask] | tuple[Tensor, BlockMask, Tensor]:
    """Attention through the compiled FlexAttention kernel, masked by ``rule``.

    Args:
        q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs), already repeated to nh heads.
        rule: the mask rule; query i sits at absolute position q_start + i, key j at k_start + j.
        key_valid: optional (B, Tk) bool, False at padding.
        alibi_slopes: optional (nh,): the score gets -slope[h] * |q_pos - k_pos| (``nn.position.alibi_bias``).
        return_lse: also return the kernel's log-sum-exp of each query row (B, nh, Tq) float32 (CUDA only:
            the CPU kernel does not compute it, ``LSE_ON``).
    Returns:
        out (B, nh, Tq, hs) and the BlockMask the kernel used (and lse).
    Raises:
        FlexUnavailable (a ValueError) with the reason when the kernel cannot compile or run here.
        OutOfDeviceMemory when the device runs out of memory.
    """
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    if k.shape != (B, nh, Tk, hs) or v.shape != k.shape:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected (B, nh, T, hs) with one B, nh, hs")
    q, k, v = (t.contiguous() for t in (q, k, v))  # one memory layout: a transposed view would compile anew
    reason = flex_status(q.device, q.dtype, hs)
    if reason is not None:
        raise FlexUnavailable(reason)
    try:
        block_mask = block_mask_for(rule, B, Tq, Tk, q_start=q_start, k_start=k_start, key_valid=key_valid,
                                    device=q.device)
    except torch.OutOfMemoryError as error:
        release_cached_memory(q.device)
        raise OutOfDeviceMemory(q.device, tokens=Tk) from error
    if alibi_slopes is None:
        alibi_slopes = torch.zeros(nh, device=q.device)
    elif alibi_slopes.shape != (nh,):
        raise ValueError(f"alibi_slopes must be ({nh},), one slope per head, got {tuple(alibi_slopes.shape)}")
    score_mod = _alibi_mod(alibi_slopes.to(device=q.device, dtype=torch.float32), _numbers(rule, q_start, k_start, q.device))
    with KERNEL.compile_lock, _compile_settings():
        try:
            aux = AuxRequest(lse=True) if return_lse else None  # return_lse= is deprecated in torch 2.13
            result = _compiled_flex()(q, k, v, score_mod=score_mod, block_mask=block_mask, return_aux=aux)
        except Exception as error:
            if out_of_memory(error) is not None:
                release_cached_memory(q.device)
                raise OutOfDeviceMemory(q.device, tokens=Tk) from error
            key = (q.device.type, q.dtype, hs)
            compiled = is_compile_failure(error)
            reason = _failure_reason(error, compiled, key)
            if compiled:  # remembered for this dtype and head dim only, so their callers fall back at once
                with KERNEL.status_lock:
                    KERNEL.failed[key] = reason
            raise FlexUnavailable(reason) from error
    if return_lse:
        out, extra = result
        return out, block_mask, extra.lse.float()
    return result, block_mask


def block_grid(block_mask: BlockMask, batch: int = 0) -> np.ndarray:
    """The tiles of a BlockMask: (n_q_blocks, n_k_blocks) int8, 0 skipped, 1 partial (mask applied), 2 full.

    ``batch`` picks the sequence (padding differs between them); the mask is the same for every head.
    """
    q_len, k_len = block_mask.seq_lengths
    q_block, k_block = block_mask.BLOCK_SIZE
    n_q, n_k = -(-q_len // q_block), -(-k_len // k_block)
    grid = np.zeros((n_q, n_k), dtype=np.int8)
    tables = [(block_mask.kv_num_blocks, block_mask.kv_indices, 1),
              (block_mask.full_kv_num_blocks, block_mask.full_kv_indices, 2)]
    for counts, indices, value in tables:
        if counts is None:
            continue
        counts, indices = counts[batch, 0].cpu().numpy(), indices[batch, 0].cpu().numpy()  # (n_q,), (n_q, n_k)
        for row in range(n_q):
            grid[row, indices[row, :counts[row]]] = value
    return grid


def skipped_share(grid: np.ndarray) -> float:
    """The share of tiles the kernel skips."""
    return float((grid == 0).mean()) if grid.size else 0.0
