"""One call of an analysis timed two ways, for the page's block-mask view: FlexAttention with the BlockMask it builds
from the layer's rule, against SDPA with the dense mask, on random inputs of the call's shape."""
from __future__ import annotations

import statistics

import torch

from playground.nn import flex, masks
from playground.nn.kernels import TORCH_DTYPES, sdpa
from playground.nn.timing import MIN_REPEATS, device_name, random_qkv, timed


def fused_vs_dense(rule: masks.MaskRule, n_queries: int, n_keys: int, heads: int, head_dim: int, *,
                   device: str = "cpu", dtype: str = "float32", repeats: int = MIN_REPEATS) -> dict:
    """The BlockMask FlexAttention builds for one call (queries at the last ``n_queries`` of ``n_keys`` positions),
    and that call timed against SDPA with the dense mask on random inputs of its shape (B=1), median of
    ``repeats`` after a warm-up, on this device.

    Returns {grid (n_q_blocks, n_k_blocks) int8: 0 skipped, 1 mask applied, 2 full; block_size (q, k);
    skipped_share; flex_ms; dense_ms; dense_kernel (the SDPA kernel an unforced masked call ran); repeats;
    device_name}, or {reason} where FlexAttention cannot run here.
    """
    if (why := flex.flex_status(device, TORCH_DTYPES[dtype], head_dim)) is not None:
        return {"reason": why}
    q_start = 0 if rule.kind == "cross" else n_keys - n_queries
    q, k, v = random_qkv(n_keys, n_queries, heads, head_dim, TORCH_DTYPES[dtype], device)
    dense = rule.dense(masks.positions(q_start, n_queries, device), masks.positions(0, n_keys, device))
    with torch.no_grad():
        _, block_mask = flex.flex_attention(q, k, v, rule, q_start=q_start, k_start=0)  # compiles on first use
        ran = sdpa(q, k, v, dense)[1]
        flex_t = timed(lambda: flex.flex_attention(q, k, v, rule, q_start=q_start, k_start=0), device, repeats)
        dense_t = timed(lambda: sdpa(q, k, v, dense, kernel=ran), device, repeats)
    grid = flex.block_grid(block_mask)
    return {"grid": grid, "block_size": tuple(int(b) for b in block_mask.BLOCK_SIZE),
            "skipped_share": flex.skipped_share(grid), "flex_ms": statistics.median(flex_t) * 1e3,
            "dense_ms": statistics.median(dense_t) * 1e3, "dense_kernel": ran, "repeats": repeats,
            "device_name": device_name(device)}
