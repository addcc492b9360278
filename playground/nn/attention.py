"""Multi-head attention with any number of K/V heads: MHA, GQA and MQA in one module.

``n_kv_heads`` K/V heads serve ``n_heads`` query heads; query head h reads K/V head
``h // (n_heads // n_kv_heads)``. K/V are projected (and cached) at n_kv heads and repeated
to n_heads only to compute, so the cache of a GQA/MQA model is really smaller.

The same module is self-attention (queries, keys and values from one sequence) or
cross-attention (queries from the decoder, keys and values from the encoder output).

Glossary: B batch, T new tokens, Tk keys, d model width, nh query heads, n_kv K/V heads,
hs head dim.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.nn import flex
from playground.nn.cache import KVCache, cache_shape
from playground.nn.kernels import KernelUnavailable, explicit_attention, sdpa_call, sdpa_mask
from playground.nn.masks import MaskRule
from playground.nn.position import alibi_bias, apply_rope
from playground.nn.rebuild import AttentionSource
from playground.nn.recorder import AttentionRecord, Recorder

NO_GRAD_FLEX = ("gradients are needed (training): FlexAttention has no backward on the CPU and would compile "
                "another kernel on CUDA, so auto calls SDPA with the mask")
# FlexAttention works in tiles of 128 x 128 (torch's default block size). With all keys in one tile a block mask
# skips nothing, and building it costs more than the whole SDPA call, so auto calls SDPA with the mask there.
FLEX_BLOCK = 128
ONE_BLOCK = (f"all keys fit in one {FLEX_BLOCK}-key block, where a block mask has nothing to skip: "
             "auto calls SDPA with the dense mask (faster here)")
# torch 2.13's compiled CPU FlexAttention returns wrong numbers for some calls of 8 or 16 keys at head dims of 16 or
# less (depending on which shapes it compiled first): such calls go to SDPA with the dense mask instead
FLEX_CPU_MISCOMPILED_KEYS, FLEX_CPU_MISCOMPILED_HEAD_DIM = (8, 16), 16
FLEX_CPU_TINY = ("FlexAttention on the CPU miscomputes some calls of 8 or 16 keys at small head dims in torch 2.13: "
                 "this call ran SDPA with the dense mask instead")


def flex_miscomputes(device: torch.device, n_keys: int, head_dim: int) -> bool:
    """Whether a FlexAttention call of this shape is one torch 2.13's compiled CPU kernel can get wrong."""
    return (device.type == "cpu" and n_keys in FLEX_CPU_MISCOMPILED_KEYS
            and head_dim <= FLEX_CPU_MISCOMPILED_HEAD_DIM)


