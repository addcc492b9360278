"""The KV cache: what ``update`` returns (every visible position, in order) and what it allocates
(a ring of W slots with a window, every position without one), against a plain list of all keys."""
import pytest
import torch

from playground.inspect.generation import generate
from playground.nn.cache import KVCache

from conftest import tiny_model

B, N_KV, HS = 2, 3, 4


def chunk(start: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions start..start+n-1 and keys/values (B, n_kv, n, hs) that carry their position."""
    pos = torch.arange(start, start + n)
    k = pos.float()[None, None, :, None] + torch.randn(B, N_KV, n, HS)
    return pos, k, -k


@pytest.mark.parametrize("window", [0, 1, 5, 16])
def test_update_returns_every_visible_position_in_order(window):
    """Random chunk sizes (prefill, single steps, chunks longer than the window): each update returns
    exactly the keys/values a list of everything written gives for positions first_kept .. last."""
    g = torch.Generator().manual_seed(window)
    cache = KVCache(B, N_KV, 400, HS, window=window)
    ks, vs, pos = [], [], 0
    while pos < 300:
        n = int(torch.randint(1, 24, (1,), generator=g)) if torch.rand(1, generator=g) < 0.3 else 1
        p, k, v = chunk(pos, n)
        first = max(0, pos - window + 1) if window else 0
        got_k, got_v = cache.update(p, k, v)
        ks.append(k), vs.append(v)
        pos += n
        assert torch.equal(got_k, torch.cat(ks, dim=2)[:, :, first:pos])
        assert torch.equal(got_v, torch.cat(vs, dim=2)[:, :, first:pos])
        assert cache.held == pos - first
        assert cache.bytes_used == 2 * B * N_KV * (pos - first) * HS * 4
        slots = max(pos - first, window) if window else 400
        assert cache.slots == slots and cache.bytes_allocated == 2 * B * N_KV * slots * HS * 4


def test_a_window_allocates_w_slots_while_decoding():
    """A prefill longer than W grows the ring for that write; the next step shrinks it back to W."""
    cache = KVCache(B, N_KV, 1000, HS, window=8)
    assert cache.slots == 8  # never the whole max_len
    cache.update(*chunk(0, 20))
    assert cache.slots == 20 and cache.held == 20
    for t in range(20, 600):
        k, _ = cache.update(*chunk(t, 1))
        assert k.shape[2] == 8 and cache.slots == 8 and cache.held == 8
    assert cache.bytes_allocated == cache.bytes_used == 2 * B * N_KV * 8 * HS * 4


def test_cache_misuse_names_the_fix():
    cache = KVCache(B, N_KV, 4, HS)
    cache.update(*chunk(0, 3))
    with pytest.raises(ValueError, match="in order"):
        cache.update(*chunk(5, 1))
    with pytest.raises(ValueError, match="full"):
        cache.update(*chunk(3, 2))
    with pytest.raises(ValueError, match="max_len"):
        KVCache(B, N_KV, 0, HS)


def test_without_a_window_every_position_is_preallocated():
    """gpt-fast style: prompt + new tokens slots from the start, in use growing one position a step."""
    model = tiny_model(n_kv_heads=2)
    cfg = model.cfg
    per_position = cfg.n_layer * 2 * cfg.n_kv_heads * cfg.head_dim * 4
    steps = generate(model, [3, 4, 5, 6], 12).steps
    assert [s.cache_bytes for s in steps] == [per_position * (4 + i) for i in range(12)]
    assert {s.cache_bytes_allocated for s in steps} == {per_position * (4 + 12)}
    assert model.cache_bytes() == model.cache_bytes_allocated() == 0  # cleared after generating


@pytest.mark.parametrize("family", ["rwkv", "mamba"])
def test_a_recurrent_state_is_allocated_as_used(family):
    model = tiny_model(family=family, position="none")
    steps = generate(model, [3, 4, 5], 6).steps
    assert steps[0].cache_bytes > 0
    assert all(s.cache_bytes_allocated == s.cache_bytes == steps[0].cache_bytes for s in steps)
