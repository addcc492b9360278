"""Long prompts: a SmolLM2-135M-shaped checkpoint analyzed at 2,048 and 8,192 tokens, with nothing T x T kept.

The checkpoint is random, written by ``transformers`` (a development dependency) in the Llama layout
SmolLM2-135M has: 30 layers, d 576, 9 query heads over 3 K/V heads, SwiGLU 1,536, RoPE, 8,192 positions
(its vocabulary is the benchmark's small BPE tokenizer's, which changes nothing in attention). The figures,
each the median of ``repeats`` runs where it is timed:

- ``analyze_s_2048`` / ``analyze_s_8192``: the page's analysis (the forward with capture, each layer's
  log-sum-exp, the overview's cells, the head statistics and the faithfulness check, tile by tile);
- ``analysis_bytes_8192``: what the server's store holds for one 8,192-token analysis;
- ``rss_rise_8192_over_2048``: the peak resident memory rise above the loaded weights during an analysis,
  8,192 tokens over 2,048 (linear in T is 4, quadratic 16);
- ``tile_p50_ms_8192``: one exact 512 x 512 window of one head, at random places of the causal triangle;
- ``overview_bytes_8192``: the overview figure's Plotly JSON;

and, on the playground's own 2-layer decoder (random weights, d 128, 4 heads), each after one short analysis that
compiles FlexAttention, the peak resident memory rise of an analysis where the mask and the bias come from the
rule alone (FlexAttention's block mask, ALiBi as a score modification; nothing T x T):

- ``rss_rise_32768_over_8192_tiny``: ALiBi with a sliding window of 256, 32,768 tokens over 8,192 (linear in T
  is 4, quadratic 16);
- ``alibi_over_rope_peak_rss_8192``: ALiBi over RoPE, the same shape and no window, at 8,192 tokens;

and, through the app (``python app.py`` serving both checkpoints from an operator's directory) in chromium:

- ``browser_render_ms_4096``: click on Analyze to the overview drawn for a 4,096-token prompt on the
  SmolLM2-shaped model, the analysis itself taken out: the first click computes it, the timed clicks find
  it in the server's store (median of repeats);
- ``session_rss_mb_gpt2_1024_x8``: the app's resident memory once 8 browser sessions each hold a
  different 1,024-token analysis of a GPT-2-small-shaped checkpoint (share links, every overview drawn), in
  a server started for them.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import torch

from playground import plots
from playground.bench import hf_folder
from playground.bench.app import ALL_IN_OR_REFUSED, BUSY, PASSAGE, browser_render_ms
from playground.bench.browser import available, using
from playground.nn.timing import MIN_REPEATS, PeakRSS, make_result, rss_bytes, spread, target_row
from playground.bench.server import AppServer, environ
from playground.models.pretrained.hub import ENV_LOCAL
from playground.inspect import tiles
from playground.inspect.analysis import analyze
from playground.models.pretrained import load_pretrained

SMOLLM2_135M = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    intermediate_size=1536, max_position_embeddings=8192, rope_theta=100000.0,
                    tie_word_embeddings=True, rms_norm_eps=1e-5)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, max_position_embeddings=8192, tie_word_embeddings=True)
TARGETS = {
    "analysis_bytes_8192": ("<=", 1.0e9), "rss_rise_8192_over_2048": ("<=", 5), "analyze_s_2048": ("<=", 15),
    "analyze_s_8192": ("<=", 120), "tile_p50_ms_8192": ("<=", 300), "overview_bytes_8192": ("<=", 2e6),
    "browser_render_ms_4096": ("<=", 2000), "session_rss_mb_gpt2_1024_x8": ("<=", 2500),
    "rss_rise_32768_over_8192_tiny": ("<=", 5), "alibi_over_rope_peak_rss_8192": ("<=", 1.2),
}
RULE_LENGTHS = (8192, 32768)  # the rule's figures: ALiBi with a window, short and long
RULE_WINDOW = 256
SESSIONS = 8
LENGTHS = (2048, 8192)
TILE = 512


def write_llama(folder: Path, shape: dict, seed: int = 0) -> Path:
    """A random Llama-layout checkpoint of ``shape`` with the benchmark's tokenizer, written unless present."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file():
        if json.loads((folder / "config.json").read_text()).get("num_hidden_layers") == shape["num_hidden_layers"]:
            return folder
    transformers = hf_folder._transformers()
    tokenizer = hf_folder.tokenizer_json()
    vocab = len(json.loads(tokenizer)["model"]["vocab"])
    config = transformers.LlamaConfig(**shape, vocab_size=vocab, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
    return folder


def _row(measure: str, value, unit: str, samples: list[float] | None = None) -> dict:
    return target_row(measure, value, unit, TARGETS, samples)


def text_of(tokenizer, n_tokens: int, skip: int = 0) -> str:
    """A Shakespeare text of exactly ``n_tokens`` tokens by ``tokenizer``, starting ``skip`` tokens in."""
    ids = tokenizer.encode(PASSAGE * (2 + (n_tokens + skip) // 100))[skip:skip + n_tokens]
    text = tokenizer.decode(ids)
    if len(tokenizer.encode(text)) != n_tokens:
        raise ValueError(f"could not build a {n_tokens}-token prompt with this tokenizer")
    return text


def in_app(root: Path, llama: str, gpt2: str, llama_tokens: int, repeats: int) -> dict:
    """The app serving ``root``: the render time of a ``llama_tokens``-token overview, then its memory with
    ``SESSIONS`` browser sessions each holding a different 1,024-token GPT-2 analysis (``session_memory``)."""
    from playground.zoo import ModelSpec

    with environ(ENV_LOCAL, str(root)):
        llama_text = text_of(ModelSpec.parse(llama).tokenizer(), llama_tokens)
        from gradio_client import Client

        with AppServer({ENV_LOCAL: str(root)}) as server:
            # the analysis itself, once, into the server's store: the timed clicks then measure the page alone
            Client(server.url, verbose=False).predict(spec=llama, prompt=llama_text, api_name="/analyze")
            query = urlencode({"spec": llama, "prompt": "To be, or not to be"})
            rendered, _ = browser_render_ms(server.url, {llama_tokens: llama_text}, repeats, query=query)
    return {"render_ms": rendered[llama_tokens], **session_memory(root, gpt2)}


def session_memory(root: Path, gpt2: str) -> dict:
    """The resident memory (``rss``, bytes) of an app of its own serving ``root`` once ``SESSIONS`` browser
    sessions each hold a different 1,024-token analysis of ``gpt2``, and the memory check's sources at its last
    log line (``held_mb``): GPT-2's weights and the eight analyses, nothing else."""
    from playground.zoo import ModelSpec

    with environ(ENV_LOCAL, str(root)):
        gpt2_tok = ModelSpec.parse(gpt2).tokenizer()
        texts = [text_of(gpt2_tok, 1024, skip=7 * i) for i in range(SESSIONS)]
        with AppServer({ENV_LOCAL: str(root)}) as server, using() as browser:
            pages = []
            for text in texts:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.goto(f"{server.url}?{urlencode({'spec': gpt2, 'prompt': text})}", wait_until="load")
                pages.append(page)
            for page in pages:  # each session as it stays: its analysis and every tab's first view in
                page.wait_for_function(f"() => document.querySelector({ALL_IN_OR_REFUSED!r})", timeout=600_000)
                page.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=600_000)
            return {"rss": rss_bytes(server.pid), "held_mb": last_memory_line(server.log)}


def session_figures() -> dict:
    """``session_rss_mb_gpt2_1024_x8`` and ``session_held_mb_gpt2_1024_x8`` alone (``session_memory`` with a
    GPT-2-small-shaped checkpoint written by transformers): ``python -c "from playground.bench.long import
    session_figures; print(session_figures())"``."""
    with tempfile.TemporaryDirectory(prefix="playground-long-") as root:
        hf_folder.write_gpt2(Path(root) / "gpt2-small", "small")
        app = session_memory(Path(root), "local:gpt2-small")
    return {"session_rss_mb_gpt2_1024_x8": round(app["rss"] / 1e6, 1), "session_held_mb_gpt2_1024_x8": app["held_mb"]}


def last_memory_line(log: str) -> dict | None:
    """The memory check's sources after the last request in an app's log (``ui.api``'s ``held_mb``), or None."""
    held = None
    for line in Path(log).read_text(encoding="utf-8", errors="replace").splitlines():
        start = line.find("{")
        if start >= 0 and '"held_mb"' in line:
            try:
                held = json.loads(line[start:])["held_mb"]
            except (ValueError, KeyError):
                continue
    return held


def peak_rise(position: str, lengths: tuple[int, ...], window: int, repeats: int) -> dict[int, int]:
    """The largest peak resident memory rise of ``repeats`` analyses at each length, in bytes, on a 2-layer decoder
    of the playground's with this position encoding and sliding window, after one 1,024-token analysis (which
    compiles FlexAttention: a once-per-process cost, not the analysis's)."""
    from playground import zoo
    from playground.models import build_model

    cfg = zoo.untrained_config("decoder", "MHA", position).replace(n_layer=2, context_length=max(lengths),
                                                                    sliding_window=window)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    analyze(model, torch.randint(1, cfg.vocab_size, (1024,)).tolist())
    rise = {}
    for n in lengths:
        ids = torch.randint(1, cfg.vocab_size, (n,), generator=torch.Generator().manual_seed(n)).tolist()
        for _ in range(repeats):
            with PeakRSS() as peak:
                analyze(model, ids)
            rise[n] = max(rise.get(n, 0), peak.rise)
    return rise


def fresh_peak_rise(*args) -> dict[int, int]:
    """``peak_rise`` in a process of its own: pages an earlier analysis freed are not there to be reused."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rise = pool.apply(peak_rise, args)
        pool.close()  # let the worker exit on its own: terminated (the context's exit), it leaves a semaphore behind
        pool.join()
    return rise


def rule_figures(lengths: tuple[int, int] = RULE_LENGTHS, repeats: int = MIN_REPEATS) -> tuple[dict, list[dict]]:
    """(summary, rows) of ``rss_rise_<long>_over_<short>_tiny`` and ``alibi_over_rope_peak_rss_<short>``, each
    configuration measured in a fresh process."""
    short, long = lengths
    windowed = fresh_peak_rise("alibi", lengths, RULE_WINDOW, repeats)
    alibi, rope = (fresh_peak_rise(p, (short,), 0, repeats)[short] for p in ("alibi", "rope"))
    growth, over = windowed[long] / max(1, windowed[short]), alibi / max(1, rope)
    summary = {f"rss_rise_{long}_over_{short}_tiny": growth, f"alibi_over_rope_peak_rss_{short}": over,
               f"rss_rise_mb_{short}_tiny": windowed[short] / 1e6, f"rss_rise_mb_{long}_tiny": windowed[long] / 1e6,
               f"alibi_rise_mb_{short}": alibi / 1e6, f"rope_rise_mb_{short}": rope / 1e6}
    return summary, [_row(f"rss_rise_{long}_over_{short}_tiny", growth, "x"),
                     _row(f"alibi_over_rope_peak_rss_{short}", over, "x")]


def bench_long(repeats: int = MIN_REPEATS, keep: str | None = None, shape: str = "smollm2",
               lengths: tuple[int, int] = LENGTHS, browser: bool = True,
               rule_lengths: tuple[int, int] = RULE_LENGTHS) -> dict:
    """The figures of the module's docstring: (result dict) with a summary and a row per figure."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS} (a median of fewer says little), got {repeats}")
    short, long = lengths
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="playground-long-")) as root:
        folder = write_llama(Path(root) / f"llama-{shape}", SMOLLM2_135M if shape == "smollm2" else TINY)
        hf_folder.write_gpt2(Path(root) / f"gpt2-{'small' if shape == 'smollm2' else 'tiny'}",
                             "small" if shape == "smollm2" else "tiny")
        model, _ = load_pretrained(str(folder))
        app = None
        if browser and available():
            app = in_app(Path(root), f"local:{folder.name}", f"local:gpt2-{'small' if shape == 'smollm2' else 'tiny'}",
                         min(4096, long), repeats)
    model.eval()
    ids = {n: torch.randint(1, model.cfg.vocab_size, (n,), generator=torch.Generator().manual_seed(n)).tolist()
           for n in lengths}
    seconds, rise, results = {}, {}, {}
    for n in lengths:
        runs = []
        for _ in range(repeats):
            with PeakRSS() as peak:
                start = time.perf_counter()
                results[n] = analyze(model, ids[n])
                runs.append(time.perf_counter() - start)
            rise[n] = max(rise.get(n, 0), peak.rise)
        seconds[n] = runs
    result = results[long]
    rng = random.Random(0)
    tile_ms = []
    for _ in range(max(20, repeats)):
        m = result.maps[rng.randrange(len(result.maps))]
        r0 = rng.randrange(0, long - TILE + 1)
        c0 = rng.randrange(0, r0 + 1)  # inside the causal triangle
        start = time.perf_counter()
        cells = tiles.pool(m.source, (r0, r0 + TILE), (c0, c0 + TILE), TILE, heads=[rng.randrange(m.shape[0])])
        tile_ms.append((time.perf_counter() - start) * 1e3)
        assert cells.exact
    overview = plots.overview_bytes(result)
    ratio = rise[long] / max(1, rise[short])
    median = {n: spread(seconds[n])["median"] for n in lengths}
    summary = {
        f"analyze_s_{short}": median[short], f"analyze_s_{long}": median[long],
        f"analysis_bytes_{long}": result.nbytes, f"rss_rise_{long}_over_{short}": ratio,
        f"rss_rise_mb_{short}": rise[short] / 1e6, f"rss_rise_mb_{long}": rise[long] / 1e6,
        f"tile_p50_ms_{long}": spread(tile_ms)["median"], f"overview_bytes_{long}": overview,
        "max_abs_diff": result.max_abs_diff, "lse_source": result.maps[0].source.lse_source,
        "kernels": result.kernels, "shape": shape, "layers": model.cfg.n_layer, "heads": model.cfg.n_heads,
        "kv_heads": model.cfg.n_kv_heads, "repeats": repeats, "threads": torch.get_num_threads(),
    }
    render_key = f"browser_render_ms_{min(4096, long)}"
    if app is not None:
        summary[render_key] = spread(app["render_ms"])["median"]
        summary["session_rss_mb_gpt2_1024_x8"] = app["rss"] / 1e6
        summary["session_held_mb_gpt2_1024_x8"] = app["held_mb"]  # where it goes: weights, analyses, ...
    rows = [_row(f"analyze_s_{short}", median[short], "s", seconds[short]),
            _row(f"analyze_s_{long}", median[long], "s", seconds[long]),
            _row(f"analysis_bytes_{long}", result.nbytes, "bytes"),
            _row(f"rss_rise_{long}_over_{short}", ratio, "x"),
            _row(f"tile_p50_ms_{long}", summary[f"tile_p50_ms_{long}"], "ms", tile_ms),
            _row(f"overview_bytes_{long}", overview, "bytes")]
    if app is not None:
        rows += [_row(render_key, summary[render_key], "ms", app["render_ms"]),
                 _row("session_rss_mb_gpt2_1024_x8", summary["session_rss_mb_gpt2_1024_x8"], "MB")]
    rule_summary, rule_rows = rule_figures(rule_lengths, repeats)
    summary.update(rule_summary)
    return make_result("long", "cpu", summary, rows + rule_rows)
