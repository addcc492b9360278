"""Benchmark: what opening a pretrained-sized model costs on this machine.

``mamba_implicit``: Mamba's implicit attention of every layer of a random model shaped like
``state-spaces/mamba-130m-hf`` (24 layers, d_model 768, 1,536 channels, d_state 16, vocabulary
50,280), drawn as 12 heads of 128 channels. One captured forward over ``T`` tokens
(``model(ids, capture=True)``: the scan, then every layer's alpha built one channel group and block
of rows at a time, checked over every channel and averaged per head) is timed after the model is
built and has run once; ``forward_s`` is the same forward without capture, for comparison. ``peak_rss_mib`` is the
process's peak resident memory during the captured forward, ``rss_rise_mib`` its rise above the
start (the weights alone are about 500 MiB in float32). ``max_abs_diff`` is the worst faithfulness
check over the layers: max |sum_s alpha x_s + D x - y| over every channel, y from the scan.
"""
from __future__ import annotations

import time

import torch

from playground.bench.measure import MIB, PeakRSS
from playground.config import ModelConfig
from playground.models import build_model

MAMBA_130M = dict(family="mamba", position="none", d_model=768, n_layer=24, d_state=16, expand=2, d_conv=4,
                  vocab_size=50280, n_heads=12, n_kv_heads=12)  # the shape of state-spaces/mamba-130m-hf


@torch.no_grad()
def mamba_implicit(T: int = 256, seed: int = 0, **shape) -> dict:
    """Implicit attention of every layer of a random mamba-130m-shaped model over T tokens, on the CPU.

    Args:
        T: tokens. shape: fields of ``MAMBA_130M`` to change (a smaller model, for tests).
    Returns:
        {"tokens", "layers", "channels", "heads", "seconds", "forward_s", "peak_rss_mib", "rss_rise_mib",
        "max_abs_diff"}; ``seconds`` is the captured forward's wall time.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive number of tokens, got {T!r}")
    cfg = ModelConfig(**{**MAMBA_130M, **shape})
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, T), generator=torch.Generator().manual_seed(seed))
    model(ids)  # warm-up: first-call allocations and kernel choices are not what is measured
    start = time.perf_counter()
    model(ids)
    forward_s = time.perf_counter() - start
    with PeakRSS() as rss:
        start = time.perf_counter()
        records = model(ids, capture=True).attentions
        seconds = time.perf_counter() - start
    assert len(records) == cfg.n_layer and records[0].weights.shape == (1, cfg.n_heads, T, T)
    return {"tokens": T, "layers": cfg.n_layer, "channels": cfg.expand * cfg.d_model, "heads": cfg.n_heads,
            "seconds": seconds, "forward_s": forward_s, "peak_rss_mib": rss.peak / MIB,
            "rss_rise_mib": rss.rise / MIB, "max_abs_diff": max(r.max_abs_diff for r in records)}


def mamba_implicit_seconds(T: int = 256) -> float:
    """Seconds to capture every layer's implicit attention of a random mamba-130m-shaped model over T tokens."""
    return mamba_implicit(T)["seconds"]
