"""Benchmarks: attention kernels side by side, and decoding with and without the KV cache.

Run ``python -m playground.bench <benchmark> [--json] [options]``; ``--help`` on each lists
its options. Every benchmark is one function returning a plain dict
``{"benchmark", "device", "torch", "summary", "rows"}``; one printer shows it as a table, or
``--json`` prints that dict as exactly one JSON object.

kernels
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

decode
    A random-weight model (4 layers, d_model 256, 8 heads, RoPE, d_ff 1024, vocab 2048,
    context 1024) generates ``--tokens`` new tokens greedily from a 16-token prompt, once with
    the KV cache (prefill once, then one token per step) and once without (every step re-runs
    the whole sequence), after a short warm-up of each. ``tokens_per_s`` is new tokens over the
    wall time of the whole ``generate`` call, prefill included. ``cached_over_uncached_<N>``
    (and ``cached_over_uncached``) is cached tokens/s / uncached tokens/s: how many times the
    cache speeds up generating N tokens; it grows with N, because without a cache step t costs
    O(t) and with it O(1) in the MLPs and projections. ``same_tokens`` says both runs chose the
    same tokens (they must: the command exits with status 1 otherwise). ``cache_bytes`` is
    ``model.cache_bytes()`` after the last step, ``cache_bytes_formula`` the same by formula.

Timings use ``time.perf_counter`` with PyTorch's default thread count; on a shared machine
they move by tens of percent from run to run, so compare ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from typing import Self

import torch

from .kernels import (
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
MIB = 2**20


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


def _result(benchmark: str, device: str, summary: dict, rows: list[dict]) -> dict:
    return {"benchmark": benchmark, "device": device_name(device), "torch": torch.__version__,
            "summary": summary, "rows": rows}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------- CPU memory
def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


class PeakRSS:
    """Peak resident set of this process over a ``with`` block: rise above the start, and the peak.

    On Linux the kernel's high-water mark (VmHWM) is reset to the current RSS on entry by
    writing 5 to /proc/self/clear_refs; elsewhere ru_maxrss is used, which cannot be reset and
    so only sees a peak above any earlier one in the process (use a fresh process).
    """

    def __enter__(self) -> Self:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = _proc_status_kib("VmHWM") is not None
        except OSError:
            self.resettable = False
        rss = _proc_status_kib("VmRSS")
        self.start = rss * 1024 if self.resettable and rss is not None else _ru_maxrss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        self.peak = _proc_status_kib("VmHWM") * 1024 if self.resettable else _ru_maxrss_bytes()
        self.rise = max(0, self.peak - self.start)


# ---------------------------------------------------------------------------------- kernels
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
            _sync(device)
            warm = time.perf_counter() - t0
        except KernelUnavailable as e:
            return {"available": False, "reason": str(e)}
        repeats = spec["repeats"]
        if spec["budget_s"] > 0:  # fewer repeats when one call is slow, at least min(3, repeats)
            repeats = max(min(3, repeats), min(repeats, int(spec["budget_s"] / max(warm, 1e-9))))
        times = []
        for _ in range(repeats):
            del out
            _sync(device)
            t0 = time.perf_counter()
            out = call()
            _sync(device)
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
    return _result("kernels", device, summary, rows)


# ---------------------------------------------------------------------------------- decode
DECODE_FAMILIES = ("decoder", "prefix", "encdec", "rwkv", "mamba")
RECURRENT_FAMILIES = ("rwkv", "mamba")


def decode_config(family: str = "decoder", n_kv_heads: int = 8):
    from .config import ModelConfig

    recurrent = family in RECURRENT_FAMILIES
    return ModelConfig(family=family, vocab_size=2048, context_length=1024, n_layer=4, d_model=256, n_heads=8,
                       n_kv_heads=8 if recurrent else n_kv_heads, d_ff=1024, position="none" if recurrent else "rope")


@torch.no_grad()
def per_token_seconds(model, position: int, steps: int, device: str, seed: int = 0) -> tuple[float, int]:
    """Median seconds of one cached decoding step at ``position`` (after a prefill of that many
    tokens), and the cache/state bytes held there."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.cfg.vocab_size, (1, position + steps), generator=g).to(device)
    model.setup_cache(1, position + steps)
    try:
        model(ids[:, :position])
        held = model.cache_bytes()
        times = []
        for i in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            model(ids[:, position + i: position + i + 1], start_pos=position + i)
            _sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        model.clear_cache()
    return statistics.median(times), held


