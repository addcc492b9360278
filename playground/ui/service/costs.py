"""What a request will cost before it runs: the bytes an analysis will hold, its time on this kind of device, and
the operator's ceiling on one job (``PLAYGROUND_MAX_JOB_S``), so one visitor cannot hold a worker for minutes."""
from __future__ import annotations

import math
import os

from playground.config import ModelConfig
from playground.inspect.analysis import overview_cells
from playground.models.pretrained.budget import estimate_parameters
from playground.serving.calibration import ESTIMATES
from playground.ui.api import describe
from playground.ui.i18n import MessageError
from playground.ui.service.prompts import tokenize
from playground.zoo import ModelSpec


def analysis_bytes(cfg: ModelConfig, tokens: int) -> int:
    """What an analysis of ``tokens`` tokens will hold, from the config: per layer what its tiles are rebuilt
    from in float32 (softmax: q, k and lse; RWKV: r and k; Mamba: delta, B and C), and the overview's max and
    mean cells."""
    maps = cfg.n_layer * (3 if cfg.family == "encdec" else 1)
    side = min(tokens, overview_cells(maps * cfg.n_heads))
    pooled = maps * cfg.n_heads * side * side * 2 * 4
    if cfg.family == "rwkv":  # r and k per token, w and u per channel
        per_layer = 2 * (tokens + 1) * cfg.d_model * 4
    elif cfg.family == "mamba":  # delta, B and C per token, A per channel and state
        d_in = cfg.expand * cfg.d_model
        per_layer = (tokens * (d_in + 2 * cfg.d_state) + d_in * cfg.d_state) * 4
    else:
        per_layer = (cfg.n_heads + cfg.n_kv_heads) * tokens * cfg.head_dim * 4 + cfg.n_heads * tokens * 4
    return per_layer * maps + pooled


def score_width(cfg: ModelConfig) -> int:
    """Multiply-adds per (query, key) pair of a layer, over its heads: what rebuilding a weight costs.
    Softmax: q . k over nh heads (nh x hs); RWKV: r . k weighted by w's powers (d); Mamba: each head's
    channels x states (d_in x n)."""
    if cfg.family == "mamba":
        return cfg.expand * cfg.d_model * cfg.d_state
    if cfg.family == "rwkv":
        return cfg.d_model
    return cfg.n_heads * cfg.head_dim * (3 if cfg.family == "encdec" else 1)


# Seconds per unit of L x T² x score_width for an analysis (forward, the log-sum-exp and the pass over the tiles),
# from ``python -m playground.bench long`` on a 2-core CPU. A GPU's figure is a prior: a GPU call's duration
# follows what the last analyses on that device took (``gpu_seconds``, ``serving.calibration``).
SECONDS_PER_UNIT = {"cpu": 8e-11, "cuda": 2e-12}


def estimate(spec: ModelSpec, text: str, device: str = "cpu") -> dict:
    """Before a long analysis: its tokens, the memory the store will hold for it, and a rough time on this
    kind of device (the forward and one pass over every tile of every head: proportional to L x T² x
    ``score_width``)."""
    cfg = spec.config()
    tokens = len(tokenize(spec, text, device)[0])
    work = cfg.n_layer * tokens * tokens * score_width(cfg)
    seconds = work * SECONDS_PER_UNIT.get(device, SECONDS_PER_UNIT["cpu"]) + tokens * cfg.n_layer * 2e-5
    return {"tokens": tokens, "bytes": analysis_bytes(cfg, tokens), "seconds": seconds}


MAX_JOB_ENV = "PLAYGROUND_MAX_JOB_S"
MAX_JOB_S = {"cpu": 180.0, "cuda": 120.0}  # default ceilings: a CPU Space's 2 vCPU, a GPU's (ZeroGPU's cap is 240 s)


