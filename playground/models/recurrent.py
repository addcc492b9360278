"""What RWKV and Mamba share: a language model over blocks that carry a fixed-size state.

Without a state (no ``setup_cache``), ``forward`` runs the parallel / scan form over the whole
sequence from zeros. After ``setup_cache`` it continues from the held state: one token without
capture goes through each block's recurrent ``step``; a prefill, or any call with capture, goes
through the parallel form from the held state. ``start_pos`` must be the number of tokens the
state has consumed (or 0, to start over): a recurrent state cannot be rewound.

Each block is ``forward(x, state | None, capture) -> (x, state | None, (alpha (B, H, T, Tk), max_abs_diff) | None)``
and ``step(x_t, state) -> (x_t, state)``; each state class has ``zeros(batch, cfg, dtype, device, track)``,
``batch`` and ``nbytes``, and ``history`` (kept only when tracking, for implicit attention while decoding).
"""
from __future__ import annotations

from torch import Tensor

from playground.nn import masks
from playground.nn.attention import AttentionRecord
from playground.models.base import LanguageModel, ModelOutput


class RecurrentLM(LanguageModel):
    state_cls: type            # RWKVState or MambaState
    reader: str = "a recurrent model"

    def _init_state(self) -> None:
        self.states: list | None = None
        self.seen = 0  # tokens the state has consumed

    def embed_input(self, idx: Tensor) -> Tensor:
        return self.embed(idx)  # (B, T, d)

    def forward(self, idx: Tensor, *, start_pos: int = 0, prefix_len: int = 0, key_valid: Tensor | None = None,
                capture: bool = False) -> ModelOutput:
        """Logits for every position, and every layer's implicit attention when ``capture``.

        Args:
            idx: (B, T) token ids at positions start_pos..start_pos+T-1.
            start_pos: without a state, 0; with one (``setup_cache``), the number of tokens it has
                consumed (continue) or 0 (start over).
            prefix_len, key_valid: attention masks; they do not apply here and must stay default.
        Returns:
            ModelOutput(logits (B, T, V), attentions: one "implicit" record per layer, weights
            (B, H, T, Tk), max_abs_diff = how far alpha applied to the values is from the mixer output).
        """
        if prefix_len or key_valid is not None:
            raise ValueError(f"prefix_len and key_valid are attention masks; {self.reader} reads causally, "
                             "so leave them at their defaults")
        B, T = idx.shape
        states = self._states_at(start_pos, B, capture)
        x = self.embed_input(idx)  # (B, T, d)
        records = []
        mask = masks.causal(masks.positions(start_pos, T, idx.device), masks.positions(0, start_pos + T, idx.device))
        for layer, block in enumerate(self.blocks):
            if states is not None and T == 1 and not capture:  # decoding: the recurrent step
                x_t, states[layer] = block.step(x[:, 0], states[layer])
                x = x_t[:, None]
                continue
            x, state, cap = block(x, None if states is None else states[layer], capture)
            if states is not None:
                states[layer] = state
            if capture:
                records.append(AttentionRecord("implicit", layer, cap[0], mask, None, "implicit", False, cap[1]))
        if states is not None:
            self.seen = start_pos + T
        return ModelOutput(self.lm_head(self.norm_out(x)), records)

    def _states_at(self, start_pos: int, batch: int, capture: bool) -> list | None:
        if self.states is None:
            if start_pos:
                raise ValueError(f"start_pos={start_pos} needs a recurrent state holding the earlier tokens; "
                                 "call model.setup_cache() first")
            return None
        if start_pos == 0:  # start over, as a KV cache written from position 0
            self._fresh_states(batch, track=capture)
        elif start_pos != self.seen:
            raise ValueError(f"the recurrent state has consumed {self.seen} tokens, so start_pos must be {self.seen} "
                             f"(or 0 to start over), got {start_pos}: a recurrent state cannot be rewound")
        elif batch != self.states[0].batch:
            raise ValueError(f"the state holds a batch of {self.states[0].batch}, got {batch}")
        elif capture and self.states[0].history is None:
            raise ValueError("implicit attention while decoding needs every earlier token's history: "
                             "pass capture=True from the first call after setup_cache()")
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
