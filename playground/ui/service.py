"""What the page and its API call: a model spec and text in, plain data out, models loaded once.

The UI never touches tensors: its controls resolve to a ``ModelSpec`` (``resolve``), the API
receives one as text, and both call ``analyze_text`` or ``generate_text`` and hand the numpy
results to ``plots``. Every option is checked here (``errors.check_int``), so the page and the
API answer bad input with the same message.

Each model's weights are loaded once per (spec, device, dtype) into ``WEIGHTS``, under a memory
budget (``models.weight_cache``: least recently used first out). Every call gets its own model
object over those shared tensors (``models.shared.instance``), built with the call's backend and
sliding window: its KV cache, recorder and hooks are its own, so concurrent visitors neither wait
on each other nor share a cache. ``dtype`` "auto" runs bfloat16 on a CUDA device that supports it
(float16 otherwise) and float32 on the CPU. Text is tokenized by the spec's own tokenizer.
"""
from __future__ import annotations

import hashlib
import math
import os
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from playground import config, zoo
from playground.config import BACKENDS, DTYPES, ModelConfig
from playground.errors import InputError, check_float, check_int
from playground.inspect.analysis import Analysis, AttentionMap, analyze, overview_cells
from playground.inspect.fill_mask import fill_mask, mask_token_id
from playground.inspect.generation import decoder_start, generate
from playground.models.hf.shape import HubConfig
from playground.nn.kv_config import kv_from_config
from playground.models.base import LanguageModel
from playground.models.memory import release_freed
from playground.nn import gpu_call
from playground.models.shared import Weights, estimated_bytes, instance
from playground.models.weight_cache import Checkout, WeightCache
from playground.nn.cache import dtype_bytes, kv_elements_per_token, state_bytes_per_layer
from playground.nn.kernels import dtype_name, run_dtype
from playground.train import data
from playground.ui import gpu
from playground.ui.i18n import Message, MessageError, msg
from playground.ui.lang import Words
from playground.zoo import ModelSpec, hub_source

# A prompt is cut at the model's own positions, and at what an analysis on this device reads in reasonable time:
# attention is kept as q, k and log-sum-exp (memory linear in T) and every view asks for tiles.
MAX_PROMPT_TOKENS = {"cpu": 8192, "cuda": 32768}
MAX_PROMPT_CHARS = 150_000  # longer text is cut before tokenizing (32,768 tokens are ~130,000 characters)
ANALYSIS_BUDGET_ENV = "PLAYGROUND_ANALYSIS_MEMORY_GB"
ANALYSIS_SHARE = 0.25       # of the machine's memory, when ANALYSIS_BUDGET_ENV is not set
MAX_NEW_TOKENS = 256
PRETRAINED = ("hf", "local")  # spec schemes of pretrained checkpoints (``zoo.hub_source``)
ENCDEC_TARGET_TOKENS = 24   # an encoder-decoder's decoder side: its own greedy continuation


@dataclass
class Loaded:
    """One call's model: its own instance over the shared weights, and notes for the reader (models
    unloaded to make room for it, or this one loaded again after being unloaded)."""

    model: LanguageModel
    spec: ModelSpec
    notes: list[Message] = field(default_factory=list)


WEIGHTS = WeightCache()  # budget: PLAYGROUND_MODEL_MEMORY_GB, read at each load (default: half the memory)


def about(name: str) -> Message:
    """What a zoo model (by name) or another model is, in the reader's language (``zoo.about`` is the English)."""
    return msg(f"zoo.about.{name}" if name in zoo.ZOO else "zoo.about.user")


def shape(cfg: ModelConfig) -> str:
    return cfg.family if cfg.family in config.RECURRENT_FAMILIES else f"{cfg.family} · {cfg.variant} · {cfg.position}"


def devices() -> list[str]:
    return (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]


