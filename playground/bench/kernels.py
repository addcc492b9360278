"""Benchmark: attention kernels side by side (``python -m playground.bench kernels``).

    Causal attention on random Q, K, V of shape (B=1, H, L, d_head) for each length L, made the
    way the model makes it (``playground.nn.attention.Attention``): the bool causal mask (L, L)
    from ``playground.nn.masks.self_attention`` is built before the clock starts, and

    - ``explicit``: ``explicit_attention(q, k, v, mask)``, softmax(QKᵀ/√d, masked)V;
    - each SDPA kernel (flash, efficient, math), forced with ``sdpa_kernel``:
      ``sdpa(q, k, v, sdpa_mask(mask, None, dtype), kernel=...)``, i.e.
      ``scaled_dot_product_attention(q, k, v, attn_mask=mask)`` (call ``"mask"``).

    ``--is-causal`` adds, per SDPA kernel, a row of a *different* call the model never makes,
    ``scaled_dot_product_attention(q, k, v, is_causal=True)`` with no mask tensor (call
    ``"is_causal"``): it shows what a kernel can do when it knows the mask is causal (on CUDA,
    flash takes ``is_causal`` but no mask tensor). A kernel PyTorch refuses for a call is
    reported unavailable with PyTorch's reason; nothing is substituted for it. For each row:

    - ``median_ms``: median of N timed calls after one warm-up call, with ``min_ms`` and ``max_ms``
      (N shrinks for long L so a cell costs about ``--budget`` seconds, but never below 5;
      ``repeats`` says how many ran).
    - ``peak_mib``: memory the call needs above its inputs (and the mask). CUDA:
      ``max_memory_allocated`` after a reset, minus what was allocated before. CPU: the rise of
      the process's peak resident set (VmHWM, reset through /proc/self/clear_refs; ru_maxrss
      where that is missing) over its RSS with the inputs allocated. By default each CPU cell
      runs in a fresh spawned process, so nothing an earlier kernel left in the allocator hides
      the cost; ``peak_rss_mib`` is then that process's whole peak (torch itself included).
      ``--in-process`` is faster but may under-report memory.
    - ``explicit_over_kernel``: explicit time / this row's time: how many times faster than the
      explicit formula (> 1 faster, < 1 slower). ``max_abs_diff``: max |out - out_explicit| on
      the same inputs. Both are null on the explicit row, the reference they are taken against.

    Summary: ``flash_over_math_L2048`` is math time / flash time at L=2048 for the model's call
    (how many times flash is faster than math; null if either cannot run or 2048 was not
    measured), ``flash_over_math`` the same per L, ``kernel_auto`` the kernel an unforced SDPA
    call of the model's kind really runs on this device and dtype (``kernel_auto_is_causal`` for
    the is_causal call, when timed), ``call`` the call timed.

Timings use ``time.perf_counter`` with PyTorch's default thread count; on a shared machine
they move by tens of percent from run to run, so compare ratios from one run.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time

import torch

from playground.bench.measure import MIB, MIN_REPEATS, PeakRSS, default_device, device_name, make_result, spread, sync
from playground.nn import masks
from playground.nn.kernels import KERNEL_LABELS, SDPA_KERNELS, KernelUnavailable, explicit_attention, sdpa, sdpa_mask

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CALLS = {  # how an SDPA kernel is called -> what the row label says
    "mask": "attn_mask = the model's bool causal mask",
    "is_causal": "is_causal=True, no mask tensor: not the model's call",
}


def _inputs(L: int, heads: int, head_dim: int, dtype: torch.dtype, device: str):
    """The same q, k, v (1, H, L, hs) in every process: drawn on the CPU from a fixed seed."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, L, head_dim, generator=g).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v


def causal_mask(L: int, device: str) -> torch.Tensor:
    """The self-attention mask a decoder passes for a full pass over L tokens. (L, L) bool, True where allowed"""
    pos = masks.positions(0, L, device=device)
    return masks.self_attention("causal", pos, pos)


def attention_call(q, k, v, kernel: str, call: str, mask: torch.Tensor | None) -> tuple[torch.Tensor, str]:
    """One attention as the benchmark times it: (out (B, H, L, hs), kernel that ran).

    ``explicit`` and call ``"mask"`` are what ``playground.nn.attention.Attention`` runs for a
    causal self-attention without ALiBi; call ``"is_causal"`` is the mask-free SDPA call.
    """
    if kernel == "explicit":
        return explicit_attention(q, k, v, mask)[0], "explicit"
    if call == "is_causal":
        return sdpa(q, k, v, kernel=kernel, is_causal=True)
    return sdpa(q, k, v, sdpa_mask(mask, None, q.dtype), kernel=kernel)


def _measure_cell(spec: dict) -> dict:
    """Time one (L, kernel, call) and take its peak memory. Runs in a fresh process on CPU by default.

    Returns {available, reason, times_s, peak_bytes, peak_rss_bytes, out (float32 numpy array)}.
    """
    device, kernel, call, L = spec["device"], spec["kernel"], spec["call"], spec["L"]
    q, k, v = _inputs(L, spec["heads"], spec["head_dim"], DTYPES[spec["dtype"]], device)
    mask = causal_mask(L, device) if call == "mask" else None  # an input: built before the clock starts

    def call_once() -> torch.Tensor:
        return attention_call(q, k, v, kernel, call, mask)[0]

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    tracker = PeakRSS()
    with torch.no_grad(), tracker:
        try:
            t0 = time.perf_counter()
            out = call_once()  # warm-up; in a fresh process also its first-call peak
            sync(device)
            warm = time.perf_counter() - t0
        except KernelUnavailable as e:
            return {"available": False, "reason": str(e)}
        repeats = spec["repeats"]
        if spec["budget_s"] > 0:  # fewer repeats when one call is slow, never fewer than MIN_REPEATS
            repeats = max(MIN_REPEATS, min(repeats, int(spec["budget_s"] / max(warm, 1e-9))))
        times = []
        for _ in range(repeats):
            del out
            sync(device)
            t0 = time.perf_counter()
            out = call_once()
            sync(device)
            times.append(time.perf_counter() - t0)
    if cuda:
        peak, peak_rss = torch.cuda.max_memory_allocated() - base, None
    else:
        peak, peak_rss = tracker.rise, tracker.peak
    return {"available": True, "reason": None, "times_s": times, "peak_bytes": peak,
            "peak_rss_bytes": peak_rss, "out": out.float().cpu().numpy()}


