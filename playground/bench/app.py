"""The page's speed and payload, measured end to end through ``gradio_client`` (and chromium).

``python -m playground.bench app [--url URL] [--repeats N] [--json]`` starts the app on a free
loopback port (or uses ``--url``) and measures (each time the median of at least 5 repeats, its
spread beside it in ``<name>_spread`` and in the rows: n, min, quartiles, max):

- ``analyze_p50_ms``: wall time of the ``/analyze`` endpoint for a 64-token prompt on the
  baseline model, client to client (tokenize, forward with capture, figures, JSON, transport).
- ``overview_bytes_128``: bytes of the overview figure JSON for a 128-token prompt with 4 layers
  x 8 heads (the figure ``plots.overview`` makes and the page sends; computed with an 8-head
  model of the baseline's shape, since the shipped models have 4 heads), and
  ``overview_bytes_128_app``, the overview the app really sent for the baseline (4 x 4).
- ``long_prompt_1024_ok``: a prompt of more than 1,024 tokens is analyzed whole (up to the page's
  8,192 on a CPU) and its overview pooled into cells; ``long_prompt_1024_ms`` its time.
- ``browser_render_ms_128`` and ``browser_render_ms_1024``: in Debian chromium, from the click on
  Analyze (the click event's time stamp) to the first animation frame that shows the overview of
  a 128- (1,024-) token prompt, timed inside the page, after one warm-up of each; the two sizes
  alternate, so each render puts a new title on screen, and the page settles (the head that
  follows a short prompt drawn) before the next click. ``browser_storage_bytes``: what
  the page left in the browser's localStorage after them. All null without chromium.
- ``landing_overview_ms`` (target <= 3,000): a fresh browser context opens the page and nothing is clicked;
  from navigation start to the frame that first shows the overview of the default prompt's analysis (the
  server analyzes it while it builds the page, so the page arrives with it; after one warm-up visit).
  ``landing_boot_ms``, from the same visits: to the tab bar, Gradio's own start; what follows it until the
  overview is the figure's (Plotly loaded and drawing) and the page's other work.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time

from playground import plots, zoo
from playground.bench.browser import available, free_port, using
from playground.nn.timing import MIN_REPEATS, spread
from playground.ui import service
from playground.inspect.analysis import analyze
from playground.config import ModelConfig
from playground.models import build_model
from playground.zoo import BASE_MODEL, ModelSpec

PASSAGE = ("To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer the slings and "
           "arrows of outrageous fortune, or to take arms against a sea of troubles and by opposing end them. "
           "To die, to sleep, no more; and by a sleep to say we end the heart-ache and the thousand natural shocks "
           "that flesh is heir to: 'tis a consummation devoutly to be wish'd. To die, to sleep; to sleep, perchance "
           "to dream, ay, there's the rub: for in that sleep of death what dreams may come, when we have shuffled "
           "off this mortal coil, must give us pause. ") * 8
SPEC = "zoo:baseline"  # what the page's default controls resolve to


def analyze_call(client, text: str):
    """The page's /analyze endpoint on the baseline model's controls: its outputs (badge, overviews, ...)."""
    return client.predict(spec=SPEC, prompt=text, api_name="/analyze")


def _whole_and_pooled(title: str, more_than: int) -> bool:
    """Whether an overview's title says it shows more than ``more_than`` tokens, pooled into cells."""
    found = re.search(r"(\d+)×(\d+) tokens", title)
    return bool(found) and int(found.group(1)) > more_than and "max over cells" in title


def prompt_of(n_tokens: int) -> str:
    """A Shakespeare prompt of exactly n_tokens tokens."""
    tok = ModelSpec.parse(SPEC).tokenizer()
    text = tok.decode(tok.encode(PASSAGE * 2)[:n_tokens])
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
    return plots.overview_bytes(result)


