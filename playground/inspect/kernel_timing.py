"""Attention kernels timed side by side, on the model's own call patterns (``python -m playground.bench kernels``
and the kernel lab; one call of an analysis, for the block-mask view, is ``nn.block_mask_timing``).

    Random Q, K, V of shape (B=1, H, T, d_head), attention made the way ``playground.nn.attention.Attention``
    makes it for each call pattern (``PATTERNS``), L the length of the keys:

    - ``prefill``: causal self-attention over L tokens; SDPA gets ``is_causal=True`` and no mask;
    - ``decode``: one decoding step, a query at position L-1 against a cache of L keys; SDPA gets no mask;
    - ``prefix``: GLM's prefix mask, bidirectional over the first L/2 tokens; SDPA gets the dense bool mask;
    - ``window``: a causal sliding window (``--window``, 256 by default); SDPA gets the dense bool mask;
    - ``alibi``: causal with ALiBi's bias; SDPA gets the float mask (bias, -inf where masked).

    For each, ``explicit`` (softmax(QKᵀ/√d + bias)V with the dense mask: the reference), each SDPA
    kernel through its own op (``nn.kernels.RUNNERS``: flash, efficient, cudnn, math) and FlexAttention
    (``flex``: ``nn.flex.flex_attention`` with the pattern's ``MaskRule``, and ALiBi as its ``score_mod``; it
    builds its BlockMask from the rule on each call, as the model does). Dense masks and biases are
    built before the clock starts. A kernel PyTorch refuses for a pattern is reported unavailable
    with PyTorch's reason (flex: ``nn.flex.flex_status``); nothing is substituted for it. Per row:

    - ``median_ms``: median of N timed calls after a warm-up call (flex: two, the first compiles),
      with ``min_ms`` and ``max_ms`` (N shrinks for slow cells so a cell costs about ``--budget``
      seconds, never below 5; ``repeats`` says how many ran).
    - ``peak_mib``: memory the call needs above its inputs. CUDA: ``max_memory_allocated`` after a
      reset, minus what was allocated before. CPU: the rise of the process's peak resident set
      (VmHWM, reset through /proc/self/clear_refs) over its RSS with the inputs allocated. By
      default each CPU cell runs in a fresh spawned process, so nothing an earlier kernel left in
      the allocator hides the cost; the flex cells share one fresh process, so FlexAttention
      compiles once (about 10 s) rather than once per cell. ``peak_rss_mib`` is that process's whole
      peak. ``--in-process`` is faster but may under-report memory.
    - ``explicit_over_kernel``: explicit time / this row's time (> 1: faster than the explicit path);
      ``max_abs_diff``: max |out - out_explicit| on the same inputs; both null on the explicit row.
    - ``skipped_share`` (flex rows): the share of (query block x key block) tiles its BlockMask skips.

    Summary: ``flash_over_math_L2048`` (math time / flash time for the causal prefill at L=2048, as
    the model calls it: ``is_causal=True``; ``flash_over_math`` per L),
    ``flex_over_dense_mask_window<W>_L2048`` (time of SDPA with the dense mask, the kernel an unforced
    call runs, over FlexAttention's, sliding window W at L=2048; ``flex_over_dense_mask`` per masked
    pattern and L), ``skipped_share`` per pattern and L, ``kernel_auto`` (the SDPA kernel an unforced
    call of each pattern really runs here) and ``calls`` (what each pattern passes to SDPA). A ratio
    is null where a kernel could not run or the length was not measured.

Timings use ``time.perf_counter`` with PyTorch's default thread count; on a shared machine
they move by tens of percent from run to run, so compare ratios from one run.
"""
from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass

import torch

from playground.serving.runtime import default_device
from playground.nn.timing import (MIB, MIN_REPEATS, PeakRSS, device_name, make_result, random_qkv,
                                  spread, sync)
