"""The KV cache, and what it costs.

A ``KVCache`` belongs to one attention layer and holds only the ``n_kv_heads`` K/V heads (a GQA
or MQA model caches fewer heads than it has query heads). ``update`` writes the new keys and
values at their absolute positions and returns everything the new queries can see, so a
prefill of many tokens and a decode step of one run the same code. Without a window the buffers
are preallocated for every position. With a sliding window W (Mistral-style) they are a ring of
W slots: positions no new query can see any more (older than start_pos - W + 1) are overwritten,
so while decoding the cache holds, and allocates, W positions. ``bytes_used`` counts the
positions held, ``bytes_allocated`` the buffers as they sit in memory.

Per-token cache size, in elements per layer (times bytes per element):

    MHA  2 * n_heads * d_head        (K and V for every head)
    GQA  2 * n_kv_heads * d_head
    MQA  2 * d_head
    MLA  d_latent + d_rope           (DeepSeek-V2: one compressed latent plus a shared RoPE key)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.errors import InputError

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "int8": 1, "fp8": 1, "int4": 0.5}


class KVCache(nn.Module):
    """Keys and values of one layer, (B, n_kv, slots, hs) each; position p lives in slot p % slots.

    Without a window every position keeps its own slot: slots = max_len, preallocated (gpt-fast).
    With a window W the buffer is a ring: a write of C tokens needs the (up to) W - 1 positions
    before it that its queries can still see, plus the C new ones. Decoding one token at a time,
    that is W slots; a longer write (the prefill of a long prompt) grows the ring for that write,
    and the next one-token step shrinks it back to W.

    ``update`` returns the keys and values in position order whatever the slots, because masks,
    RoPE'd keys and ALiBi biases are built from absolute positions (``Stack.positions_for``).
    """

    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None, window: int = 0,
                 v_dim: int | None = None):
        """``v_dim``: the values' width when it is not the keys' (None: head_dim). MLA caches its latent and RoPE key
        as one key of d_c + d_r numbers and no value (v_dim 0): its values are rebuilt from the latent."""
        super().__init__()
        if max_len < 1 or window < 0:
            raise ValueError(f"a KV cache needs max_len >= 1 and window >= 0, got max_len={max_len}, window={window}")
        self.max_len = max_len  # the most positions it may hold at once
        self.window = window    # 0: keep every position
        self.start = 0          # it holds positions start .. length-1
        self.length = 0
        v_dim = head_dim if v_dim is None else v_dim
        self.register_buffer("k", torch.zeros(batch, n_kv_heads, self.base_slots, head_dim, dtype=dtype, device=device),
                             persistent=False)
        self.register_buffer("v", torch.zeros(batch, n_kv_heads, self.base_slots, v_dim, dtype=dtype, device=device),
                             persistent=False)

    @property
    def base_slots(self) -> int:
        """Slots while decoding one token at a time: W with a window, max_len without."""
        return min(self.window, self.max_len) if self.window else self.max_len

    @property
    def slots(self) -> int:
        return self.k.shape[2]

    @property
    def held(self) -> int:
        """How many positions the cache holds now."""
        return self.length - self.start

    def first_kept(self, start_pos: int) -> int:
        """The oldest position queries from ``start_pos`` on can still see (all of them without a window)."""
        return max(self.start, start_pos - self.window + 1) if self.window else self.start

    def _slots_of(self, first: int, end: int) -> slice | Tensor:
        """The slots of positions first .. end-1, in order: a slice unless they wrap around the ring."""
        lo = first % self.slots
        if lo + end - first <= self.slots:
            return slice(lo, lo + end - first)
        return torch.arange(first, end, device=self.k.device) % self.slots  # (end - first,)

    def _resize(self, slots: int, first: int) -> None:
        """Reallocate to ``slots`` slots, keeping positions first .. length-1."""
        kept = self._slots_of(first, self.length)
        k, v = self.k[:, :, kept], self.v[:, :, kept]  # (B, n_kv, length - first, hs)
        B, n_kv, _, hs = self.k.shape
        self.k = self.k.new_zeros(B, n_kv, slots, hs)
        self.v = self.v.new_zeros(B, n_kv, slots, self.v.shape[-1])
        into = self._slots_of(first, self.length)
        self.k[:, :, into], self.v[:, :, into] = k, v

    def update(self, input_pos: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, n_kv, T, hs) at positions input_pos (T,); return what the new queries can see,
        positions first_kept(input_pos[0]) .. input_pos[-1] in order: (B, n_kv, Tk, hs)."""
        start, end = int(input_pos[0]), int(input_pos[-1]) + 1
        if start != self.length:
            raise ValueError(
                f"KV cache holds positions up to {self.length} but the new tokens start at {start}; "
                "decode positions in order, or call model.setup_cache() to start again"
            )
        first = self.first_kept(start)  # older positions are dropped: no new query can see them
        if end - first > self.max_len:
            raise ValueError(
                f"KV cache is full ({self.max_len} positions); call model.setup_cache(max_len=...) with a larger max_len"
            )
        slots = max(end - first, self.base_slots)
        if slots != self.slots:
            self._resize(slots, first)
        new = self._slots_of(start, end)
        self.k[:, :, new], self.v[:, :, new] = k, v
        self.start, self.length = first, end
        seen = self._slots_of(first, end)
        return self.k[:, :, seen], self.v[:, :, seen]

    @property
    def bytes_used(self) -> int:
        """Bytes of the positions held: B * n_kv * held * (hs + v_dim) * element size (hs + v_dim = 2 hs but for MLA)."""
        b, n_kv, _, hs = self.k.shape
        return b * n_kv * self.held * (hs + self.v.shape[-1]) * self.k.element_size()

    @property
    def bytes_allocated(self) -> int:
        """Bytes of the buffers as allocated: 2 * B * n_kv * slots * hs * element size."""
        return self.k.nbytes + self.v.nbytes


