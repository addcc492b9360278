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

from playground.nn.rebuild import AttentionSource, ImplicitSource, max_output_diff


@dataclass
class AttentionRecord:
    """One layer's attention, as computed in a forward pass.

    source: what the weights are read from, tile by tile or whole (``nn.rebuild``): for softmax
        attention an ``AttentionSource`` (q, k and the kernel's log-sum-exp: the (Tq, Tk) matrix is
        never held); for implicit attention (RWKV, Mamba) an ``ImplicitSource`` that rebuilds any tile from the
        recurrence's per-token quantities.
    kernel: what produced the output: explicit | flash | efficient | cudnn | math | flex | implicit.
    recomputed: True when the output came from a kernel that returns no weights (every kernel but the
        explicit path in float32): the weights shown are rebuilt from the source, and max_abs_diff
        says how far sum_j weight(i, j) v_j is from that kernel's own output.
    call: how the kernel was called: is_causal | no mask | mask (SDPA) | block mask (FlexAttention) |
        weights (the explicit path).
    block_mask: the ``BlockMask`` FlexAttention computed with (which key blocks each query block
        skipped), or None.
    reason: why ``auto`` called SDPA with a mask where FlexAttention would have taken the call, or None.
    layer_type: what sets this layer apart in a model whose layers differ, as codes joined by "," (``sliding:512``,
        ``full``, ``nope``, ``hybrid:3:8``: attention at layer 3 of 8 among other mixers), or None where layers are alike.
    check: (v (B, n_kv, Tk, hs), out (B, nh, Tq, hs)) until the faithfulness check has run: the first
        read of ``max_abs_diff`` runs it tile by tile and lets them go (``settle`` sets a value
        computed elsewhere, e.g. in the same pass as the statistics).

    ``weights``, ``mask`` and ``bias`` are the whole (B, nh, Tq, Tk) / (Tq, Tk) tensors, built from the
    source when read: fine for short prompts and tests; long ones ask the source for tiles.
    """

    kind: str  # self | encoder_self | decoder_self | cross | implicit
    layer: int
    source: "AttentionSource | ImplicitSource"
    kernel: str
    recomputed: bool
    call: str = "weights"
    block_mask: object = None
    reason: str | None = None
    check: tuple[Tensor, Tensor] | None = None
    layer_type: str | None = None
    _max_abs_diff: float | None = None

    @property
    def weights(self) -> Tensor:
        """(B, nh, Tq, Tk): softmax rows sum to 1 and are exactly 0 where the mask is False;
        implicit attention is signed and not normalised."""
        return self.source.dense()

    @property
    def mask(self) -> Tensor:
        """The mask rule evaluated at this call's positions: (Tq, Tk) bool, or (B, 1, Tq, Tk) with padding."""
        return self.source.dense_mask()

    @property
    def bias(self) -> Tensor | None:
        """The additive score bias (ALiBi), (nh, Tq, Tk), or None."""
        return self.source.dense_bias()

    @property
    def max_abs_diff(self) -> float:
        """How far the weights applied to the values are from the kernel's own output."""
        if self._max_abs_diff is None:
            v, out = self.check
            self.settle(max_output_diff(self.source, v, out))
        return self._max_abs_diff

    def settle(self, max_abs_diff: float) -> None:
        """Record the faithfulness check's result and drop the tensors it read."""
        self._max_abs_diff, self.check = float(max_abs_diff), None


class Recorder:
    """Collects ``AttentionRecord``s while a ``capture()`` block is open; does nothing otherwise."""

    def __init__(self) -> None:
        self._records: list[AttentionRecord] | None = None  # None: off
        self._listeners: list = []

    @property
    def on(self) -> bool:
        """True inside ``capture()``: layers then compute what a record needs (weights, a check)."""
        return self._records is not None

    def write(self, record: AttentionRecord) -> None:
        if self._records is not None:
            self._records.append(record)
            for listener in self._listeners:
                listener(record)

    @contextmanager
    def listen(self, listener) -> Iterator[None]:
        """Call ``listener(record)`` as each record is written in the block (an analysis sweeps each layer
        while the next one computes, and reports progress)."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

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
