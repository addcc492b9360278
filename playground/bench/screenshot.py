"""The README's screenshot of the page as it opens, made in chromium (``python -m playground.bench.screenshot``).

    python -m playground.bench.screenshot [--out assets/screenshot.png] [--url URL]

Starts the app on a free loopback port (or uses ``--url``), opens it at 1,280 x 1,000 in English, waits for the
landing analysis (the overview and the first head, drawn with no click), scrolls the tab bar to the top and
writes the window (the tabs, the badge and the overview of every head) as a PNG of at most ``MAX_BYTES``
(colours reduced to a palette when the full-colour file is larger). The browser tests make the same picture,
so it is redone whenever the page changes.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from playground.bench.browser import using
from playground.bench.server import AppServer
from playground.paths import ROOT

OUT = ROOT / "assets" / "screenshot.png"
SIZE = (1280, 1000)
MAX_BYTES = 300_000
DRAWN = ".js-plotly-plot .gtitle"


def capture(url: str, out: Path = OUT, size: tuple[int, int] = SIZE, timeout_ms: int = 120_000,
            browser=None) -> int:
    """The page at ``url`` once its landing view is drawn, written to ``out`` as a PNG; its size in bytes.
    ``browser``: a launched playwright browser to use (default: launch chromium for this picture)."""
    from PIL import Image

    with using(browser) as chromium:
        context = chromium.new_context(viewport={"width": size[0], "height": size[1]}, locale="en-US")
        try:
            page = context.new_page()
            page.goto(url, wait_until="load")
            page.locator(f"{DRAWN}:visible", has_text="head 0").first.wait_for(timeout=timeout_ms)
            page.evaluate("() => window.scrollTo(0, document.querySelector('#main-tabs').getBoundingClientRect()"
                          ".top + window.scrollY - 8)")
            page.wait_for_timeout(500)  # the head map's last paint
            png = page.screenshot(full_page=False)
        finally:
            context.close()
    if len(png) > MAX_BYTES:  # a palette of 256 colours: the figures' scales stay smooth enough, text stays sharp
        image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        png = buffer.getvalue()
    if len(png) > MAX_BYTES:
        raise ValueError(f"the screenshot is {len(png):,} bytes, more than {MAX_BYTES:,} even as a palette PNG")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png)
    return len(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m playground.bench.screenshot", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(OUT), help=f"the PNG to write (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--url", default=None, help="a running app (default: start one on a free loopback port)")
    args = parser.parse_args(argv)
    if args.url:
        n = capture(args.url, Path(args.out))
    else:
        with AppServer() as server:
            n = capture(server.url, Path(args.out))
    print(f"wrote {args.out} ({n:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