def cache_shape(cfg: ModelConfig) -> tuple[int, int, int]:
    """What one layer's self-attention cache holds per position: (heads, key width, value width). MLA: one row of
    the latent and the RoPE key, and no value (``nn.latent_attention``)."""
    if getattr(cfg, "kv_lora_rank", 0):  # a Hub checkpoint's config (models.hf.shape) has no MLA of ours
        return 1, cfg.kv_lora_rank + cfg.qk_rope_dim, 0
    return cfg.n_kv_heads, cfg.head_dim, cfg.head_dim


def dtype_bytes(dtype: str | torch.dtype) -> float:
    """Bytes per element for a dtype name ('fp16', 'bfloat16', ...) or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).element_size()
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def kv_elements_per_token(variant: str, n_heads: int, head_dim: int, *, n_kv_heads: int | None = None,
                          d_latent: int | None = None, d_rope: int | None = None) -> int:
    """Cached elements per token per layer, by formula (see the module docstring)."""
    if variant == "MHA":
        return 2 * n_heads * head_dim
    if variant == "GQA":
        if not n_kv_heads or n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"GQA needs n_kv_heads dividing n_heads={n_heads}, got {n_kv_heads}")
        return 2 * n_kv_heads * head_dim
    if variant == "MQA":
        return 2 * head_dim
    if variant == "MLA":
        if not d_latent or d_rope is None:
            raise ValueError("MLA needs d_latent (the compressed KV width) and d_rope (the shared RoPE key width)")
        return d_latent + d_rope
    raise ValueError(f"unknown attention variant {variant!r}; valid: MHA, GQA, MQA, MLA")


def kv_bytes_per_token(variant: str, n_layer: int, n_heads: int, head_dim: int, dtype: str | torch.dtype = "fp16",
                       **kwargs) -> float:
    """Cache bytes per token for the whole model (all layers), by formula."""
    return n_layer * kv_elements_per_token(variant, n_heads, head_dim, **kwargs) * dtype_bytes(dtype)


def kv_cache_bytes(variant: str, n_layer: int, n_heads: int, head_dim: int, *, tokens: int, batch: int = 1,
                   dtype: str | torch.dtype = "fp16", **kwargs) -> float:
    """Whole-cache bytes for ``batch`` sequences of ``tokens`` tokens, by formula."""
    return batch * tokens * kv_bytes_per_token(variant, n_layer, n_heads, head_dim, dtype, **kwargs)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a recurrent state is held and updated in (RWKV's WKV, Mamba's SSM state): float32 at
    least, as the reference implementations do (float16 / bfloat16 weights too), float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


def state_elements_per_layer(kind: str, cfg: ModelConfig) -> tuple[int, int]:
    """Fixed recurrent state per layer at ``cfg``'s sizes, in elements: (held in the weights' dtype,
    held in ``state_dtype``).

    RWKV-5/6: two token-shift vectors of d (weights' dtype) and H matrices N x N, d * N (state dtype):
    d (2 + N) in all. Mamba-1, d_in = expand * d: the conv state d_in (d_conv - 1) (weights' dtype)
    and the SSM state d_in * d_state (state dtype).
    """
    if kind == "RWKV":
        return 2 * cfg.d_model, cfg.d_model * cfg.head_dim
    if kind == "Mamba":
        d_inner = cfg.expand * cfg.d_model
        return d_inner * (cfg.d_conv - 1), d_inner * cfg.d_state
    raise ValueError(f"unknown recurrent model {kind!r}; valid: RWKV, Mamba")


def state_bytes_per_layer(kind: str, cfg: ModelConfig, dtype: str | torch.dtype = torch.float32) -> float:
    """Bytes of one layer's recurrent state for weights in ``dtype``: the part in ``state_dtype`` takes
    at least float32's 4 bytes per element (the wider of the two, as ``torch.promote_types`` picks)."""
    in_weights, in_state = state_elements_per_layer(kind, cfg)
    size = dtype_bytes(dtype)
    return in_weights * size + in_state * max(size, dtype_bytes(torch.float32))


# Published model shapes for the what-if calculator (from their papers / config files).
PUBLISHED = {
    "Llama-2-7B (MHA)": dict(n_layer=32, n_heads=32, n_kv_heads=32, head_dim=128, d_latent=512, d_rope=64),
    "Llama-3-8B (GQA, 8 K/V heads)": dict(n_layer=32, n_heads=32, n_kv_heads=8, head_dim=128, d_latent=512, d_rope=64),
    "Falcon-7B (MQA)": dict(n_layer=32, n_heads=71, n_kv_heads=1, head_dim=64, d_latent=256, d_rope=32),
    "DeepSeek-V2 (MLA, latent 512 + rope 64)": dict(n_layer=60, n_heads=128, n_kv_heads=128, head_dim=128,
                                                    d_latent=512, d_rope=64),
}


def whatif(n_layer: int, n_heads: int, n_kv_heads: int, head_dim: int, *, d_latent: int, d_rope: int,
           dtype: str = "fp16", context: int = 4096, batch: int = 1) -> list[dict]:
    """KV cache of every variant at these dimensions: bytes per token and GiB for batch x context.

    Each row names its variant and, for the label, its K/V heads (MHA, GQA, MQA) or latent and rope widths (MLA)."""
    for name, value in dict(n_layer=n_layer, n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                            d_latent=d_latent, d_rope=d_rope, context=context, batch=batch).items():
        if not isinstance(value, int) or value < (0 if name == "d_rope" else 1):
            raise InputError("error.positive_int", name=name, value=value)
    if n_heads % n_kv_heads:
        raise InputError("error.heads_divisible", n_heads=n_heads, n_kv_heads=n_kv_heads)
    rows = []
    for variant, extra in (("MHA", {}), ("GQA", dict(n_kv_heads=n_kv_heads)), ("MQA", {}),
                           ("MLA", dict(d_latent=d_latent, d_rope=d_rope))):
        per_token = kv_bytes_per_token(variant, n_layer, n_heads, head_dim, dtype, **extra)
        total = batch * context * per_token
        kv_heads = {"MHA": n_heads, "GQA": n_kv_heads, "MQA": 1}.get(variant)
        rows.append({"variant": variant, "kv_heads": kv_heads, "d_latent": d_latent, "d_rope": d_rope,
                     "bytes_per_token": per_token, "gib": total / 2**30})
    return rows
