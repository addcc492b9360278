"""Benchmark: decoding with and without the KV cache (``python -m playground.bench decode``).

    A random-weight model (4 layers, d_model 256, 8 heads, RoPE, d_ff 1024, vocab 2048,
    context 1024) generates ``--tokens`` new tokens greedily from a 16-token prompt, with the
    KV cache (prefill once, then one token per step) and without (every step re-runs the whole
    sequence), after a short warm-up of each. The two modes alternate for ``--repeats`` rounds
    (at least 5), so a slow spell on a shared machine falls on both. ``tokens_per_s`` is new
    tokens over the wall time of the whole ``generate`` call, prefill included (median over the
    rounds, ``seconds_min``/``seconds_max`` their range). ``cached_over_uncached_<N>`` (and
    ``cached_over_uncached``) is the median over rounds of cached tokens/s / uncached tokens/s
    in that round: how many times the cache speeds up generating N tokens; ``..._spread`` says
    how far the rounds spread. It grows with N, because without a cache step t costs O(t) and
    with it O(1) in the MLPs and projections. ``same_tokens`` says every run chose the same
    tokens (they must: the command exits with status 1 otherwise). ``cache_bytes`` is
    ``model.cache_bytes()`` after the last step, ``cache_bytes_formula`` the same by formula.

    ``--family rwkv|mamba``: the per-token cost of one cached decoding step after a prefill of
    64 and of 2,048 tokens, for the recurrent model and a cached Transformer of the same width.
    Each (model, position) is prefilled once; then, in each round, they take ``--steps``
    single-token steps, one step each in turn, so a slow spell on the machine falls on all of
    them (a round's value: each one's median step). ``per_token_2048_over_64`` is the median over
    rounds of that round's ratio.
"""
from __future__ import annotations

import statistics
import time

import torch

from playground.serving.runtime import default_device
from playground.nn.timing import MIN_REPEATS, device_name, make_result, spread, sync
from playground.config import RECURRENT_FAMILIES, ModelConfig
from playground.inspect.generation import generate
from playground.models import build_model
from playground.nn.cache import kv_cache_bytes
from playground.nn.kernels import auto_kernel



def decode_config(family: str = "decoder", n_kv_heads: int = 8):

    recurrent = family in RECURRENT_FAMILIES
    return ModelConfig(family=family, vocab_size=2048, context_length=1024, n_layer=4, d_model=256, n_heads=8,
                       n_kv_heads=8 if recurrent else n_kv_heads, d_ff=1024, position="none" if recurrent else "rope")


def _check_repeats(repeats: int) -> None:
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")


class Prefilled:
    """A model with its cache filled to ``position`` tokens, stepping one token at a time from there."""

    @torch.no_grad()
    def __init__(self, cfg: ModelConfig, position: int, steps: int, device: str, seed: int = 0):
        torch.manual_seed(seed)
        self.model = build_model(cfg).to(device).eval()
        self.device, self.pos = device, position
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, cfg.vocab_size, (1, position + steps), generator=g).to(device)  # (1, T)
        self.model.setup_cache(1, position + steps)
        self.model(self.ids[:, :position])
        self.held = self.model.cache_bytes()  # cache/state bytes right after the prefill

    @torch.no_grad()
    def step_seconds(self) -> float:
        """Wall time of the next single-token step."""
        sync(self.device)
        t0 = time.perf_counter()
        self.model(self.ids[:, self.pos: self.pos + 1], start_pos=self.pos)
        sync(self.device)
        self.pos += 1
        return time.perf_counter() - t0

    def close(self) -> None:
        self.model.clear_cache()


def bench_decode_positions(family: str, positions=(64, 2048), steps: int = 16, repeats: int = MIN_REPEATS,
                           device: str | None = None, seed: int = 0) -> dict:
    """Per-token decoding cost at two positions for a recurrent model, a cached Transformer beside it."""
    _check_repeats(repeats)
    device = device or default_device()
    families = (family, "decoder")
    cells = {}
    for fam in families:
        cfg = decode_config(fam).replace(context_length=max(positions) + (repeats + 1) * steps)
        for pos in positions:
            cells[fam, pos] = Prefilled(cfg, pos, (repeats + 1) * steps, device, seed)
    try:
        rounds = {key: [] for key in cells}  # (family, position) -> median step seconds per round
        for r in range(repeats + 1):  # the first round warms up
            times = {key: [] for key in cells}
            for _ in range(steps):  # the cells take turns step by step: a slow spell falls on all of them
                for key, cell in cells.items():
                    times[key].append(cell.step_seconds())
            if r > 0:
                for key in cells:
                    rounds[key].append(statistics.median(times[key]))
    finally:
        for cell in cells.values():
            cell.close()

    lo, hi = positions[0], positions[-1]
    rows = []
    for (fam, pos), seconds in rounds.items():
        ms = spread(s * 1e3 for s in seconds)
        rows.append({"family": fam, "position": pos, "ms_per_token": ms["median"], "ms_min": ms["min"],
                     "ms_max": ms["max"], "repeats": ms["n"], "tokens_per_s": 1e3 / ms["median"],
                     "cache_bytes": cells[fam, pos].held, "n_params": cells[fam, pos].model.n_params})

    def ratio(fam: str) -> dict:  # per round: step cost at hi over step cost at lo
        return spread(a / b for a, b in zip(rounds[fam, hi], rounds[fam, lo]))

    own, transformer = ratio(family), ratio("decoder")
    states = [r["cache_bytes"] for r in rows if r["family"] == family]
    summary = {
        f"per_token_{hi}_over_{lo}": own["median"], f"per_token_{hi}_over_{lo}_spread": own,
        f"tokens_per_s_{lo}": 1 / statistics.median(rounds[family, lo]),
        f"tokens_per_s_{hi}": 1 / statistics.median(rounds[family, hi]),
        "state_bytes_constant": len(set(states)) == 1, "state_bytes": states[0],
        f"transformer_per_token_{hi}_over_{lo}": transformer["median"],
        f"transformer_per_token_{hi}_over_{lo}_spread": transformer,
        "family": family, "repeats": repeats, "steps_per_repeat": steps, "device_name": device_name(device),
    }
    return make_result("decode_positions", device, summary, rows)


