"""Benchmark: attention kernels side by side (``python -m playground.bench kernels``).

    Causal attention on random Q, K, V of shape (B=1, H, L, d_head) for each length L, computed
    by the explicit path (``softmax(QKᵀ/√d + mask)V`` with a bool causal mask, built before the
    clock starts) and by each SDPA kernel forced with ``sdpa_kernel`` (flash, efficient, math,
    ``is_causal=True``). A kernel PyTorch refuses here is reported unavailable with PyTorch's
    reason; nothing is substituted for it. For each (L, kernel):

    - ``median_ms``: median of N timed calls after one warm-up call (N shrinks for long L so a
      cell costs about ``--budget`` seconds; ``repeats`` says how many ran).
    - ``peak_mib``: memory the call needs above its inputs. CUDA: ``max_memory_allocated``
      after a reset, minus what was allocated before. CPU: the rise of the process's peak
      resident set (VmHWM, reset through /proc/self/clear_refs; ru_maxrss where that is
      missing) over its RSS with the inputs allocated. By default each CPU cell runs in a
      fresh spawned process, so nothing an earlier kernel left in the allocator hides the
      cost; ``peak_rss_mib`` is then that process's whole peak (torch itself included).
      ``--in-process`` is faster but may under-report memory.
    - ``explicit_over_kernel``: explicit time / this kernel's time: how many times faster
      than the explicit formula (> 1 faster, < 1 slower; 1 for the explicit row).
    - ``max_abs_diff``: max |out_kernel - out_explicit| on the same inputs.

    Summary: ``flash_over_math_L2048`` is math time / flash time at L=2048 (how many times
    flash is faster than math; null if either cannot run or 2048 was not measured),
    ``flash_over_math`` the same per L, ``kernel_auto`` the kernel a plain SDPA call really
    runs on this device and dtype.

Timings use ``time.perf_counter`` with PyTorch's default thread count; on a shared machine
they move by tens of percent from run to run, so compare ratios from one run.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time

import torch

from playground.bench.measure import MIB, PeakRSS, default_device, device_name, make_result, sync
from playground.nn.kernels import (
    KERNEL_LABELS,
    SDPA_KERNELS,
    KernelUnavailable,
    auto_kernel,
    explicit_attention,
    probe,
    sdpa,
)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
KERNEL_ORDER = ("explicit", *SDPA_KERNELS)  # explicit first: it is the reference of every ratio


def _inputs(L: int, heads: int, head_dim: int, dtype: torch.dtype, device: str):
    """The same q, k, v (1, H, L, hs) in every process: drawn on the CPU from a fixed seed."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, L, head_dim, generator=g).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v


def _measure_cell(spec: dict) -> dict:
    """Time one (L, kernel) and take its peak memory. Runs in a fresh process on CPU by default.

    Returns {available, reason, times_s, peak_bytes, peak_rss_bytes, out (float32 numpy array)}.
    """
    device, kernel, L = spec["device"], spec["kernel"], spec["L"]
    q, k, v = _inputs(L, spec["heads"], spec["head_dim"], DTYPES[spec["dtype"]], device)
    # the explicit path's causal mask is an input, built before the clock starts: (Tq, Tk), True where allowed
    mask = torch.ones(L, L, dtype=torch.bool, device=device).tril() if kernel == "explicit" else None

    def call() -> torch.Tensor:
        if mask is not None:
            return explicit_attention(q, k, v, mask)[0]
        return sdpa(q, k, v, kernel=kernel, is_causal=True)[0]

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    tracker = PeakRSS()
    with torch.no_grad(), tracker:
        try:
            t0 = time.perf_counter()
            out = call()  # warm-up; in a fresh process also its first-call peak
            sync(device)
            warm = time.perf_counter() - t0
        except KernelUnavailable as e:
            return {"available": False, "reason": str(e)}
        repeats = spec["repeats"]
        if spec["budget_s"] > 0:  # fewer repeats when one call is slow, at least min(3, repeats)
            repeats = max(min(3, repeats), min(repeats, int(spec["budget_s"] / max(warm, 1e-9))))
        times = []
        for _ in range(repeats):
            del out
            sync(device)
            t0 = time.perf_counter()
            out = call()
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


def bench_kernels(lengths=(256, 512, 1024, 2048, 4096), heads: int = 8, head_dim: int = 64,
                  dtype: str | None = None, device: str | None = None, kernels=tuple(SDPA_KERNELS),
                  repeats: int = 10, budget_s: float = 2.0, in_process: bool = False) -> dict:
    """Explicit attention against each SDPA kernel, causal, B=1: time, peak memory, ratio, difference."""
    device = device or default_device()
    dtype = dtype or ("float16" if device.startswith("cuda") else "float32")
    isolate = not in_process and not device.startswith("cuda")  # CUDA peaks come from the allocator's own stats
    available = probe(device, DTYPES[dtype], head_dim)  # kernel -> None, or PyTorch's reason it cannot run
    names = ["explicit"] + [k for k in SDPA_KERNELS if k in kernels]
    rows, times = [], {}
    for L in lengths:
        reference = None
        for name in names:
            row = {"L": L, "kernel": name, "label": KERNEL_LABELS[name], "available": True, "reason": None,
                   "repeats": 0, "median_ms": None, "peak_mib": None, "peak_rss_mib": None,
                   "explicit_over_kernel": None, "max_abs_diff": None}
            cell = ({"available": False, "reason": available[name]} if available.get(name) else
                    _run_cell({"device": device, "kernel": name, "L": L, "heads": heads, "head_dim": head_dim,
                               "dtype": dtype, "repeats": repeats, "budget_s": budget_s}, isolate))
            if not cell["available"]:
                row.update(available=False, reason=cell["reason"])
                rows.append(row)
                continue
            median = statistics.median(cell["times_s"])
            times[L, name] = median
            out = torch.from_numpy(cell["out"])
            if name == "explicit":
                reference = out
            row.update(
                repeats=len(cell["times_s"]), median_ms=median * 1e3,
                peak_mib=cell["peak_bytes"] / MIB,
                peak_rss_mib=None if cell["peak_rss_bytes"] is None else cell["peak_rss_bytes"] / MIB,
                explicit_over_kernel=times[L, "explicit"] / median,
                max_abs_diff=float((out - reference).abs().max()),
            )
            rows.append(row)

    def flash_over_math(L: int) -> float | None:
        return times[L, "math"] / times[L, "flash"] if (L, "math") in times and (L, "flash") in times else None

    summary = {
        "flash_over_math_L2048": flash_over_math(2048),
        "flash_over_math": {str(L): flash_over_math(L) for L in lengths},
        "kernel_auto": auto_kernel(device, DTYPES[dtype]),
        "device_name": device_name(device),
        "device_type": torch.device(device).type,
        "dtype": dtype, "batch": 1, "heads": heads, "head_dim": head_dim, "causal": True,
        "memory": ("cuda max_memory_allocated" if device.startswith("cuda") else
                   "peak RSS rise, fresh process per cell" if isolate else "peak RSS rise, one process"),
    }
    return make_result("kernels", device, summary, rows)

