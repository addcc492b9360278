"""What every benchmark shares: the device, CPU peak memory, repeated timings, and one printer.

A benchmark returns a plain dict ``{"benchmark", "device", "torch", "summary", "rows"}``;
``print_result`` shows it as a table or as exactly one JSON object. A headline number is the
median of at least ``MIN_REPEATS`` repeats, reported beside its spread (``spread``), so a reader
sees how much one run on a shared machine can move it.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import sys
from typing import Self

import torch

MIB = 2**20
MIN_REPEATS = 5  # a median of fewer says little on a shared machine


# ---------------------------------------------------------------------------------- environment
def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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


# ---------------------------------------------------------------------------------- printing
def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


# benchmark -> columns (row key, header, format); a benchmark without an entry shows every key
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "kernels": [("pattern", "pattern", ""), ("L", "L", "d"), ("kernel", "kernel", ""), ("call", "call", ""),
                ("median_ms", "median ms", ".2f"),
                ("min_ms", "min", ".2f"), ("max_ms", "max", ".2f"), ("repeats", "n", "d"), ("peak_mib", "peak MiB", ".1f"), ("peak_rss_mib", "RSS MiB", ".0f"),
                ("explicit_over_kernel", "explicit/kernel", ".2f"), ("max_abs_diff", "max|diff|", ".1e"),
                ("skipped_share", "skipped", ".0%")],
    "decode": [("mode", "mode", ""), ("tokens", "tokens", "d"), ("repeats", "n", "d"), ("seconds", "median s", ".2f"),
               ("seconds_min", "min s", ".2f"), ("seconds_max", "max s", ".2f"), ("tokens_per_s", "tokens/s", ".1f"),
               ("ms_per_token", "ms/token", ".2f"), ("cache_bytes", "cache bytes", ",d")],
    "decode_positions": [("family", "family", ""), ("position", "position", "d"), ("repeats", "n", "d"),
                         ("ms_per_token", "median ms/token", ".2f"), ("ms_min", "min", ".2f"), ("ms_max", "max", ".2f"),
                         ("tokens_per_s", "tokens/s", ".1f"), ("cache_bytes", "cache/state bytes", ",d")],
    "pretrained": [("measure", "measure", ""), ("value", "value", ",.4g"), ("unit", "unit", ""),
                   ("target", "target", ""), ("pass", "pass", ""), ("n", "n", "d"), ("min", "min", ",.4g"),
                   ("max", "max", ",.4g")],
    "app": [("measure", "measure", ""), ("n", "n", "d"), ("median", "median", ".1f"), ("min", "min", ".1f"),
            ("q1", "q1", ".1f"), ("q3", "q3", ".1f"), ("max", "max", ".1f")],
}


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    cells = [[header for _, header, _ in columns]]
    named = next((i for i, (key, _, _) in enumerate(columns) if key not in ("pattern", "L", "kernel", "call")), len(columns))
    notes: dict[tuple, list] = {}  # (kernel, reason) -> the lengths it applies to
    for row in rows:
        if row.get("available", True):
            cells.append([_fmt(row.get(key), spec) for key, _, spec in columns])
        else:  # an unavailable kernel: its name and call, then say so, and why, below the table
            cells.append([_fmt(row.get(key), spec) if i < named else ("unavailable" if i == named else "")
                          for i, (key, _, spec) in enumerate(columns)])
            notes.setdefault((row.get("kernel"), row.get("call"), row.get("reason")), []).append(str(row.get("L")))
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if notes:
        lines += ["", "unavailable:"] + [f"  {kernel}{f', {call}' if call else ''} (L={', '.join(ls)}): {reason}"
                                         for (kernel, call, reason), ls in notes.items()]
    return "\n".join(lines)


def _summary_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_summary_value(v)}" for k, v in value.items())
    return "null" if value is None else str(value)


def print_result(result: dict, as_json: bool = False, file=None) -> None:
    """The one printer: exactly one JSON object, or a table then one summary line per key."""
    file = file or sys.stdout
    if as_json:
        print(json.dumps(result, ensure_ascii=False), file=file)
        return
    rows = result["rows"]
    columns = COLUMNS.get(result["benchmark"]) or [(k, k, "") for k in (rows[0] if rows else {})]
    print(f"{result['benchmark']} on {result['device']}, torch {result['torch']}", file=file)
    print(format_table(rows, columns), file=file)
    print(file=file)
    for key, value in result["summary"].items():
        print(f"{key}: {_summary_value(value)}", file=file)

