"""transformers' attention masks as a ``MaskRule``: the mask function the playground registers beside its attention.

transformers builds every mask in ``masking_utils`` by handing a *mask function* ``f(batch, head, q_idx, kv_idx)``
(causal, sliding window, bidirectional, ...) and the 2-D padding mask to the interface registered under the
model's attention implementation. ``rule_mask`` is that interface for ``"playground"``: instead of evaluating
``f`` at every (query, key) pair (a T x T tensor), it reads the rule off ``f`` along a few rows and checks it on
a sample, and hands the attention function a ``RuleMask``: the rule, the positions, and which keys are padding.

Glossary: B batch, Tq queries, Tk keys, W window.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from playground.nn.masks import MaskRule

SAMPLE_PAIRS = 4096  # random (query, key) pairs on which a rule read off a mask function is checked


class UnsupportedMask(ValueError):
    """A model's mask function is none of the rules the playground rebuilds tiles from."""


@dataclass(frozen=True)
class RuleMask:
    """What one ``create_*_mask`` call of transformers asked for, as a rule instead of a (B, 1, Tq, Tk) tensor.

    rule: which key a query sees, from absolute positions (kind causal | bidirectional, and a window).
    q_start / k_start: the absolute position of query 0 and key 0.
    key_valid: (B, Tk) bool, False at padding; None without padding.
    """

    rule: MaskRule
    q_start: int
    k_start: int
    q_length: int
    kv_length: int
    key_valid: Tensor | None = None

    def dense(self, device: torch.device | str = "cpu") -> Tensor:
        """The rule at every (query, key) of this call: (Tq, Tk) bool, or (B, 1, Tq, Tk) with padding. For a kernel
        call that takes a mask tensor (and tests); the views read tiles from the rule."""
        q_pos = torch.arange(self.q_start, self.q_start + self.q_length, device=device)
        k_pos = torch.arange(self.k_start, self.k_start + self.kv_length, device=device)
        valid = None if self.key_valid is None else self.key_valid.to(device)
        return self.rule.dense(q_pos, k_pos, valid)


def _evaluate(mask_function, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """f at the pairs (q_pos[n], k_pos[n]) of batch 0, head 0. (n,) bool"""
    zero = torch.zeros_like(q_pos)
    out = mask_function(zero, zero, q_pos, k_pos)
    return torch.as_tensor(out, dtype=torch.bool).expand(q_pos.shape)


def read_rule(mask_function, q_start: int, q_length: int, k_start: int, kv_length: int, seed: int = 0) -> MaskRule:
    """The ``MaskRule`` a transformers mask function computes over these positions, in O(Tq + Tk) evaluations.

    The candidate is read off two rows (does the first query see later keys; how far back does the last one see)
    and then checked
    against ``mask_function`` on the first, middle and last rows, the first and last columns, and
    ``SAMPLE_PAIRS`` random pairs. Raises UnsupportedMask when they disagree (a chunked or custom mask).
    """
    q_last = q_start + q_length - 1
    keys = torch.arange(k_start, k_start + kv_length)
    first = _evaluate(mask_function, torch.full_like(keys, q_start), keys)
    kind = "bidirectional" if bool(first[keys > q_start].any()) else "causal"
    row = _evaluate(mask_function, torch.full_like(keys, q_last), keys)
    seen = keys[row]
    window = 0
    if len(seen):
        back = q_last - int(seen.min()) + 1       # keys seen at or before the query, counting it
        if int(seen.min()) > k_start and back > 0:  # the oldest keys are hidden: a window
            window = back
    rule = MaskRule(kind, window=window)
    if not _agrees(rule, mask_function, q_start, q_length, k_start, kv_length, seed):
        raise UnsupportedMask("this model's attention mask is neither causal nor bidirectional with an optional "
                              "sliding window (a chunked or custom mask): the playground cannot rebuild its weights")
    return rule


def _agrees(rule: MaskRule, mask_function, q_start: int, q_length: int, k_start: int, kv_length: int,
            seed: int) -> bool:
    gen = torch.Generator().manual_seed(seed)
    qs = torch.arange(q_start, q_start + q_length)
    ks = torch.arange(k_start, k_start + kv_length)
    q_probe = [qs[[0]].expand(kv_length), qs[[q_length // 2]].expand(kv_length), qs[[-1]].expand(kv_length),
               qs, qs, qs[torch.randint(q_length, (SAMPLE_PAIRS,), generator=gen)]]
    k_probe = [ks, ks, ks, ks[[0]].expand(q_length), ks[[-1]].expand(q_length),
               ks[torch.randint(kv_length, (SAMPLE_PAIRS,), generator=gen)]]
    q_pos, k_pos = torch.cat(q_probe), torch.cat(k_probe)
    return torch.equal(_evaluate(mask_function, q_pos, k_pos), rule.allows(q_pos, k_pos))


def rule_mask(batch_size: int, q_length: int | None = None, kv_length: int = 0, q_offset: int = 0,
              kv_offset: int = 0, mask_function=None, attention_mask: Tensor | None = None,
              cache_position: Tensor | None = None, **_) -> RuleMask:
    """transformers' mask interface for ``"playground"``: a ``RuleMask`` for the call, never a T x T tensor.

    Args (as ``masking_utils.sdpa_mask`` takes them): q_length / kv_length, the positions q_offset / kv_offset
    (or cache_position), the mask function, and the 2-D padding mask (B, >= kv_offset + Tk), 1 where a token is real.
    """
    from transformers.masking_utils import causal_mask_function, prepare_padding_mask

    if q_length is None:  # older call convention: the query positions themselves
        q_length, q_offset = len(cache_position), int(cache_position[0])
    mask_function = mask_function or causal_mask_function
    rule = read_rule(mask_function, int(q_offset), int(q_length), int(kv_offset), int(kv_length))
    key_valid = None
    padding = prepare_padding_mask(attention_mask, kv_length, kv_offset)
    if padding is not None:
        key_valid = padding[:, kv_offset:kv_offset + kv_length].bool()
        if bool(key_valid.all()):
            key_valid = None
    return RuleMask(rule, int(q_offset), int(kv_offset), int(q_length), int(kv_length), key_valid)
