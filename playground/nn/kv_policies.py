"""Ways to make the KV cache smaller, each a cache of one attention layer that really holds less.

A ``PolicyCache`` takes the place of a layer's ``KVCache`` (``update`` has the same contract: write the new keys and
values, return every key and value the new queries see) and keeps what its ``Policy`` says:

- ``full``: every position (the reference);
- ``window`` W: the last W positions (a sliding window);
- ``sinks`` S + W (StreamingLLM, Xiao et al. 2023): the first S positions, the "attention sinks", and the last W;
- ``h2o`` B (Zhang et al. 2023): the ``recent`` last positions and, of the others, the heavy hitters: those with the
  most attention received so far, summed over heads and queries; B in all;
- ``snapkv`` B (Li et al. 2024): once, when the prompt has been read, the positions the last ``recent`` queries
  (the observation window) attend to most, pooled over neighbours, plus the window itself; B in all, and every
  later position kept;
- ``quant`` at 8 or 4 bits (KIVI, Liu et al. 2024): every position, keys quantized per channel over groups of
  ``GROUP`` tokens, values per token, each with a float16 scale and zero point; the last incomplete group of keys
  stays in full precision until it fills.

Eviction happens after a step's attention (``observe`` hands the cache the step's weights, ``compress`` applies the
policy), so a step attends to what the cache held plus its own new key. Positions are kept in order; the keys were
rotated (RoPE) before they were cached, so a kept key carries its position. What the cache holds is its tensors:
``nbytes`` is their ``nbytes`` as allocated.

Glossary: B batch (1 here), n_kv K/V heads, Tk keys held, hs head dim, nh query heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KINDS = ("full", "window", "sinks", "h2o", "snapkv", "quant")
GROUP = 32          # KIVI's group of tokens sharing a key scale per channel
SNAP_POOL = 7       # SnapKV's pooling width over neighbouring positions


@dataclass(frozen=True)
class Policy:
    """What a cache keeps (see the module's docstring). ``budget``: positions kept (window and sinks: the window
    and sinks together); ``sinks``: StreamingLLM's first positions; ``recent``: H2O's recent share, SnapKV's
    observation window; ``bits``: 8 or 4 for ``quant``; ``prompt``: SnapKV compresses once this many have been read."""

    kind: str = "full"
    budget: int = 0
    sinks: int = 0
    recent: int = 0
    bits: int = 16
    prompt: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown cache policy {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind in ("window", "sinks", "h2o", "snapkv") and self.budget < 1:
            raise ValueError(f"a {self.kind} cache keeps at least one position, got budget={self.budget}")
        if self.kind == "sinks" and not 0 <= self.sinks < self.budget:
            raise ValueError(f"sinks must be from 0 to budget - 1 = {self.budget - 1}, got {self.sinks}")
        if self.kind in ("h2o", "snapkv") and not 0 < self.recent <= self.budget:
            raise ValueError(f"recent must be from 1 to the budget {self.budget}, got {self.recent}")
        if self.kind == "quant" and self.bits not in (8, 4):
            raise ValueError(f"a quantized cache has 8 or 4 bits, got {self.bits}")

    @property
    def label(self) -> str:
        return {"full": "full", "window": f"window {self.budget}",
                "sinks": f"sinks {self.sinks} + window {self.budget - self.sinks}",
                "h2o": f"H2O {self.budget} ({self.recent} recent)",
                "snapkv": f"SnapKV {self.budget} (window {self.recent})",
                "quant": f"int{self.bits}"}[self.kind]


def kept(policy: Policy, n: int, scores: Tensor | None = None) -> Tensor:
    """Which of ``n`` held positions (oldest first) ``policy`` keeps after a step: their indices, ascending.
    ``scores`` (n,): attention received (H2O), or the observation window's votes (SnapKV)."""
    every = torch.arange(n)
    if policy.kind in ("full", "quant") or n <= policy.budget:
        return every
    if policy.kind == "window":
        return every[n - policy.budget:]
    if policy.kind == "sinks":
        return torch.cat([every[:policy.sinks], every[n - (policy.budget - policy.sinks):]])
    older = n - policy.recent  # h2o, snapkv: the recent ones, and the best scored of the rest
    best = scores[:older].topk(policy.budget - policy.recent).indices
    return torch.cat([best.sort().values, every[older:]])


