"""Benchmark: what opening a pretrained-sized model costs on this machine
(``python -m playground.bench pretrained [--json] [--repeats N] [--keep DIR] [--shape tiny] [--no-browser]``).

A random checkpoint shaped like GPT-2 small (``transformers``' ``GPT2Config()`` defaults: 124M
parameters, 12 layers x 12 heads, 1,024 positions, vocabulary 50,257) is written by
``transformers`` with ``save_pretrained(safe_serialization=True)`` beside a byte-level BPE
``tokenizer.json`` (``bench.hf_folder``) into a temporary operator directory (or ``--keep DIR``,
reused when it already holds one), and opened as ``local:<name>``, as the page opens it. Figures,
each a median of ``--repeats`` runs (at least 5) with its spread, and its target:

- ``load_s``: ``load_folder`` of the checkpoint (config, safetensors, tokenizer; transformers' ``GPT2LMHeadModel``
  wrapped for recording), float32 on the CPU.
- ``analyze_p50_ms_gpt2_128`` (<= 1,500): the page's analyze path, ``service.analyze_text`` on the
  ``local:`` spec, for a 128-token prompt (the weights already loaded, as for every visitor but the first).
- ``overview_bytes_gpt2_128`` (<= 2 MB): ``plots.overview_bytes`` of that analysis (144 heads).
- ``browser_render_ms_gpt2_128`` (<= 2,500): ``python app.py`` serving the operator directory
  (``bench.server``), opened in chromium through a share link naming the spec; from the click on
  Analyze to the frame that shows the overview of a 128-token prompt (``bench.app``), alternating with
  a 120-token prompt so each click draws a new title. Null with ``--no-browser`` or without chromium.
- ``cached_over_uncached_gpt2_256`` (>= 3): greedy generation of 256 new tokens from a 16-token prompt
  with the KV cache over without it (``bench.decode``), rounds alternating.
- ``peak_rss_mb_gpt2_parallel`` (<= 2,000): that app process's peak resident memory (MB, 10^6 bytes)
  while 8 clients call it at once: analyze and generate (32 new tokens), each with backends math and
  explicit and windows 0 and 64 (``bench.concurrent``).
- ``mamba_implicit_130m_256_s`` (<= 15): ``mamba_implicit`` below.
- ``any_model_analyze_ms_qwen3_shape_128``, ``any_model_overhead_ratio`` (<= 1.3) and ``any_model_archs_exact``
  (every architecture of ``bench.hf_archs``): ``bench.any_model``.

``--shape tiny`` runs the same steps on a 2-layer, 64-wide GPT-2 and Mamba in seconds (for tests);
the keys keep their names. ``transformers`` writes the checkpoint (requirements.txt); without it the
benchmark stops with a message saying so.

``mamba_implicit``: Mamba's implicit attention of every layer of a random model shaped like
``state-spaces/mamba-130m-hf`` (24 layers, d_model 768, 1,536 channels, d_state 16, vocabulary
50,280), drawn as 12 heads of 128 channels. One captured forward over ``T`` tokens
(``model(ids, capture=True)``: the scan, then every layer's alpha built one channel group and block
of rows at a time, checked over every channel and averaged per head) is timed after the model is
built and has run once; ``forward_s`` is the same forward without capture, for comparison. ``peak_rss_mib`` is the
process's peak resident memory during the captured forward, ``rss_rise_mib`` its rise above the
start (the weights alone are about 500 MiB in float32). ``max_abs_diff`` is the worst faithfulness
check over the layers: max |sum_s alpha x_s + D x - y| over every channel, y from the scan.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import torch

from playground import plots
from playground.bench import any_model, hf_archs, hf_folder
from playground.bench.app import PASSAGE, browser_render_ms
from playground.bench.concurrent import Call, parallel_calls, peak_rss_during
from playground.bench.decode import cache_speedup, time_decode
from playground.nn.timing import MIB, MIN_REPEATS, PeakRSS, make_result, spread, target_row
from playground.bench.server import AppServer, environ
from playground.config import ModelConfig
from playground.models import build_model
from playground.models.pretrained import load_folder
from playground.models.pretrained.hub import ENV_LOCAL
from playground.ui import service
from playground.zoo import ModelSpec

MAMBA_130M = dict(family="mamba", position="none", d_model=768, n_layer=24, d_state=16, expand=2, d_conv=4,
                  vocab_size=50280, n_heads=12, n_kv_heads=12)  # the shape of state-spaces/mamba-130m-hf


@torch.no_grad()
def mamba_implicit(T: int = 256, seed: int = 0, **shape) -> dict:
    """Implicit attention of every layer of a random mamba-130m-shaped model over T tokens, on the CPU.

    Args:
        T: tokens. shape: fields of ``MAMBA_130M`` to change (a smaller model, for tests).
    Returns:
        {"tokens", "layers", "channels", "heads", "seconds", "forward_s", "peak_rss_mib", "rss_rise_mib",
        "max_abs_diff"}; ``seconds`` is the captured forward's wall time.
    """
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive number of tokens, got {T!r}")
    cfg = ModelConfig(**{**MAMBA_130M, **shape})
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, T), generator=torch.Generator().manual_seed(seed))
    model(ids)  # warm-up: first-call allocations and kernel choices are not what is measured
    start = time.perf_counter()
    model(ids)
    forward_s = time.perf_counter() - start
    with PeakRSS() as rss:
        start = time.perf_counter()
        records = model(ids, capture=True).attentions
        seconds = time.perf_counter() - start
    assert len(records) == cfg.n_layer and records[0].weights.shape == (1, cfg.n_heads, T, T)
    return {"tokens": T, "layers": cfg.n_layer, "channels": cfg.expand * cfg.d_model, "heads": cfg.n_heads,
            "seconds": seconds, "forward_s": forward_s, "peak_rss_mib": rss.peak / MIB,
            "rss_rise_mib": rss.rise / MIB, "max_abs_diff": max(r.max_abs_diff for r in records)}


def mamba_implicit_seconds(T: int = 256) -> float:
    """Seconds to capture every layer's implicit attention of a random mamba-130m-shaped model over T tokens."""
    return mamba_implicit(T)["seconds"]