from playground.nn import flex, masks
from playground.nn.kernels import TORCH_DTYPES, KernelUnavailable, explicit_attention, sdpa, sdpa_mask
from playground.nn.position import alibi_bias, alibi_slopes

SDPA_NAMES = ("flash", "efficient", "cudnn", "math")
KERNELS = (*SDPA_NAMES, "flex")  # explicit always runs: it is the reference
PATTERNS = {  # pattern -> (what SDPA receives: the record's call, what the row says)
    "prefill": ("is_causal", "causal prefill: SDPA is_causal=True, no mask"),
    "decode": ("no mask", "one decoding step against a cache of L keys: SDPA with no mask"),
    "prefix": ("mask", "GLM prefix (first L/2 tokens bidirectional): SDPA with the dense bool mask"),
    "window": ("mask", "causal sliding window: SDPA with the dense bool mask"),
    "alibi": ("mask", "causal with ALiBi: SDPA with the float mask (bias, -inf where masked)"),
}
CALLS = {"explicit": "weights", "flex": "block mask"}  # the other kernels: the pattern's SDPA call


@dataclass
class Call:
    """One attention call of a pattern: where the queries sit, its mask rule, the dense mask and bias."""

    rule: masks.MaskRule
    q_start: int
    n_queries: int
    n_keys: int
    sdpa_call: str                    # is_causal | no mask | mask
    mask: torch.Tensor                # (Tq, Tk) bool, the explicit path's mask
    bias: torch.Tensor | None = None  # (nh, Tq, Tk) ALiBi
    slopes: torch.Tensor | None = None  # (nh,)


