"""Fill the mask: what an encoder-only model (BERT, ModernBERT) predicts at each masked token, and the attention
that led there.

One forward with capture on: for every position holding the mask token, the top tokens of the model's
distribution there, and that position's attention row in every layer and head (rebuilt from the same forward's
records, the row alone: no T x T matrix).

Glossary: T tokens, nh heads, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from playground.inspect.generation import pool_row

MASK_TOKENS = ("[MASK]", "<mask>")  # BERT's and RoBERTa / ModernBERT's


@dataclass
class MaskFill:
    position: int                  # where the mask token stands in the prompt
    top_ids: list[int]             # the most likely tokens there, most likely first
    top_probs: list[float]         # their probabilities
    attention: np.ndarray          # (n_layer, nh, T) that position's attention in every layer (pooled past ROW_CELLS)


@torch.no_grad()
def fill_mask(model, ids: list[int], mask_id: int, top: int = 5) -> list[MaskFill]:
    """Every masked position of ``ids`` filled by ``model`` (a masked-LM ``HubModel``): ValueError without a mask."""
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise ValueError("the prompt has no mask token: write one where the model should fill in a word")
    if getattr(model, "task", None) != "masked":
        raise ValueError("filling a mask needs an encoder-only model with a masked-LM head (BERT, ModernBERT)")
    model.eval()
    out = model(torch.tensor([ids]), capture=True)
    probs = torch.softmax(out.logits[0].float(), dim=-1)  # (T, V)
    fills = []
    for p in positions:
        best = torch.topk(probs[p], min(top, probs.shape[-1]))
        rows = [rec.source.tile(p, p + 1, 0, rec.source.shape[-1])[:, 0].numpy() for rec in out.attentions]
        fills.append(MaskFill(p, best.indices.tolist(), [float(v) for v in best.values],
                              pool_row(np.stack(rows))))
    return fills


def mask_token_id(tokenizer) -> int:
    """The id of the tokenizer's mask token (``[MASK]`` or ``<mask>``); ValueError when it has none."""
    for token in MASK_TOKENS:
        found = tokenizer.token_to_id(token)
        if found is not None:
            return found
    raise ValueError(f"this tokenizer has no mask token ({' or '.join(MASK_TOKENS)}): it cannot fill a mask")
