"""Synthetic tasks: seeded, pure functions ``task(batch, length, vocab_size, generator)`` returning
``(inputs, targets, loss_mask)``, each ``(B, T)``: targets are the next tokens
(``targets[:, t] == sequence[t + 1]``) and ``loss_mask`` selects the positions whose target
the task defines. ``generator`` is a ``torch.Generator``, an int seed, or None (torch's
global RNG). Copy and reverse also come in encoder-decoder form, ``(src, tgt_in, tgt_out)``.
Reserved ids, shared by every task:

======  ========  ===========================================================
id      name      use
======  ========  ===========================================================
0       PAD_ID    padding (never produced by these tasks)
1       BOS_ID    first token of every sequence; start token of seq2seq targets
2       SEP_ID    separates the input half from the answer half (copy, reverse)
3       QUERY_ID  marks the query key (associative recall)
4..V-1            data tokens
======  ========  ===========================================================
"""
from __future__ import annotations

from types import MappingProxyType

import torch

PAD_ID, BOS_ID, SEP_ID, QUERY_ID = 0, 1, 2, 3
N_SPECIAL = 4  # data tokens are N_SPECIAL .. vocab_size - 1


Seed = torch.Generator | int | None  # a generator, a seed for a fresh one, or torch's global RNG
TaskBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (inputs, targets, loss_mask)
Seq2SeqBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (src, tgt_in, tgt_out)


def generator_of(generator: Seed) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(int(generator))


def _data_tokens(shape: tuple[int, ...], vocab_size: int, g: torch.Generator | None) -> torch.Tensor:
    if vocab_size <= N_SPECIAL:
        raise ValueError(f"vocab_size must exceed the {N_SPECIAL} reserved ids, got {vocab_size}")
    return torch.randint(N_SPECIAL, vocab_size, shape, generator=g)


def _distinct_tokens(batch: int, n: int, low: int, high: int, g: torch.Generator | None) -> torch.Tensor:
    """``n`` distinct ids from ``[low, high)`` per row: (B, n)."""
    if n > high - low:
        raise ValueError(f"cannot draw {n} distinct tokens from {high - low} ids; "
                         "raise vocab_size or shorten the sequence")
    return torch.rand(batch, high - low, generator=g).argsort(dim=1)[:, :n] + low


def _shift(seq: torch.Tensor, answer_from: int) -> TaskBatch:
    """Next-token form of (B, L) sequences; the loss covers targets at seq index >= answer_from."""
    inputs, targets = seq[:, :-1], seq[:, 1:]  # (B, L-1) each
    loss_mask = torch.zeros_like(targets, dtype=torch.bool)
    loss_mask[:, answer_from - 1:] = True
    return inputs.contiguous(), targets.contiguous(), loss_mask


def _copy_or_reverse(batch: int, length: int, vocab_size: int,
                     generator: Seed, reverse: bool) -> TaskBatch:
    g = generator_of(generator)
    body = _data_tokens((batch, length), vocab_size, g)  # (B, n)
    answer = body.flip(1) if reverse else body
    bos = torch.full((batch, 1), BOS_ID)
    sep = torch.full((batch, 1), SEP_ID)
    seq = torch.cat([bos, body, sep, answer], dim=1)  # (B, 2n+2)
    return _shift(seq, answer_from=length + 2)


def copy_task(batch: int, length: int, vocab_size: int,
              generator: Seed = None) -> TaskBatch:
    """``BOS a_1..a_n SEP a_1..a_n``; the loss covers the copied half.

    Returns ``(inputs, targets, loss_mask)``, each (B, 2n+1); ``loss_mask`` is True on the last n.
    """
    return _copy_or_reverse(batch, length, vocab_size, generator, reverse=False)


def reverse_task(batch: int, length: int, vocab_size: int,
                 generator: Seed = None) -> TaskBatch:
    """``BOS a_1..a_n SEP a_n..a_1``; like :func:`copy_task` with the answer reversed."""
    return _copy_or_reverse(batch, length, vocab_size, generator, reverse=True)