def bench_decode_positions(family: str, positions=(64, 2048), steps: int = 32, device: str | None = None,
                           seed: int = 0) -> dict:
    """Per-token decoding cost at two positions for a recurrent model, a cached Transformer beside it."""
    from .transformer import build_model

    device = device or default_device()
    rows, per = [], {}
    for fam in (family, "decoder"):
        cfg = decode_config(fam).replace(context_length=max(positions) + steps)
        torch.manual_seed(seed)
        model = build_model(cfg).to(device).eval()
        per_token_seconds(model, 8, 4, device)  # warm-up
        for pos in positions:
            seconds, held = per_token_seconds(model, pos, steps, device, seed)
            per[fam, pos] = seconds
            rows.append({"family": fam, "position": pos, "ms_per_token": seconds * 1e3, "tokens_per_s": 1 / seconds,
                         "cache_bytes": held, "n_params": model.n_params})
    lo, hi = positions[0], positions[-1]
    states = [r["cache_bytes"] for r in rows if r["family"] == family]
    summary = {
        f"per_token_{hi}_over_{lo}": per[family, hi] / per[family, lo],
        f"tokens_per_s_{lo}": 1 / per[family, lo], f"tokens_per_s_{hi}": 1 / per[family, hi],
        "state_bytes_constant": len(set(states)) == 1, "state_bytes": states[0],
        f"transformer_per_token_{hi}_over_{lo}": per["decoder", hi] / per["decoder", lo],
        "family": family, "steps_timed": steps, "device_name": device_name(device),
    }
    return _result("decode_positions", device, summary, rows)


def bench_decode(tokens: int = 512, family: str = "decoder", n_kv_heads: int = 8, prompt_len: int = 16,
                 device: str | None = None, seed: int = 0) -> dict:
    """Greedy generation with and without the KV cache: tokens/s, their ratio, same tokens, cache bytes."""
    from .cache import kv_cache_bytes
    from .generate import generate
    from .transformer import build_model

    device = device or default_device()
    cfg = decode_config(family, n_kv_heads)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,), generator=torch.Generator().manual_seed(seed)).tolist()

    runs, rows = {}, []
    for use_cache in (True, False):
        generate(model, prompt, min(4, tokens), use_cache=use_cache)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        gen = generate(model, prompt, tokens, use_cache=use_cache)
        _sync(device)
        seconds = time.perf_counter() - t0
        mode = "cached" if use_cache else "uncached"
        runs[mode] = gen
        rows.append({"mode": mode, "tokens": len(gen.tokens), "seconds": seconds,
                     "tokens_per_s": len(gen.tokens) / seconds, "ms_per_token": seconds / len(gen.tokens) * 1e3,
                     "cache_bytes": gen.steps[-1].cache_bytes})

    n = len(runs["cached"].tokens)
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    decoder_start = 1 if family == "encdec" else prompt_len  # an encoder-decoder's decoder starts from BOS
    positions = decoder_start + n - 1  # the last token is yielded, never fed back
    dtype = model.lm_head.weight.dtype
    formula = kv_cache_bytes(cfg.variant, cfg.n_layer, cfg.n_heads, cfg.head_dim, tokens=positions, dtype=dtype,
                             n_kv_heads=cfg.n_kv_heads)
    if family == "encdec":  # plus cross-attention K/V over the source, computed once
        formula += kv_cache_bytes(cfg.variant, cfg.n_layer, cfg.n_heads, cfg.head_dim, tokens=prompt_len,
                                  dtype=dtype, n_kv_heads=cfg.n_kv_heads)
    summary = {
        f"cached_over_uncached_{n}": ratio,
        "cached_over_uncached": ratio,
        "same_tokens": runs["cached"].tokens == runs["uncached"].tokens,
        "cache_bytes": rows[0]["cache_bytes"],
        "cache_bytes_formula": int(formula),
        "cache_positions": positions,
        "tokens": n, "prompt_len": prompt_len, "family": family, "variant": cfg.variant,
        "n_kv_heads": cfg.n_kv_heads, "n_params": model.n_params, "backend": cfg.backend,
        "kernel_auto": auto_kernel(device, dtype), "device_name": device_name(device),
    }
    return _result("decode", device, summary, rows)


# ---------------------------------------------------------------------------------- printing
def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


