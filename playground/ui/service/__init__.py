"""What the page and its API call: a model spec and text in, plain data out, models loaded once.

The UI never touches tensors: its controls resolve to a ``ModelSpec`` (``choices.resolve``), the API receives one
as text, and both call ``analyze_text`` or ``generate_text`` and hand the numpy results to ``plots``. Every option
is checked here (``errors.check_int``), so the page and the API answer bad input with the same message.

One module per job: ``choices`` (the controls as a spec and a sentence), ``loading`` (weights once, a model per
call), ``prompts`` (tokens and labels), ``costs`` (bytes and seconds before a job runs), ``analyses`` (the
analysis store), ``timelines`` (generation and fill-mask), ``kv_formulas`` (the cache by formula), ``memory``
(the server's one memory check over all of them).
"""
from playground.ui.service.analyses import (
    ANALYSES, ANALYSIS_BUDGET_ENV, ANALYSIS_SHARE, ENCDEC_TARGET_TOKENS, StoredAnalysis, analysis_key,
    analyze_and_release, analyze_text, attention_map, head_window, request_key, stored_analysis)
from playground.ui.service.choices import (
    PRETRAINED, about, devices, parameters, pretrained_sentence, resolve, shape)
from playground.ui.service.costs import (
    MAX_JOB_ENV, MAX_JOB_S, SECONDS_PER_UNIT, ablation_forwards, ablation_tokens, analysis_bytes,
    check_generation_seconds, check_job_seconds, estimate, forward_seconds, generation_seconds, gpu_seconds,
    max_job_seconds, score_width)
from playground.ui.service.kv_formulas import kv_formulas
from playground.ui.service.loading import WEIGHTS, Loaded, load, prepare, weights, weights_name
from playground.ui.service.prompts import (
    MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS, TASK_LABELS, decode, labels, task_labels, task_sequence, token_limit,
    tokenize)
from playground.ui.service.memory import LEDGER, admit
from playground.ui.service.timelines import (
    MAX_NEW_TOKENS, TIMELINES, Timeline, fill_text, generate_text, keep, timeline_bytes)

__all__ = [
    "ANALYSES", "ANALYSIS_BUDGET_ENV", "LEDGER", "TIMELINES", "ANALYSIS_SHARE", "ENCDEC_TARGET_TOKENS", "MAX_JOB_ENV", "MAX_JOB_S",
    "MAX_NEW_TOKENS", "MAX_PROMPT_CHARS", "MAX_PROMPT_TOKENS", "PRETRAINED", "SECONDS_PER_UNIT", "TASK_LABELS",
    "WEIGHTS", "Loaded", "StoredAnalysis", "Timeline", "ablation_forwards", "ablation_tokens", "about", "admit",
    "analysis_bytes", "analysis_key",
    "analyze_and_release", "analyze_text", "attention_map", "check_generation_seconds", "check_job_seconds", "decode", "devices", "estimate",
    "fill_text", "forward_seconds", "generate_text", "generation_seconds", "gpu_seconds", "head_window", "keep", "kv_formulas", "labels", "load", "max_job_seconds",
    "parameters", "prepare", "pretrained_sentence", "request_key", "resolve", "score_width", "shape",
    "stored_analysis", "task_labels", "task_sequence", "timeline_bytes", "token_limit", "tokenize", "weights", "weights_name"]