def pattern_call(pattern: str, L: int, heads: int, window: int, device: str) -> Call:
    """The call ``pattern`` makes with L keys (``PATTERNS``)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown call pattern {pattern!r}; valid: {', '.join(PATTERNS)}")
    rule = {"prefix": masks.MaskRule("prefix", prefix_len=L // 2),
            "window": masks.MaskRule("causal", window=window)}.get(pattern, masks.MaskRule("causal"))
    n_queries = 1 if pattern == "decode" else L
    q_pos, k_pos = masks.positions(L - n_queries, n_queries, device), masks.positions(0, L, device)
    call = Call(rule, L - n_queries, n_queries, L, PATTERNS[pattern][0], rule.dense(q_pos, k_pos))
    if pattern == "alibi":
        call.slopes = alibi_slopes(heads).to(device)
        call.bias = alibi_bias(call.slopes, q_pos, k_pos)
    return call


def attention_call(q, k, v, kernel: str, call: Call) -> tuple[torch.Tensor, str, object]:
    """One attention as the model runs it: (out (B, H, Tq, hs), kernel that ran, BlockMask or None)."""
    if kernel == "explicit":
        out = (explicit_attention(q, k, v, call.mask) if call.bias is None else
               explicit_attention(q, k, v, call.mask, call.bias))[0]
        return out, "explicit", None
    if kernel == "flex":
        out, block_mask = flex.flex_attention(q, k, v, call.rule, q_start=call.q_start, k_start=0,
                                              alibi_slopes=call.slopes)
        return out, "flex", block_mask
    if call.sdpa_call == "is_causal":
        out, ran = sdpa(q, k, v, kernel=kernel, is_causal=True)
    elif call.sdpa_call == "no mask":
        out, ran = sdpa(q, k, v, kernel=kernel)
    else:
        out, ran = sdpa(q, k, v, sdpa_mask(call.mask, call.bias, q.dtype), kernel=kernel)
    return out, ran, None


def _measure_cell(spec: dict) -> dict:
    """Time one (pattern, L, kernel) and take its peak memory. Runs in a fresh process on CPU by default.

    Returns {available, reason, times_s, peak_bytes, peak_rss_bytes, skipped_share, out (float32 numpy)}.
    """
    device, kernel, L = spec["device"], spec["kernel"], spec["L"]
    if kernel == "flex" and (why := flex.flex_status()) is not None:
        return {"available": False, "reason": f"FlexAttention cannot run here: {why}"}
    call = pattern_call(spec["pattern"], L, spec["heads"], spec["window"], device)  # inputs: before the clock
    q, k, v = random_qkv(L, call.n_queries, spec["heads"], spec["head_dim"], TORCH_DTYPES[spec["dtype"]], device)
    skipped = None
    if kernel == "flex":  # compiles on the process's first call: not a cost of this cell
        try:
            _, _, block_mask = attention_call(q, k, v, kernel, call)
        except flex.FlexUnavailable as e:
            return {"available": False, "reason": f"FlexAttention cannot run here: {e}"}
        skipped = flex.skipped_share(flex.block_grid(block_mask))

    def call_once() -> torch.Tensor:
        return attention_call(q, k, v, kernel, call)[0]

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
        except (KernelUnavailable, flex.FlexUnavailable) as e:
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
    return {"available": True, "reason": None, "times_s": times, "peak_bytes": peak, "peak_rss_bytes": peak_rss,
            "skipped_share": skipped, "out": out.float().cpu().numpy()}


class CellRunner:
    """Runs cells here, or each in a fresh spawned process; flex cells share one, so it compiles once."""

    def __init__(self, isolate: bool):
        self.isolate, self.context, self.shared = isolate, multiprocessing.get_context("spawn"), None

    def __call__(self, spec: dict) -> dict:
        if not self.isolate:
            return _measure_cell(spec)
        if spec["kernel"] == "flex":
            self.shared = self.shared or self.context.Pool(1)
            return self.shared.apply(_measure_cell, (spec,))
        with self.context.Pool(1) as pool:
            return pool.apply(_measure_cell, (spec,))

    def close(self) -> None:
        if self.shared is not None:
            self.shared.terminate()
            self.shared.join()


def _small_call(device: str, dtype: torch.dtype, head_dim: int, kernel: str, pattern: str) -> str:
    call = pattern_call(pattern, 16, 2, 4, device)
    q, k, v = random_qkv(16, call.n_queries, 2, head_dim, dtype, device)
    return attention_call(q, k, v, kernel, call)[1]


def refusal(device: str, dtype: torch.dtype, head_dim: int, kernel: str, pattern: str) -> str | None:
    """PyTorch's reason it will not run this SDPA kernel for this pattern here, or None: a small call decides."""
    try:
        _small_call(device, dtype, head_dim, kernel, pattern)
    except KernelUnavailable as e:
        return str(e)
    return None


def auto_kernel(device: str, dtype: torch.dtype, head_dim: int, pattern: str) -> str:
    """The kernel an unforced SDPA call of this pattern runs here (PyTorch's own priority order)."""
    return _small_call(device, dtype, head_dim, "auto", pattern)


def _label(kernel: str, pattern: str) -> str:
    if kernel == "explicit":
        return "explicit softmax(QKᵀ/√d + bias)V with the dense mask (reference)"
    if kernel == "flex":
        return "FlexAttention, BlockMask from the mask rule" + (", ALiBi as score_mod" if pattern == "alibi" else "")
    return f"SDPA {kernel}: {PATTERNS[pattern][1]}"


