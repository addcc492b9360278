"""Prompt in, plain data out: what the page, the API and a notebook read.

``analyze`` runs one forward pass with capture on and returns numpy arrays (never tensors):
the tokens, every layer's attention weights and the very mask each layer computed with, which
kernel produced the output and how it was called (is_causal, no mask, mask, block mask), why
``auto`` fell back to a mask where it did, the grid of the block mask FlexAttention used, whether
the weights were recomputed beside the kernel (in float32) and the numeric difference, the dtype
the model ran in, and the time taken. ``Analysis.to_dict`` is JSON-serialisable.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from playground.models.base import LanguageModel
from playground.nn import flex
from playground.nn.kernels import dtype_name
from playground.nn.rebuild import AttentionSource, ImplicitSource
from playground.nn.recorder import AttentionRecord
from playground.inspect.generation import decoder_start
from playground.inspect.tiles import HeadStats, Pooled, sweep
from playground.train.tasks import BOS_ID


OVERVIEW_BUDGET_CELLS = 160_000  # cells in one overview figure: about 2 MB of Plotly JSON


@dataclass
class AttentionMap:
    """One layer's attention of one kind: what its weights are rebuilt from, what its pass over the tiles
    gave (the overview's cells, the head statistics), and how the kernel was called.

    ``weights`` and ``mask`` are whole (nh, Tq, Tk) / (Tq, Tk) arrays, built when read (short prompts, tests,
    export); views of long prompts ask ``source`` for tiles (``inspect.tiles.pool``).
    """

    kind: str             # self | encoder_self | decoder_self | cross | implicit (RWKV, Mamba)
    layer: int
    source: AttentionSource | ImplicitSource
    kernel: str           # explicit | flash | efficient | cudnn | math | flex | implicit
    recomputed: bool      # weights rebuilt beside a kernel that returns none (see AttentionRecord)
    max_abs_diff: float   # max |sum_j weight v_j - the kernel's output| (implicit: the recurrence's own check)
    call: str = "weights"            # is_causal | no mask | mask | block mask | weights
    reason: str | None = None        # why auto called SDPA with a mask instead of FlexAttention
    block_grid: np.ndarray | None = None  # (query blocks, key blocks) int8 of FlexAttention's block mask:
                                          # 0 skipped, 1 computed with the mask, 2 computed in full
    overview: Pooled | None = None   # every head in at most cells x cells (max and mean)
    stats: HeadStats | None = None   # per-head statistics, streamed
    layer_type: str | None = None    # what sets the layer apart (sliding 512, full, NoPE, attention among Mamba layers)

    @classmethod
    def from_record(cls, rec: AttentionRecord, cells: int, tokens=None) -> "AttentionMap":
        """The record of one layer, swept once: overview cells, statistics and the faithfulness check in one pass
        over its tiles; the record's values and output are let go after it."""
        pass_ = sweep(rec.source, cells, tokens, check=rec.check)
        if pass_.max_abs_diff is not None:
            rec.settle(pass_.max_abs_diff)
        grid = None if rec.block_mask is None else flex.block_grid(rec.block_mask)
        return cls(rec.kind, rec.layer, rec.source, rec.kernel, rec.recomputed, rec.max_abs_diff,
                   rec.call, rec.reason, grid, pass_.overview, pass_.stats, rec.layer_type)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(nh, Tq, Tk)"""
        return tuple(self.source.shape[1:])

    @property
    def weights(self) -> np.ndarray:
        """(nh, Tq, Tk) float32: softmax rows sum to 1; implicit attention is signed."""
        return self.source.dense(0).float().numpy()

    @property
    def mask(self) -> np.ndarray:
        """(Tq, Tk) bool: the rule the layer computed with, at its positions."""
        mask = self.source.dense_mask()
        mask = mask if mask.dim() == 2 else mask[0, 0]
        return np.broadcast_to(mask.numpy(), self.shape[1:]).copy()

    @property
    def nbytes(self) -> int:
        pooled = 0 if self.overview is None else self.overview.nbytes
        return self.source.nbytes + pooled


@dataclass
class Analysis:
    config: dict
    token_ids: list[int]              # the (decoder) sequence
    labels: list[str]
    maps: list[AttentionMap]
    elapsed_ms: float
    source_ids: list[int] = field(default_factory=list)   # encoder-decoder only
    source_labels: list[str] = field(default_factory=list)
    prefix_len: int = 0
    dtype: str = "float32"            # what the model and its cache ran in

    @property
    def kinds(self) -> list[str]:
        return list(dict.fromkeys(m.kind for m in self.maps))

    @property
    def kernels(self) -> list[str]:
        return list(dict.fromkeys(m.kernel for m in self.maps))

    @property
    def recomputed(self) -> bool:
        return any(m.recomputed for m in self.maps)

    @property
    def max_abs_diff(self) -> float:
        return max((m.max_abs_diff for m in self.maps), default=0.0)

    def of_kind(self, kind: str | None = None) -> list[AttentionMap]:
        """The maps of one attention kind, layer by layer."""
        kind = kind or self.kinds[0]
        chosen = [m for m in self.maps if m.kind == kind]
        if not chosen:
            raise ValueError(f"no attention of kind {kind!r}; this model has: {', '.join(self.kinds)}")
        return chosen

    def weights(self, kind: str | None = None) -> np.ndarray:
        """Stacked weights of one attention kind: (n_layer, nh, Tq, Tk), rebuilt whole (short prompts)."""
        return np.stack([m.weights for m in self.of_kind(kind)])

    def pooled(self, kind: str | None = None, how: str = "max") -> tuple[np.ndarray, Pooled]:
        """The overview's cells of one kind: (n_layer, nh, n, n) max or mean, and the first layer's ``Pooled``
        (its cells' geometry, the same for every layer)."""
        maps = self.of_kind(kind)
        return np.stack([m.overview.cells(how) for m in maps]), maps[0].overview

    def head_stats(self, kind: str | None = None) -> list[dict]:
        """Every head's statistics (``inspect.tiles.STATS``), one dict per (layer, head)."""
        return [row for m in self.of_kind(kind) for row in m.stats.rows(m.layer)]

    @property
    def nbytes(self) -> int:
        """What this analysis holds: every layer's source (q, k, lse) and overview cells; no (Tq, Tk) matrix."""
        return sum(m.nbytes for m in self.maps)

    def to_dict(self, digits: int = 4) -> dict:
        """JSON-serialisable, weights rounded to ``digits`` significant digits (whole: short prompts only)."""
        return {
            "config": self.config, "token_ids": self.token_ids, "labels": self.labels,
            "source_ids": self.source_ids, "source_labels": self.source_labels, "prefix_len": self.prefix_len,
            "elapsed_ms": round(self.elapsed_ms, 3), "kernels": self.kernels, "recomputed": self.recomputed,
            "max_abs_diff": self.max_abs_diff, "dtype": self.dtype,
            "maps": [{"kind": m.kind, "layer": m.layer, "layer_type": m.layer_type, "kernel": m.kernel, "call": m.call,
                      "reason": m.reason,
                      "block_grid": None if m.block_grid is None else m.block_grid.tolist(),
                      "recomputed": m.recomputed,
                      "max_abs_diff": m.max_abs_diff, "mask": m.mask.astype(int).tolist(),
                      "weights": _round_sig(m.weights, digits).tolist()} for m in self.maps],
        }


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    x = x.astype(np.float64)
    scale = np.where(x == 0, 1.0, 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x))))))
    return np.round(x * scale) / scale


