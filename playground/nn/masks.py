"""Attention masks: the one place they are built.

Every mask is a boolean tensor, ``True`` where a query may attend to a key. Masks are built
from the absolute positions of the queries and keys, so the same function serves a full
forward pass (queries 0..T-1 over keys 0..T-1) and cached decoding (one query at position t
over keys 0..t): no special case for the cache. The model keeps the tensor it computed with
and hands that very tensor to the plots.

Glossary: Tq query count, Tk key count, B batch, P prefix length, W window.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SELF_KINDS = ("causal", "bidirectional", "prefix")
RULE_KINDS = SELF_KINDS + ("cross",)


def allowed(q_pos: Tensor, k_pos: Tensor, sees_all, prefix_len, window) -> Tensor:
    """The mask rule as arithmetic on positions: True where a query may attend to a key.

    A key is seen when it is not after the query, or lies in the prefix, or ``sees_all`` is set
    (an encoder, cross-attention); and, when ``window`` > 0, when it is less than ``window``
    positions away. The numbers may be Python numbers or tensors: the dense masks call this with
    ints, FlexAttention's ``mask_mod`` with 0-d tensors, so one compiled kernel serves every rule.
    Broadcasts q_pos against k_pos; bool.
    """
    seen = (k_pos <= q_pos) | (k_pos < prefix_len) | sees_all
    near = ((q_pos - k_pos).abs() < window) | (window <= 0)
    return seen & near


@dataclass(frozen=True)
class MaskRule:
    """Which key a query may see, from absolute positions: the one rule behind the dense mask, the plots and FlexAttention."""

    kind: str            # causal | bidirectional | prefix | cross
    prefix_len: int = 0  # prefix: keys < prefix_len are seen by every query
    window: int = 0      # > 0: keys less than `window` positions back only

    def __post_init__(self):
        if self.kind not in RULE_KINDS:
            raise ValueError(f"unknown mask kind {self.kind!r}; valid: {', '.join(RULE_KINDS)}")
        if self.prefix_len < 0:
            raise ValueError(f"prefix_len must be >= 0, got {self.prefix_len}")
        if self.window < 0:
            raise ValueError(f"window must be 0 (off) or positive, got {self.window}")
        if self.prefix_len and self.kind != "prefix":
            raise ValueError(f"prefix_len={self.prefix_len} needs kind 'prefix', got {self.kind!r}")
        if self.window and self.kind == "cross":
            raise ValueError("cross-attention has no sliding window: every query sees every valid source key")

    @property
    def sees_all(self) -> bool:
        """Whether positions do not order the keys (an encoder, cross-attention)."""
        return self.kind in ("bidirectional", "cross")

    def numbers(self) -> tuple[int, int, int]:
        """(sees_all, prefix_len, window): the rule as the numbers ``allowed`` reads."""
        return int(self.sees_all), self.prefix_len, self.window

    def allows(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Elementwise and broadcasting: whether the query at q_pos may see the key at k_pos. bool"""
        return allowed(q_pos, k_pos, self.sees_all, self.prefix_len, self.window)

    def dense(self, q_pos: Tensor, k_pos: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """The mask over query positions q_pos (Tq,) and key positions k_pos (Tk,).

        Returns (Tq, Tk) bool, or (B, 1, Tq, Tk) with key_valid (B, Tk) bool (False at padding).
        """
        mask = self.allows(q_pos[:, None], k_pos[None, :])  # (Tq, Tk)
        if key_valid is not None:
            mask = mask[None, None] & padding(key_valid)  # (B, 1, Tq, Tk)
        return mask


def positions(start: int, length: int, device: torch.device | str | None = None) -> Tensor:
    """Absolute positions start..start+length-1, shape (length,)."""
    return torch.arange(start, start + length, device=device)


def causal(q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """Each query sees keys at its own position or earlier. (Tq, Tk)"""
    return MaskRule("causal").dense(q_pos, k_pos)


def bidirectional(q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """Every query sees every key (an encoder). (Tq, Tk)"""
    return MaskRule("bidirectional").dense(q_pos, k_pos)


def prefix(q_pos: Tensor, k_pos: Tensor, prefix_len: int) -> Tensor:
    """GLM's prefix-LM mask: bidirectional over the first P tokens, causal after them. (Tq, Tk)

    A query inside the prefix sees the whole prefix; a query after it sees the prefix and the
    tokens up to itself. Keys after the prefix stay hidden from prefix queries.
    """
    return MaskRule("prefix", prefix_len).dense(q_pos, k_pos)


def cross(n_queries: int, key_valid: Tensor) -> Tensor:
    """Decoder queries over encoder keys: every query sees every valid encoder key.

    Args:
        key_valid: (B, Tk) bool, False at padding of the source.
    Returns:
        (B, 1, Tq, Tk) bool.
    """
    device = key_valid.device
    return MaskRule("cross").dense(positions(0, n_queries, device), positions(0, key_valid.shape[1], device), key_valid)


def padding(key_valid: Tensor) -> Tensor:
    """Hide padded keys. key_valid (B, Tk) bool -> (B, 1, 1, Tk), broadcastable over heads and queries."""
    return key_valid[:, None, None, :]


def self_rule(kind: str, *, prefix_len: int = 0, window: int = 0) -> MaskRule:
    """The MaskRule of a self-attention layer; ``prefix_len`` counts only for the prefix kind."""
    if kind not in SELF_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(SELF_KINDS)}")
    return MaskRule(kind, prefix_len if kind == "prefix" else 0, max(window, 0))


def self_attention(
    kind: str,
    q_pos: Tensor,
    k_pos: Tensor,
    *,
    prefix_len: int = 0,
    window: int = 0,
    key_valid: Tensor | None = None,
) -> Tensor:
    """The self-attention mask a model computes with: ``self_rule(...).dense(...)``.

    Args:
        kind: causal | bidirectional | prefix.
        q_pos: (Tq,) absolute query positions. k_pos: (Tk,) absolute key positions.
        key_valid: optional (B, Tk) bool, False at padding.
    Returns:
        (Tq, Tk) bool, or (B, 1, Tq, Tk) when key_valid is given.
    """
    return self_rule(kind, prefix_len=prefix_len, window=window).dense(q_pos, k_pos, key_valid)


def to_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean mask -> additive float mask: 0 where allowed, -inf where forbidden."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
