"""The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens"): read every layer's residual
stream as if it were the last.

h_l is the residual stream after block l (l = 1..L), taken by a forward hook on the block. It goes
through the model's own final norm and unembedding,

    p_l = softmax(norm_f(h_l) W_U)

for every layer and position; the view keeps the top-k next-token guesses and their probabilities,
and the probability of the token that actually comes next. The last layer's p_L is the model's own
output distribution. In a post-norm model every block already ends in a norm and norm_f is the identity.

Glossary: L layers, T tokens, k guesses kept, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from playground.errors import check_int
from playground.inspect.hooks import as_batch, blocks_of, capture_outputs, hooked
from playground.models.base import LanguageModel
from playground.models.hf.model import HubModel


@dataclass
class LogitLens:
    token_ids: list[int]
    top_ids: np.ndarray    # (L, T, k) each layer's top-k next-token guesses per position, best first
    top_probs: np.ndarray  # (L, T, k) their probabilities
    next_prob: np.ndarray  # (L, T - 1) probability of the token that comes next (position t: token t + 1)

    def to_dict(self) -> dict:
        return {"token_ids": self.token_ids, "top_ids": self.top_ids.tolist(),
                "top_probs": self.top_probs.tolist(), "next_prob": self.next_prob.tolist()}


@torch.no_grad()
def layer_logits(model: LanguageModel, ids, *, prefix_len: int = 0) -> torch.Tensor:
    """norm_f(h_l) W_U for every block l of one or more sequences: (L, B, T, V)."""
    if isinstance(model, HubModel):
        return _hub_layer_logits(model, as_batch(model, ids))
    blocks = blocks_of(model)
    model.eval()
    seen, handles = capture_outputs(blocks)
    with hooked(*handles):
        model(as_batch(model, ids), prefix_len=prefix_len)
    return torch.stack([model.lm_head(model.decoder.norm_out(h)) for h in seen])  # (L, B, T, V)


def _hub_layer_logits(model: HubModel, x: torch.Tensor) -> torch.Tensor:
    """The same for a decoder-only Hub model: its blocks' outputs through its own final norm and head (and Gemma's
    final soft-cap), read with forward hooks on transformers' modules. (L, B, T, V)"""
    if model.task != "causal":
        raise ValueError("the logit lens reads next-token predictions: it reads a causal (decoder-only) model")
    blocks, norm = model.stack()
    seen: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out)
                                                                     .detach())) for b in blocks]
    with hooked(*handles):
        model(x)
    head, cap = model.hf.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None)
    logits = torch.stack([head(norm(h)) for h in seen])  # (L, B, T, V)
    return cap * torch.tanh(logits / cap) if cap else logits


@torch.no_grad()
def logit_lens(model: LanguageModel, ids, *, k: int = 5, prefix_len: int = 0) -> LogitLens:
    """The logit lens of one sequence ``ids`` (a list of T ids): top ``k`` guesses per layer and position."""
    k = check_int("k", k, 1, model.cfg.vocab_size)  # a Hub model's config names it too
    x = as_batch(model, ids)
    if x.shape[0] != 1:
        raise ValueError(f"logit_lens reads one sequence, got a batch of {x.shape[0]}")
    probs = layer_logits(model, x, prefix_len=prefix_len)[:, 0].float().softmax(-1)  # (L, T, V)
    top = probs.topk(k, dim=-1)
    nxt = x[0, 1:]  # (T - 1,)
    next_prob = probs[:, :-1].gather(-1, nxt[None, :, None].expand(probs.shape[0], -1, 1))[..., 0]  # (L, T - 1)
    return LogitLens(x[0].tolist(), top.indices.cpu().numpy(), top.values.cpu().numpy(), next_prob.cpu().numpy())
