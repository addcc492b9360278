"""Attention masks: the one place they are built.

Every mask is a boolean tensor, ``True`` where a query may attend to a key. Masks are built
from the absolute positions of the queries and keys, so the same function serves a full
forward pass (queries 0..T-1 over keys 0..T-1) and cached decoding (one query at position t
over keys 0..t): no special case for the cache. The model keeps the tensor it computed with
and hands that very tensor to the plots.

Glossary: Tq query count, Tk key count, B batch, P prefix length, W window.
"""
from __future__ import annotations

import torch
from torch import Tensor

SELF_KINDS = ("causal", "bidirectional", "prefix")


def positions(start: int, length: int, device: torch.device | str | None = None) -> Tensor:
    """Absolute positions start..start+length-1, shape (length,)."""
    return torch.arange(start, start + length, device=device)


def causal(q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """Each query sees keys at its own position or earlier. (Tq, Tk)"""
    return k_pos[None, :] <= q_pos[:, None]


def bidirectional(q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """Every query sees every key (an encoder). (Tq, Tk)"""
    return torch.ones(len(q_pos), len(k_pos), dtype=torch.bool, device=q_pos.device)


def prefix(q_pos: Tensor, k_pos: Tensor, prefix_len: int) -> Tensor:
    """GLM's prefix-LM mask: bidirectional over the first P tokens, causal after them. (Tq, Tk)

    A query inside the prefix sees the whole prefix; a query after it sees the prefix and the
    tokens up to itself. Keys after the prefix stay hidden from prefix queries.
    """
    if prefix_len < 0:
        raise ValueError(f"prefix_len must be >= 0, got {prefix_len}")
    return causal(q_pos, k_pos) | (k_pos[None, :] < prefix_len)


def sliding_window(mask: Tensor, q_pos: Tensor, k_pos: Tensor, window: int) -> Tensor:
    """Restrict ``mask`` to keys less than ``window`` positions away from the query. (Tq, Tk)"""
    if window <= 0:
        return mask
    return mask & ((q_pos[:, None] - k_pos[None, :]).abs() < window)


def cross(n_queries: int, key_valid: Tensor) -> Tensor:
    """Decoder queries over encoder keys: every query sees every valid encoder key.

    Args:
        key_valid: (B, Tk) bool, False at padding of the source.
    Returns:
        (B, 1, Tq, Tk) bool.
    """
    return key_valid[:, None, None, :].expand(-1, 1, n_queries, -1)


def padding(key_valid: Tensor) -> Tensor:
    """Hide padded keys. key_valid (B, Tk) bool -> (B, 1, 1, Tk), broadcastable over heads and queries."""
    return key_valid[:, None, None, :]


def self_attention(
    kind: str,
    q_pos: Tensor,
    k_pos: Tensor,
    *,
    prefix_len: int = 0,
    window: int = 0,
    key_valid: Tensor | None = None,
) -> Tensor:
    """The self-attention mask a model computes with.

    Args:
        kind: causal | bidirectional | prefix.
        q_pos: (Tq,) absolute query positions. k_pos: (Tk,) absolute key positions.
        key_valid: optional (B, Tk) bool, False at padding.
    Returns:
        (Tq, Tk) bool, or (B, 1, Tq, Tk) when key_valid is given.
    """
    if kind == "causal":
        mask = causal(q_pos, k_pos)
    elif kind == "bidirectional":
        mask = bidirectional(q_pos, k_pos)
    elif kind == "prefix":
        mask = prefix(q_pos, k_pos, prefix_len)
    else:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(SELF_KINDS)}")
    mask = sliding_window(mask, q_pos, k_pos, window)
    if key_valid is not None:
        mask = mask[None, None] & padding(key_valid)  # (B, 1, Tq, Tk)
    return mask


def to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> additive float mask: 0 where allowed, -inf where forbidden."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
