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

from collections.abc import Callable
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


# positions read out at a time: (CHUNK, V) logits per layer, never (L, T, V) at once, at any prompt length
CHUNK = 256


@torch.no_grad()
def layer_states(model: LanguageModel, ids, *, prefix_len: int = 0, last: bool = False
                 ) -> tuple[list[torch.Tensor], Callable]:
    """Every block's output h_l of one or more sequences, each (B, T, d) (``last``: the last block's alone), and the
    readout that turns h (…, d) into logits (…, V): the model's own final norm and unembedding (and Gemma's final
    soft-cap for a Hub model), so the readout of the last block is the model's logits. The forward itself computes
    no logits."""
    if isinstance(model, HubModel):
        return _hub_layer_states(model, as_batch(model, ids), last)
    blocks = blocks_of(model)[-1:] if last else blocks_of(model)
    model.eval()
    seen, handles = capture_outputs(blocks)
    with hooked(*handles):
        model(as_batch(model, ids), prefix_len=prefix_len, logits="none")
    return seen, lambda h: model.lm_head(model.decoder.norm_out(h))


def layer_logits(model: LanguageModel, ids, *, prefix_len: int = 0) -> torch.Tensor:
    """norm_f(h_l) W_U for every block l of one or more sequences: (L, B, T, V), all at once (a short prompt's
    check; ``logit_lens`` reads them chunk by chunk)."""
    seen, readout = layer_states(model, ids, prefix_len=prefix_len)
    return torch.stack([readout(h) for h in seen])


def _hub_layer_states(model: HubModel, x: torch.Tensor, last: bool = False) -> tuple[list[torch.Tensor], Callable]:
    """The same for a decoder-only Hub model: its blocks' outputs, read with forward hooks on transformers' modules,
    and its own final norm and head (and Gemma's final soft-cap)."""
    if model.task != "causal":
        raise ValueError("the logit lens reads next-token predictions: it reads a causal (decoder-only) model")
    blocks, norm = model.stack()
    blocks = blocks[-1:] if last else blocks
    seen: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, out: seen.append((out[0] if isinstance(out, tuple) else out)
                                                                     .detach())) for b in blocks]
    with hooked(*handles):
        model(x, logits="none")
    head, cap = model.hf.get_output_embeddings(), getattr(model.config, "final_logit_softcapping", None)

    def readout(h: torch.Tensor) -> torch.Tensor:
        logits = head(norm(h))
        return cap * torch.tanh(logits / cap) if cap else logits
    return seen, readout


@torch.no_grad()
def logit_lens(model: LanguageModel, ids, *, k: int = 5, prefix_len: int = 0) -> LogitLens:
    """The logit lens of one sequence ``ids`` (a list of T ids): top ``k`` guesses per layer and position."""
    k = check_int("k", k, 1, model.cfg.vocab_size)  # a Hub model's config names it too
    x = as_batch(model, ids)
    if x.shape[0] != 1:
        raise ValueError(f"logit_lens reads one sequence, got a batch of {x.shape[0]}")
    seen, readout = layer_states(model, x, prefix_len=prefix_len)
    T = x.shape[1]
    nxt = torch.cat([x[0, 1:], x[0, :1]])  # (T,) the token after each position (the last one's is not read)
    top_ids, top_probs = np.zeros((len(seen), T, k), dtype=np.int64), np.zeros((len(seen), T, k), dtype=np.float32)
    next_prob = np.zeros((len(seen), T), dtype=np.float32)
    for layer, h in enumerate(seen):
        for a in range(0, T, CHUNK):
            probs = readout(h[0, a:a + CHUNK]).float().softmax(-1)  # (chunk, V)
            top = probs.topk(k, dim=-1)
            top_ids[layer, a:a + CHUNK], top_probs[layer, a:a + CHUNK] = top.indices.cpu(), top.values.cpu()
            next_prob[layer, a:a + CHUNK] = probs.gather(-1, nxt[a:a + CHUNK, None])[:, 0].cpu()
    return LogitLens(x[0].tolist(), top_ids, top_probs, next_prob[:, :-1])
