"""What every language model here shares: token embedding, output head, the cache's life cycle.

``LanguageModel`` is the base of the Transformers (``models.transformer``) and of the recurrent
models (``models.recurrent``): ``embed`` checks token ids, ``setup_cache`` / ``clear_cache`` /
``cache_bytes`` give every family one decoding API, whatever it caches (K/V or a fixed state).

Each model owns one ``Recorder`` (``nn.recorder``), handed to its attention layers and recurrent
mixers when they are built. ``model(ids, capture=True)`` returns the records of that call in
``ModelOutput.attentions``; ``with model.capture() as records:`` collects every record written
inside the block, whatever the calls in it ask.

Glossary: B batch, T tokens, d model width, V vocabulary.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

from torch import Tensor, nn

from playground.config import ModelConfig
from playground.nn.recorder import AttentionRecord, Recorder


LOGITS = ("all", "last", "none")  # which positions' logits a forward computes (``LanguageModel.project``)


@dataclass
class ModelOutput:
    logits: Tensor | None  # (B, T, V); (B, 1, V) with logits="last"; None with logits="none"
    attentions: list[AttentionRecord] = field(default_factory=list)  # empty unless capture=True


class LanguageModel(nn.Module):
    """Shared by both model classes: token embedding, output head, cache life cycle."""

    cached_stacks: tuple[str, ...] = ()  # the stacks that decode step by step and hold KV caches

    def __init__(self) -> None:
        super().__init__()
        self.recorder = Recorder()  # built first: every attention layer and mixer is given it

    @contextmanager
    def capture(self) -> Iterator[list[AttentionRecord]]:
        """Record every attention layer's (or mixer's) ``AttentionRecord`` in this block, in order."""
        with self.recorder.capture() as records:
            yield records

    def recording(self, capture: bool) -> AbstractContextManager[list[AttentionRecord]]:
        """What ``forward(..., capture=...)`` wraps its work in: ``capture()`` when asked, else an empty list
        (an outer ``capture()`` block still receives the records)."""
        return self.capture() if capture else nullcontext([])

    def _init_embeddings(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(_init_weights)

    def project(self, h: Tensor, logits: str = "all") -> Tensor | None:
        """The output head over the final hidden states h (B, T, d): logits (B, T, V) for ``"all"``
        positions, (B, 1, V) for the ``"last"`` (what decoding reads), or None for ``"none"`` (a
        forward run for its attention alone: the head is a d x V product per position, a third of
        GPT-2 small's work on a prompt)."""
        if logits == "all":
            return self.lm_head(h)
        if logits == "last":
            return self.lm_head(h[:, -1:])
        if logits == "none":
            return None
        raise ValueError(f"logits must be one of {', '.join(LOGITS)}, got {logits!r}")

    def embed(self, idx: Tensor) -> Tensor:
        if idx.dim() != 2:
            raise ValueError(f"token ids must have shape (batch, length), got {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.cfg.vocab_size):
            raise ValueError(f"token ids must be in 0..{self.cfg.vocab_size - 1}, got {int(idx.min())}..{int(idx.max())}")
        x = self.tok_emb(idx)  # (B, T, d)
        if self.cfg.position == "sinusoidal":  # Vaswani et al. 3.4: scale embeddings so the table does not drown them
            x = x * math.sqrt(self.cfg.d_model)
        return x

    def _stacks(self) -> list[nn.Module]:
        return [getattr(self, name) for name in self.cached_stacks]

    def setup_cache(self, batch: int = 1, max_len: int | None = None) -> None:
        """Preallocate KV caches for ``max_len`` positions (default: context_length).

        Pass the length a call really needs: a pretrained model's context_length is its
        max_position_embeddings (32,768 for Qwen2.5), which the default would allocate in full."""
        p = self.lm_head.weight
        for stack in self._stacks():
            stack.setup_cache(batch, max_len or self.cfg.context_length, p.dtype, p.device)

    def clear_cache(self) -> None:
        for stack in self._stacks():
            stack.clear_cache()

    def cache_bytes(self) -> int:
        return sum(stack.cache_bytes() for stack in self._stacks())

    def cache_bytes_allocated(self) -> int:
        """Bytes of the cache tensors as they sit in memory (``tensor.nbytes``), >= ``cache_bytes()``:
        a KV cache without a window preallocates every position. A model without KV stacks (RWKV,
        Mamba) holds a fixed state, allocated exactly as used."""
        if not self.cached_stacks:
            return self.cache_bytes()
        return sum(stack.cache_bytes(allocated=True) for stack in self._stacks())

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
