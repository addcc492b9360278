"""Capture by name, not by plumbing: the recorder that attention layers write into when asked.

A model holds one ``Recorder`` and hands it to each of its attention layers (and recurrent
mixers) when it builds them. It is off by default, and a layer's ``forward`` returns only its
output; while a ``capture()`` block is open, each layer also writes one ``AttentionRecord`` of
what it computed. So no ``forward`` signature carries weights::

    with model.recorder.capture() as records:
        model(ids)
    records[0].weights  # (B, nh, T, T), the first layer's attention

Captures nest: records written inside an inner block are also handed to the outer one.

Glossary: B batch, nh heads, Tq queries, Tk keys.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor


@dataclass
class AttentionRecord:
    """One layer's attention, as computed in a forward pass.

    weights: (B, nh, Tq, Tk); softmax rows sum to 1 and are exactly 0 where ``mask`` is False;
        implicit attention (RWKV, Mamba) is signed and not normalised.
    mask: the bool tensor the layer computed with, broadcastable to (B, 1, Tq, Tk).
    bias: the additive score bias (ALiBi), (nh, Tq, Tk), or None.
    kernel: what produced the output: explicit | flash | efficient | cudnn | math | flex | implicit.
    recomputed: True when the output came from another kernel or dtype than the float32 explicit
        path, and the weights from that path run beside it; max_abs_diff is then max |out - out_explicit|.
    max_abs_diff: how far the weights applied to the values are from an independent computation
        of the layer's output (0.0 for the explicit path, whose output is weights @ values).
    call: how the kernel was called: is_causal | no mask | mask (SDPA) | block mask (FlexAttention) |
        weights (the explicit path).
    block_mask: the ``BlockMask`` FlexAttention computed with (which key blocks each query block
        skipped), or None.
    reason: why ``auto`` called SDPA with a mask where FlexAttention would have taken the call, or None.
    """

    kind: str  # self | encoder_self | decoder_self | cross | implicit
    layer: int
    weights: Tensor
    mask: Tensor
    bias: Tensor | None
    kernel: str
    recomputed: bool
    max_abs_diff: float
    call: str = "weights"
    block_mask: object = None
    reason: str | None = None


class Recorder:
    """Collects ``AttentionRecord``s while a ``capture()`` block is open; does nothing otherwise."""

    def __init__(self) -> None:
        self._records: list[AttentionRecord] | None = None  # None: off

    @property
    def on(self) -> bool:
        """True inside ``capture()``: layers then compute what a record needs (weights, a check)."""
        return self._records is not None

    def write(self, record: AttentionRecord) -> None:
        if self._records is not None:
            self._records.append(record)

    @contextmanager
    def capture(self) -> Iterator[list[AttentionRecord]]:
        """Turn recording on for the block; yields the list the records are written to, in layer order."""
        outer, records = self._records, []
        self._records = records
        try:
            yield records
        finally:
            self._records = outer
            if outer is not None:
                outer.extend(records)