BUSY = ".eta-bar, .pending, .generating"  # Gradio's marks of an event still running
ERROR_TOAST = ".toast-body.error"  # Gradio's notice of an event that raised
DRAWN_OR_REFUSED = f".js-plotly-plot .gtitle, {ERROR_TOAST}"
# the page's own mark that every tab's first view is in, after its landing (``ui.FIRST_VIEWS_DRAWN``), or a refusal
ALL_IN_OR_REFUSED = f"html[data-first-views='drawn'], {ERROR_TOAST}"
# In the page: a click on a button while window.__expect names a title starts a clock at the click event's own
# time stamp; each animation frame then looks for an overview title holding that text, and the first frame that
# has it stops the clock. Timing inside the page leaves out playwright's own round trips (its checks before a
# click, its polling for a selector), which on a busy 2-core machine add 150-350 ms that are not the page's.
CLOCK_JS = """(() => {
  window.__expect = null;
  document.addEventListener('click', e => {
    const want = window.__expect;
    if (!want || !e.target.closest('button')) return;
    const t0 = e.timeStamp;
    window.__expect = null; window.__drawn_ms = null;
    const look = () => {
      for (const el of document.querySelectorAll('.js-plotly-plot .gtitle'))
        if (el.textContent.includes(want)) { window.__drawn_ms = performance.now() - t0; return; }
      requestAnimationFrame(look);
    };
    requestAnimationFrame(look);
  }, true);
})()"""


def title_of(n_tokens: int) -> str:
    """What the overview's title, and no other figure's, says of an n-token prompt (the block-mask figure's
    "tiles of 128×128 tokens" must not stop the clock)."""
    return f"· {n_tokens}×{n_tokens} tokens"


def browser_render_ms(url: str, texts: dict[int, str], repeats: int,
                      query: str = "") -> tuple[dict[int, list[float]], int] | None:
    """({n_tokens: ms from the click on Analyze to the frame that first shows that overview, per repeat},
    localStorage bytes afterwards); None without chromium. ``texts``: a prompt of each size, rendered in turn.
    ``query``: a share link's query string (``spec=local:gpt2&prompt=...``): the page opens on it, and its
    analysis is drawn before the first click, which then runs the model the link named."""
    if not available():
        return None
    times: dict[int, list[float]] = {n: [] for n in texts}
    with using() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(CLOCK_JS)
        page.goto(f"{url}?{query}" if query else url, wait_until="load")
        if query:  # the link's own analysis: drawn (or refused), and every event after it finished
            page.wait_for_function(f"() => document.querySelector({DRAWN_OR_REFUSED!r})", timeout=120_000)
            refused = page.query_selector(ERROR_TOAST)
            if refused is not None:
                raise RuntimeError(f"the page refused the link {query[:80]}...: {refused.inner_text().strip()}")
            page.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=120_000)
        box, button = page.get_by_label("Prompt"), page.get_by_role("button", name="Analyze")
        for i in range(repeats + 1):  # the first round warms up
            for n, text in texts.items():
                box.fill(text)
                page.evaluate("title => { window.__expect = title; }", title_of(n))
                button.click()
                page.wait_for_function("() => window.__drawn_ms != null", timeout=60_000)
                if i > 0:
                    times[n].append(page.evaluate("() => window.__drawn_ms"))
                page.wait_for_timeout(300)  # let the events that follow the overview start, then finish
                page.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=60_000)
        stored = page.evaluate("() => Object.keys(localStorage).reduce((n, k) => n + k.length"
                               " + localStorage.getItem(k).length, 0)")
    return times, stored


LANDING_JS = """window.__landing = {};
new MutationObserver((_, observer) => {
  const marks = window.__landing, now = performance.now();
  if (marks.boot == null && document.querySelector('#main-tabs [role="tab"], #main-tabs button')) marks.boot = now;
  if (document.querySelector('.overview-plot .js-plotly-plot .gtitle')) {
    marks.overview = now; observer.disconnect(); }
}).observe(document, {subtree: true, childList: true});"""