@dataclass
class AttentionInputs:
    """What a layer needs besides x, computed once per forward by the stack.

    The rule says which key each query may see, at the queries' and keys' absolute positions. Nothing of size
    Tq x Tk is made here: the dense mask and ALiBi's dense bias are the rule evaluated at these positions, built
    on first use by a call that takes them (the explicit path, SDPA with a mask, Inside a head) and kept for the
    other layers of the same forward; FlexAttention evaluates the rule itself, block by block, and the pattern
    the kernel choice reads comes from the rule at the corners of the (query, key) rectangle.
    """

    input_pos: Tensor                         # (Tq,) absolute positions of the new tokens (the queries)
    k_pos: Tensor                             # (Tk,) absolute positions of the keys, consecutive
    rule: MaskRule
    q_start: int                              # query i is at position q_start + i
    k_start: int                              # key j is at position k_start + j
    key_valid: Tensor | None = None           # (B, Tk) bool, given only when some key is padding
    rope: tuple[Tensor, Tensor] | None = None  # cos, sin at input_pos, each (T, hs)
    alibi_slopes: Tensor | None = None        # (nh,) ALiBi: score - slope_h * |q_pos - k_pos|
    _pattern: str | None = field(default=None, init=False, repr=False)
    _mask: Tensor | None = field(default=None, init=False, repr=False)
    _bias: Tensor | None = field(default=None, init=False, repr=False)

    @property
    def n_keys(self) -> int:
        return len(self.k_pos)

    @property
    def mask(self) -> Tensor:
        """bool (Tq, Tk), or (B, 1, Tq, Tk) with padding: ``rule.dense`` at these positions, built on first use."""
        if self._mask is None:
            self._mask = self.rule.dense(self.input_pos, self.k_pos, self.key_valid)
        return self._mask

    @property
    def bias(self) -> Tensor | None:
        """(nh, Tq, Tk) ALiBi's bias at these positions, built on first use; None without ALiBi."""
        if self.alibi_slopes is not None and self._bias is None:
            self._bias = alibi_bias(self.alibi_slopes, self.input_pos, self.k_pos)
        return self._bias

    @property
    def pattern(self) -> str:
        """What the mask is, read off the rule: "all" (every query sees every key held), "causal" (the lower
        triangle aligned top-left, which is what SDPA's ``is_causal`` computes), or "other"."""
        if self._pattern is None:
            self._pattern = self._read_pattern()
        return self._pattern

    def _read_pattern(self) -> str:
        if self.key_valid is not None:
            return "other"
        Tq, Tk = len(self.input_pos), self.n_keys
        q0, q1, k0, k1 = (torch.tensor(p) for p in (self.q_start, self.q_start + Tq - 1, self.k_start,
                                                      self.k_start + Tk - 1))
        # seeing is monotone in positions and distance is largest at the corners: both corners seen, all seen
        if bool(self.rule.allows(q0, k1)) and bool(self.rule.allows(q1, k0)):
            return "all"
        causal = self.rule.kind == "causal" or (self.rule.kind == "prefix" and self.rule.prefix_len <= self.k_start + 1)
        if Tq == Tk and self.q_start == self.k_start and causal and (not self.rule.window or self.rule.window >= Tk):
            return "causal"
        return "other"


