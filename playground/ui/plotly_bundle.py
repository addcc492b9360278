"""Plotly's cartesian bundle in place of the full one that Gradio's Plot component loads.

Every figure on this page is a heatmap, a scatter or a bar chart, all in plotly.js's cartesian partial
bundle (``assets/vendor/plotly-cartesian.min.js``, 1.4 MB, MIT licence beside it). Gradio's Plot
component loads the full bundle (4.6 MB: 3-D, maps, WebGL, finance), and a browser spends more time
evaluating that module than on anything else before the first figure is drawn: 1.6 s against 0.6 s
for the cartesian one on a 2-core machine (``python -m playground.bench app`` shows the page's side).

Gradio's chunk is one ES module: its imports, then plotly.js as a CommonJS factory, then its Svelte
component, which calls ``Plotly.react``. ``chunk`` keeps the imports and the component and puts the
cartesian bundle in the factory's place; ``PartialPlotly``, an ASGI middleware, answers the chunk's own
URL with it, so Gradio's loader, caching and compression are unchanged. Where Gradio's chunk does not
have that shape (another Gradio release), nothing is replaced and the page loads Gradio's own.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path

import gradio as gr

from playground.paths import ASSETS_DIR

BUNDLE = ASSETS_DIR / "vendor" / "plotly-cartesian.min.js"
GRADIO_ASSETS = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
# the trace types in plotly.js's cartesian bundle (its README); the page's figures use only these
TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour", "image",
                    "pie", "scatter", "scatterternary", "violin"})

# where the factory starts: `var p=r(f(((e,t)=>{` (esModule interop of a CommonJS wrapper taking exports, module)
_FACTORY = re.compile(r"var \w+=\w+\(\w+\(\(\((\w+),(\w+)\)=>\{")
# where it ends: the full bundle's last statement, then the wrapper's close and call
_FACTORY_END = re.compile(r"return window\.Plotly=\w+,\w+\}\)\}\)\)\(\)\)")
log = logging.getLogger("playground")


def gradio_chunk(assets: Path = GRADIO_ASSETS) -> Path | None:
    """Gradio's Plotly chunk (``PlotlyPlot-<hash>.js``), or None unless there is exactly one."""
    found = sorted(assets.glob("PlotlyPlot-*.js"))
    return found[0] if len(found) == 1 else None


def splice(chunk: str, bundle: str) -> str:
    """``chunk`` with the plotly.js factory inside it replaced by ``bundle`` (a UMD build that sets
    ``module.exports`` when given a module); ValueError where the chunk does not have the expected shape."""
    start = list(_FACTORY.finditer(chunk))
    end = list(_FACTORY_END.finditer(chunk))
    if len(start) != 1 or len(end) != 1 or start[0].end() > end[0].start():
        raise ValueError("Gradio's Plotly chunk does not have the shape this replacement expects "
                         f"({len(start)} factory starts, {len(end)} ends)")
    exports, module = start[0].groups()
    body = f"var exports={exports},module={module};\n{bundle}\n"
    return chunk[:start[0].end()] + body + chunk[end[0].end() - len("}))())"):]  # the wrapper's close and call


@functools.cache
def chunk() -> tuple[str, bytes] | None:
    """(Gradio's chunk's file name, the same module with the cartesian bundle), or None (logged) where
    it cannot be made; built once per process."""
    path = gradio_chunk()
    if path is None or not BUNDLE.exists():
        log.info("Plotly: Gradio's own bundle (no single PlotlyPlot chunk, or no %s)", BUNDLE.name)
        return None
    try:
        spliced = splice(path.read_text(encoding="utf-8"), BUNDLE.read_text(encoding="utf-8"))
    except ValueError as e:
        log.info("Plotly: Gradio's own bundle (%s)", e)
        return None
    return path.name, spliced.encode("utf-8")


class PartialPlotly:
    """ASGI middleware: a GET or HEAD of Gradio's Plotly chunk gets ``chunk()``; everything else passes."""

    def __init__(self, app):
        self.app = app
        made = chunk()
        self.name, self.body = (made[0], made[1]) if made else (None, b"")
        # the chunk's name carries Gradio's hash, not this body's: browsers revalidate against this tag, so a
        # new vendored bundle reaches them under the same name
        self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:32]}"'.encode()

    async def __call__(self, scope, receive, send):
        if (self.name is None or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD")
                or not scope["path"].endswith("/assets/" + self.name)):
            await self.app(scope, receive, send)
            return
        cached = self.etag in dict(scope["headers"]).get(b"if-none-match", b"")
        body = b"" if cached or scope["method"] == "HEAD" else self.body
        headers = [(b"content-type", b"text/javascript; charset=utf-8"), (b"etag", self.etag),
                   (b"cache-control", b"no-cache"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 304 if cached else 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