def resolve(family: str, variant: str, position: str, *, task_model: str | None = None,
            fallback: str = "nearest") -> tuple[ModelSpec, Message]:
    """The page's model controls -> the spec of the model to run, and a sentence saying what was picked and why.

    ``task_model`` (a spec: a synthetic-task zoo model or a model trained in the page) wins over the
    three choices; otherwise the shipped model of that shape, else the nearest shipped one or an
    untrained model of exactly that shape (``fallback``).
    """
    if task_model:
        spec = ModelSpec.parse(task_model)
        try:
            cfg = spec.config()
        except InputError:
            raise
        except ValueError as e:
            raise MessageError("error.model_unreadable", name=str(spec), reason=str(e)) from None
        if spec.scheme in PRETRAINED:
            return spec, pretrained_sentence(spec, cfg)
        return spec, msg("choice.task", name=str(spec), shape=shape(cfg),
                         about=about(spec.name if spec.scheme == "zoo" else str(spec)))
    untrained = ModelSpec.untrained(family, variant, position)  # checks the three choices
    wanted = shape(untrained.config())
    exact, nearest = zoo.match(family, variant, position)
    if exact:
        spec = ModelSpec("zoo", exact)
        return spec, msg("choice.exact", name=exact, about=about(exact))
    if nearest is None:
        return untrained, msg("choice.none_installed", shape=wanted)
    if fallback == "untrained":
        return untrained, msg("choice.not_shipped_untrained", shape=wanted)
    return ModelSpec("zoo", nearest), msg("choice.nearest", shape=wanted, name=nearest,
                                          nearest_shape=shape(zoo.entry_configs(nearest)[0]))


def parameters(n: int) -> str:
    """A parameter count as the Hub writes it: '124.4M', '1.24B', '96.5k'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.{2 if unit == 'B' else 1}f}{unit}"
    return str(n)


def pretrained_sentence(spec: ModelSpec, cfg: ModelConfig) -> Message:
    """The model note of a pretrained model: its Hub id (or folder), size, family, attention layout and
    position encoding."""
    about_it = hub_source.summary(spec.scheme, spec.name)
    if cfg.family in config.RECURRENT_FAMILIES:
        layout = msg("choice.layout_recurrent", family=cfg.family)
    else:
        layout = msg("choice.layout", variant=cfg.variant, heads=cfg.n_heads, kv_heads=cfg.n_kv_heads,
                     position=msg(f"position.{cfg.position}"),
                     window=msg("choice.window", window=cfg.sliding_window) if cfg.sliding_window else "")
    return msg("choice.pretrained", name=str(spec), params=parameters(about_it["parameters"]),
               model_type=about_it["model_type"], layers=cfg.n_layer, layout=layout)


def load(spec: ModelSpec, backend: str = "auto", device: str = "cpu", window: int = 0, dtype: str = "auto") -> Loaded:
    """A model of its own for one call: the spec's weights for this device and dtype (loaded once,
    shared), built with this backend and sliding window (0: the model's own, which only a pretrained
    model such as Mistral has; none otherwise)."""
    if device not in devices():
        raise MessageError("error.device", device=device, devices=", ".join(devices()))
    if backend not in BACKENDS:
        raise MessageError("error.backend", backend=backend, valid=", ".join(BACKENDS))
    if dtype not in DTYPES:
        raise MessageError("error.dtype", dtype=dtype, valid=", ".join(DTYPES))
    cfg = spec.config()
    window = check_int("window", window, 0, cfg.context_length) or cfg.sliding_window
    out = weights(spec, device, run_dtype(dtype, device))
    notes = [msg("note.unloaded", names=", ".join(out.evicted), budget_mb=round(WEIGHTS.limit() / 1e6))] if out.evicted else []
    if out.reloaded:
        notes.append(msg("note.reloaded", name=weights_name(spec, device, out.weights.dtype)))
    return Loaded(instance(out.weights, backend=backend, sliding_window=window), spec, notes)


def prepare(spec: ModelSpec, device: str, dtype: str = "auto") -> None:
    """Before model work goes through a GPU door (ZeroGPU): the weights into CPU memory here, in the main
    process, once; each call's worker moves them to the GPU (``weights``). Without a door: nothing to do."""
    if gpu_call.installed() and device != "cpu":
        weights(spec, "cpu", run_dtype(dtype, device))


