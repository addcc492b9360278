"""Benchmark: attention throughput and decoding speed on a CUDA device (``python -m playground.bench gpu``).

    Attention: causal self-attention on random Q, K, V of shape (B, H, L, d) in bf16, B = max(1,
    16,384 // L) so every length runs 16k tokens (the FlashAttention papers' convention), for
    head dims 64 and 128 and L = 1k..16k, on each SDPA kernel through its own op (``nn.kernels.RUNNERS``),
    called as the model calls a causal prefill (``is_causal=True``, no mask): flash, cudnn,
    efficient, math; and FlexAttention (``nn.flex.flex_attention`` with the causal ``MaskRule``,
    its BlockMask built on each call). Forward FLOPs are ``attention_flops``: two matmuls
    (QKᵀ and PV) of 2·L²·d flops per head each, 4·B·H·L²·d in all, halved for causal because the
    masked half need not be computed. ``tflops`` = flops / median seconds / 1e12 (median of
    ``--repeats`` timed calls after a warm-up; flex warms up twice, its first call compiles). A
    kernel PyTorch refuses, or that runs out of memory, is a row that says why.

    Decoding: greedy generation of ``--tokens`` tokens with the KV cache, in bf16, from a 16-token
    prompt, by a random-weight model of the zoo's shape and one of GPT-2 small's shape (12 layers,
    d_model 768, 12 heads, vocab 50,257): ``tokens_per_s`` (median of 5 runs after a warm-up).

    Masks: FlexAttention on the window, GLM prefix and ALiBi calls the models make against SDPA with
    the dense mask (``inspect.kernel_timing.bench_kernels``, bf16, d = 64, L = 1k..8k): median ms, peak memory.

    The page on the device: ``service.analyze_text`` (what /analyze runs: the forward with capture, the
    log-sum-exp, the overview's cells, the head statistics, the faithfulness check) on the zoo's
    baseline at growing lengths until one takes longer than ``PAGE_BUDGET_S``, each with the build
    of the overview's figure (the JSON the browser draws) and the device's peak memory:
    ``page_largest_tokens_2s``, the longest prompt analyzed within the budget.

``--readme`` writes the table into README.md between its ``bench gpu`` markers. Without a CUDA device
``python -m playground.bench gpu`` exits with status 2 and says so; the functions take ``device`` and
run anywhere, which is how the tests check them on tiny sizes.
"""
from __future__ import annotations

import gc
import statistics
import time

import torch

from playground.nn.timing import MIN_REPEATS, device_name, make_result, spread, sync
from playground.config import ModelConfig, from_name
from playground.inspect.generation import generate
from playground.models import build_model
from playground.nn import flex, masks
from playground.nn.kernels import KernelUnavailable, OutOfDeviceMemory, sdpa
from playground.zoo.registry import BASE_MODEL

GPU_KERNELS = ("flash", "cudnn", "efficient", "math", "flex")
TOKENS_PER_CELL = 16384  # B x L
MASKED_PATTERNS = ("window", "prefix", "alibi")
PAGE_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
PAGE_BUDGET_S = 2.0
PAGE_SPEC = "zoo:baseline"
TARGETS = {"flash_tflops_L8192_d128": (">=", 150), "flash_over_math_tflops_L8192_d128": (">=", 8),
           "page_largest_tokens_2s": (">=", 8192)}


def attention_flops(L: int, head_dim: int, heads: int = 1, batch: int = 1, causal: bool = True) -> float:
    """Forward FLOPs of attention over L tokens: QKᵀ and PV, 2·L²·d each per head; causal computes half."""
    return 4 * batch * heads * L * L * head_dim / (2 if causal else 1)


def _time(fn, device: str, repeats: int, warm_ups: int = 1) -> list[float]:
    for _ in range(warm_ups):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def causal_call(kernel: str, q, k, v) -> torch.Tensor:
    """The model's causal prefill on one kernel. (B, H, L, d)"""
    if kernel == "flex":
        return flex.flex_attention(q, k, v, masks.MaskRule("causal"), q_start=0, k_start=0)[0]
    return sdpa(q, k, v, kernel=kernel, is_causal=True)[0]