# ---------------------------------------------------------------------------------- GPT-2-shaped figures
MB = 1e6
PROMPT_TOKENS, OTHER_PROMPT_TOKENS = 128, 120  # the browser alternates them: each click draws a new title
NEW_TOKENS, DECODE_PROMPT_TOKENS = 256, 16
PARALLEL_NEW_TOKENS = 32
TARGETS = {  # summary key -> (comparison, target)
    "analyze_p50_ms_gpt2_128": ("<=", 1500), "overview_bytes_gpt2_128": ("<=", 2_000_000),
    "browser_render_ms_gpt2_128": ("<=", 2500), "cached_over_uncached_gpt2_256": (">=", 3),
    "peak_rss_mb_gpt2_parallel": ("<=", 2000), "mamba_implicit_130m_256_s": ("<=", 15),
    "any_model_overhead_ratio": ("<=", 1.3), "any_model_archs_exact": (">=", len(hf_archs.ARCHS)),
}
MAMBA_TINY = dict(n_layer=2, d_model=64, n_heads=2, n_kv_heads=2, vocab_size=512)


def parallel_mix(spec: str, prompt: str) -> list[Call]:
    """The 8 visitors: analyze and generate, each with backends math and explicit and windows 0 and 64."""
    return [Call(api, {"spec": spec, "prompt": prompt, "backend": backend, "window": window, **extra})
            for api, extra in (("/analyze", {}), ("/generate", {"max_new_tokens": PARALLEL_NEW_TOKENS}))
            for backend in ("math", "explicit") for window in (0, 64)]


def prompt_of(tokenizer, n_tokens: int) -> str:
    """A Shakespeare prompt of exactly ``n_tokens`` tokens by ``tokenizer``."""
    text = tokenizer.decode(tokenizer.encode(PASSAGE * 2)[:n_tokens])
    if len(tokenizer.encode(text)) != n_tokens:
        raise ValueError(f"could not build a {n_tokens}-token prompt with this tokenizer")
    return text


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    """Seconds of ``repeats`` calls of ``fn`` and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def _row(measure: str, value, unit: str, samples: list[float] | None = None) -> dict:
    return target_row(measure, value, unit, TARGETS, samples)


@contextlib.contextmanager
def _operator_dir(keep: str | None):
    """The directory the app serves local models from: ``keep`` (made if missing), or a temporary one."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep).resolve()
    else:
        with tempfile.TemporaryDirectory(prefix="playground-bench-") as tmp:
            yield Path(tmp)


