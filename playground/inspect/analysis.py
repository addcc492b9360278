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
from dataclasses import dataclass, field

import numpy as np
import torch

from playground.models.base import LanguageModel
from playground.models.transformer import EncoderDecoder
from playground.nn import flex
from playground.nn.kernels import dtype_name
from playground.nn.recorder import AttentionRecord
from playground.train.data import BOS_ID


@dataclass
class AttentionMap:
    kind: str             # self | encoder_self | decoder_self | cross | implicit (RWKV, Mamba)
    layer: int
    weights: np.ndarray   # (nh, Tq, Tk) float32: softmax rows sum to 1; implicit attention is signed
    mask: np.ndarray      # (Tq, Tk) bool, the mask the layer computed with
    kernel: str           # explicit | flash | efficient | cudnn | math | flex | implicit
    recomputed: bool      # weights from the float32 explicit path run beside the kernel
    max_abs_diff: float   # max |out - out_explicit| when recomputed
    call: str = "weights"            # is_causal | no mask | mask | block mask | weights
    reason: str | None = None        # why auto called SDPA with a mask instead of FlexAttention
    block_grid: np.ndarray | None = None  # (query blocks, key blocks) int8 of FlexAttention's block mask:
                                          # 0 skipped, 1 computed with the mask, 2 computed in full

    @classmethod
    def from_record(cls, rec: AttentionRecord, batch_index: int = 0) -> "AttentionMap":
        weights = rec.weights[batch_index].float().cpu().numpy()  # (nh, Tq, Tk)
        mask = rec.mask if rec.mask.dim() == 2 else rec.mask[batch_index, 0]
        mask = np.broadcast_to(mask.cpu().numpy(), weights.shape[1:]).copy()  # (Tq, Tk)
        grid = None if rec.block_mask is None else flex.block_grid(rec.block_mask)
        return cls(rec.kind, rec.layer, weights, mask, rec.kernel, rec.recomputed, rec.max_abs_diff,
                   rec.call, rec.reason, grid)


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

    def weights(self, kind: str | None = None) -> np.ndarray:
        """Stacked weights of one attention kind: (n_layer, nh, Tq, Tk)."""
        kind = kind or self.kinds[0]
        chosen = [m.weights for m in self.maps if m.kind == kind]
        if not chosen:
            raise ValueError(f"no attention of kind {kind!r}; this model has: {', '.join(self.kinds)}")
        return np.stack(chosen)

    def to_dict(self, digits: int = 4) -> dict:
        """JSON-serialisable, weights rounded to ``digits`` significant digits."""
        return {
            "config": self.config, "token_ids": self.token_ids, "labels": self.labels,
            "source_ids": self.source_ids, "source_labels": self.source_labels, "prefix_len": self.prefix_len,
            "elapsed_ms": round(self.elapsed_ms, 3), "kernels": self.kernels, "recomputed": self.recomputed,
            "max_abs_diff": self.max_abs_diff, "dtype": self.dtype,
            "maps": [{"kind": m.kind, "layer": m.layer, "kernel": m.kernel, "call": m.call, "reason": m.reason,
                      "block_grid": None if m.block_grid is None else m.block_grid.tolist(),
                      "recomputed": m.recomputed,
                      "max_abs_diff": m.max_abs_diff, "mask": m.mask.astype(int).tolist(),
                      "weights": _round_sig(m.weights, digits).tolist()} for m in self.maps],
        }


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    x = x.astype(np.float64)
    scale = np.where(x == 0, 1.0, 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(np.where(x == 0, 1.0, x))))))
    return np.round(x * scale) / scale


@torch.no_grad()
def analyze(model: LanguageModel, ids: list[int], *, prefix_len: int = 0, target_ids: list[int] | None = None,
            labels: list[str] | None = None, target_labels: list[str] | None = None, bos_id: int = BOS_ID) -> Analysis:
    """Run ``ids`` through ``model`` once, capturing every layer's attention.

    Args:
        ids: the prompt; for an encoder-decoder, the source.
        prefix_len: prefix family: the first prefix_len tokens attend bidirectionally.
        target_ids: encoder-decoder only: the decoder input (default: just bos_id).
        labels / target_labels: display strings for the tokens (default: the ids).
    """
    if not ids:
        raise ValueError("the prompt is empty: give at least one token")
    model.eval()
    device = model.lm_head.weight.device
    x = torch.tensor([ids], device=device)
    start = time.perf_counter()
    if isinstance(model, EncoderDecoder):
        tgt = list(target_ids) if target_ids else [bos_id]
        out = model(x, torch.tensor([tgt], device=device), capture=True, logits="none")  # attention alone
        seq, seq_labels, source, source_labels = tgt, target_labels, list(ids), labels
    else:
        out = model(x, prefix_len=prefix_len, capture=True, logits="none")
        seq, seq_labels, source, source_labels = list(ids), labels, [], []
    elapsed = (time.perf_counter() - start) * 1e3
    return Analysis(
        config=model.cfg.to_dict(), token_ids=seq, labels=list(seq_labels or map(str, seq)),
        maps=[AttentionMap.from_record(r) for r in out.attentions], elapsed_ms=elapsed,
        source_ids=source, source_labels=list(source_labels or map(str, source)), prefix_len=prefix_len,
        dtype=dtype_name(model.lm_head.weight.dtype),
    )
