"""Benchmark: decoding with and without the KV cache (``python -m playground.bench decode``).

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
"""
from __future__ import annotations

import statistics
import time

import torch

from playground.bench.measure import default_device, device_name, make_result, sync
from playground.config import ModelConfig
from playground.inspect.generation import generate
from playground.models import build_model
from playground.nn.cache import kv_cache_bytes
from playground.nn.kernels import auto_kernel

DECODE_FAMILIES = ("decoder", "prefix", "encdec", "rwkv", "mamba")
RECURRENT_FAMILIES = ("rwkv", "mamba")


def decode_config(family: str = "decoder", n_kv_heads: int = 8):

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
            sync(device)
            t0 = time.perf_counter()
            model(ids[:, position + i: position + i + 1], start_pos=position + i)
            sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        model.clear_cache()
    return statistics.median(times), held


def bench_decode_positions(family: str, positions=(64, 2048), steps: int = 32, device: str | None = None,
                           seed: int = 0) -> dict:
    """Per-token decoding cost at two positions for a recurrent model, a cached Transformer beside it."""

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
    return make_result("decode_positions", device, summary, rows)


def bench_decode(tokens: int = 512, family: str = "decoder", n_kv_heads: int = 8, prompt_len: int = 16,
                 device: str | None = None, seed: int = 0) -> dict:
    """Greedy generation with and without the KV cache: tokens/s, their ratio, same tokens, cache bytes."""

    device = device or default_device()
    cfg = decode_config(family, n_kv_heads)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,), generator=torch.Generator().manual_seed(seed)).tolist()

    runs, rows = {}, []
    for use_cache in (True, False):
        generate(model, prompt, min(4, tokens), use_cache=use_cache)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        gen = generate(model, prompt, tokens, use_cache=use_cache)
        sync(device)
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
    return make_result("decode", device, summary, rows)