def _in_app(root: Path, spec: str, texts: dict[int, str], repeats: int, browser: bool) -> dict:
    """The app process serving ``root``: the browser's render times, then its peak memory under 8 parallel calls."""
    with AppServer({ENV_LOCAL: str(root)}) as server:
        rendered, error = None, None
        if browser:
            query = urlencode({"spec": spec, "prompt": texts[OTHER_PROMPT_TOKENS]})
            try:
                rendered = browser_render_ms(server.url, texts, max(MIN_REPEATS, repeats // 2), query=query)
            except Exception as e:  # the page could not open the link (its log says why): the other figures stand
                error = f"{type(e).__name__}: {str(e).splitlines()[0]} (app log: {server.log})"
                server.keep_log = True
        calls = parallel_mix(spec, texts[PROMPT_TOKENS])
        parallel_calls(server.url, calls[:1])  # the weights loaded before the peak is reset (without a browser)
        start = time.perf_counter()
        before, peak, reset, seconds = peak_rss_during(server.pid, lambda: parallel_calls(server.url, calls))
        wall = time.perf_counter() - start
    return {"render_ms": rendered[0][PROMPT_TOKENS] if rendered else None, "browser_error": error,
            "rss_before": before, "peak": peak,
            "reset": reset, "call_s": seconds, "wall_s": wall, "calls": [c.describe() for c in calls]}


def bench_pretrained(repeats: int = MIN_REPEATS, keep: str | None = None, shape: str = "small",
                     browser: bool = True) -> dict:
    """The figures above: (result dict) with the summary keys of the module's docstring and a row per figure."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    name = f"gpt2-{shape}"
    with _operator_dir(keep) as root, environ(ENV_LOCAL, str(root)):
        folder = hf_folder.write_gpt2(root / name, shape)
        load_seconds, (model, tokenizer) = _timed(lambda: load_folder(folder), repeats)
        texts = {n: prompt_of(tokenizer, n) for n in (PROMPT_TOKENS, OTHER_PROMPT_TOKENS)}
        prompt = tokenizer.encode(texts[PROMPT_TOKENS])[:DECODE_PROMPT_TOKENS]
        decode_seconds, runs = time_decode(model, prompt, NEW_TOKENS, repeats, "cpu")
        speedup = cache_speedup(decode_seconds)
        chosen = [gen.tokens for mode in runs for gen in runs[mode]]
        n_params, vocab = model.n_params, tokenizer.vocab_size
        del model

        spec = ModelSpec.parse(f"local:{name}")
        service.analyze_text(spec, texts[PROMPT_TOKENS])  # warm-up: loads the weights into the page's cache
        def analyze_afresh():  # the store would answer a repeat from memory: time the computation itself
            service.ANALYSES.clear()
            return service.analyze_text(spec, texts[PROMPT_TOKENS])

        analyze_seconds, (analysis, _) = _timed(analyze_afresh, repeats)
        overview = plots.overview_bytes(analysis)
        service.WEIGHTS.clear()
        app = _in_app(root, str(spec), texts, repeats, browser)
    mamba = mamba_implicit(NEW_TOKENS, **(MAMBA_TINY if shape == "tiny" else {}))
    any_cost = any_model.overhead(repeats, shape)
    exact = any_model.archs_exact()

    analyze_ms = [s * 1e3 for s in analyze_seconds]
    render = app["render_ms"]
    summary = {
        "load_s": spread(load_seconds)["median"], "load_s_spread": spread(load_seconds),
        "analyze_p50_ms_gpt2_128": spread(analyze_ms)["median"], "analyze_ms_gpt2_128_spread": spread(analyze_ms),
        "overview_bytes_gpt2_128": overview,
        "browser_render_ms_gpt2_128": spread(render)["median"] if render else None,
        "browser_render_ms_gpt2_128_spread": spread(render) if render else None,
        "browser_error": app["browser_error"],
        f"cached_over_uncached_gpt2_{NEW_TOKENS}": speedup["median"],
        f"cached_over_uncached_gpt2_{NEW_TOKENS}_spread": speedup,
        "same_tokens": all(tokens == chosen[0] for tokens in chosen),
        "peak_rss_mb_gpt2_parallel": app["peak"] / MB, "rss_mb_before_parallel": app["rss_before"] / MB,
        "peak_reset_before_parallel": app["reset"], "parallel_calls": app["calls"],
        "parallel_call_s": [round(s, 2) for s in app["call_s"]], "parallel_wall_s": app["wall_s"],
        "mamba_implicit_130m_256_s": mamba["seconds"], "mamba_max_abs_diff": mamba["max_abs_diff"],
        "any_model_analyze_ms_qwen3_shape_128": spread(any_cost["analyze_ms"])["median"],
        "any_model_sdpa_ms_qwen3_shape_128": spread(any_cost["sdpa_ms"])["median"],
        "any_model_overhead_ratio": any_cost["ratio"],
        "any_model_archs_exact": sum(exact.values()), "any_model_archs": len(exact),
        "any_model_archs_not_exact": sorted(name for name, ok in exact.items() if not ok),
        "shape": shape, "n_params": n_params, "tokenizer_vocab": vocab, "repeats": repeats,
        "folder": str(folder) if keep else None,
    }
    rows = [_row("load_s", summary["load_s"], "s", load_seconds),
            _row("analyze_p50_ms_gpt2_128", summary["analyze_p50_ms_gpt2_128"], "ms", analyze_ms),
            _row("overview_bytes_gpt2_128", overview, "bytes"),
            _row("browser_render_ms_gpt2_128", summary["browser_render_ms_gpt2_128"], "ms", render),
            _row("cached_over_uncached_gpt2_256", speedup["median"], "x"),
            _row("peak_rss_mb_gpt2_parallel", summary["peak_rss_mb_gpt2_parallel"], "MB"),
            _row("mamba_implicit_130m_256_s", mamba["seconds"], "s"),
            _row("any_model_analyze_ms_qwen3_shape_128", summary["any_model_analyze_ms_qwen3_shape_128"], "ms",
                 any_cost["analyze_ms"]),
            _row("any_model_overhead_ratio", any_cost["ratio"], "x"),
            _row("any_model_archs_exact", summary["any_model_archs_exact"], "archs")]
    return make_result("pretrained", "cpu", summary, rows)
