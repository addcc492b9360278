"""The page's speed and payload, measured end to end through ``gradio_client`` (and chromium).

``python -m playground.bench app [--url URL] [--repeats N] [--json]`` starts the app on a free
loopback port (or uses ``--url``) and measures:

- ``analyze_p50_ms``: median wall time of the ``/analyze`` endpoint for a 64-token prompt on the
  baseline model, client to client (tokenize, forward with capture, figures, JSON, transport).
- ``overview_bytes_128``: bytes of the overview figure JSON for a 128-token prompt with 4 layers
  x 8 heads (the figure ``plots.overview`` makes and the page sends; computed with an 8-head
  model of the baseline's shape, since the shipped models have 4 heads), and
  ``overview_bytes_128_app``, the overview the app really sent for the baseline (4 x 4).
- ``long_prompt_1024_ok``: a prompt of more than 1,024 tokens is analyzed, truncated to 1,024
  and downsampled; ``long_prompt_1024_ms`` its time.
- ``browser_render_ms_128``: in Debian chromium, from the click on Analyze to the overview of a
  128-token prompt drawn (median of the repeats after a warm-up); null without chromium.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time

from playground import plots
from playground.bench.browser import free_port, has_chromium, launch
from playground.ui import service
from playground.inspect.analysis import analyze
from playground.config import ModelConfig
from playground.models import build_model
from playground.zoo import BASE_MODEL

PASSAGE = ("To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings and "
           "arrows of outrageous fortune, or to take arms against a sea of troubles and by opposing end them. "
           "To die, to sleep, no more; and by a sleep to say we end the heart-ache and the thousand natural shocks "
           "that flesh is heir to: 'tis a consummation devoutly to be wish'd. To die, to sleep; to sleep, perchance "
           "to dream, ay, there's the rub: for in that sleep of death what dreams may come, when we have shuffled "
           "off this mortal coil, must give us pause. ") * 8
SPEC = "zoo:baseline"  # what the page's default controls resolve to


def prompt_of(n_tokens: int) -> str:
    """A Shakespeare prompt of exactly n_tokens tokens."""
    tok = service.tokenizer()
    text = tok.decode(tok.encode(PASSAGE)[:n_tokens])
    if len(tok.encode(text)) != n_tokens:
        raise ValueError(f"could not build a {n_tokens}-token prompt")
    return text


def _plot_bytes(value) -> int:
    if isinstance(value, dict) and value.get("__type__") == "update":
        value = value["value"]
    plot = value["plot"]
    return len(plot if isinstance(plot, str) else json.dumps(plot))


def overview_bytes(n_tokens: int, n_layer: int = 4, n_heads: int = 8) -> int:
    cfg = ModelConfig(**{**BASE_MODEL, "n_layer": n_layer, "n_heads": n_heads, "n_kv_heads": n_heads})
    result = analyze(build_model(cfg), list(range(4, 4 + n_tokens)))
    return len(plots.overview(result.weights("self"), "self").to_json())


def browser_render_ms(url: str, text: str, other: str, repeats: int) -> float | None:
    """Median ms from the click on Analyze to the overview of ``text`` drawn. Runs alternate with
    ``other`` (a prompt of another length) so each measured render is a new title on screen."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not has_chromium():
        return None
    n, m = (len(service.tokenizer().encode(t)) for t in (text, other))
    times = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, wait_until="load")
        box, button = page.get_by_label("Prompt"), page.get_by_role("button", name="Analyze")
        for i in range(repeats + 1):
            for prompt, size, timed in ((other, m, False), (text, n, i > 0)):  # the first round warms up
                box.fill(prompt)
                start = time.perf_counter()
                button.click()
                page.locator(".js-plotly-plot .gtitle", has_text=f"{size}×{size} tokens").first.wait_for(timeout=60_000)
                if timed:
                    times.append((time.perf_counter() - start) * 1e3)
        browser.close()
    return statistics.median(times)


def bench_app(url: str | None = None, repeats: int = 10, browser: bool = True) -> tuple[dict, list[dict]]:
    """(summary, rows): the measures above, and each timed /analyze call."""
    from gradio_client import Client

    demo = None
    if url is None:
        from playground.ui import LAUNCH, build_app

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_app()
        demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            **LAUNCH)
        url = demo.local_url
    try:
        client = Client(url, verbose=False)
        text64, text128 = prompt_of(64), prompt_of(128)
        client.predict(spec=SPEC, prompt=text64, api_name="/analyze")  # warm-up: loads the model
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.predict(spec=SPEC, prompt=text64, api_name="/analyze")
            times.append((time.perf_counter() - start) * 1e3)
        app_128 = client.predict(spec=SPEC, prompt=text128, api_name="/analyze")
        start = time.perf_counter()
        long_out = client.predict(spec=SPEC, prompt=PASSAGE * 3, api_name="/analyze")
        long_ms = (time.perf_counter() - start) * 1e3
        overview = long_out[1]["value"] if long_out[1].get("__type__") == "update" else long_out[1]
        title = json.loads(overview["plot"])["layout"]["title"]["text"]
        render = browser_render_ms(url, text128, text64, max(1, repeats // 3)) if browser else None
    finally:
        if demo is not None:
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the result alone
                demo.close()
    rows = [{"measure": "analyze_64_ms", "value": round(t, 1)} for t in times]
    summary = {"analyze_p50_ms": round(statistics.median(times), 1),
               "overview_bytes_128": overview_bytes(128), "overview_bytes_128_app": _plot_bytes(app_128[1]),
               "long_prompt_1024_ok": "1024×1024" in title and "max over" in title,
               "long_prompt_1024_ms": round(long_ms, 1), "browser_render_ms_128": render and round(render, 1),
               "model": "baseline" if "baseline" in service.zoo.available() else "untrained", "url": url}
    return summary, rows