def induction_task(batch: int, length: int, vocab_size: int,
                   generator: Seed = None) -> TaskBatch:
    """``BOS r_1..r_n r_1..r_n`` with n distinct random tokens per row.

    The loss covers the repeated half from ``r_2`` on: the n-1 tokens an induction head can
    predict (``r_1`` of the repeat follows ``r_n``, which never preceded anything). In the full
    (2n+1)-token sequence, query ``i`` of the repeat should attend to key ``i + 1 - n``, the
    token after its first occurrence (the ``diagonal(offset=1-n)`` induction score).
    Returns ``(inputs, targets, loss_mask)``, each (B, 2n).
    """
    g = generator_of(generator)
    first = _distinct_tokens(batch, length, N_SPECIAL, vocab_size, g)  # (B, n)
    seq = torch.cat([torch.full((batch, 1), BOS_ID), first, first], dim=1)  # (B, 2n+1)
    return _shift(seq, answer_from=length + 2)


def associative_recall_task(batch: int, n_pairs: int, vocab_size: int,
                            generator: Seed = None) -> TaskBatch:
    """``BOS k_1 v_1 .. k_n v_n QUERY k_q v_q``: recall the value stored with the query key.

    Keys are distinct and drawn from the lower half of the data ids, values (repeats allowed)
    from the upper half, so a key is never mistaken for a value. The loss covers only the last
    position, whose target is ``v_q``. Returns ``(inputs, targets, loss_mask)``, each (B, 2n+3).
    """
    g = generator_of(generator)
    half = N_SPECIAL + (vocab_size - N_SPECIAL) // 2
    keys = _distinct_tokens(batch, n_pairs, N_SPECIAL, half, g)  # (B, n)
    values = torch.randint(half, vocab_size, (batch, n_pairs), generator=g)  # (B, n)
    pick = torch.randint(0, n_pairs, (batch, 1), generator=g)  # (B, 1)
    pairs = torch.stack([keys, values], dim=2).reshape(batch, 2 * n_pairs)  # (B, 2n)
    seq = torch.cat([torch.full((batch, 1), BOS_ID), pairs, torch.full((batch, 1), QUERY_ID),
                     keys.gather(1, pick), values.gather(1, pick)], dim=1)  # (B, 2n+4)
    return _shift(seq, answer_from=seq.shape[1] - 1)


def _seq2seq(batch: int, length: int, vocab_size: int,
             generator: Seed, reverse: bool) -> Seq2SeqBatch:
    g = generator_of(generator)
    src = _data_tokens((batch, length), vocab_size, g)  # (B, n)
    tgt_out = src.flip(1) if reverse else src.clone()  # (B, n)
    tgt_in = torch.cat([torch.full((batch, 1), BOS_ID), tgt_out[:, :-1]], dim=1)  # (B, n)
    return src, tgt_in, tgt_out


def copy_seq2seq(batch: int, length: int, vocab_size: int,
                 generator: Seed = None) -> Seq2SeqBatch:
    """Encoder-decoder copy: ``(src, tgt_in, tgt_out)``, each (B, n); tgt_in is BOS + tgt_out[:-1]."""
    return _seq2seq(batch, length, vocab_size, generator, reverse=False)


def reverse_seq2seq(batch: int, length: int, vocab_size: int,
                    generator: Seed = None) -> Seq2SeqBatch:
    """Encoder-decoder reverse: like :func:`copy_seq2seq` with ``tgt_out = src`` reversed."""
    return _seq2seq(batch, length, vocab_size, generator, reverse=True)


TASKS = MappingProxyType({"copy": copy_task, "reverse": reverse_task, "induction": induction_task,
                          "associative_recall": associative_recall_task})
SEQ2SEQ_TASKS = MappingProxyType({"copy": copy_seq2seq, "reverse": reverse_seq2seq})
