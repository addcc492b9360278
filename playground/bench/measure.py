"""The one printer every benchmark shares (the measuring itself is ``nn.timing``).

A benchmark returns a plain dict ``{"benchmark", "device", "torch", "summary", "rows"}``;
``print_result`` shows it as a table or as exactly one JSON object.
"""
from __future__ import annotations

import json
import math
import sys


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

