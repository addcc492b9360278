"""Benchmark: attention throughput and decoding speed on a CUDA device (``python -m playground.bench gpu``).

    Attention: causal self-attention on random Q, K, V of shape (B, H, L, d) in bf16, B = max(1,
    16,384 // L) so every length runs 16k tokens (the FlashAttention papers' convention), for
    head dims 64 and 128 and L = 1k..16k, on each SDPA kernel forced with ``sdpa_kernel`` and
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

Without a CUDA device ``python -m playground.bench gpu`` exits with status 2 and says so; the
functions take ``device`` and run anywhere, which is how the tests check them on tiny sizes.
"""
from __future__ import annotations

import gc
import statistics
import time

import torch

from playground.bench.measure import MIN_REPEATS, device_name, make_result, spread, sync
from playground.config import ModelConfig, from_name
from playground.inspect.generation import generate
from playground.models import build_model
from playground.nn import flex, masks
from playground.nn.kernels import KernelUnavailable, OutOfDeviceMemory, sdpa
from playground.zoo.registry import BASE_MODEL

GPU_KERNELS = ("flash", "cudnn", "efficient", "math", "flex")
TOKENS_PER_CELL = 16384  # B x L


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


def bench_gpu(lengths=(1024, 2048, 4096, 8192, 16384), head_dims=(64, 128), heads: int = 16,
              repeats: int = 10, decode_tokens: int = 256, device: str = "cuda") -> dict:
    """Attention TFLOP/s per kernel and decode tokens/s, bf16. Summary: the headline numbers at L=8192, d=128."""
    rows = attention_rows(lengths, head_dims, heads, device=device, repeats=repeats)
    decode = decode_rows(decode_tokens, device=device)

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
    }
    return make_result("gpu", device, summary, rows)
