"""The analysis store: analyses live here, not in visitors' sessions, keyed by what they were computed from,
shared by every session that asks for the same, least recently used out first (``ANALYSES``, under
``PLAYGROUND_ANALYSIS_MEMORY_GB``). A session keeps the key and the request (``request_key``)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from playground.errors import check_int
from playground.inspect.analysis import Analysis, AttentionMap, analyze
from playground.inspect.generation import decoder_start, generate
from playground.models.memory import release_freed
from playground.models.weight_cache import WeightCache
from playground.serving.memory_ledger import LEDGER
from playground.ui import gpu
from playground.ui.i18n import Message, MessageError, msg
from playground.ui.lang import Words
from playground.serving.calibration import ESTIMATES
from playground.ui.service.costs import analysis_bytes, check_job_seconds, gpu_duration
from playground.ui.service.loading import load, prepare
from playground.ui.service.prompts import labels, task_labels, task_sequence, tokenize
from playground.zoo import ModelSpec

ANALYSIS_BUDGET_ENV = "PLAYGROUND_ANALYSIS_MEMORY_GB"
ANALYSIS_SHARE = 0.25       # of the machine's memory, when ANALYSIS_BUDGET_ENV is not set
ENCDEC_TARGET_TOKENS = 24   # an encoder-decoder's decoder side: its own greedy continuation


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
ANALYSES = WeightCache(env=ANALYSIS_BUDGET_ENV, share=ANALYSIS_SHARE, too_large="error.analysis_too_large",
                       admit=LEDGER.admit)  # an analysis in flight is admitted by the server's memory check


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

    def stored_bytes() -> int:
        tokens = len(task_sequence(spec.name, seed)[0]) if spec.is_task else len(tokenize(spec, text, device)[0])
        return analysis_bytes(spec.config(), tokens)

    def compute() -> StoredAnalysis:
        expected = check_job_seconds(spec, text, device)
        prepare(spec, device, dtype)
        stored = gpu.work(Words(lang=lang), analyze_and_release, spec, text, **gpu.watch(progress, cancelled),
                          **options, gpu_seconds=gpu_duration(expected, device))
        # what it took against what it was estimated to: the next GPU durations on this device follow it
        ESTIMATES.record(device, expected, stored.result.elapsed_ms / 1e3)
        return stored

    out = ANALYSES.get(key, compute, stored_bytes, f"{spec} · {len(text)} characters")
    stored: StoredAnalysis = out.weights
    notes = list(stored.notes)
    if out.reloaded:
        notes.append(msg("note.analysis_recomputed"))
    if not out.kept:
        notes.append(msg("note.analysis_not_kept", size_mb=round(stored.nbytes / 1e6),
                         budget_mb=round(ANALYSES.limit() / 1e6)))
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


def analyze_and_release(spec: ModelSpec, text: str, **options) -> StoredAnalysis:
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