def max_job_seconds(device: str = "cpu") -> float:
    """The longest one analysis may be estimated to take: ``$PLAYGROUND_MAX_JOB_S``, else ``MAX_JOB_S``."""
    raw = os.environ.get(MAX_JOB_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    return MAX_JOB_S.get(device, MAX_JOB_S["cpu"])


def check_job_seconds(spec: ModelSpec, text: str, device: str = "cpu") -> float:
    """The estimated seconds of the analysis of ``text``; a MessageError when they pass the operator's ceiling: the
    estimate, the ceiling and how many tokens would fit, so one visitor cannot hold a worker for minutes while the
    others wait."""
    est, limit = estimate(spec, text, device), max_job_seconds(device)
    describe(tokens=est["tokens"], estimate_s=round(est["seconds"], 2))  # the operator's log line
    if est["seconds"] <= limit:
        return est["seconds"]
    cfg = spec.config()
    fits = tokens_within(cfg.n_layer * score_width(cfg) * SECONDS_PER_UNIT.get(device, SECONDS_PER_UNIT["cpu"]),
                         cfg.n_layer * 2e-5, limit)
    raise MessageError("error.job_too_long", tokens=est["tokens"], seconds=round(est["seconds"]), limit=round(limit),
                       fits=fits, env=MAX_JOB_ENV)


# Seconds per weight read for one token's forward (a matrix-vector product per layer: memory-bound), and per layer
# for what a recorded decoding step adds in Python (the attention row, the cache's size), on a 2-core CPU; a GPU's
# figures are a guess until measured there.
SECONDS_PER_WEIGHT = {"cpu": 4e-10, "cuda": 2e-12}
SECONDS_PER_STEP_LAYER = {"cpu": 1.5e-3, "cuda": 3e-4}


def weights_per_token(cfg: ModelConfig) -> int:
    """The weights one token's forward multiplies by, from the config: each layer's projections and MLP (an
    encoder-decoder's decoder also its cross-attention), and the output head; a Hub checkpoint's parameters as its
    config.json counts them (``budget.estimate_parameters``; 12 d² a layer and the head where it cannot)."""
    d = cfg.d_model
    hf = getattr(cfg, "hf", None)
    if hf is not None:
        try:
            return estimate_parameters(hf)
        except ValueError:
            return cfg.n_layer * 12 * d * d + cfg.vocab_size * d
    if cfg.family in ("rwkv", "mamba"):
        per_layer = 12 * d * d  # mixing and channel projections, about GPT's 12 d² per layer
    else:
        attention = d * cfg.head_dim * (cfg.n_heads + 2 * cfg.n_kv_heads) + cfg.n_heads * cfg.head_dim * d
        per_layer = attention * (2 if cfg.family == "encdec" else 1) + (3 if cfg.mlp == "swiglu" else 2) * d * cfg.d_ff
    return cfg.n_layer * per_layer + cfg.vocab_size * d


# Seconds per weight per token of a forward over a whole sequence (matrix-matrix products: compute-bound), on a
# 2-core CPU (zoo:baseline's forward measured 2.6e-11 to 4.5e-11 from 128 to 2,048 tokens); a GPU's is a guess.
SECONDS_PER_BATCHED_WEIGHT = {"cpu": 5e-11, "cuda": 1e-13}


def tokens_within(a: float, b: float, seconds: float) -> int:
    """The most tokens T of a job that takes a T² + b T seconds (attention, and the per-token work) within ``seconds``."""
    return int((-b + math.sqrt(b * b + 4 * a * seconds)) / (2 * a))


def forward_terms(cfg: ModelConfig, device: str = "cpu") -> tuple[float, float]:
    """One forward over T tokens takes a T² + b T seconds: (a, b). b: its weights for every token; a: its attention
    (bounded by an analysis's figure, ``SECONDS_PER_UNIT``, which also rebuilds every weight)."""
    kind = device if device in SECONDS_PER_BATCHED_WEIGHT else "cpu"
    return (cfg.n_layer * score_width(cfg) * SECONDS_PER_UNIT[kind],
            weights_per_token(cfg) * SECONDS_PER_BATCHED_WEIGHT[kind])


def forward_seconds(cfg: ModelConfig, tokens: int, device: str = "cpu") -> float:
    """One forward over ``tokens`` tokens (``forward_terms``)."""
    a, b = forward_terms(cfg, device)
    return a * tokens * tokens + b * tokens


def ablation_forwards(cfg: ModelConfig) -> int:
    """Head ablation's forwards: one unablated, then one per head of every layer."""
    return cfg.n_layer * cfg.n_heads + 1


def ablation_tokens(cfg: ModelConfig, device: str = "cpu") -> int:
    """The most tokens head ablation may read so that its forwards fit one job's ceiling (``max_job_seconds``):
    the T where ``ablation_forwards`` x ``forward_seconds(T)`` reaches it (at least 2: a token and its next)."""
    return max(2, tokens_within(*forward_terms(cfg, device), max_job_seconds(device) / ablation_forwards(cfg)))


def generation_seconds(spec: ModelSpec, text: str, new_tokens: int, device: str = "cpu") -> dict:
    """Before a generation: the prompt's tokens and a rough time on this kind of device: the prompt's forward, then
    per new token its forward (``weights_per_token``) and its attention over the cache so far."""
    cfg = spec.config()
    prompt = estimate(spec, text, device)  # the prompt's tokens, and its forward's time at most
    tokens, prefill = prompt["tokens"], prompt["seconds"]
    kind = device if device in SECONDS_PER_WEIGHT else "cpu"
    per_token = weights_per_token(cfg) * SECONDS_PER_WEIGHT[kind] + cfg.n_layer * SECONDS_PER_STEP_LAYER[kind]
    # the attention over the cache: one query row per step, t keys long
    rows = cfg.n_layer * score_width(cfg) * SECONDS_PER_UNIT.get(kind, SECONDS_PER_UNIT["cpu"])
    attention = rows * sum(tokens + i for i in range(new_tokens))
    return {"tokens": tokens, "seconds": prefill + new_tokens * per_token + attention, "per_token": per_token}


def check_generation_seconds(spec: ModelSpec, text: str, new_tokens: int, device: str = "cpu") -> dict:
    """``generation_seconds``'s estimate, or a MessageError when it is past the operator's ceiling: the estimate,
    the ceiling and how many new tokens would fit."""
    est, limit = generation_seconds(spec, text, new_tokens, device), max_job_seconds(device)
    describe(tokens=est["tokens"], estimate_s=round(est["seconds"], 2))  # the operator's log line
    if est["seconds"] <= limit:
        return est
    prefill = est["seconds"] - new_tokens * est["per_token"]
    fits = max(0, int((limit - prefill) / est["per_token"])) if est["per_token"] > 0 else 0
    raise MessageError("error.generation_too_long", new=new_tokens, seconds=round(est["seconds"]),
                       limit=round(limit), fits=fits, env=MAX_JOB_ENV)


def gpu_seconds(spec: ModelSpec, text: str, device: str = "cpu") -> float:
    """A GPU call's duration for the analysis of ``text`` (``gpu_duration`` of its estimate)."""
    return gpu_duration(estimate(spec, text, device)["seconds"], device)


def gpu_duration(estimated_s: float, device: str = "cpu") -> float:
    """A GPU call's duration for an analysis estimated at ``estimated_s``: the estimate, scaled by how far this
    device's last estimates fell short of what those calls took (``serving.calibration.ESTIMATES``), with room to
    spare, and the weights' move. The door caps it (``ui.gpu.MAX_SECONDS``)."""
    return 10 + 1.5 * ESTIMATES.scale(device) * estimated_s