def _run_cell(spec: dict, isolate: bool) -> dict:
    if not isolate:
        return _measure_cell(spec)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure_cell, (spec,))


def _small_call(device: str, dtype: torch.dtype, head_dim: int, kernel: str, call: str) -> str:
    q = torch.randn(1, 2, 16, head_dim, device=device, dtype=dtype)
    return attention_call(q, q, q, kernel, call, causal_mask(16, device))[1]


def refusal(device: str, dtype: torch.dtype, head_dim: int, kernel: str, call: str) -> str | None:
    """PyTorch's reason it will not run this kernel for this call here, or None: a small call decides."""
    try:
        _small_call(device, dtype, head_dim, kernel, call)
    except KernelUnavailable as e:
        return str(e)
    return None


def auto_kernel(device: str, dtype: torch.dtype, head_dim: int, call: str) -> str:
    """The kernel an unforced SDPA call of this kind runs here (PyTorch's own priority order)."""
    return _small_call(device, dtype, head_dim, "auto", call)


def bench_kernels(lengths=(256, 512, 1024, 2048, 4096), heads: int = 8, head_dim: int = 64,
                  dtype: str | None = None, device: str | None = None, kernels=tuple(SDPA_KERNELS),
                  repeats: int = 10, budget_s: float = 2.0, in_process: bool = False,
                  is_causal: bool = False) -> dict:
    """Explicit attention against each SDPA kernel, the model's causal call, B=1: time, peak memory, ratio, difference.

    ``is_causal``: also time each kernel's mask-free ``is_causal=True`` call, in rows of their own.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    device = device or default_device()
    dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
    isolate = not in_process and not device.startswith("cuda")  # CUDA peaks come from the allocator's own stats
    chosen = [k for k in SDPA_KERNELS if k in kernels]
    # explicit first: it is the reference of every ratio and difference
    cells = [("explicit", "mask")] + [(k, "mask") for k in chosen] + [(k, "is_causal") for k in chosen if is_causal]
    refused = {(name, call): refusal(device, DTYPES[dtype], head_dim, name, call) for name, call in cells}
    rows, times = [], {}
    for L in lengths:
        reference = None
        for name, call in cells:
            label = KERNEL_LABELS[name] if name == "explicit" else f"{KERNEL_LABELS[name]} ({CALLS[call]})"
            row = {"L": L, "kernel": name, "call": call, "label": label, "available": True, "reason": None,
                   "repeats": 0, "median_ms": None, "peak_mib": None, "peak_rss_mib": None,
                   "explicit_over_kernel": None, "max_abs_diff": None}
            cell = ({"available": False, "reason": refused[name, call]} if refused[name, call] else
                    _run_cell({"device": device, "kernel": name, "call": call, "L": L, "heads": heads,
                               "head_dim": head_dim, "dtype": dtype, "repeats": repeats, "budget_s": budget_s},
                              isolate))
            if not cell["available"]:
                row.update(available=False, reason=cell["reason"])
                rows.append(row)
                continue
            median = statistics.median(cell["times_s"])
            times[L, name, call] = median
            out = torch.from_numpy(cell["out"])
            ms = spread([t * 1e3 for t in cell["times_s"]])
            row.update(repeats=ms["n"], median_ms=ms["median"], min_ms=ms["min"], max_ms=ms["max"],
                       peak_mib=cell["peak_bytes"] / MIB,
                       peak_rss_mib=None if cell["peak_rss_bytes"] is None else cell["peak_rss_bytes"] / MIB)
            if name == "explicit":
                reference = out
            else:
                row.update(explicit_over_kernel=times[L, "explicit", "mask"] / median,
                           max_abs_diff=float((out - reference).abs().max()))
            rows.append(row)

    def flash_over_math(L: int) -> float | None:
        flash, math = times.get((L, "flash", "mask")), times.get((L, "math", "mask"))
        return math / flash if flash is not None and math is not None else None

    summary = {
        "flash_over_math_L2048": flash_over_math(2048),
        "flash_over_math": {str(L): flash_over_math(L) for L in lengths},
        "kernel_auto": auto_kernel(device, DTYPES[dtype], head_dim, "mask"),
        "call": "scaled_dot_product_attention(q, k, v, attn_mask=<bool causal mask (L, L)>), as the model calls it",
        "device_name": device_name(device),
        "device_type": torch.device(device).type,
        "dtype": dtype, "batch": 1, "heads": heads, "head_dim": head_dim, "causal": True,
        "memory": ("cuda max_memory_allocated" if device.startswith("cuda") else
                   "peak RSS rise, fresh process per cell" if isolate else "peak RSS rise, one process"),
    }
    if is_causal:
        summary["kernel_auto_is_causal"] = auto_kernel(device, DTYPES[dtype], head_dim, "is_causal")
    return make_result("kernels", device, summary, rows)