def weights_name(spec: ModelSpec, device: str, dtype: torch.dtype) -> str:
    """How notes name a model's weights: the spec, with device and dtype unless CPU float32."""
    if device == "cpu" and dtype == torch.float32:
        return str(spec)
    return f"{spec} ({device}, {str(dtype).removeprefix('torch.')})"


def weights(spec: ModelSpec, device: str, dtype: torch.dtype) -> Checkout:
    """The spec's weights on this device in this dtype, from ``WEIGHTS`` (loaded on a miss). Behind a GPU door
    (ZeroGPU) a device's copy is made from the CPU copy ``prepare`` loaded in the main process."""
    def load() -> Weights:
        if device != "cpu" and gpu_call.installed():
            return Weights.of(instance(weights(spec, "cpu", dtype).weights).to(device))
        return Weights.of(spec.load().to(device=device, dtype=dtype))

    return WEIGHTS.get((spec, device, dtype), load,
                       lambda: estimated_bytes(spec.config(), dtype), weights_name(spec, device, dtype), device=device)


def token_limit(cfg: ModelConfig, device: str = "cpu", pretrained: bool = False) -> tuple[int, Message]:
    """The most prompt tokens an analysis takes for this model on this device, and why that many.

    A pretrained model stops at its own positions (GPT-2 1,024, SmolLM2 8,192, Qwen2.5 32,768), and so do
    learned positions; a shipped or trained model with RoPE, ALiBi, sinusoidal or no positions may run past its
    training length (the position lab's "train short, test long"), up to the page's limit on this device."""
    page = MAX_PROMPT_TOKENS.get(device, MAX_PROMPT_TOKENS["cpu"])
    if (pretrained or cfg.position == "learned") and cfg.context_length <= page:
        return cfg.context_length, msg("note.why_positions", n=cfg.context_length)
    return page, msg("note.why_page", n=page, device=device)


def tokenize(spec: ModelSpec, text: str, device: str = "cpu") -> tuple[list[int], list[Message]]:
    """Token ids of a prompt by the spec's tokenizer, cut to what the model can take, and notes saying what was cut."""
    cfg = spec.config()
    if not isinstance(text, str) or not text.strip():
        raise MessageError("error.prompt_empty")
    notes = []
    if len(text) > MAX_PROMPT_CHARS:
        notes.append(msg("note.chars_cut", chars=len(text), limit=MAX_PROMPT_CHARS))
        text = text[:MAX_PROMPT_CHARS]
    ids = spec.tokenizer().encode(text)
    limit, why = token_limit(cfg, device, spec.scheme in PRETRAINED)
    if len(ids) > limit:
        notes.append(msg("note.tokens_cut", tokens=len(ids), limit=limit, why=why))
        ids = ids[:limit]
    return ids, notes


def labels(spec: ModelSpec, ids: list[int]) -> list[str]:
    """A readable label per token, by the spec's tokenizer."""
    return spec.tokenizer().labels(ids)


def decode(spec: ModelSpec, ids: list[int]) -> str:
    return spec.tokenizer().decode(ids)


TASK_LABELS = {data.PAD_ID: "PAD", data.BOS_ID: "BOS", data.SEP_ID: "SEP", data.QUERY_ID: "QUERY"}


def task_labels(spec: ModelSpec, ids: list[int]) -> list[str]:
    """Labels of a synthetic-task sequence: its special ids by name, the rest by the spec's tokenizer."""
    return [TASK_LABELS.get(i) or label for i, label in zip(ids, labels(spec, ids))]


