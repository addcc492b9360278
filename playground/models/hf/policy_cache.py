"""transformers' cache with each attention layer held under a KV-cache policy (``nn.kv_policies``): the KV-cache
lab's way into a Hub model.

A ``PolicyLayer`` is a cache layer of transformers' own kind (``DynamicLayer``) whose keys and values live in a
``PolicyCache``: ``update`` appends the new ones at their positions and returns what the policy holds (a window,
sinks, heavy hitters, SnapKV's choice, or int8 / int4 groups dequantized). It counts the positions it has read, so
transformers places the next token (RoPE, ``cache_position``) where it really is, and it tells the mask builder
that every key it holds is before the query, whichever positions those are: a decoding step's query sees every
key its cache kept, as in the playground's own models (``inspect.kv_lab``).
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from playground.nn.kv_policies import Policy, PolicyCache


class PolicyLayer(DynamicLayer):
    """One attention layer's cache under ``policy``: keys and values (B, n_kv, held, hd) in a ``PolicyCache``."""

    is_sliding = False

    def __init__(self, policy: Policy, n_kv_heads: int, head_dim: int, dtype: torch.dtype):
        super().__init__()
        self.held = PolicyCache(policy, n_kv_heads, head_dim, dtype)
        self.cumulative_length = 0  # positions read so far (the cache may hold fewer)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append the new keys and values (B, n_kv, T, hd); return every key and value the policy holds."""
        T = key_states.shape[-2]
        positions = torch.arange(self.cumulative_length, self.cumulative_length + T)
        self.cumulative_length += T
        keys, values = self.held.update(positions, key_states, value_states)
        self.keys, self.values = keys, values
        return keys, values

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """The held keys and the new ones, placed just before and at the queries: all of them visible."""
        kv_length = len(self.held.pos) + query_length
        return kv_length, self.cumulative_length + query_length - kv_length


def policy_cache(config, policy: Policy, n_kv_heads: int, head_dim: int, dtype: torch.dtype) -> DynamicCache:
    """A transformers cache for ``config`` whose every layer is a ``PolicyLayer``."""
    cache = DynamicCache(config=config)
    cache.layers = [PolicyLayer(policy, n_kv_heads, head_dim, dtype) for _ in cache.layers]
    return cache
