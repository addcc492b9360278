"""Generation for the page: a timeline of each step's attention over the cache and the cache's size, and an
encoder-only model's fill-mask as a timeline whose steps are the masks. A timeline lives in its visitor's
session; ``TIMELINES`` counts the bytes of those still held, for the server's one memory check, and
``timeline_bytes`` is what a generation will hold, asked of that check before it starts."""
from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass

import numpy as np

from playground.config import ModelConfig
from playground.nn.cache import cache_shape
from playground.errors import check_float, check_int
from playground.inspect.fill_mask import fill_mask, mask_token_id
from playground.inspect.analysis import Cancelled
from playground.inspect.generation import ROW_CELLS, Generation, decoder_start, stream
from playground.models.memory import LiveBytes
from playground.ui.i18n import Message, MessageError, msg
from playground.serving.lanes import GENERATE
from playground.serving.memory_ledger import LEDGER
from playground.ui import gpu
from playground.ui.lang import Words
from playground.ui.service.costs import check_generation_seconds
from playground.ui.service.loading import load
from playground.ui.service.prompts import decode, labels, task_labels, task_sequence, tokenize
from playground.zoo import ModelSpec

MAX_NEW_TOKENS = 256
TIMELINES = LiveBytes()  # registry: the timelines visitors' sessions hold (``keep``), while they hold them


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

    @property
    def nbytes(self) -> int:
        """The bytes of its attention rows (what grows with the steps; the labels are small beside them)."""
        return sum(a.nbytes for row in self.rows for a in row.values())


def keep(timeline: Timeline) -> Timeline:
    """``timeline``, counted in ``TIMELINES`` while a session holds it."""
    TIMELINES.add(timeline, timeline.nbytes)
    return timeline


def timeline_bytes(cfg: ModelConfig, tokens: int, max_new_tokens: int) -> int:
    """What generating ``max_new_tokens`` after a prompt of ``tokens`` will hold at most: each step's attention rows
    (float32, per layer and head, pooled past ``ROW_CELLS`` keys; an encoder-decoder's cross-attention too) and
    the float32 K/V cache at its longest."""
    longest = tokens + max_new_tokens
    kinds = 2 if cfg.family == "encdec" else 1
    rows = max_new_tokens * kinds * cfg.n_layer * cfg.n_heads * min(longest, ROW_CELLS) * 4
    heads, k_dim, v_dim = cache_shape(cfg)  # MLA: one latent row a position
    cache = kinds * cfg.n_layer * heads * (k_dim + v_dim) * longest * 4
    return rows + cache


def decode_timeline(spec: ModelSpec, text: str, max_new_tokens: int = 32, *, temperature: float = 0.0,
                    top_k: int = 0, top_p: float = 1.0, seed: int = 0, window: int = 0, backend: str = "auto",
                    device: str = "cpu", dtype: str = "auto", progress=None,
                    cancelled=None) -> tuple[Timeline, list[Message]]:
    """Generate with the KV cache (or recurrent state), recording each step's attention and cache size.

    ``progress(done, total)`` hears of each new token; ``cancelled()`` returning True stops the generation after
    the current token (``inspect.analysis.Cancelled``)."""
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
    steps = []
    with closing(stream(model, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                        record=True)) as decoding:  # a cancel closes it: the model's cache is cleared at once
        for step in decoding:
            steps.append(step)
            if progress is not None:
                progress(len(steps), max_new_tokens)
            if cancelled is not None and cancelled() and len(steps) < max_new_tokens:
                raise Cancelled(f"stopped after {len(steps)} of {max_new_tokens} new tokens")
    gen = Generation(ids, [s.token for s in steps], steps)
    encdec = cfg.family == "encdec"
    layers = max(rows.shape[0] for rows in gen.steps[0].attention.values())  # attention layers (a hybrid has fewer)
    return Timeline(
        prompt_labels=show(spec, [decoder_start(model)]) if encdec else show(spec, ids), new_labels=show(spec, gen.tokens),
        text=decode(spec, gen.tokens), rows=[s.attention for s in gen.steps], held=[s.keys_held for s in gen.steps],
        cache_bytes=[s.cache_bytes for s in gen.steps],
        cache_bytes_allocated=[s.cache_bytes_allocated for s in gen.steps],
        source_labels=show(spec, ids) if encdec else [], n_layer=layers, n_heads=cfg.n_heads, config=cfg), notes


def fill_timeline(spec: ModelSpec, text: str, *, backend: str = "auto", device: str = "cpu",
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


def generate_text(spec: ModelSpec, text: str, max_new_tokens: int = 32, *, lang: str = "en", progress=None,
                  cancelled=None, **options) -> tuple[Timeline, list[Message]]:
    """``decode_timeline`` as the page runs it: ``max_new_tokens`` checked, then its time estimated against the
    operator's ceiling (``check_generation_seconds``) and what the timeline will hold admitted by the server's
    memory check, before anything runs; then on the generate lane, through the GPU door (errors there in
    ``lang``); the timeline counted in ``TIMELINES`` while a session keeps it. ``options``: ``decode_timeline``'s."""
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, MAX_NEW_TOKENS)
    if spec.is_task:
        tokens = len(task_sequence(spec.name, options.get("seed", 0))[0])
    else:
        tokens = check_generation_seconds(spec, text, max_new_tokens, options.get("device", "cpu"))["tokens"]
    with LEDGER.admit(timeline_bytes(spec.config(), tokens, max_new_tokens), str(spec)):
        timeline, notes = gpu.work(Words(lang=lang), decode_timeline, spec, text, max_new_tokens, lane=GENERATE,
                                   **gpu.watch(progress, cancelled), **options)
        return keep(timeline), notes


def fill_text(spec: ModelSpec, text: str, *, lang: str = "en", **options) -> tuple[Timeline, list[Message]]:
    """``fill_timeline`` as the page runs it: admitted by the memory check, on the generate lane, through the GPU
    door, counted while kept."""
    tokens = len(tokenize(spec, text, options.get("device", "cpu"))[0])
    with LEDGER.admit(timeline_bytes(spec.config(), tokens, 1), str(spec)):
        timeline, notes = gpu.work(Words(lang=lang), fill_timeline, spec, text, lane=GENERATE, **options)
        return keep(timeline), notes
