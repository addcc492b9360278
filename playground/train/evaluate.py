"""Validation: loss on held-out text (at any length, and by position) and on synthetic tasks.

Text is cut into non-overlapping windows of the evaluation length; a decoder predicts every
next token of a window, an encoder-decoder reads one window and predicts the next. Loss is in
nats per token; bits per character = nats / ln 2 / (characters per token), so models with
different tokenizers compare.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from playground.models.base import LanguageModel
from playground.models.transformer import EncoderDecoder


def _windows(n_tokens: int, span: int, limit: int | None) -> np.ndarray:
    """Start offsets of non-overlapping windows of ``span`` tokens, evenly spread if limited."""
    count = (n_tokens - 1) // span
    if count < 1:
        raise ValueError(f"validation text has {n_tokens} tokens, fewer than one window of {span}")
    starts = np.arange(count) * span
    if limit is not None and limit < count:
        starts = starts[np.linspace(0, count - 1, limit).round().astype(int)]
    return starts


def batch_loss(model: LanguageModel, batch: dict, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the masked targets (mean), or per position (B, T) with reduction='none'."""
    if "src" in batch:
        logits = model(batch["src"], batch["tgt"]).logits
    else:
        logits = model(batch["x"], prefix_len=batch.get("prefix_len", 0)).logits  # (B, T, V)
    losses = F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten(), reduction="none")
    losses = losses.view_as(batch["targets"]) * batch["loss_mask"]
    if reduction == "none":
        return losses
    return losses.sum() / batch["loss_mask"].sum().clamp(min=1)


@torch.no_grad()
def evaluate_text(model: LanguageModel, ids: np.ndarray, length: int, windows: int | None = None,
                  by_position: bool = False, batch_size: int = 16) -> dict:
    """Mean next-token loss over windows of ``length`` tokens.

    Returns {"loss": nats/token, "tokens": count, "by_position": (length,) mean loss per
    position when asked}. Raises ValueError when the model cannot take ``length`` positions.
    """
    model.eval()
    encdec = isinstance(model, EncoderDecoder)
    span = 2 * length if encdec else length
    starts = _windows(len(ids), span, windows)
    device = model.lm_head.weight.device
    total = torch.zeros(length, dtype=torch.float64)
    n = 0
    for i in range(0, len(starts), batch_size):
        chunk = torch.from_numpy(np.stack([ids[s:s + span + 1].astype(np.int64) for s in starts[i:i + batch_size]]))
        chunk = chunk.to(device)
        if encdec:
            src, out = chunk[:, :length], chunk[:, length:span]
            bos = torch.full_like(out[:, :1], 1)
            logits = model(src, torch.cat([bos, out[:, :-1]], dim=1)).logits
            targets = out
        else:
            logits = model(chunk[:, :length]).logits  # (B, T, V)
            targets = chunk[:, 1:length + 1]
        losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
        total += losses.view(targets.shape).sum(0).double().cpu()
        n += targets.shape[0]
    by_pos = (total / n).tolist()
    result = {"loss": float(total.sum() / (n * length)), "tokens": n * length}
    if by_position:
        result["by_position"] = by_pos
    return result


@torch.no_grad()
def evaluate_task(model: LanguageModel, batches, n_batches: int, seed: int) -> dict:
    """Loss and accuracy on the positions a synthetic task scores, on fresh seeded batches."""
    model.eval()
    saved, batches.g = batches.g, torch.Generator().manual_seed(seed)
    try:
        losses, correct, count = [], 0, 0
        for _ in range(max(1, n_batches // 8)):
            batch = {k: (v.to(model.lm_head.weight.device) if isinstance(v, torch.Tensor) else v)
                     for k, v in batches.train_batch().items()}
            losses.append(float(batch_loss(model, batch)))
            logits = (model(batch["src"], batch["tgt"]) if "src" in batch else model(batch["x"])).logits
            hit = (logits.argmax(-1) == batch["targets"]) & batch["loss_mask"]
            correct += int(hit.sum())
            count += int(batch["loss_mask"].sum())
    finally:
        batches.g = saved
    return {"loss": float(np.mean(losses)), "accuracy": correct / max(1, count)}
