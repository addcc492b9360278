"""The one attention function the playground registers with transformers, for every architecture that uses the interface.

transformers routes each attention layer of most of its models through ``ALL_ATTENTION_FUNCTIONS[name]``: the
layer computes q and k (after RoPE, QK-norm, MLA's decompression) and v, and hands them over with the mask and
the layer's own extras. ``attention_forward`` is that function under the name ``"playground"``. It runs the
kernel the page picked and, for a layer of a ``HubModel`` whose recorder is on, writes an ``AttentionRecord``
holding what every weight is rebuilt from (``nn.rebuild.AttentionSource``):

- q and k as the kernel saw them (k once per K/V head), the scaling the layer uses;
- the mask as a rule (``mask.RuleMask``): causal, sliding window, bidirectional, padding, cross;
- soft-capping (Gemma 2: ``softcap``), sink logits (gpt-oss: ``s_aux``), a relative position bias
  (T5: ``position_bias``, kept per offset);
- the log-sum-exp, from the kernel where it returns one, sinks counted in it.

The kernel: ``explicit`` is softmax(s) V in float32 (it also takes soft-capping, which no SDPA kernel does);
``auto`` and the SDPA kernels call SDPA with ``is_causal``, no mask, or the rule made dense for that call only.
Sinks enter after the kernel: they add exp(sink) to each row's sum and nothing to the output, so the output is
rescaled by exp(lse_keys - lse).

Glossary: B batch, nh query heads, n_kv K/V heads, Tq queries, Tk keys, d head dim (dv of the values).
"""
from __future__ import annotations

import dataclasses

import math
from collections import Counter
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

import torch
from torch import Tensor

from playground.models.hf.mask import RuleMask, rule_mask
from playground.nn import flex
from playground.nn.attention import FLEX_CPU_TINY, flex_miscomputes
from playground.nn.kernels import KernelUnavailable, sdpa_call
from playground.nn.masks import MaskRule, to_additive
from playground.nn.rebuild import AttentionSource
from playground.nn.recorder import AttentionRecord, Recorder

NAME = "playground"
KERNELS = ("auto", "flash", "efficient", "cudnn", "math", "flex", "explicit")  # what a Hub model's layer can run
SOFTCAP_EXPLICIT = "soft-capping (tanh of the scores) is in no SDPA kernel: the explicit path computed it"
FLEX_EXPLICIT = ("the playground's FlexAttention call takes a mask rule alone (no soft-cap, relative bias, sink or "
                 "value width of its own): the explicit path computed this layer")
OFFSET_PROBE = 64  # rows and columns of a relative bias checked against the dense one the model built


@dataclass
class LayerTag:
    """What the playground knows of one attention module of a wrapped model.

    kind: self | encoder_self | decoder_self | cross.
    label: the layer's type (``model.layer_label``: ``sliding:512``, ``full``, ``nope``, ``hybrid:3:8``), or None.
    """

    kind: str
    label: str | None
    settings: "RunSettings"


@dataclass
class RunSettings:
    """Shared by every layer of one wrapped model: the kernel asked for, the recorder written to, and the calls of
    each kind so far in the current forward (a layer's index within its kind)."""

    recorder: Recorder = field(default_factory=Recorder)
    backend: str = "auto"
    calls: Counter = field(default_factory=Counter)
    ablated: dict = field(default_factory=dict)  # (kind, layer) -> {head: "zero" | "mean"} while heads are ablated
    modules: list = field(default_factory=list)  # the attention module of each recorded call of this forward
    window: int = 0  # > 0: every causal self-attention call sees at most this many keys back (the page's window)

    def __post_init__(self):
        check_backend(self.backend)

    def next_layer(self, kind: str) -> int:
        self.calls[kind] += 1
        return self.calls[kind] - 1


def check_backend(backend: str) -> None:
    if backend not in KERNELS:
        raise ValueError(f"a Hub model's attention runs on {', '.join(KERNELS)}; got {backend!r}")


# The registry of attention modules that belong to a wrapped model (``HubModel``): a module not in it (a model
# loaded elsewhere with attn_implementation="playground") runs the same kernels and records nothing.
LAYERS: "WeakKeyDictionary[torch.nn.Module, LayerTag]" = WeakKeyDictionary()