def overview_cells(n_heads_drawn: int, max_cells: int = OVERVIEW_BUDGET_CELLS, most: int = 128) -> int:
    """Cells per head side of an overview of ``n_heads_drawn`` heads (every layer x head of every kind), so
    the whole figure stays under ``max_cells`` cells (about 2 MB of figure JSON)."""
    return max(16, min(most, int(np.sqrt(max_cells / max(1, n_heads_drawn)))))


@torch.no_grad()
def analyze(model: LanguageModel, ids: list[int], *, prefix_len: int = 0, target_ids: list[int] | None = None,
            labels: list[str] | None = None, target_labels: list[str] | None = None, bos_id: int = BOS_ID,
            progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None) -> Analysis:
    """Run ``ids`` through ``model`` once, capturing every layer's attention as it is computed.

    Each layer's record is swept as soon as it is written (``inspect.tiles.sweep``: overview cells,
    head statistics, faithfulness check), so the forward never holds more than one layer's values.

    Args:
        ids: the prompt; for an encoder-decoder, the source.
        prefix_len: prefix family: the first prefix_len tokens attend bidirectionally.
        target_ids: encoder-decoder only: the decoder input (default: just bos_id).
        labels / target_labels: display strings for the tokens (default: the ids).
        progress: called (done, total) after each attention layer.
        cancelled: asked after each layer; True stops the analysis with ``Cancelled``.
    """
    if not ids:
        raise ValueError("the prompt is empty: give at least one token")
    model.eval()
    weight = next(model.parameters())
    device, dtype = weight.device, weight.dtype
    x = torch.tensor([ids], device=device)
    cfg = model.cfg
    encdec = cfg.family == "encdec"
    tgt = (list(target_ids) if target_ids else [decoder_start(model, bos_id)]) if encdec else None
    total = cfg.attention_calls
    cells = overview_cells(total * cfg.n_heads)
    maps: list[AttentionMap] = []

    def take(rec: AttentionRecord) -> None:
        tokens = (list(ids) if rec.kind == "encoder_self" else tgt) if encdec else list(ids)
        maps.append(AttentionMap.from_record(rec, cells, tokens))
        if progress is not None:
            progress(len(maps), total)
        if cancelled is not None and cancelled():
            raise Cancelled(f"stopped after {len(maps)} of {total} attention layers")

    start = time.perf_counter()
    with model.recorder.listen(take):
        if encdec:
            model(x, torch.tensor([tgt], device=device), capture=True, logits="none")  # attention alone
            seq, seq_labels, source, source_labels = tgt, target_labels, list(ids), labels
        else:
            model(x, prefix_len=prefix_len, capture=True, logits="none")
            seq, seq_labels, source, source_labels = list(ids), labels, [], []
    elapsed = (time.perf_counter() - start) * 1e3
    return Analysis(
        config=cfg.to_dict(), token_ids=seq, labels=list(seq_labels or map(str, seq)),
        maps=maps, elapsed_ms=elapsed,
        source_ids=source, source_labels=list(source_labels or map(str, source)), prefix_len=prefix_len,
        dtype=dtype_name(dtype),
    )


class Cancelled(ValueError):
    """The reader stopped an analysis before it finished."""
