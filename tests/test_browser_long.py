"""A long prompt in a real browser: a pretrained checkpoint (written by transformers, opened from the operator's
directory) analyzes a prompt of more than 4,096 tokens with a progress bar, draws every head's overview, and a
box zoom on one head asks the server for an exact 64 x 64 window whose hover names the right tokens."""
import pytest

from conftest import require
from playground.bench.browser import launch
from test_browser import playwright, set_prompt, settle, shot, wait_for_plot_title

MIN_TOKENS = 4096
# Shakespeare's words and the tests' tokenizer: about 4 tokens a word, so this is well over 4,096 tokens
TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York; and all the clouds "
        "that lour'd upon our house in the deep bosom of the ocean buried. ") * 42

# the head map's geometry, and the page coordinates of a category position on its axes
AXES_JS = """([x, y]) => {
  const gd = document.querySelector('.head-map .js-plotly-plot');
  gd.scrollIntoView({block: 'center'});
  const L = gd._fullLayout, area = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return {x: area.left + L.xaxis.l2p(x), y: area.top + L.yaxis.l2p(y), meta: L.meta};
}"""


@pytest.fixture(scope="module")
def long_model(tmp_path_factory):
    """$PLAYGROUND_LOCAL_MODELS holding long-llama: a 6-layer Llama (GQA 4:2) with 8,192 positions."""
    require("transformers", "pip install -r requirements-dev.txt")
    from pretrained_fixtures import local_models, write_checkpoint

    root = tmp_path_factory.mktemp("operator-long")
    # six layers: six progress updates, spread over seconds even on a fast machine
    write_checkpoint("llama", root / "long-llama", max_position_embeddings=8192, num_hidden_layers=6)
    with local_models(root):
        yield "local:long-llama"


@pytest.fixture(scope="module")
def site(long_model):
    from pretrained_fixtures import served_page

    with served_page() as url:
        yield url


def test_a_long_prompt_shows_progress_every_head_and_zooms_to_exact_weights(long_model, site):
    from playground.ui import service
    from playground.zoo import ModelSpec

    spec = ModelSpec.parse(long_model)
    ids = spec.tokenizer().encode(TEXT)
    assert len(ids) > MIN_TOKENS
    labels = service.labels(spec, ids)
    with playwright.sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
        pg = context.new_page()
        pg.goto(site, wait_until="load")
        pg.get_by_role("heading", name="Attention Playground").wait_for()
        settle(pg)  # the page's own landing analysis first
        pg.get_by_label("Or a pretrained model").click()
        pg.get_by_role("option", name=long_model).click()
        pg.get_by_role("button", name="Open", exact=True).click()
        pg.locator(".prose.model-note", has_text=f"Pretrained model '{long_model}'").wait_for(timeout=30_000)
        set_prompt(pg, TEXT)
        # remember every progress text the page shows while the analysis runs
        pg.evaluate("""() => { window.seenProgress = [];
          new MutationObserver(() => { const t = [...document.querySelectorAll('.progress-text, .progress-level')]
            .map(e => e.textContent).join(' '); if (t.trim()) window.seenProgress.push(t); })
            .observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
        pg.get_by_role("button", name="Analyze").click()
        wait_for_plot_title(pg, f"{len(ids)}×{len(ids)} tokens", timeout=240_000)
        seen = " ".join(pg.evaluate("() => window.seenProgress"))
        assert "attention layer" in seen, seen[:500]
        title = pg.locator(".overview-plot .gtitle").first.text_content()
        assert "max over cells of" in title
        shot(pg, "40-long-prompt-overview")
        # the head map of this analysis (the page opened with another one's): its meta names this prompt's length
        pg.wait_for_function(f"""() => {{ const gd = document.querySelector('.head-map .js-plotly-plot');
            return gd && gd._fullLayout && gd._fullLayout.meta && gd._fullLayout.meta.tokens[0] === {len(ids)}; }}""",
                             timeout=120_000)
        wait_for_plot_title(pg, "layer 0, head 0", timeout=120_000)
        first = pg.evaluate(AXES_JS, [0, 0])["meta"]
        assert first["cell"][0] > 1 and first["rows"] == [0, len(ids)]  # pooled: several tokens a cell
        cell = first["cell"][0]

        def box_zoom(x0, y0, x1, y1):
            """Drag a box on the head map from category position (x0, y0) to (x1, y1), as a person does."""
            start, end = pg.evaluate(AXES_JS, [x0, y0]), pg.evaluate(AXES_JS, [x1, y1])
            pg.mouse.move(start["x"], start["y"])
            pg.mouse.down()
            pg.mouse.move((start["x"] + end["x"]) / 2, (start["y"] + end["y"]) / 2, steps=5)
            pg.mouse.move(end["x"], end["y"], steps=5)
            pg.mouse.up()

        # first zoom: 8 cells a side around query 3000, keys 8 cells to its left: few enough tokens to be exact
        a, n = 3000 // cell, 8
        box_zoom(a - 8, a, a - 8 + n - 1, a + n - 1)  # from the centre of the first cell to that of the last
        pg.wait_for_function("() => { const m = document.querySelector('.head-map .js-plotly-plot')._fullLayout.meta;"
                             " return m && m.cell[0] === 1 && m.cell[1] === 1; }", timeout=60_000)
        meta = pg.evaluate(AXES_JS, [0, 0])["meta"]  # cells are about a pixel wide here: near a * cell, give or take
        assert abs(meta["rows"][0] - a * cell) <= cell and abs(meta["cols"][0] - (a - 8) * cell) <= cell
        assert 64 < meta["rows"][1] - meta["rows"][0] <= 512 and 64 < meta["cols"][1] - meta["cols"][0] <= 512
        # second zoom, on the exact weights: a 64 x 64 window
        box_zoom(2, 3, 2 + 63, 3 + 63)
        want_rows, want_cols = [meta["rows"][0] + 3, meta["rows"][0] + 67], [meta["cols"][0] + 2, meta["cols"][0] + 66]
        pg.wait_for_function("([r, c]) => { const m = document.querySelector('.head-map .js-plotly-plot')._fullLayout"
                             ".meta; return m && m.rows[0] === r[0] && m.rows[1] === r[1] && m.cols[0] === c[0]; }",
                             arg=[want_rows, want_cols], timeout=60_000)
        meta = pg.evaluate(AXES_JS, [0, 0])["meta"]
        r0, c0 = meta["rows"][0], meta["cols"][0]
        assert meta["rows"] == want_rows and meta["cols"] == want_cols and meta["cell"] == [1, 1], meta
        title = pg.locator(".head-map .gtitle").first.text_content()
        assert "max over cells" not in title
        shot(pg, "41-long-prompt-zoomed-exact")
        at = pg.evaluate(AXES_JS, [10, 5])  # key c0 + 10, query r0 + 5
        pg.mouse.move(at["x"], at["y"])
        hover = pg.locator(".hoverlayer .hovertext").first
        hover.wait_for(timeout=10_000)
        text = hover.text_content()
        assert f"query {r0 + 5} {labels[r0 + 5]}" in text and f"key {c0 + 10} {labels[c0 + 10]}" in text, text
        shot(pg, "42-long-prompt-hover")
        context.close()
        browser.close()