def bench_kernels(lengths=(512, 1024, 2048), heads: int = 8, head_dim: int = 64, dtype: str | None = None,
                  device: str | None = None, kernels=KERNELS, patterns=tuple(PATTERNS), window: int = 256,
                  repeats: int = 10, budget_s: float = 1.0, in_process: bool = False) -> dict:
    """Each kernel on each of the model's call patterns, B=1: time, peak memory, ratio and difference to explicit."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    for name in [*kernels, *patterns]:
        if name not in KERNELS and name not in PATTERNS:
            raise ValueError(f"unknown kernel or pattern {name!r}; kernels: {', '.join(KERNELS)}; "
                             f"patterns: {', '.join(PATTERNS)}")
    device = device or default_device()
    dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    isolate = not in_process and not device.startswith("cuda")  # CUDA peaks come from the allocator's own stats
    chosen = ["explicit"] + [k for k in KERNELS if k in kernels]  # explicit first: the reference
    patterns = [p for p in PATTERNS if p in patterns]
    refused = {(k, p): refusal(device, TORCH_DTYPES[dtype], head_dim, k, p) for k in chosen if k in SDPA_NAMES
               for p in patterns}
    rows, times, skipped = [], {}, {}
    runner = CellRunner(isolate)
    try:
        for pattern in patterns:
            for L in lengths:
                reference = None
                for name in chosen:
                    row = {"pattern": pattern, "L": L, "kernel": name, "call": CALLS.get(name, PATTERNS[pattern][0]),
                           "label": _label(name, pattern), "available": True, "reason": None, "repeats": 0,
                           "median_ms": None, "peak_mib": None, "peak_rss_mib": None, "explicit_over_kernel": None,
                           "max_abs_diff": None, "skipped_share": None}
                    why = refused.get((name, pattern))
                    cell = {"available": False, "reason": why} if why else runner(
                        {"device": device, "kernel": name, "pattern": pattern, "L": L, "heads": heads,
                         "head_dim": head_dim, "dtype": dtype, "window": window, "repeats": repeats,
                         "budget_s": budget_s})
                    if not cell["available"]:
                        row.update(available=False, reason=cell["reason"])
                        rows.append(row)
                        continue
                    median = statistics.median(cell["times_s"])
                    times[pattern, L, name] = median
                    out = torch.from_numpy(cell["out"])
                    ms = spread([t * 1e3 for t in cell["times_s"]])
                    row.update(repeats=ms["n"], median_ms=ms["median"], min_ms=ms["min"], max_ms=ms["max"],
                               peak_mib=cell["peak_bytes"] / MIB, skipped_share=cell["skipped_share"],
                               peak_rss_mib=None if cell["peak_rss_bytes"] is None else cell["peak_rss_bytes"] / MIB)
                    if cell["skipped_share"] is not None:
                        skipped.setdefault(pattern, {})[str(L)] = cell["skipped_share"]
                    if name == "explicit":
                        reference = out
                    else:
                        row.update(explicit_over_kernel=times[pattern, L, "explicit"] / median,
                                   max_abs_diff=float((out - reference).abs().max()))
                    rows.append(row)
    finally:
        runner.close()

    auto = {p: auto_kernel(device, TORCH_DTYPES[dtype], head_dim, p) for p in patterns}

    def over(pattern: str, L: int, slow: str, fast: str) -> float | None:
        a, b = times.get((pattern, L, slow)), times.get((pattern, L, fast))
        return a / b if a is not None and b is not None else None

    masked = [p for p in patterns if PATTERNS[p][0] == "mask"]
    summary = {
        "flash_over_math_L2048": over("prefill", 2048, "math", "flash"),
        "flash_over_math": {str(L): over("prefill", L, "math", "flash") for L in lengths},
        f"flex_over_dense_mask_window{window}_L2048": over("window", 2048, auto.get("window", ""), "flex"),
        "flex_over_dense_mask": {p: {str(L): over(p, L, auto[p], "flex") for L in lengths} for p in masked},
        "skipped_share": skipped,
        "kernel_auto": auto,
        "calls": {p: PATTERNS[p][1] for p in patterns},
        "device_name": device_name(device),
        "device_type": torch.device(device).type,
        "dtype": dtype, "batch": 1, "heads": heads, "head_dim": head_dim, "window": window,
        "memory": ("cuda max_memory_allocated" if device.startswith("cuda") else
                   "peak RSS rise, fresh process per cell (the flex cells share one, so it compiles once)" if isolate
                   else "peak RSS rise, one process"),
    }
    return make_result("kernels", device, summary, rows)
