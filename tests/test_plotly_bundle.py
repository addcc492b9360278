"""The page's figures draw with plotly.js's cartesian bundle, served in place of Gradio's full one (in chromium:
test_browser.py::test_the_page_draws_with_plotlys_cartesian_bundle)."""
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from playground.ui import plotly_bundle
from playground.ui.plotly_bundle import TRACES, chunk, gradio_chunk, splice

PLOTS = Path(plotly_bundle.__file__).parents[1] / "plots"
# the shape of Gradio's chunk: imports, the factory (a UMD build inside a CommonJS wrapper), the component
IMPORTS = 'import{a as e,b as r,c as f}from"./index-X.js";import"./core-Y.js";'
COMPONENT = ",m=e(`<div></div>`);function h(n,a){r.default.react(n,a)}export{h as default};"
FULL = ("(function(e,n){typeof t==`object`&&t.exports?t.exports=n():e.moduleName=n()})(self,()=>{var e={full:1};"
        "return window.Plotly=e,e})")


def gradio_shaped(factory: str) -> str:
    return IMPORTS + "var p=r(f(((e,t)=>{" + factory + "}))())" + COMPONENT


def test_splice_puts_the_bundle_in_the_factorys_place_and_keeps_imports_and_component():
    out = splice(gradio_shaped(FULL), "BUNDLE_TEXT")
    assert out.startswith(IMPORTS + "var p=r(f(((e,t)=>{")
    assert out.endswith("}))())" + COMPONENT)
    assert "BUNDLE_TEXT" in out and "full:1" not in out
    # the UMD build finds the wrapper's module and exports under the names it looks for
    assert "var exports=e,module=t;" in out


@pytest.mark.parametrize("chunk_text", [
    IMPORTS + "var p=1;" + COMPONENT,                                 # no factory
    gradio_shaped(FULL) + gradio_shaped(FULL),                        # two
    gradio_shaped(FULL.replace("window.Plotly=e,e", "e")),           # a factory that is not plotly.js
])
def test_a_chunk_of_another_shape_is_refused(chunk_text):
    with pytest.raises(ValueError, match="shape"):
        splice(chunk_text, "BUNDLE_TEXT")


def test_the_installed_gradios_chunk_is_replaced():
    made = chunk()
    assert made is not None, "Gradio's Plotly chunk changed shape: the page would load the full bundle"
    name, body = made
    assert name == gradio_chunk().name
    text = body.decode()
    original = gradio_chunk().read_text()
    assert text.startswith(original[:original.index("=>{") + 3])  # Gradio's own imports and wrapper
    assert text.endswith(original[original.rindex("}))())"):])   # Gradio's own component
    assert "plotly.js (cartesian - minified)" in text
    assert len(body) < len(original.encode()) / 2


def test_without_a_single_gradio_chunk_nothing_is_replaced(tmp_path, monkeypatch):
    assert gradio_chunk(tmp_path) is None
    (tmp_path / "PlotlyPlot-a.js").write_text("")
    (tmp_path / "PlotlyPlot-b.js").write_text("")
    assert gradio_chunk(tmp_path) is None
    monkeypatch.setattr(plotly_bundle, "gradio_chunk", lambda: None)
    chunk.cache_clear()
    try:
        assert chunk() is None
    finally:
        chunk.cache_clear()


def test_every_trace_the_figures_make_is_in_the_bundle():
    made = set()
    for path in PLOTS.glob("*.py"):
        made |= {name.lower() for name in re.findall(r"\bgo\.([A-Z]\w*)\(", path.read_text())}
    made.discard("figure")
    assert made and made <= TRACES, f"not in plotly.js's cartesian bundle: {made - TRACES}"


def test_the_server_hands_out_the_spliced_chunk_and_other_assets_as_they_are(app_url):
    name, body = chunk()
    with urllib.request.urlopen(app_url + "assets/" + name) as r:
        assert r.read() == body
        assert r.headers["content-type"].startswith("text/javascript")
        etag = r.headers["etag"]
    with pytest.raises(urllib.error.HTTPError) as unchanged:  # a browser that holds this body gets 304
        urllib.request.urlopen(urllib.request.Request(app_url + "assets/" + name, headers={"If-None-Match": etag}))
    assert unchanged.value.code == 304
    stale = urllib.request.Request(app_url + "assets/" + name, headers={"If-None-Match": '"another"'})
    with urllib.request.urlopen(stale) as r:
        assert r.read() == body
    other = next(p for p in gradio_chunk().parent.glob("Plot-*.js"))
    with urllib.request.urlopen(app_url + "assets/" + other.name) as r:
        assert r.read() == other.read_bytes()