def attention_rows(lengths, head_dims, heads: int = 16, kernels=GPU_KERNELS, dtype=torch.bfloat16,
                   device: str = "cuda", repeats: int = 10, tokens: int = TOKENS_PER_CELL) -> list[dict]:
    """One row per (head dim, L, kernel): median ms, TFLOP/s, or why it did not run."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    flex_reason = flex.flex_status() if "flex" in kernels else None
    rows = []
    for d in head_dims:
        for L in lengths:
            batch = max(1, tokens // L)
            g = torch.Generator().manual_seed(0)
            q, k, v = (torch.randn(batch, heads, L, d, generator=g).to(device=device, dtype=dtype) for _ in range(3))
            flops = attention_flops(L, d, heads, batch)
            for kernel in kernels:
                row = {"head_dim": d, "L": L, "batch": batch, "heads": heads, "kernel": kernel, "available": True,
                       "reason": None, "median_ms": None, "tflops": None, "flops": flops}
                try:
                    if kernel == "flex" and flex_reason is not None:
                        raise KernelUnavailable(f"FlexAttention cannot run here: {flex_reason}")
                    with torch.no_grad():
                        times = _time(lambda: causal_call(kernel, q, k, v), device, repeats,
                                      warm_ups=2 if kernel == "flex" else 1)
                except (KernelUnavailable, flex.FlexUnavailable) as e:
                    row.update(available=False, reason=str(e))
                except (OutOfDeviceMemory, torch.OutOfMemoryError) as e:  # the kernels raise the first
                    why = e.__cause__ if isinstance(e, OutOfDeviceMemory) and e.__cause__ is not None else e
                    row.update(available=False, reason=f"out of memory: {str(why).splitlines()[0]}")
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
                else:
                    median = statistics.median(times)
                    row.update(median_ms=median * 1e3, tflops=flops / median / 1e12)
                rows.append(row)
    return rows


def decode_configs(tokens: int, prompt_len: int = 16) -> dict[str, ModelConfig]:
    """The two shapes decoded: the zoo's models and GPT-2 small (random weights)."""
    return {
        "zoo": ModelConfig(**{**BASE_MODEL, "context_length": max(BASE_MODEL["context_length"], prompt_len + tokens)}),
        "gpt2": from_name("gpt2-tiny", n_layer=12, d_model=768, n_heads=12, n_kv_heads=12, d_ff=3072,
                          vocab_size=50257, context_length=max(1024, prompt_len + tokens)),
    }


def _decode_times(cfg: ModelConfig, tokens: int, dtype, device: str, repeats: int, prompt_len: int):
    """(model, seconds of each cached generation of ``tokens`` tokens)."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device=device, dtype=dtype).eval()
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,), generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        return model.n_params, _time(lambda: generate(model, prompt, tokens, use_cache=True), device, repeats)


def decode_rows(tokens: int = 256, dtype=torch.bfloat16, device: str = "cuda", repeats: int = MIN_REPEATS,
                prompt_len: int = 16, shapes=("zoo", "gpt2")) -> list[dict]:
    """Cached greedy decoding of each shape: tokens/s (median of ``repeats`` runs)."""
    rows = []
    for shape, cfg in decode_configs(tokens, prompt_len).items():
        if shape not in shapes:
            continue
        n_params, times = _decode_times(cfg, tokens, dtype, device, repeats, prompt_len)
        gc.collect()  # the model (its modules refer to each other) goes now, not inside a later measurement
        s = spread(times)
        rows.append({"shape": shape, "n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_heads": cfg.n_heads,
                     "n_params": n_params, "tokens": tokens, "seconds": s["median"],
                     "tokens_per_s": tokens / s["median"], "tokens_per_s_min": tokens / s["max"],
                     "tokens_per_s_max": tokens / s["min"]})
    return rows


def masked_rows(lengths=(1024, 2048, 4096, 8192), heads: int = 16, head_dim: int = 64, dtype: str = "bfloat16",
                device: str = "cuda", repeats: int = 10) -> list[dict]:
    """FlexAttention against SDPA with the dense mask (and the explicit reference) on the models' masked calls."""
    from playground.inspect.kernel_timing import bench_kernels

    result = bench_kernels(lengths=lengths, heads=heads, head_dim=head_dim, dtype=dtype, device=device,
                           kernels=("flash", "efficient", "cudnn", "math", "flex"), patterns=MASKED_PATTERNS,
                           repeats=repeats, budget_s=0, in_process=True)
    return result["rows"]