# benchmark -> columns (row key, header, format); a benchmark without an entry shows every key
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "kernels": [("L", "L", "d"), ("kernel", "kernel", ""), ("median_ms", "median ms", ".2f"),
                ("repeats", "n", "d"), ("peak_mib", "peak MiB", ".1f"), ("peak_rss_mib", "RSS MiB", ".0f"),
                ("explicit_over_kernel", "explicit/kernel", ".2f"), ("max_abs_diff", "max|diff|", ".1e")],
    "decode": [("mode", "mode", ""), ("tokens", "tokens", "d"), ("seconds", "seconds", ".2f"),
               ("tokens_per_s", "tokens/s", ".1f"), ("ms_per_token", "ms/token", ".2f"),
               ("cache_bytes", "cache bytes", ",d")],
    "decode_positions": [("family", "family", ""), ("position", "position", "d"), ("ms_per_token", "ms/token", ".2f"),
                         ("tokens_per_s", "tokens/s", ".1f"), ("cache_bytes", "cache/state bytes", ",d")],
}


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    cells = [[header for _, header, _ in columns]]
    notes: dict[tuple, list] = {}  # (kernel, reason) -> the lengths it applies to
    for row in rows:
        if row.get("available", True):
            cells.append([_fmt(row.get(key), spec) for key, _, spec in columns])
        else:  # an unavailable kernel: say so, and why, below the table
            cells.append([_fmt(row.get(key), spec) if i < 2 else ("unavailable" if i == 2 else "")
                          for i, (key, _, spec) in enumerate(columns)])
            notes.setdefault((row.get("kernel"), row.get("reason")), []).append(str(row.get("L")))
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if notes:
        lines += ["", "unavailable:"] + [f"  {kernel} (L={', '.join(ls)}): {reason}" for (kernel, reason), ls in notes.items()]
    return "\n".join(lines)


def _summary_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
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


# ---------------------------------------------------------------------------------- command line
def _kernels_from_args(args) -> dict:
    return bench_kernels(lengths=args.lengths, heads=args.heads, head_dim=args.head_dim, dtype=args.dtype,
                         device=args.device, kernels=args.kernels, repeats=args.repeats, budget_s=args.budget,
                         in_process=args.in_process)


def _decode_from_args(args) -> dict:
    if args.family in RECURRENT_FAMILIES:
        return bench_decode_positions(args.family, device=args.device)
    return bench_decode(tokens=args.tokens, family=args.family, n_kv_heads=args.n_kv_heads,
                        prompt_len=args.prompt_len, device=args.device)


def _app_from_args(args) -> dict:
    from .bench_app import bench_app

    summary, rows = bench_app(url=args.url, repeats=args.repeats, browser=not args.no_browser)
    return _result("app", "cpu", summary, rows)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON object")
    common.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda if available, else cpu")
    parser = argparse.ArgumentParser(prog="python -m playground.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="{kernels,decode,app}")

    k = sub.add_parser("kernels", parents=[common], help="explicit attention vs SDPA flash/efficient/math")
    k.add_argument("--lengths", type=_positive_int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    k.add_argument("--heads", type=_positive_int, default=8)
    k.add_argument("--head-dim", type=_positive_int, default=64)
    k.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: float16 on cuda, float32 on cpu")
    k.add_argument("--kernels", nargs="+", choices=tuple(SDPA_KERNELS), default=list(SDPA_KERNELS),
                   help="SDPA kernels to time (explicit always runs: it is the reference)")
    k.add_argument("--repeats", type=_positive_int, default=10, help="timed calls per cell, at most (default 10)")
    k.add_argument("--budget", type=float, default=2.0,
                   help="seconds of timed calls per cell: long L gets fewer repeats (0: always --repeats)")
    k.add_argument("--in-process", action="store_true",
                   help="CPU: measure in this process instead of a fresh one per cell (faster; memory less honest)")
    k.set_defaults(run=_kernels_from_args)

    d = sub.add_parser("decode", parents=[common], help="greedy generation with and without the KV cache")
    d.add_argument("--tokens", type=_positive_int, default=512, help="new tokens to generate (default 512)")
    d.add_argument("--family", choices=DECODE_FAMILIES, default="decoder")
    d.add_argument("--n-kv-heads", type=_positive_int, default=8, help="8: MHA, 1: MQA, 2 or 4: GQA")
    d.add_argument("--prompt-len", type=_positive_int, default=16)
    d.set_defaults(run=_decode_from_args)

    a = sub.add_parser("app", parents=[common], help="the page end to end: /analyze latency, payload, browser render")
    a.add_argument("--url", default=None, help="a running app (default: start one on a free loopback port)")
    a.add_argument("--repeats", type=_positive_int, default=10)
    a.add_argument("--no-browser", action="store_true", help="skip the chromium render timing")
    a.set_defaults(run=_app_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here; use --device cpu", file=sys.stderr)
        return 2
    try:
        result = args.run(args)
    except ValueError as e:  # a config the library rejects: its message says what would be valid
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result, args.json)
    if result["summary"].get("same_tokens") is False:
        print("error: cached and uncached generation chose different tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