def landing_ms(url: str, repeats: int, browser=None) -> dict[str, list[float]] | None:
    """From navigation start, in a fresh context each time (after one warm-up visit), nothing clicked:
    ``landing_boot_ms`` to the tab bar (Gradio's own boot) and ``landing_overview_ms`` to the overview drawn;
    None without chromium. ``browser``: a launched playwright browser (default: launch one)."""
    if browser is None and not available():
        return None
    times: dict[str, list[float]] = {"landing_boot_ms": [], "landing_overview_ms": []}
    with using(browser) as chromium:
        for i in range(repeats + 1):
            context = chromium.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.add_init_script(LANDING_JS)
            page.goto(url, wait_until="load")
            page.wait_for_function("() => window.__landing.overview != null", timeout=120_000)
            if i > 0:
                marks = page.evaluate("() => window.__landing")
                times["landing_boot_ms"].append(marks["boot"])
                times["landing_overview_ms"].append(marks["overview"])
            context.close()
    return times


def bench_app(url: str | None = None, repeats: int = 10, browser: bool = True) -> tuple[dict, list[dict]]:
    """(summary, rows): the measures above; a row per timed measure with its spread and samples."""
    from gradio_client import Client

    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be at least {MIN_REPEATS}, got {repeats}")
    demo = None
    if url is None:
        from playground.ui import build_app, launch_options, queue_options

        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        demo = build_app()
        demo.queue(**queue_options()).launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            **launch_options())
        url = demo.local_url
    samples: dict[str, list[float]] = {}

    def timed(name: str, text: str):
        if demo is not None:  # the page's own store would answer a repeat from memory: time the computation
            service.ANALYSES.clear()
        start = time.perf_counter()
        out = analyze_call(client, text)
        samples.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
        return out

    try:
        client = Client(url, verbose=False)
        text64, text128, text1024 = prompt_of(64), prompt_of(128), prompt_of(1024)
        analyze_call(client, text64)  # warm-up: loads the model
        for _ in range(repeats):
            timed("analyze_64_ms", text64)
        app_128 = analyze_call(client, text128)
        for _ in range(MIN_REPEATS):
            long_out = timed("long_prompt_1024_ms", PASSAGE * 3)
        overview = long_out[1]["value"] if long_out[1].get("__type__") == "update" else long_out[1]
        title = json.loads(overview["plot"])["layout"]["title"]["text"]
        rendered = browser_render_ms(url, {128: text128, 1024: text1024}, max(MIN_REPEATS, repeats // 2)) \
            if browser else None
        landing = landing_ms(url, max(MIN_REPEATS, repeats // 2)) if browser else None
    finally:
        if demo is not None:
            with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the result alone
                demo.close()
    if rendered is not None:
        for n, ms in rendered[0].items():
            samples[f"browser_render_ms_{n}"] = ms
    if landing:
        samples.update(landing)
    samples = {name: [round(v, 1) for v in values] for name, values in samples.items()}
    spreads = {name: spread(values) for name, values in samples.items()}
    rows = [{"measure": name, **s, "samples": samples[name]} for name, s in spreads.items()]

    def median(name: str) -> float | None:
        return round(spreads[name]["median"], 1) if name in spreads else None

    def rounded(name: str) -> dict | None:
        return {k: round(v, 1) for k, v in spreads[name].items()} if name in spreads else None

    summary = {"analyze_p50_ms": median("analyze_64_ms"), "analyze_p50_ms_spread": rounded("analyze_64_ms"),
               "overview_bytes_128": overview_bytes(128), "overview_bytes_128_app": _plot_bytes(app_128[1]),
               "long_prompt_1024_ok": _whole_and_pooled(title, 1024),
               "long_prompt_1024_ms": median("long_prompt_1024_ms"),
               "long_prompt_1024_ms_spread": rounded("long_prompt_1024_ms")}
    for n in (128, 1024):
        summary[f"browser_render_ms_{n}"] = median(f"browser_render_ms_{n}")
        summary[f"browser_render_ms_{n}_spread"] = rounded(f"browser_render_ms_{n}")
    for name in ("landing_overview_ms", "landing_boot_ms"):
        summary[name] = median(name)
        summary[f"{name}_spread"] = rounded(name)
    summary.update(browser_storage_bytes=rendered and rendered[1],
                   model="baseline" if "baseline" in zoo.available() else "untrained", url=url)
    return summary, rows