def page_rows(device: str = "cuda", lengths=PAGE_LENGTHS, budget_s: float = PAGE_BUDGET_S,
              spec: str = PAGE_SPEC) -> list[dict]:
    """The page's analysis on ``device`` at each length until one takes longer than ``budget_s``: seconds, the
    overview figure's build time and bytes, the device's peak memory (CUDA) and the store's bytes."""
    from playground import plots
    from playground.bench.app import PASSAGE
    from playground.ui import service
    from playground.zoo import ModelSpec

    model = ModelSpec.parse(spec)
    tokenizer = model.tokenizer()
    words = tokenizer.encode(PASSAGE * (2 + max(lengths) // 50))
    rows = []
    service.analyze_text(model, tokenizer.decode(words[:64]), device=device)  # loads the weights, warms the kernels
    for n in lengths:
        text = tokenizer.decode(words[:n])
        service.ANALYSES.clear()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        result, _ = service.analyze_text(model, text, device=device)
        sync(device)
        analyze_s = time.perf_counter() - start
        start = time.perf_counter()
        figure_bytes = plots.overview_bytes(result)
        rows.append({"tokens": len(result.token_ids), "analyze_s": analyze_s,
                     "overview_ms": (time.perf_counter() - start) * 1e3, "overview_bytes": figure_bytes,
                     "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.startswith("cuda")
                     else None, "store_mb": result.nbytes / 1e6, "kernels": ", ".join(result.kernels),
                     "max_abs_diff": result.max_abs_diff})
        if analyze_s > budget_s:
            break
    service.ANALYSES.clear()
    return rows


def bench_gpu(lengths=(1024, 2048, 4096, 8192, 16384), head_dims=(64, 128), heads: int = 16,
              repeats: int = 10, decode_tokens: int = 256, device: str = "cuda",
              masked_lengths=(1024, 2048, 4096, 8192), page_lengths=PAGE_LENGTHS, decode_shapes=("zoo", "gpt2"),
              dtype=torch.bfloat16) -> dict:
    """Attention TFLOP/s per kernel, the masked calls, decode tokens/s and the page on the device, bf16.
    Summary: the headline numbers at L=8192, d=128, against ``TARGETS``."""
    rows = attention_rows(lengths, head_dims, heads, device=device, repeats=repeats, dtype=dtype)
    masked = masked_rows(masked_lengths, heads, device=device, repeats=repeats, dtype=str(dtype).removeprefix("torch."))
    page = page_rows(device, page_lengths)
    decode = decode_rows(decode_tokens, device=device, shapes=decode_shapes, dtype=dtype)

    def tflops(kernel: str, L: int = 8192, d: int = 128) -> float | None:
        return next((r["tflops"] for r in rows if (r["kernel"], r["L"], r["head_dim"]) == (kernel, L, d)), None)

    flash, math = tflops("flash"), tflops("math")
    summary = {
        "flash_tflops_L8192_d128": flash,
        "flash_over_math_tflops_L8192_d128": flash / math if flash and math else None,
        **{f"{k}_tflops_L8192_d128": tflops(k) for k in GPU_KERNELS if k != "flash"},
        **{f"decode_tokens_per_s_{r['shape']}": r["tokens_per_s"] for r in decode},
        "decode": decode,
        "device_name": device_name(device), "dtype": "bfloat16", "causal": True, "heads": heads,
        "tokens_per_cell": TOKENS_PER_CELL,
        "flops": "4 * B * H * L^2 * d / 2 (causal forward: QK^T and PV)",
        "page_largest_tokens_2s": max((r["tokens"] for r in page if r["analyze_s"] <= PAGE_BUDGET_S), default=0),
        "page_peak_gpu_mib": max((r["peak_gpu_mib"] or 0 for r in page), default=0),
        "page": page, "masked": masked,
        "targets": {k: f"{c} {v}" for k, (c, v) in TARGETS.items()},
    }
    return make_result("gpu", device, summary, rows)


README_START, README_END = "<!-- bench gpu: start -->", "<!-- bench gpu: end -->"


def readme_section(result: dict) -> str:
    """Markdown of a ``bench gpu`` result: the headline figures against their targets, TFLOP/s per kernel at each
    length for d = 128 and d = 64, FlexAttention against SDPA on the masked calls, the page on the device."""
    s = result["summary"]
    lines = [f"Measured on {result['device']}, torch {result['torch']} (`python -m playground.bench gpu --readme`):", "",
             "| figure | measured | target |", "|---|---:|---:|"]
    for key, target in s["targets"].items():
        value = s.get(key)
        lines.append(f"| `{key}` | {'-' if value is None else f'{value:,.3g}'} | {target} |")
    for d in sorted({r["head_dim"] for r in result["rows"]}, reverse=True):
        kernels = [k for k in GPU_KERNELS if any(r["kernel"] == k for r in result["rows"])]
        lines += ["", f"Causal bf16 attention, d = {d}, TFLOP/s (causal counts half the FLOPs):", "",
                  "| L | " + " | ".join(kernels) + " |", "|---:|" + "---:|" * len(kernels)]
        for L in sorted({r["L"] for r in result["rows"]}):
            cells = [next((f"{r['tflops']:.1f}" if r["tflops"] else "-" for r in result["rows"]
                           if (r["head_dim"], r["L"], r["kernel"]) == (d, L, k)), "-") for k in kernels]
            lines.append(f"| {L:,} | " + " | ".join(cells) + " |")
    lines += ["", "Masked calls, median ms (FlexAttention against SDPA with the dense mask):", "",
              "| pattern | L | kernel | ms | peak MiB |", "|---|---:|---|---:|---:|"]
    for r in s["masked"]:
        if r["available"]:
            peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
            lines.append(f"| {r['pattern']} | {r['L']:,} | {r['kernel']} | {r['median_ms']:.2f} | {peak} |")
    lines += ["", "The page on the device (zoo:baseline, `service.analyze_text`):", "",
              "| tokens | analyze s | overview ms | overview bytes | peak GPU MiB | kernels |",
              "|---:|---:|---:|---:|---:|---|"]
    for r in s["page"]:
        peak = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:,.0f}"
        lines.append(f"| {r['tokens']:,} | {r['analyze_s']:.2f} | {r['overview_ms']:.0f} | {r['overview_bytes']:,} | "
                     f"{peak} | {r['kernels']} |")
    lines += ["", "Decoding, tokens/s: " + ", ".join(f"{r['shape']} {r['tokens_per_s']:,.0f}" for r in s["decode"])]
    return "\n".join(lines)


def write_readme(result: dict, readme) -> None:
    """Replace what lies between README's ``bench gpu`` markers with ``readme_section(result)``."""
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers to write between")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{readme_section(result)}\n{README_END}{tail}", encoding="utf-8")