def register() -> None:
    """Register ``attention_forward`` and ``rule_mask`` with transformers under ``NAME`` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, rule_mask)


def _rule_of(mask, module, Tq: int, Tk: int, sliding_window: int | None, cross: bool) -> RuleMask:
    """The call's mask as a RuleMask. transformers may pass None (no padding and nothing to mask, or a model that
    builds no mask): then the layer's own attributes say the rule."""
    if isinstance(mask, RuleMask):
        if cross:
            return RuleMask(MaskRule("cross"), 0, 0, Tq, Tk, mask.key_valid)
        return mask
    if mask is not None:
        raise ValueError(f"{type(module).__name__} built its own attention mask ({type(mask).__name__}) instead of "
                         "asking transformers' mask interface: the playground cannot read its rule")
    if cross:
        return RuleMask(MaskRule("cross"), 0, 0, Tq, Tk)
    causal = bool(getattr(module, "is_causal", False))
    window = int(sliding_window or 0) if causal else 0
    return RuleMask(MaskRule("causal" if causal else "bidirectional", window=window if window < Tk else 0),
                    Tk - Tq, 0, Tq, Tk)


def _relative_table(bias: Tensor, q_start: int, k_start: int) -> tuple[Tensor, int]:
    """A bias (1 or B, nh, Tq, Tk) that depends only on key - query, as its table per offset: ((nh, Tq + Tk - 1), the
    offset of column 0). ValueError when it is not such a bias (checked on a corner of the matrix)."""
    b = bias[0].float()  # (nh, Tq, Tk)
    _, Tq, Tk = b.shape
    table = torch.cat([b[:, 1:, 0].flip(-1), b[:, 0, :]], dim=-1)  # offsets -(Tq-1) .. Tk-1 (local)
    offset = (k_start - q_start) - (Tq - 1)
    r, c = min(Tq, OFFSET_PROBE), min(Tk, OFFSET_PROBE)
    for r0, c0 in ((0, 0), (Tq - r, Tk - c)):
        local = torch.arange(c0, c0 + c)[None, :] - torch.arange(r0, r0 + r)[:, None] + (Tq - 1)
        if not torch.allclose(table[:, local], b[:, r0:r0 + r, c0:c0 + c], atol=1e-6, rtol=0):
            raise ValueError("the position bias this layer received does not depend on key - query alone: "
                             "the playground cannot keep it per offset")
    return table.contiguous(), offset


def _kernel_call(rule: RuleMask, Tq: int, Tk: int) -> str:
    """is_causal | no mask | mask: what SDPA is given for this rule, without building a T x T tensor to decide."""
    if rule.key_valid is not None:
        return "mask"
    r = rule.rule
    if r.sees_all and (r.window == 0 or r.window >= Tq + Tk):
        return "no mask"
    causal = r.kind == "causal" and (r.window == 0 or r.window >= Tk)
    if causal and Tq == Tk and rule.q_start == rule.k_start:
        return "is_causal"
    if causal and Tq == 1 and rule.q_start >= rule.k_start + Tk - 1:  # one decoding query sees every key held
        return "no mask"
    return "mask"


