"""FlexAttention's BlockMask from a mask rule, without evaluating the mask at every (query, key) pair.

A BlockMask sorts the (query block x key block) tiles into skipped (nothing visible), full (everything visible:
no mask applied inside) and partial (the mask applied); the kernel never touches a skipped tile.
``create_block_mask`` finds out by evaluating ``mask_mod`` at every pair (T x T work and memory at every length);
``blocks_from_rule`` reads it off the rule's arithmetic on each tile's corners (``nn.masks.allowed``).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask

from playground.nn.masks import MaskRule

BLOCK = 128  # FlexAttention's tile, queries and keys


def blocks_from_rule(rule: MaskRule, B: int, Tq: int, Tk: int, *, q_start: int, k_start: int, key_valid: Tensor,
                     mask_mod, block: int = BLOCK) -> BlockMask:
    """The BlockMask of a rule, classified block by block from the rule's arithmetic on the blocks' corners:
    O((Tq / block) x (Tk / block)) work and memory, where ``create_block_mask`` evaluates every (query, key) pair.

    With keys at positions k in [b0, b1] and queries q in [a0, a1] (one block of each; S: the rule sees all, P:
    its prefix, W: its window, 0 for none), a key is seen when k <= q, k < P or S, and near when |q - k| < W:
    - every pair is seen when S, b1 < P or b1 <= a0, and near when max(|a1 - b0|, |b1 - a0|) < W;
    - some pair is: (S and the blocks' gap < W), or (b0 <= a1 and max(0, a0 - b1) < W), or (b0 < P and the
      gap between the queries and the prefix keys [b0, min(b1, P - 1)] < W), the distance terms dropped when W = 0;
      [b0, b1] there is the span from the block's first valid key to its last (padding at either end excluded).
    A block is full when every pair is allowed and every key is valid (not padding), skipped when no pair is,
    and partial (the mask applied) otherwise; a block cut by the end of a sequence is never full (FlexAttention
    pads it with masked positions). Padding with holes inside a block may leave it partial where
    ``create_block_mask`` would skip it: correct, one tile less skipped.
    """
    device = key_valid.device
    sees_all, prefix, window = rule.numbers()
    nq, nk = -(-Tq // block), -(-Tk // block)
    qb = torch.arange(nq, device=device)
    kb = torch.arange(nk, device=device)
    a0 = (q_start + qb * block)[None, :, None]                               # (1, nq, 1)
    a1 = (q_start + torch.clamp((qb + 1) * block, max=Tq) - 1)[None, :, None]
    b0 = (k_start + kb * block)[None, None, :]                                # (1, 1, nk)
    b1 = (k_start + torch.clamp((kb + 1) * block, max=Tk) - 1)[None, None, :]
    # each key block's first and last valid key (B, 1, nk); a block with none gets an empty span (first > last)
    beyond = torch.zeros(B, nk * block - Tk, dtype=torch.bool, device=device)  # past the last key: no key there
    valid = torch.cat([key_valid, beyond], 1).view(B, nk, block)
    offset = torch.arange(block, device=device)
    v0 = k_start + kb * block + torch.where(valid, offset, block).amin(-1)    # (B, nk)
    v1 = k_start + kb * block + torch.where(valid, offset, -1).amax(-1)
    v0, v1 = v0[:, None], v1[:, None]                                        # (B, 1, nk)
    windowed = window > 0

    def near(distance: Tensor) -> Tensor:
        return distance < window if windowed else torch.ones_like(distance, dtype=torch.bool)

    gap = torch.clamp(torch.maximum(v0 - a1, a0 - v1), min=0)                 # the nearest valid pair's distance
    if sees_all:
        any_pair = near(gap)
        every_seen = torch.ones_like(b1 - a0, dtype=torch.bool)
    else:
        causal = (v0 <= a1) & near(torch.clamp(a0 - v1, min=0))
        prefix_end = torch.clamp(v1, max=prefix - 1)
        in_prefix = (v0 < prefix) & near(torch.clamp(torch.maximum(v0 - a1, a0 - prefix_end), min=0))
        any_pair = causal | in_prefix
        every_seen = (b1 < prefix) | (b1 <= a0)
    any_pair = any_pair & (v0 <= v1)                                           # (B, nq, nk)
    every_pair = every_seen & near(torch.maximum((a1 - b0).abs(), (b1 - a0).abs()))   # (1, nq, nk)
    all_valid = valid.all(-1)[:, None]                                         # (B, 1, nk)
    ragged = (a1 - a0 + 1 < block) | (b1 - b0 + 1 < block)                    # cut by a sequence's end
    full = any_pair & every_pair & all_valid & ~ragged
    partial = any_pair & ~full

    def table(chosen: Tensor) -> tuple[Tensor, Tensor]:
        counts = chosen.sum(-1, dtype=torch.int32)                            # (B, nq)
        order = torch.argsort((~chosen).to(torch.int8), dim=-1, stable=True).to(torch.int32)  # chosen first
        return counts[:, None], order[:, None]                                # (B, 1, nq), (B, 1, nq, nk)

    kv_num, kv_idx = table(partial)
    full_num, full_idx = table(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod,
                                    seq_lengths=(Tq, Tk))