class Attention(nn.Module):
    """One attention layer; it writes an ``AttentionRecord`` into ``recorder`` while that is on.

    How it calls its kernel depends on its inputs (``plan``): SDPA with ``is_causal=True`` and no
    mask for plain causal attention over a whole sequence, SDPA with no mask when every query sees
    every key held (a decoding step, an encoder without padding), and for anything else (a prefix,
    a window that cuts, padding, ALiBi, a chunk written into a non-empty cache) FlexAttention with a
    block mask, or SDPA with the dense mask where FlexAttention cannot run, was not asked for, or
    has nothing to skip (all keys in one block); the record says which and why.

    Args:
        kind: the record's kind: self | encoder_self | decoder_self, or cross (queries from x,
            keys and values from the encoder output).
        layer: the layer index written in the record.
        recorder: shared with the rest of the model (default: one of its own, off).
    """

    def __init__(self, cfg: ModelConfig, kind: str = "self", layer: int = 0, recorder: Recorder | None = None):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.backend = cfg.backend
        self.kind, self.layer = kind, layer
        self.cross = kind == "cross"
        self.recorder = recorder if recorder is not None else Recorder()
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=cfg.attn_has_bias("q"))
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.attn_has_bias("k"))
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=cfg.attn_has_bias("v"))
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=cfg.attn_has_bias("o"))
        self.dropout = nn.Dropout(cfg.dropout)  # on the output, before the residual add (nanoGPT's resid_dropout)
        self.cache: KVCache | None = None             # self-attention: grows one token at a time
        self.cache_shape = cache_shape(cfg)            # what it holds per position: heads, key width, value width
        self.cross_kv: tuple[Tensor, Tensor] | None = None  # cross-attention: computed once per input
        self.use_cross_cache = False

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)  # (B, n, T, hs)

    def _keys_values(self, source: Tensor, inputs: AttentionInputs) -> tuple[Tensor, Tensor]:
        if self.cross and self.cross_kv is not None:
            return self.cross_kv
        k = self._heads(self.k_proj(source), self.n_kv_heads)  # (B, n_kv, Tk, hs)
        v = self._heads(self.v_proj(source), self.n_kv_heads)  # (B, n_kv, Tk, hs)
        if self.cross:
            if self.use_cross_cache:
                self.cross_kv = (k, v)
            return k, v
        if inputs.rope is not None:
            k = apply_rope(k, *inputs.rope)
        if self.cache is not None:
            k, v = self.cache.update(inputs.input_pos, k, v)  # (B, n_kv, Tk, hs)
        return k, v

    def plan(self, inputs: AttentionInputs, device: torch.device, needs_grad: bool = False,
             dtype: torch.dtype | None = None, head_dim: int | None = None) -> tuple[str, str | None]:
        """How this layer calls its kernel for these inputs: (call, why auto did not use FlexAttention or None).
        ``head_dim``: the width of the queries it calls with (None: the layer's head dim).

        call: "weights" (explicit), "block mask" (FlexAttention), or SDPA with "is_causal", "no mask" or "mask".
        """
        head_dim = head_dim or self.head_dim
        if self.backend == "explicit":
            return "weights", None
        if self.backend == "flex":
            if flex_miscomputes(device, inputs.n_keys, head_dim):
                return "mask", FLEX_CPU_TINY
            return "block mask", None
        if inputs.alibi_slopes is None:  # ALiBi is a bias: no kernel without a mask argument takes it
            if inputs.pattern == "all":
                return "no mask", None
            if inputs.pattern == "causal":
                return "is_causal", None
        if self.backend != "auto":
            return "mask", None
        if needs_grad:
            return "mask", NO_GRAD_FLEX
        if inputs.n_keys <= FLEX_BLOCK:
            return "mask", ONE_BLOCK
        reason = flex.flex_status(device, dtype, head_dim)
        return ("mask", reason) if reason else ("block mask", None)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, inputs: AttentionInputs,
                call: str) -> tuple[Tensor, str, object, Tensor | None, tuple[str, ...]]:
        """Run the planned call. Returns out (B, nh, Tq, hs), the kernel that ran, the BlockMask FlexAttention
        used (or None), the kernel's log-sum-exp per query row (B, nh, Tq) or None where it hands none back,
        and the kernels auto tried first that refused ("name: PyTorch's reason")."""
        if call == "weights":
            out, _, lse = explicit_attention(q, k, v, inputs.mask, inputs.bias, return_lse=True)
            return out, "explicit", None, lse, ()
        if call == "block mask":
            with_lse = flex.LSE_ON.get(q.device.type, False)
            out, block_mask, *lse = flex.flex_attention(q, k, v, inputs.rule, q_start=inputs.q_start,
                                                        k_start=inputs.k_start, key_valid=inputs.key_valid,
                                                        alibi_slopes=inputs.alibi_slopes, return_lse=with_lse)
            return out, "flex", block_mask, lse[0] if lse else None, ()
        mask = sdpa_mask(inputs.mask, inputs.bias, q.dtype) if call == "mask" else None
        kernel = "auto" if self.backend == "flex" else self.backend  # a flex call routed to SDPA: PyTorch's pick
        run = sdpa_call(q, k, v, mask, kernel=kernel, is_causal=call == "is_causal", return_lse=True)
        return run.out, run.kernel, None, run.lse, run.refused

    def forward(self, x: Tensor, inputs: AttentionInputs, memory: Tensor | None = None) -> Tensor:
        """Attend from x to itself (self) or to ``memory`` (cross).

        While the recorder is on, an ``AttentionRecord`` gets what every weight (B, nh, T, Tk) is rebuilt
        from (q, k, the mask rule, ALiBi and the kernel's log-sum-exp; ``nn.rebuild``), the kernel, the
        call and why auto fell back; its faithfulness check compares sum_j weight(i, j) v_j with the output.

        Args:
            x: (B, T, d) the queries' input.
            inputs: mask, positions, RoPE angles and ALiBi bias for this forward.
            memory: (B, Tk, d) encoder output, for cross-attention.
        Returns:
            (B, T, d).
        """
        q = self._heads(self.q_proj(x), self.n_heads)  # (B, nh, T, hs)
        if inputs.rope is not None and not self.cross:
            q = apply_rope(q, *inputs.rope)
        k_kv, v_kv = self._keys_values(memory if self.cross else x, inputs)  # (B, n_kv, Tk, hs)
        return self.output(self.attend(q, k_kv, v_kv, inputs))

    def attend(self, q: Tensor, k_kv: Tensor, v_kv: Tensor, inputs: AttentionInputs) -> Tensor:
        """The kernel call, planned for these inputs, and its record while the recorder is on.

        q: (B, nh, T, e); k_kv: (B, n_kv, Tk, e), n_kv dividing nh; v_kv: (B, n_kv, Tk, ev). Returns (B, nh, T, ev).
        """
        k, v = k_kv, v_kv
        groups = q.shape[1] // k_kv.shape[1]
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)  # (B, nh, Tk, e)
            v = v.repeat_interleave(groups, dim=1)  # (B, nh, Tk, ev)
        call, reason = self.plan(inputs, q.device, needs_grad=torch.is_grad_enabled() and q.requires_grad,
                                 dtype=q.dtype, head_dim=q.shape[-1])
        try:
            out, kernel, block_mask, lse, refused = self._attend(q, k, v, inputs, call)  # (B, nh, T, ev)
        except flex.FlexUnavailable as e:  # the compile failed here: auto falls back and says why
            if self.backend == "flex":
                raise KernelUnavailable(f"FlexAttention cannot run here: {e}. "
                                        "Choose another backend (math and explicit always run).") from None
            call, reason = "mask", str(e)
            out, kernel, block_mask, lse, refused = self._attend(q, k, v, inputs, call)
        if refused:  # auto's first pick (PyTorch's) refused: say why another kernel ran
            reason = "; ".join(filter(None, (reason, *refused)))
        if self.recorder.on:
            self.recorder.write(self._record(q, k_kv, v_kv, out, lse, inputs, call, kernel, block_mask, reason))
        return out

    def output(self, heads: Tensor) -> Tensor:
        """Every head's output (B, nh, T, ev) through o_proj: (B, T, d)."""
        B, nh, T, ev = heads.shape
        return self.dropout(self.o_proj(heads.transpose(1, 2).reshape(B, T, nh * ev)))

    def new_cache(self, batch: int, max_len: int, dtype: torch.dtype, device, window: int = 0) -> KVCache:
        """A cache for this layer's self-attention (``Stack.setup_cache``)."""
        n, k_dim, v_dim = self.cache_shape
        return KVCache(batch, n, max_len, k_dim, dtype, device, window=window, v_dim=v_dim)

    def _record(self, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor | None, inputs: AttentionInputs,
                call: str, kernel: str, block_mask, reason: str | None) -> AttentionRecord:
        """The record of this call: what its weights are rebuilt from (q, k per K/V head, the mask rule, ALiBi
        slopes and the kernel's log-sum-exp, streamed where the kernel hands none back), moved to the CPU,
        with the values and output the faithfulness check reads. No (Tq, Tk) matrix is kept.

        q: (B, nh, Tq, hs); k, v: (B, n_kv, Tk, hs); out: (B, nh, Tq, hs); lse: (B, nh, Tq) or None.
        """
        source = AttentionSource(q.detach(), k.detach(), None if lse is None else lse.detach().float(), inputs.rule,
                                 inputs.q_start, inputs.k_start, inputs.key_valid, inputs.alibi_slopes)
        recomputed = not (kernel == "explicit" and q.dtype == torch.float32)
        return AttentionRecord(self.kind, self.layer, source.to_cpu(), kernel, recomputed, call=call,
                               block_mask=block_mask, reason=reason,
                               check=(v.detach().float().cpu(), out.detach().float().cpu()))
