"""Head ablation: remove one head's output and measure what the model loses.

Head h of a layer writes ``y^h W_O^h`` into the residual stream, where y^h (B, T, hs) is the head's
output, its slice h*hs:(h+1)*hs of the o_proj input. A forward pre-hook on o_proj replaces that slice (for a Hub
model, the playground's attention function replaces head h of what it hands back to the layer, which is the same
slice whatever the architecture calls its output projection):

- zero ablation:  y^h <- 0 (the head writes nothing; o_proj's bias stays);
- mean ablation:  y^h_t <- mean_{t'} y^h_{t'}, the mean over the sequence's positions, per sequence
  (the head writes its average, carrying no information about which token is where).

For every (layer, head) in turn the model runs again, and ``ablate_heads`` reports the change from
the unablated model in the loss (mean cross-entropy over the scored positions, nats) and in the
target token's logit (mean over the scored positions): positive loss change = the head helped.

Glossary: B batch, T tokens, L layers, nh query heads, hs head dim, V vocabulary.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from playground.inspect.hooks import as_batch, blocks_of, hooked
from playground.inspect.logit_lens import CHUNK, layer_states
from playground.models.base import LanguageModel
from playground.models.hf.model import HubModel

MODES = ("zero", "mean")


def _shape(model) -> tuple[int, int]:
    """(self-attention layers, heads per layer) of a decoder-only or prefix Transformer, or of any Hub model (its
    attention layers among the others)."""
    if isinstance(model, HubModel):
        if model.task != "causal":
            raise ValueError("head ablation scores next-token predictions: it reads a causal (decoder-only) model")
        return model.cfg.attention_layers, model.cfg.n_heads
    blocks = blocks_of(model)
    return len(blocks), blocks[0].self_attn.n_heads


@contextmanager
def _hub_heads_ablated(model: HubModel, heads, mode: str) -> Iterator[None]:
    """A Hub model's heads ablated inside its attention function, where y^h leaves the kernel for o_proj."""
    before = model.settings.ablated
    ablated: dict = {}
    for layer, head in heads:
        ablated.setdefault(("self", layer), {})[head] = mode
    model.settings.ablated = ablated
    try:
        yield
    finally:
        model.settings.ablated = before


@contextmanager
def heads_ablated(model: LanguageModel, heads, mode: str = "zero") -> Iterator[None]:
    """Inside this block, every (layer, head) in ``heads`` of the self-attention layers is zero- or
    mean-ablated (one forward pre-hook per layer on its o_proj; a Hub model's inside its attention function)."""
    if mode not in MODES:
        raise ValueError(f"ablation mode must be one of {', '.join(MODES)}, got {mode!r}")
    n_layers, n_heads = _shape(model)
    for layer, head in heads:
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer must be from 0 to {n_layers - 1}, got {layer}")
        if not 0 <= head < n_heads:
            raise ValueError(f"head must be from 0 to {n_heads - 1}, got {head}")
    if isinstance(model, HubModel):
        with _hub_heads_ablated(model, heads, mode):
            yield
        return
    blocks = blocks_of(model)
    by_layer: dict[int, list[slice]] = {}
    for layer, head in heads:
        attn = blocks[layer].self_attn
        by_layer.setdefault(layer, []).append(slice(head * attn.head_dim, (head + 1) * attn.head_dim))

    def pre_hook(cols: list[slice]):
        def hook(module, args):
            y = args[0].clone()  # (B, T, nh * hs)
            for c in cols:
                y[..., c] = 0.0 if mode == "zero" else y[..., c].mean(dim=1, keepdim=True)
            return (y, *args[1:])
        return hook

    with hooked(*(blocks[layer].self_attn.o_proj.register_forward_pre_hook(pre_hook(cols))
                  for layer, cols in by_layer.items())):
        yield


@dataclass
class Ablation:
    mode: str
    loss: float               # the unablated model's loss (nats)
    target_logit: float       # the unablated model's mean target logit
    d_loss: np.ndarray        # (L, nh) loss with the head ablated minus loss
    d_target_logit: np.ndarray  # (L, nh) mean target logit with the head ablated minus target_logit

    def to_dict(self) -> dict:
        return {"mode": self.mode, "loss": self.loss, "target_logit": self.target_logit,
                "d_loss": self.d_loss.tolist(), "d_target_logit": self.d_target_logit.tolist()}


def forward_score(model: LanguageModel, x: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                  prefix_len: int = 0) -> tuple[float, float]:
    """Mean cross-entropy and mean target logit over the positions where ``mask`` is set (x, targets, mask (B, T)),
    of one forward, its logits read ``CHUNK`` scored positions at a time from the last block's output
    (the model's own final norm and head): never (T, V), which at a long prompt is more than T² / 8."""
    states, readout = layer_states(model, x, prefix_len=prefix_len, last=True)
    h, targets = states[-1][mask], targets[mask]  # (N, d), (N,)
    loss = logit = 0.0
    for a in range(0, len(targets), CHUNK):
        logits, wanted = readout(h[a:a + CHUNK]).float(), targets[a:a + CHUNK]  # (chunk, V), (chunk,)
        loss += float(F.cross_entropy(logits, wanted, reduction="sum"))
        logit += float(logits.gather(-1, wanted[:, None]).sum())
    return loss / len(targets), logit / len(targets)


@torch.no_grad()
def ablate_heads(model: LanguageModel, ids, *, targets=None, mask=None, mode: str = "zero",
                 prefix_len: int = 0) -> Ablation:
    """Ablate every head of every self-attention layer in turn.

    Args:
        ids: (T,) or (B, T) token ids.
        targets: (B, T) the token each position should predict (default: the next token; the last
            position is then not scored).
        mask: (B, T) bool, the positions scored (default: every position that has a target).
        mode: "zero" or "mean" (see the module).
    """
    n_layers, nh = _shape(model)
    model.eval()
    x = as_batch(model, ids)
    if targets is None:
        targets = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)  # (B, T)
        default = torch.ones_like(x, dtype=torch.bool)
        default[:, -1] = False
        mask = default if mask is None else mask
    targets = as_batch(model, targets)
    mask = torch.ones_like(x, dtype=torch.bool) if mask is None else torch.as_tensor(mask, device=x.device).bool()
    if mask.dim() == 1:
        mask = mask[None]
    if targets.shape != x.shape or mask.shape != x.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and mask {tuple(mask.shape)} must match ids {tuple(x.shape)}")
    if not bool(mask.any()):
        raise ValueError("no position is scored: give at least two tokens, or a mask with a position set")
    loss, logit = forward_score(model, x, targets, mask, prefix_len)
    d_loss, d_logit = np.zeros((n_layers, nh)), np.zeros((n_layers, nh))
    for layer in range(n_layers):
        for head in range(nh):
            with heads_ablated(model, [(layer, head)], mode):
                a_loss, a_logit = forward_score(model, x, targets, mask, prefix_len)
            d_loss[layer, head], d_logit[layer, head] = a_loss - loss, a_logit - logit
    return Ablation(mode, loss, logit, d_loss, d_logit)