def _explicit(q: Tensor, k: Tensor, v: Tensor, scale: float, softcap: float | None, bias: Tensor | None,
              mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """softmax(s) V with s = cap * tanh(q k^T * scale / cap) + bias, in float32. out (B, nh, Tq, dv), lse (B, nh, Tq)"""
    s = (q.float() @ k.float().transpose(-2, -1)) * scale  # (B, nh, Tq, Tk)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if bias is not None:
        s = s + bias.float()
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    lse = s.logsumexp(-1)  # (B, nh, Tq)
    weights = (s - lse[..., None]).exp().nan_to_num_(0.0)
    return (weights @ v.float()).to(v.dtype), lse


def attention_forward(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask,
                      scaling: float | None = None, dropout: float = 0.0, softcap: float | None = None,
                      s_aux: Tensor | None = None, position_bias: Tensor | None = None,
                      sliding_window: int | None = None, **_) -> tuple[Tensor, None]:
    """transformers' attention interface (see the module docstring).

    Args:
        query: (B, nh, Tq, d); key: (B, n_kv, Tk, d); value: (B, n_kv, Tk, dv), after RoPE and norms.
        attention_mask: a ``RuleMask`` (from ``rule_mask``) or None.
        scaling: what q . k is multiplied by. softcap: Gemma 2's. s_aux: (nh,) sink logits.
        position_bias: (1, nh, Tq, Tk), T5's relative bias (its own, computed by the layer).
    Returns:
        (out (B, Tq, nh, dv), None): the weights are rebuilt from the record, never returned dense.
    """
    tag = LAYERS.get(module)
    settings = tag.settings if tag is not None else RunSettings()
    layer = settings.next_layer(tag.kind) if tag is not None else 0
    B, nh, Tq, d = query.shape
    n_kv, Tk = key.shape[1], key.shape[2]
    scale = 1 / math.sqrt(d) if scaling is None else float(scaling)
    rule = _rule_of(attention_mask, module, Tq, Tk, sliding_window, tag is not None and tag.kind == "cross")
    if settings.window and rule.rule.kind == "causal":
        narrow = min(w for w in (rule.rule.window, settings.window) if w)
        rule = dataclasses.replace(rule, rule=MaskRule("causal", window=narrow))
    bias = None if position_bias is None else position_bias[..., :Tq, :Tk]
    if bias is not None and not bool(bias.any()):  # T5's cross-attention passes zeros: no bias at all
        bias = None
    sinks = None if s_aux is None else s_aux.detach().float()
    k, v = key, value
    if n_kv != nh:  # kernels take one K/V per query head; the record keeps them per K/V head
        k = key.repeat_interleave(nh // n_kv, dim=1)
        v = value.repeat_interleave(nh // n_kv, dim=1)
    backend, call, reason, block_mask = settings.backend, _kernel_call(rule, Tq, Tk), None, None
    if softcap and backend not in ("explicit", "flex"):
        backend, reason = "explicit", SOFTCAP_EXPLICIT
    if backend == "flex" and (softcap or bias is not None or sinks is not None or value.shape[-1] != d):
        backend, reason = "explicit", FLEX_EXPLICIT
    elif backend == "flex" and flex_miscomputes(query.device, Tk, d):
        backend, reason = "auto", FLEX_CPU_TINY
    if backend == "flex":
        try:  # q scaled so that the kernel's 1/sqrt(d) gives the layer's own scaling
            out, block_mask, *lse = flex.flex_attention(query * (scale * math.sqrt(d)), k, v, rule.rule,
                                                        q_start=rule.q_start, k_start=rule.k_start,
                                                        key_valid=rule.key_valid,
                                                        return_lse=flex.LSE_ON.get(query.device.type, False))
        except flex.FlexUnavailable as e:
            raise KernelUnavailable(f"FlexAttention cannot run here: {e}. Choose another backend (math and explicit "
                                    "always run).") from None
        lse, kernel, call = (lse[0] if lse else None), "flex", "block mask"
    elif backend == "explicit":
        dense = None if call == "no mask" else rule.dense(query.device)
        out, lse = _explicit(query, k, v, scale, softcap, bias, dense)
        kernel, call = "explicit", "weights"
    else:
        mask = None
        if call == "mask" or bias is not None:
            allowed = rule.dense(query.device)
            mask = to_additive(allowed, query.dtype)
            if bias is not None:
                mask = mask + bias.to(query.dtype)
            call = "mask"
        run = sdpa_call(query, k, v, mask, kernel=backend, is_causal=call == "is_causal", return_lse=True,
                        scale=scale)
        out, lse, kernel = run.out, run.lse, run.kernel
        if run.refused:
            reason = "; ".join(filter(None, (reason, *run.refused)))
    rel_bias, rel_offset = (None, 0) if bias is None else _relative_table(bias, rule.q_start, rule.k_start)
    source = AttentionSource(query.detach(), key.detach(), None if lse is None else lse.detach().float(), rule.rule,
                             rule.q_start, rule.k_start, rule.key_valid, scale=scale, softcap=softcap or None,
                             rel_bias=rel_bias, rel_offset=rel_offset)
    keys_lse = source.lse
    if sinks is not None:  # the sink joins every row's sum: the output shrinks by exp(lse_keys - lse)
        lse_all = torch.logaddexp(keys_lse, sinks.to(keys_lse.device)[None, :, None])
        out = (out.float() * (keys_lse - lse_all).exp()[..., None]).to(out.dtype)
        source.lse, source.sinks = lse_all, sinks
    ablated = settings.ablated.get((tag.kind, layer)) if tag is not None else None
    if ablated:  # head h's output y^h, what o_proj reads of it: 0, or its mean over the positions
        out = out.clone()
        for h, mode in ablated.items():
            out[:, h] = 0.0 if mode == "zero" else out[:, h].mean(dim=1, keepdim=True)
    if tag is not None and settings.recorder.on:
        settings.modules.append(module)
        recomputed = not (kernel == "explicit" and query.dtype == torch.float32)
        settings.recorder.write(AttentionRecord(
            tag.kind, layer, source.to_cpu(), kernel, recomputed, call=call, block_mask=block_mask, reason=reason,
            check=(value.detach().float().cpu(), out.detach().float().cpu()), layer_type=tag.label))
    return out.transpose(1, 2).contiguous(), None


__all__ = ["KERNELS", "LAYERS", "LayerTag", "NAME", "RunSettings", "attention_forward", "register"]