def _quantize(x: Tensor, bits: int, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric uniform quantization of ``x`` along ``dim`` (the values sharing one scale): (codes uint8, int4
    packed two to a byte along the last dim; scale, zero as float16). Round-trip error at most scale / 2."""
    top, low = x.amax(dim, keepdim=True), x.amin(dim, keepdim=True)
    levels = 2 ** bits - 1
    scale = ((top - low) / levels).clamp_min(1e-8).half()
    zero = low.half()
    codes = ((x - zero.float()) / scale.float()).round().clamp(0, levels).to(torch.uint8)
    if bits == 4:
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return codes, scale, zero


def _dequantize(codes: Tensor, scale: Tensor, zero: Tensor, bits: int) -> Tensor:
    if bits == 4:
        codes = torch.stack([codes & 15, codes >> 4], dim=-1).flatten(-2)
    return codes.float() * scale.float() + zero.float()


class PolicyCache(nn.Module):
    """One layer's cache under a ``Policy``: keys and values (B, n_kv, Tk, hs) of the positions ``pos`` (Tk,) it
    holds, or their quantized groups (``quant``), and the attention each has received (H2O)."""

    def __init__(self, policy: Policy, n_kv_heads: int, head_dim: int, dtype: torch.dtype = torch.float32,
                 v_dim: int | None = None):
        """``v_dim``: the values' width when it is not the keys' (MLA caches one row per position and no value)."""
        super().__init__()
        v_dim = head_dim if v_dim is None else v_dim
        if policy.kind == "quant" and (head_dim % 2 or v_dim % 2):
            raise ValueError(f"an int4 cache packs two numbers a byte: widths {head_dim} and {v_dim} must be even")
        self.policy, self.dtype = policy, dtype
        self.k = torch.zeros(1, n_kv_heads, 0, head_dim, dtype=dtype)
        self.v = torch.zeros(1, n_kv_heads, 0, v_dim, dtype=dtype)
        self.pos = torch.zeros(0, dtype=torch.long)
        self.scores = torch.zeros(0)   # (Tk,) attention received so far, summed over heads and queries
        self.groups: list[tuple] = []  # quant: per full group, (key codes, scales, zeros, value codes, ...)
        self.compressed = False        # snapkv: done once

    def first_kept(self, start_pos: int) -> int:
        return int(self.pos[0]) if len(self.pos) else start_pos

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new keys and values (B, n_kv, T, hs) at ``input_pos`` (T,); return all the queries see."""
        self.k, self.v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)
        self.pos = torch.cat([self.pos, input_pos.cpu()])
        self.scores = torch.cat([self.scores, torch.zeros(len(input_pos))])
        if self.policy.kind != "quant":
            return self.k, self.v
        while self.k.shape[2] >= GROUP:  # a full group of keys: quantized, per channel over its tokens
            kg, vg = self.k[:, :, :GROUP].float(), self.v[:, :, :GROUP].float()
            values = _quantize(vg, self.policy.bits, dim=3) if vg.shape[-1] else (vg.to(torch.uint8),) * 3  # MLA: none
            self.groups.append((*_quantize(kg, self.policy.bits, dim=2), *values))
            self.k, self.v = self.k[:, :, GROUP:], self.v[:, :, GROUP:]
        return self.dequantized()

    def dequantized(self) -> tuple[Tensor, Tensor]:
        """Every key and value held, the quantized groups rebuilt, in position order."""
        bits = self.policy.bits
        ks = [_dequantize(kc, ks_, kz, bits).to(self.dtype) for kc, ks_, kz, *_ in self.groups]
        vs = [_dequantize(vc, vs_, vz, bits).to(self.dtype) if vc.shape[-1] else vc.to(self.dtype)
              for *_, vc, vs_, vz in self.groups]
        return torch.cat([*ks, self.k], dim=2), torch.cat([*vs, self.v], dim=2)

    def observe(self, weights: Tensor) -> None:
        """A step's attention weights over the keys held (nh, Tq, Tk): what H2O scores and SnapKV votes with."""
        received = weights.float().sum(dim=(0, 1)).cpu()  # (Tk,) over heads and queries
        if self.policy.kind == "h2o":
            self.scores += received
        elif self.policy.kind == "snapkv" and not self.compressed:
            if int(self.pos[-1]) >= self.policy.prompt - self.policy.recent:  # a query of the observation window
                self.scores += received

    def compress(self) -> None:
        """Drop what the policy does not keep (after a step's attention)."""
        kind = self.policy.kind
        if kind in ("full", "quant") or (kind == "snapkv" and (self.compressed or self.pos[-1] + 1 < self.policy.prompt)):
            return
        scores = self.scores
        if kind == "snapkv":  # a position's neighbours vote for it too: clusters are kept whole
            scores = F.max_pool1d(scores[None, None], SNAP_POOL, stride=1, padding=SNAP_POOL // 2)[0, 0]
        keep = kept(self.policy, len(self.pos), scores)
        self.compressed = kind == "snapkv"  # SnapKV chooses once, when the prompt has been read
        if len(keep) == len(self.pos):
            return
        self.k, self.v = self.k[:, :, keep].contiguous(), self.v[:, :, keep].contiguous()
        self.pos, self.scores = self.pos[keep], self.scores[keep]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors it holds, as allocated."""
        return self.k.nbytes + self.v.nbytes + sum(t.nbytes for group in self.groups for t in group)



def formula_bytes(policy: Policy, held: int, shape: tuple[int, int, int], itemsize: int = 4) -> int:
    """What one layer's cache under ``policy`` holds by formula once ``held`` positions have been read (after that
    step's eviction), for a cache of ``shape`` (heads, key width, value width: ``nn.cache.cache_shape``) at
    ``itemsize`` bytes a number. The measured ``PolicyCache.nbytes`` is this (the tests check it)."""
    n_kv, k_dim, v_dim = shape
    per_token = n_kv * (k_dim + v_dim) * itemsize  # K and V of one position, full precision
    kind = policy.kind
    if kind == "full":
        return held * per_token
    if kind in ("window", "sinks", "h2o"):
        return min(held, policy.budget) * per_token
    if kind == "snapkv":
        if held < policy.prompt:
            return held * per_token
        return (min(policy.prompt, policy.budget) + held - policy.prompt) * per_token
    groups, residual = divmod(held, GROUP)
    codes = n_kv * GROUP * (k_dim + v_dim) * policy.bits // 8  # K and V
    scales = 2 * 2 * n_kv * k_dim + (2 * 2 * n_kv * GROUP if v_dim else 0)  # fp16 scale and zero: K per channel, V per token
    return groups * (codes + scales) + residual * per_token