def task_sequence(name: str, seed: int = 0) -> tuple[list[int], list[int] | None, int]:
    """A seeded sequence of a synthetic-task model's own task: (input ids, decoder ids or None,
    how many leading ids form the prompt for generation)."""
    cfg, tcfg = zoo.entry_configs(name)
    task = tcfg.data.removeprefix("task:")
    n = tcfg.task_length
    if cfg.family == "encdec":
        src, tgt_in, _ = data.SEQ2SEQ_TASKS[task](1, n, cfg.vocab_size, seed)
        return src[0].tolist(), tgt_in[0].tolist(), n
    x, _, mask = data.TASKS[task](1, n, cfg.vocab_size, seed)
    ids = x[0].tolist()
    answer_from = int(mask[0].float().argmax())  # first scored position: everything before is the question
    return ids, None, answer_from + 1


@dataclass
class StoredAnalysis:
    """An analysis in ``ANALYSES``, with the notes its computation made (what was cut, models unloaded)."""

    result: Analysis
    notes: list[Message]

    @property
    def nbytes(self) -> int:
        return self.result.nbytes


# Analyses live here, not in visitors' sessions: keyed by what they were computed from, shared by every session
# that asks for the same, least recently used out first. A session keeps the key and the request (``analysis_key``).
ANALYSES = WeightCache(env=ANALYSIS_BUDGET_ENV, share=ANALYSIS_SHARE, too_large="error.analysis_too_large")


