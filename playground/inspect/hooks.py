"""What the views beyond raw weights share: which models they read, the ids as a batch, and hooks that
come off again.

Every view reads a model through forward hooks and forward pre-hooks on its modules (the blocks of
the decoder stack, each block's ``self_attn`` and its ``o_proj``), so no forward signature changes.
They cover the decoder-only and prefix Transformers (``TransformerLM``); a recurrent or
encoder-decoder model is refused with a ValueError that says so.

Glossary: B batch, T tokens, d model width.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from playground.models.base import LanguageModel
from playground.models.transformer import Block, TransformerLM


def blocks_of(model: LanguageModel) -> list[Block]:
    """The decoder stack's blocks of a decoder-only or prefix Transformer, else a ValueError."""
    if not isinstance(model, TransformerLM):
        family = getattr(getattr(model, "cfg", None), "family", type(model).__name__)
        raise ValueError(f"this view reads decoder-only and prefix Transformers, not {family!r}: "
                         "choose a decoder or prefix model")
    return list(model.decoder.blocks)


def as_batch(model: LanguageModel, ids) -> Tensor:
    """``ids`` (a list of ints, (T,) or (B, T)) as a (B, T) long tensor on the model's device."""
    x = torch.as_tensor(ids, dtype=torch.long, device=next(model.parameters()).device)
    if x.dim() == 1:
        x = x[None]
    if x.dim() != 2 or x.shape[1] == 0:
        raise ValueError(f"token ids must be a non-empty list or a (batch, length) array, got shape {tuple(x.shape)}")
    return x


@contextmanager
def hooked(*handles: torch.utils.hooks.RemovableHandle) -> Iterator[None]:
    """Remove every hook handle on leaving, whatever happened inside."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def capture_inputs(modules: list[nn.Module]) -> tuple[list[Tensor], list[torch.utils.hooks.RemovableHandle]]:
    """A list filled, in call order, with the first positional input of each module in ``modules``, and the hooks'
    handles (pass them to ``hooked``)."""
    seen: list[Tensor] = []
    handles = [m.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach())) for m in modules]
    return seen, handles


def capture_outputs(modules: list[nn.Module]) -> tuple[list[Tensor], list[torch.utils.hooks.RemovableHandle]]:
    """As ``capture_inputs``, for each module's output."""
    seen: list[Tensor] = []
    handles = [m.register_forward_hook(lambda mod, args, out: seen.append(out.detach())) for m in modules]
    return seen, handles
