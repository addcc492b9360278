"""Benchmark: what recording any transformers architecture costs, and how many it records exactly (part of
``python -m playground.bench pretrained``).

- ``any_model_analyze_ms_qwen3_shape_128``: ``analyze`` of a 128-token prompt on a random checkpoint shaped like
  Qwen3-0.6B (28 layers, 16 query heads over 8 K/V heads of 128 dims, hidden 1,024, QK-norm), built by
  ``transformers`` and wrapped in ``HubModel``: the forward through the playground's attention function, every
  record swept (overview cells, head statistics, faithfulness check).
- ``any_model_overhead_ratio`` (<= 1.3): that, over the same model's forward with transformers' own SDPA and no
  capture, both with the logits of the last position only; rounds alternate, medians of ``repeats``.
- ``any_model_archs_exact``: how many of the tiny architectures of ``bench.hf_archs`` (random weights) give logits
  and every attention weight within 1e-5 of transformers' eager path, out of ``any_model_archs``.

``shape="tiny"`` keeps Qwen3's layout at 2 layers and width 64 (seconds, for tests).
"""
from __future__ import annotations

import statistics
import time

import torch

from playground.bench import hf_archs

QWEN3_SHAPE = dict(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                   num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40_960,
                   tie_word_embeddings=True, rope_theta=1_000_000.0)
QWEN3_TINY = dict(QWEN3_SHAPE, vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16)
PROMPT_TOKENS = 128
ATOL = 1e-5


def overhead(repeats: int, shape: str = "small", seed: int = 0) -> dict:
    """The analysis of a Qwen3-shaped model against its bare SDPA forward: {analyze_ms, sdpa_ms (lists), ratio}."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from playground.inspect.analysis import analyze
    from playground.models.hf import NAME, HubModel

    config = AutoConfig.for_model("qwen3", **(QWEN3_TINY if shape == "tiny" else QWEN3_SHAPE))
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    ids = torch.randint(0, config.vocab_size, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(seed))

    def bare() -> None:
        hf.set_attn_implementation("sdpa")
        with torch.no_grad():
            hf(input_ids=ids, logits_to_keep=1, use_cache=False)

    def recorded() -> None:
        hf.set_attn_implementation(NAME)
        analyze(HubModel.wrap(hf), ids[0].tolist())

    bare(), recorded()  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {"sdpa": [], "analyze": []}
    for _ in range(repeats):
        for name, fn in (("sdpa", bare), ("analyze", recorded)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    ratio = statistics.median(times["analyze"]) / statistics.median(times["sdpa"])
    return {"analyze_ms": times["analyze"], "sdpa_ms": times["sdpa"], "ratio": ratio}


def archs_exact(names: list[str] | None = None) -> dict[str, bool]:
    """Each tiny architecture: do the logits and every recorded weight equal transformers' eager ones (1e-5)?"""
    from playground.models.hf import NAME, HubModel

    out = {}
    for name in names or list(hf_archs.ARCHS):
        ref = hf_archs.build(name)
        _, task, _ = hf_archs.ARCHS[name]
        hf = hf_archs.auto_class(task).from_config(hf_archs.config(name), attn_implementation=NAME)
        hf.load_state_dict(ref.state_dict())
        model = HubModel.wrap(hf.float().eval())
        ids = torch.randint(3, 96, (1, 12), generator=torch.Generator().manual_seed(1))
        tgt = torch.randint(3, 96, (1, 7), generator=torch.Generator().manual_seed(2)) if task == "seq2seq" else None
        with torch.no_grad():
            r = ref(input_ids=ids, output_attentions=True, **({"decoder_input_ids": tgt} if tgt is not None else {}))
            got = model(ids, tgt, capture=True)
        weights = ({"encoder_self": r.encoder_attentions, "decoder_self": r.decoder_attentions,
                    "cross": r.cross_attentions} if tgt is not None else
                   {"self": [a for a in r.attentions if a is not None]})
        exact = bool((got.logits - r.logits).abs().max() < ATOL) and len(got.attentions) == sum(map(len, weights.values()))
        for rec in got.attentions:
            exact &= bool((rec.weights - weights[rec.kind][rec.layer]).abs().max() < ATOL)
        out[name] = exact
    return out
