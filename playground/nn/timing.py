"""Measuring a computation honestly: the device, CPU peak memory, repeated timings and their spread.

The benchmarks (``playground.bench``) and the page's own timings (the kernel lab, the block-mask
view) share these. A headline number is the median of at least ``MIN_REPEATS`` repeats, reported
beside its spread (``spread``), so a reader sees how much one run on a shared machine can move it.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from typing import Self

import torch

MIB = 2**20
MIN_REPEATS = 5  # a median of fewer says little on a shared machine


# ---------------------------------------------------------------------------------- environment
def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def make_result(benchmark: str, device: str, summary: dict, rows: list[dict]) -> dict:
    return {"benchmark": benchmark, "device": device_name(device), "torch": torch.__version__,
            "summary": summary, "rows": rows}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------- repeats
def spread(samples) -> dict:
    """How repeated measurements of one quantity spread: {"n", "min", "q1", "median", "q3", "max"}
    (q1, q3: the quartiles, inclusive method, so they stay within min..max)."""
    values = sorted(float(x) for x in samples)
    if not values:
        raise ValueError("spread of no samples")
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"n": len(values), "min": values[0], "q1": q1, "median": statistics.median(values), "q3": q3,
            "max": values[-1]}


# ---------------------------------------------------------------------------------- CPU memory
def target_row(measure: str, value, unit: str, targets: dict, samples: list[float] | None = None) -> dict:
    """A benchmark's row for one figure against its target (``targets``: measure -> ("<=" | ">=", number)):
    the value, the target as text, whether it is met (None without a value or a target), and the spread."""
    comparison, target = targets.get(measure, (None, None))
    met = None if value is None or target is None else (value <= target if comparison == "<=" else value >= target)
    row = {"measure": measure, "value": value, "unit": unit,
           "target": None if target is None else f"{comparison} {target:,}", "pass": met}
    if samples:
        s = spread(samples)
        row.update(n=s["n"], min=s["min"], max=s["max"])
    return row


def _proc_status_kib(field: str, pid: int | None = None) -> int | None:
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def peak_rss_bytes(pid: int | None = None) -> int:
    """The peak resident memory of a process so far, in bytes: this one (``pid`` None), or another
    of this user's, such as an app server started by a benchmark.

    Linux reads the kernel's high-water mark (VmHWM in /proc/<pid>/status; ``reset_peak_rss``
    starts it again); elsewhere only this process can be asked, through ru_maxrss.
    """
    kib = _proc_status_kib("VmHWM", pid)
    if kib is not None:
        return kib * 1024
    if pid is None or pid == os.getpid():
        return _ru_maxrss_bytes()
    raise ValueError(f"cannot read the peak memory of process {pid}: no /proc/{pid}/status "
                     "(not Linux, or no such process)")


def rss_bytes(pid: int | None = None) -> int:
    """The resident memory of a process now (this one, or another of this user's), in bytes (Linux)."""
    kib = _proc_status_kib("VmRSS", pid)
    if kib is None:
        raise ValueError(f"cannot read the memory of process {pid or 'self'}: no /proc status (not Linux?)")
    return kib * 1024


def reset_peak_rss(pid: int | None = None) -> bool:
    """Start a process's high-water mark again from its current resident memory (Linux: write 5 to
    /proc/<pid>/clear_refs). False where it cannot be reset; the peak then covers the process's life."""
    try:
        with open(f"/proc/{pid or 'self'}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_kib("VmHWM", pid) is not None


class PeakRSS:
    """Peak resident set of this process over a ``with`` block: rise above the start, and the peak.

    On Linux the kernel's high-water mark (VmHWM) is reset to the current RSS on entry by
    writing 5 to /proc/self/clear_refs; elsewhere ru_maxrss is used, which cannot be reset and
    so only sees a peak above any earlier one in the process (use a fresh process).
    """

    def __enter__(self) -> Self:
        self.resettable = reset_peak_rss()
        rss = _proc_status_kib("VmRSS")
        self.start = rss * 1024 if self.resettable and rss is not None else _ru_maxrss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = peak_rss_bytes()
        self.rise = max(0, self.peak - self.start)


def random_qkv(L: int, n_queries: int, heads: int, head_dim: int, dtype: torch.dtype, device: str):
    """The same q (1, H, Tq, hs) and k, v (1, H, L, hs) in every process: drawn on the CPU from a fixed seed;
    the queries are the last Tq positions."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, heads, L, head_dim, generator=g).to(device=device, dtype=dtype) for _ in range(3))
    return q[:, :, L - n_queries:], k, v


def timed(fn, device: str, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` on ``device``, each between two syncs."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times