def analysis_key(spec: ModelSpec, text: str, **options) -> str:
    """The store's key of an analysis: a hash of the spec, the prompt and every option that changes the result."""
    blob = json.dumps({"spec": str(spec), "text": text, **options}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def request_key(spec: ModelSpec, text: str, *, prefix_len: int = 0, window: int = 0, backend: str = "auto",
                device: str = "cpu", seed: int = 0, dtype: str = "auto") -> tuple[str, dict]:
    """The store's key of an analysis request and its options, checked; the prefix length counts only for a
    prefix decoder (one key for every value elsewhere)."""
    prefix_len = check_int("prefix_len", prefix_len, 0)
    if spec.config().family != "prefix":
        prefix_len = 0
    options = dict(prefix_len=prefix_len, window=window, backend=backend, device=device, seed=seed, dtype=dtype)
    return analysis_key(spec, text, **options), options


def stored_analysis(key: str) -> Analysis | None:
    """The analysis the store holds under ``key``, or None when it has none (it never computes)."""
    stored = ANALYSES.peek(key)
    return None if stored is None else stored.result


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


def analyze_text(spec: ModelSpec, text: str, *, prefix_len: int = 0, window: int = 0, backend: str = "auto",
                 device: str = "cpu", seed: int = 0, dtype: str = "auto", progress=None,
                 cancelled=None, lang: str = "en") -> tuple[Analysis, list[Message]]:
    """Run a prompt through the model once, capturing every layer's attention; from ``ANALYSES`` when an equal
    request was analyzed before (a note says when it had been evicted and was computed again).

    ``prefix_len`` applies to a prefix decoder (cut to the prompt's length); ``window`` is the
    sliding window (0: none). A synthetic-task model runs on a seeded sequence of its own task
    instead of the prompt. ``progress(done, total)`` hears of each attention layer; ``cancelled()``
    returning True stops the analysis (``inspect.analysis.Cancelled``).
    """
    key, options = request_key(spec, text, prefix_len=prefix_len, window=window, backend=backend, device=device,
                               seed=seed, dtype=dtype)

    def estimate() -> int:
        tokens = len(task_sequence(spec.name, seed)[0]) if spec.is_task else len(tokenize(spec, text, device)[0])
        return analysis_bytes(spec.config(), tokens)

    def compute() -> StoredAnalysis:
        check_job_seconds(spec, text, device)
        prepare(spec, device, dtype)
        # behind a GPU door the work runs in another process: no callbacks cross it (no progress, no cancel)
        watch = {} if gpu_call.installed() else dict(progress=progress, cancelled=cancelled)
        return gpu.work(Words(lang=lang), _analyze_and_release, spec, text, **watch, **options)

    out = ANALYSES.get(key, compute,
                       estimate, f"{spec} · {len(text)} characters")
    stored: StoredAnalysis = out.weights
    notes = list(stored.notes)
    if out.reloaded:
        notes.append(msg("note.analysis_recomputed"))
    return stored.result, notes


def _analyze(spec: ModelSpec, text: str, *, prefix_len: int, window: int, backend: str, device: str, seed: int,
             dtype: str, progress=None, cancelled=None) -> StoredAnalysis:
    loaded = load(spec, backend, device, window, dtype)
    model, cfg, notes = loaded.model, loaded.model.cfg, loaded.notes
    watch = dict(progress=progress, cancelled=cancelled)
    if spec.is_task:
        ids, target, _ = task_sequence(spec.name, seed)
        result = analyze(model, ids, target_ids=target, labels=task_labels(spec, ids),
                         target_labels=task_labels(spec, target) if target else None, **watch)
        return StoredAnalysis(result, notes + [msg("note.task_analyze", name=spec.name, seed=seed)])
    ids, cut = tokenize(spec, text, device)
    notes += cut
    if cfg.family == "encdec":
        target = [decoder_start(model)] + generate(model, ids, ENCDEC_TARGET_TOKENS).tokens
        result = analyze(model, ids, target_ids=target, labels=labels(spec, ids), target_labels=labels(spec, target),
                         **watch)
        notes.append(msg("note.encdec_target", n=ENCDEC_TARGET_TOKENS))
    else:
        prefix_len = min(prefix_len, len(ids)) if cfg.family == "prefix" else 0
        result = analyze(model, ids, prefix_len=prefix_len, labels=labels(spec, ids), **watch)
    return StoredAnalysis(result, notes)


def _analyze_and_release(spec: ModelSpec, text: str, **options) -> StoredAnalysis:
    """``_analyze``, then the pages its tiles and activations used handed back to the system: the store's
    budget counts what an analysis keeps, and the server's memory should be that, not the peak of the last one."""
    try:
        return _analyze(spec, text, **options)
    finally:
        release_freed()


def attention_map(result: Analysis, kind: str, layer: int, head: int) -> tuple[AttentionMap, int]:
    """One layer's map of one attention kind and a head index in it, all three checked against the model."""
    if kind not in result.kinds:
        raise MessageError("error.kind_missing", kind=kind, kinds=", ".join(result.kinds))
    maps = [m for m in result.maps if m.kind == kind]
    m = maps[check_int("layer", layer, 0, len(maps) - 1)]
    return m, check_int("head", head, 0, m.shape[0] - 1)


def head_window(m: AttentionMap, window: dict | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """((r0, r1), (c0, c1)) of a window of one map: {"rows": [a, b], "cols": [c, d]}, token indices with the end
    excluded, clipped to the map; None or {}: the whole map. A window with nothing in it is refused."""
    _, Tq, Tk = m.shape
    window = window or {}
    try:
        r0, r1 = (int(v) for v in window.get("rows", (0, Tq)))
        c0, c1 = (int(v) for v in window.get("cols", (0, Tk)))
    except (TypeError, ValueError):
        raise MessageError("error.window_shape", value=str(window)) from None
    r0, r1, c0, c1 = max(0, r0), min(Tq, r1), max(0, c0), min(Tk, c1)
    if r0 >= r1 or c0 >= c1:
        raise MessageError("error.window_empty", rows=f"{r0}..{r1}", cols=f"{c0}..{c1}", tq=Tq, tk=Tk)
    return (r0, r1), (c0, c1)


# Seconds per unit of L x T² x score_width for an analysis (forward, the log-sum-exp and the pass over the tiles),
# from ``python -m playground.bench long`` on a 2-core CPU; a GPU's figure is a guess until measured there.
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


def check_job_seconds(spec: ModelSpec, text: str, device: str = "cpu") -> None:
    """MessageError when the analysis of ``text`` is estimated past the operator's ceiling: the estimate, the ceiling
    and how many tokens would fit, so one visitor cannot hold a worker for minutes while the others wait."""
    est, limit = estimate(spec, text, device), max_job_seconds(device)
    if est["seconds"] <= limit:
        return
    cfg = spec.config()
    a = cfg.n_layer * score_width(cfg) * SECONDS_PER_UNIT.get(device, SECONDS_PER_UNIT["cpu"])
    b = cfg.n_layer * 2e-5
    fits = int((-b + math.sqrt(b * b + 4 * a * limit)) / (2 * a))  # a T² + b T = limit
    raise MessageError("error.job_too_long", tokens=est["tokens"], seconds=round(est["seconds"]), limit=round(limit),
                       fits=fits, env=MAX_JOB_ENV)


def _gpu_seconds(spec: ModelSpec, text: str, *, device: str = "cpu", **_) -> float:
    """A GPU call's duration for an analysis: the estimate with room to spare, and the weights' move."""
    return 10 + 1.5 * estimate(spec, text, device)["seconds"]


_analyze_and_release.gpu_seconds = _gpu_seconds


@dataclass
class Timeline:
    """A generation with, per step, the new token's attention over the cache and the cache size
    (the positions held, and the tensors as allocated)."""

    prompt_labels: list[str]
    new_labels: list[str]
    text: str
    rows: list[dict[str, np.ndarray]]   # per step: kind -> (n_layer, nh, Tk), or pooled to ROW_CELLS key cells
    held: list[int]                     # per step, the keys the new token's self-attention saw (Tk before pooling)
    cache_bytes: list[int]              # per step, the positions the model's own cache holds
    cache_bytes_allocated: list[int]    # per step, its tensors as allocated (tensor.nbytes)
    source_labels: list[str]            # encoder-decoder: the source (cross-attention keys)
    n_layer: int
    n_heads: int
    config: ModelConfig                 # what it ran with: the model's, with the call's backend and window
    choices: list[list[tuple[str, float]]] | None = None  # fill-mask: per masked position, its top tokens and
                                                          # their probabilities (steps are masks, not new tokens)
    positions: list[int] | None = None  # fill-mask: where each mask stands in the prompt


def generate_text(spec: ModelSpec, text: str, max_new_tokens: int = 32, *, temperature: float = 0.0,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0, window: int = 0, backend: str = "auto",
                  device: str = "cpu", dtype: str = "auto") -> tuple[Timeline, list[Message]]:
    """Generate with the KV cache (or recurrent state), recording each step's attention and cache size."""
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
    temperature = check_float("temperature", temperature, 0.0, 10.0)
    top_k = check_int("top_k", top_k, 0)
    top_p = check_float("top_p", top_p, 0.0, 1.0)
    seed = check_int("seed", seed, 0)
    loaded = load(spec, backend, device, window, dtype)
    model, cfg, notes = loaded.model, loaded.model.cfg, loaded.notes
    show = labels
    if spec.is_task:
        ids, target, prompt_len = task_sequence(spec.name, seed)
        ids = ids if target else ids[:prompt_len]
        notes, show = notes + [msg("note.task_generate", name=spec.name, seed=seed)], task_labels
    else:
        ids, cut = tokenize(spec, text, device)
        notes += cut
    if cfg.position == "learned" and len(ids) + max_new_tokens > cfg.context_length + 1:
        keep = max(1, cfg.context_length + 1 - max_new_tokens)
        if keep < len(ids):
            notes.append(msg("note.learned_keep", context=cfg.context_length, keep=keep))
            ids = ids[-keep:]
    gen = generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                   seed=seed, record=True)
    encdec = cfg.family == "encdec"
    layers = max(rows.shape[0] for rows in gen.steps[0].attention.values())  # attention layers (a hybrid has fewer)
    return Timeline(
        prompt_labels=show(spec, [decoder_start(model)]) if encdec else show(spec, ids), new_labels=show(spec, gen.tokens),
        text=decode(spec, gen.tokens), rows=[s.attention for s in gen.steps], held=[s.keys_held for s in gen.steps],
        cache_bytes=[s.cache_bytes for s in gen.steps],
        cache_bytes_allocated=[s.cache_bytes_allocated for s in gen.steps],
        source_labels=show(spec, ids) if encdec else [], n_layer=layers, n_heads=cfg.n_heads, config=cfg), notes


def fill_text(spec: ModelSpec, text: str, *, backend: str = "auto", device: str = "cpu",
              dtype: str = "auto") -> tuple[Timeline, list[Message]]:
    """An encoder-only model fills every mask token of the prompt: per mask, its top tokens and that position's
    attention in every layer and head, as a timeline whose steps are the masks (no cache: nothing is generated)."""
    loaded = load(spec, backend, device, 0, dtype)
    model, cfg, notes = loaded.model, loaded.model.cfg, loaded.notes
    tok = spec.tokenizer()
    try:
        mask_id = mask_token_id(tok)
    except ValueError:
        raise MessageError("error.no_mask_token") from None
    ids, cut = tokenize(spec, text, device)
    if mask_id not in ids:
        raise MessageError("error.no_mask", token=tok.labels([mask_id])[0])
    fills = fill_mask(model, ids, mask_id)
    filled = list(ids)
    for f in fills:
        filled[f.position] = f.top_ids[0]
    n = len(fills)
    return Timeline(
        prompt_labels=labels(spec, ids), new_labels=[labels(spec, [f.top_ids[0]])[0] for f in fills],
        text=decode(spec, filled), rows=[{"self": f.attention} for f in fills], held=[len(ids)] * n,
        cache_bytes=[0] * n, cache_bytes_allocated=[0] * n, source_labels=[],
        n_layer=fills[0].attention.shape[0], n_heads=cfg.n_heads, config=cfg,
        choices=[[(label, p) for label, p in zip(labels(spec, f.top_ids), f.top_probs)] for f in fills],
        positions=[f.position for f in fills]), notes + cut


def kv_formulas(cfg: ModelConfig, dtype: str = "fp32") -> dict[Message, dict]:
    """Per-token KV bytes by formula at this model's dimensions (MLA: d_latent = 4 hs, d_rope = hs / 2,
    DeepSeek-V2's ratios), and the fixed state of RWKV-5 and Mamba at the same width. A model with a
    sliding window W adds its own variant capped at W positions ("cap")."""
    size = dtype_bytes(dtype)
    hs, nh, layers = cfg.head_dim, cfg.n_heads, cfg.n_layer
    per_token = {
        msg("kv.heads", variant="MHA", n=nh): kv_elements_per_token("MHA", nh, hs),
        msg("kv.heads", variant="GQA", n=max(1, nh // 2)): kv_elements_per_token("GQA", nh, hs, n_kv_heads=max(1, nh // 2)),
        msg("kv.one_head", variant="MQA"): kv_elements_per_token("MQA", nh, hs),
        msg("kv.mla", latent=4 * hs, rope=hs // 2): kv_elements_per_token("MLA", nh, hs, d_latent=4 * hs, d_rope=hs // 2),
    }
    out = {name: {"per_token": layers * e * size, "fixed": 0.0} for name, e in per_token.items()}
    if cfg.sliding_window and cfg.family not in config.RECURRENT_FAMILIES:
        own = 2 * cfg.n_kv_heads * hs  # the model's own K/V heads
        out[msg("kv.window", n=cfg.n_kv_heads, window=cfg.sliding_window)] = {
            "per_token": layers * own * size, "fixed": 0.0, "cap": cfg.sliding_window}
    if isinstance(cfg, ModelConfig):  # the recurrent families' fixed state at the same width
        for kind in ("RWKV", "Mamba"):
            out[msg("kv.state", kind=kind)] = {"per_token": 0.0,
                                              "fixed": layers * state_bytes_per_layer(kind, cfg, dtype)}
    elif cfg.family != "encdec":  # the checkpoint's own layers, counted from its config.json as they cache (the
        # counter reads decoder-only and hybrid configs; an encoder-decoder's measured curve stands alone)
        report = kv_from_config(cfg.hf, dtype if isinstance(dtype, str) else dtype_name(dtype))
        out[msg("kv.this_model", model_type=cfg.model_type)] = {"layers": [
            {"per_token": layer.per_token, "fixed": layer.fixed or 0.0, "cap": layer.cap} for layer in report.layers]}
    return out