MODES = {"cached": True, "uncached": False}


def time_decode(model, prompt: list[int], tokens: int, repeats: int = MIN_REPEATS,
                device: str | None = None) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Greedy generation of ``tokens`` new tokens with and without the KV cache, after a short warm-up
    of each, the two modes alternating for ``repeats`` rounds: ({mode: seconds per round}, {mode:
    the ``Generation`` of each round}), modes "cached" and "uncached"."""
    _check_repeats(repeats)
    device = device or str(model.lm_head.weight.device)
    for use_cache in MODES.values():
        generate(model, prompt, min(4, tokens), use_cache=use_cache)  # warm-up
    seconds = {mode: [] for mode in MODES}
    runs = {mode: [] for mode in MODES}  # every run's generation
    for _ in range(repeats):
        for mode, use_cache in MODES.items():
            sync(device)
            t0 = time.perf_counter()
            gen = generate(model, prompt, tokens, use_cache=use_cache)
            sync(device)
            seconds[mode].append(time.perf_counter() - t0)
            runs[mode].append(gen)
    return seconds, runs


def cache_speedup(seconds: dict[str, list[float]]) -> dict:
    """The spread over rounds of uncached seconds / cached seconds: how many times the cache speeds generation up."""
    return spread(u / c for c, u in zip(seconds["cached"], seconds["uncached"]))


def bench_decode(tokens: int = 512, family: str = "decoder", n_kv_heads: int = 8, prompt_len: int = 16,
                 repeats: int = MIN_REPEATS, device: str | None = None, seed: int = 0) -> dict:
    """Greedy generation with and without the KV cache, rounds alternating: tokens/s, their ratio, cache bytes."""
    _check_repeats(repeats)
    device = device or default_device()
    cfg = decode_config(family, n_kv_heads)
    torch.manual_seed(seed)
    model = build_model(cfg).to(device).eval()
    prompt = torch.randint(0, cfg.vocab_size, (prompt_len,), generator=torch.Generator().manual_seed(seed)).tolist()

    seconds, runs = time_decode(model, prompt, tokens, repeats, device)
    n = len(runs["cached"][0].tokens)
    rows = []
    for mode in MODES:
        s = spread(seconds[mode])
        rows.append({"mode": mode, "tokens": n, "seconds": s["median"], "seconds_min": s["min"],
                     "seconds_max": s["max"], "repeats": s["n"], "tokens_per_s": n / s["median"],
                     "ms_per_token": s["median"] / n * 1e3, "cache_bytes": runs[mode][-1].steps[-1].cache_bytes})
    ratio = cache_speedup(seconds)  # per round
    decoder_start = 1 if family == "encdec" else prompt_len  # an encoder-decoder's decoder starts from BOS
    positions = decoder_start + n - 1  # the last token is yielded, never fed back
    dtype = model.lm_head.weight.dtype
    formula = kv_cache_bytes(cfg.variant, cfg.n_layer, cfg.n_heads, cfg.head_dim, tokens=positions, dtype=dtype,
                             n_kv_heads=cfg.n_kv_heads)
    if family == "encdec":  # plus cross-attention K/V over the source, computed once
        formula += kv_cache_bytes(cfg.variant, cfg.n_layer, cfg.n_heads, cfg.head_dim, tokens=prompt_len,
                                  dtype=dtype, n_kv_heads=cfg.n_kv_heads)
    chosen = [gen.tokens for mode in MODES for gen in runs[mode]]
    summary = {
        f"cached_over_uncached_{n}": ratio["median"],
        "cached_over_uncached": ratio["median"],
        "cached_over_uncached_spread": ratio,
        "same_tokens": all(tokens == chosen[0] for tokens in chosen),
        "cache_bytes": rows[0]["cache_bytes"],
        "cache_bytes_formula": int(formula),
        "cache_positions": positions,
        "tokens": n, "prompt_len": prompt_len, "repeats": repeats, "family": family, "variant": cfg.variant,
        "n_kv_heads": cfg.n_kv_heads, "n_params": model.n_params, "backend": cfg.backend,
        "kernel_auto": auto_kernel(device, dtype), "device_name": device_name(device),
    }
    return make_result("decode", device, summary, rows)
