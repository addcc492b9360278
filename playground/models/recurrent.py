"""What RWKV and Mamba share: a language model over blocks that carry a fixed-size state.

Without a state (no ``setup_cache``), ``forward`` runs the parallel / scan form over the whole
sequence from zeros. After ``setup_cache`` it continues from the held state: one token, while the
recorder is off, goes through each block's recurrent ``step``; a prefill, or any call that
records, goes through the parallel form from the held state. ``start_pos`` must be the number of
tokens the state has consumed (or 0, to start over): a recurrent state cannot be rewound.

Each block is ``forward(x, state | None) -> (x, state | None)`` and ``step(x_t, state) -> (x_t, state)``;
its mixer writes one "implicit" ``AttentionRecord`` into the model's recorder while that is on.
Each state is a ``RecurrentState`` with ``zeros(batch, cfg, dtype, device, track)``; its
``history`` (a ``History``) is kept only when tracking, for implicit attention while decoding.
Recurrent states are held in ``state_dtype`` (``nn.cache``, beside the formula of their size).

Glossary: B batch, T new tokens, Tk every token seen, d model width, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor

from playground.models.base import LanguageModel, ModelOutput
from playground.nn.rebuild import ImplicitSource
from playground.nn.recorder import AttentionRecord


@dataclass
class History:
    """Per-token tensors of every token seen: only to draw implicit attention rows while decoding.

    Not part of the recurrent state (it grows with the sequence, and ``cache_bytes`` leaves it
    out); it exists when the first call after ``setup_cache`` recorded (capture=True). A family
    lists its tensors as dataclass fields, each with the token axis at ``time_dim``.
    """

    time_dim: ClassVar[int] = 1

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def extend(self, *new: Tensor) -> History:
        """A history with the new tokens' tensors (same order as the fields) appended."""
        return type(self)(*(torch.cat([old, t], dim=self.time_dim) for old, t in zip(self.tensors, new, strict=True)))


@dataclass
class RecurrentState:
    """One layer's state: its fields are fixed-size tensors, batch first, plus ``history`` (not counted)."""

    @property
    def tensors(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in fields(self) if f.name != "history"]

    @property
    def batch(self) -> int:
        return self.tensors[0].shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def check_history(history: History | None) -> History:
    """The history implicit attention reads while decoding; raises, saying what to do, when none was kept."""
    if history is None:
        raise ValueError("implicit attention while decoding needs every earlier token's history: "
                         "pass capture=True from the first call after setup_cache()")
    return history


def extend_history(state: RecurrentState | None, *new: Tensor) -> History | None:
    """The state's history with the new tokens appended; None without a state or a tracked history."""
    history = None if state is None else state.history
    return None if history is None else history.extend(*new)


def every_token(state: RecurrentState | None, history: History | None, *new: Tensor) -> tuple[Tensor, ...]:
    """What implicit attention reads for every token seen: the new tokens' tensors when there is
    no state (the sequence starts here), else the whole history (the new tokens already appended)."""
    return new if state is None else check_history(history).tensors


def implicit_record(layer: int, source: ImplicitSource, *, check: tuple[Tensor, Tensor] | None = None,
                    max_abs_diff: float | None = None) -> AttentionRecord:
    """An "implicit" record of the T newest of Tk tokens (causal at Tk - T), kept on the CPU.

    check: (values (B, H, Tk, N), reference output (B, H, T, N)) for the faithfulness check tile by tile;
    or max_abs_diff, a check the layer ran itself."""
    if (check is None) == (max_abs_diff is None):
        raise ValueError("an implicit record needs exactly one of check and max_abs_diff")
    if check is not None:
        check = tuple(t.detach().float().cpu() for t in check)
    return AttentionRecord("implicit", layer, source.to_cpu(), "implicit", False, check=check,
                           _max_abs_diff=None if max_abs_diff is None else float(max_abs_diff))


class RecurrentLM(LanguageModel):
    state_cls: type            # RWKVState or MambaState
    reader: str = "a recurrent model"

    def _init_state(self) -> None:
        self.states: list | None = None
        self.seen = 0  # tokens the state has consumed

    def embed_input(self, idx: Tensor) -> Tensor:
        return self.embed(idx)  # (B, T, d)

    def forward(self, idx: Tensor, *, start_pos: int = 0, prefix_len: int = 0, key_valid: Tensor | None = None,
                capture: bool = False, logits: str = "all") -> ModelOutput:
        """Logits for every position (``logits``: "last" or "none", see ``project``), and every layer's
        implicit attention when ``capture``.

        Args:
            idx: (B, T) token ids at positions start_pos..start_pos+T-1.
            start_pos: without a state, 0; with one (``setup_cache``), the number of tokens it has
                consumed (continue) or 0 (start over).
            prefix_len, key_valid: attention masks; they do not apply here and must stay default.
        Returns:
            ModelOutput(logits (B, T, V), attentions: one "implicit" record per layer, weights
            (B, H, T, Tk), max_abs_diff = how far alpha applied to the values is from an output
            computed without alpha, by the recurrence itself).
        """
        if prefix_len or key_valid is not None:
            raise ValueError(f"prefix_len and key_valid are attention masks; {self.reader} reads causally, "
                             "so leave them at their defaults")
        B, T = idx.shape
        with self.recording(capture) as records:
            states = self._states_at(start_pos, B)
            stepping = states is not None and T == 1 and not self.recorder.on  # decoding: the recurrent step
            x = self.embed_input(idx)  # (B, T, d)
            for layer, block in enumerate(self.blocks):
                state = None if states is None else states[layer]
                if stepping:
                    x_t, state = block.step(x[:, 0], state)  # (B, d)
                    x = x_t[:, None]  # (B, 1, d)
                else:
                    x, state = block(x, state)  # (B, T, d)
                if states is not None:
                    states[layer] = state
        if states is not None:
            self.seen = start_pos + T
        return ModelOutput(self.project(self.norm_out(x), logits), records)

    def _states_at(self, start_pos: int, batch: int) -> list | None:
        if self.states is None:
            if start_pos:
                raise ValueError(f"start_pos={start_pos} needs a recurrent state holding the earlier tokens; "
                                 "call model.setup_cache() first")
            return None
        if start_pos == 0:  # start over, as a KV cache written from position 0
            self._fresh_states(batch, track=self.recorder.on)
        elif start_pos != self.seen:
            raise ValueError(f"the recurrent state has consumed {self.seen} tokens, so start_pos must be {self.seen} "
                             f"(or 0 to start over), got {start_pos}: a recurrent state cannot be rewound")
        elif batch != self.states[0].batch:
            raise ValueError(f"the state holds a batch of {self.states[0].batch}, got {batch}")
        elif self.recorder.on:
            check_history(self.states[0].history)
        return self.states

    def _fresh_states(self, batch: int, track: bool) -> None:
        p = self.lm_head.weight
        self.states = [self.state_cls.zeros(batch, self.cfg, p.dtype, p.device, track) for _ in self.blocks]
        self.seen = 0

    def setup_cache(self, batch: int = 1, max_len: int | None = None) -> None:
        """Allocate the recurrent state (its size does not depend on ``max_len``, accepted for the common API)."""
        self._fresh_states(batch, track=False)

    def clear_cache(self) -> None:
        self.states, self.seen = None, 0

    def cache_bytes(self) -> int:
        """Bytes of the recurrent state (the decoding history is not counted)."""
        return 0 if self.states is None else sum(s.nbytes for s in self.states)
