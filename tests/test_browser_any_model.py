"""Any transformers architecture in a real browser: a Qwen3-shaped, a BERT-shaped, a Marian-shaped and a
Gemma-3-shaped checkpoint (random weights, written by transformers itself) opened from the operator's directory
through the picker. Each shows its overview with the layer types, a zoomed head, and what its Generate tab does:
generate (Qwen3), fill the mask (BERT), translate with the cross-attention map (Marian)."""
from pathlib import Path

import pytest

from conftest import require
from test_browser import open_advanced, set_prompt, settle, shot, wait_for_plot_title
from test_browser_long import AXES_JS
from test_browser_pretrained import chromium, pg, site  # noqa: F401 (fixtures: the page over this module's operator_dir)

PROMPT = "The keys and values are cached; attention looks back."
MODELS = ("qwen3", "bert", "marian", "gemma3", "gpt_oss")


@pytest.fixture(scope="module")
def operator_dir(tmp_path_factory):
    """$PLAYGROUND_LOCAL_MODELS holding any-<name> for each of MODELS, with a byte-level tokenizer that has [MASK]."""
    require("transformers", "pip install -r requirements-dev.txt")
    from pretrained_fixtures import any_models

    with any_models(Path(tmp_path_factory.mktemp("operator-any")), MODELS, "any") as root:
        yield root


def open_and_analyze(pg, name: str, prompt: str = PROMPT) -> str:
    """Pick local:any-<name>, open it, analyze ``prompt``; returns the model note."""
    spec = f"local:any-{name}"
    open_advanced(pg)
    pg.get_by_label("Or a pretrained model").click()
    pg.get_by_role("option", name=spec).click()
    pg.get_by_role("button", name="Open", exact=True).click()
    pg.locator(".prose.model-note", has_text=f"Pretrained model '{spec}'").wait_for(timeout=30_000)
    note = pg.locator(".prose.model-note").inner_text()
    set_prompt(pg, prompt)
    pg.get_by_role("button", name="Analyze").click()
    pg.locator(".badge", has_text=spec).wait_for(timeout=60_000)
    settle(pg)
    return note


def overview_rows(pg) -> list[str]:
    return pg.evaluate("() => [...document.querySelectorAll('.overview-plot .ytick text')].map(t => t.textContent)")


def box_zoom(pg, x0, y0, x1, y1):
    start, end = pg.evaluate(AXES_JS, [x0, y0]), pg.evaluate(AXES_JS, [x1, y1])
    pg.mouse.move(start["x"], start["y"])
    pg.mouse.down()
    pg.mouse.move(end["x"], end["y"], steps=8)
    pg.mouse.up()


def generate(pg):
    pg.get_by_role("tab", name="Generate & KV cache").click()
    pg.get_by_role("button", name="Generate").click()


def test_a_qwen3_checkpoint_analyzes_zooms_and_generates_through_transformers_own_class(pg):
    note = open_and_analyze(pg, "qwen3")
    assert "model type qwen3" in note and "GQA (4 query heads over 2 K/V heads)" in note
    wait_for_plot_title(pg, "Self-attention (causal)")
    wait_for_plot_title(pg, "layer 0, head 0")
    badge = pg.locator(".badge").inner_text()
    assert "SDPA flash attention (is_causal=True" in badge
    box_zoom(pg, 2, 6, 7, 11)  # a window of the head map: the server answers its exact weights
    pg.wait_for_function("() => { const m = document.querySelector('.head-map .js-plotly-plot')._fullLayout.meta;"
                         " return m && m.rows[0] >= 5 && m.rows[1] <= 13 && m.cols[0] >= 1; }", timeout=60_000)
    shot(pg, "50-any-qwen3-zoomed")
    generate(pg)
    pg.locator(".js-plotly-plot .legendtext", has_text="measured, in use: local:any-qwen3").first.wait_for(
        timeout=60_000)
    legends = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .legendtext')].map(t => t.textContent)")
    assert any("this qwen3, layer by layer" in t for t in legends)
    wait_for_plot_title(pg, "Step 0")
    shot(pg, "51-any-qwen3-generate")


def test_gemma3_shows_which_layers_slide_and_which_see_everything(pg):
    open_and_analyze(pg, "gemma3")
    rows = overview_rows(pg)
    assert "layer 0 · sliding window 5" in rows and "layer 3 · full attention" in rows
    badge = pg.locator(".badge").inner_text()
    assert "layers 0–2 (sliding window 5)" in badge and "layer 3 (full attention)" in badge
    wait_for_plot_title(pg, "layer 0, head 0 · sliding window 5")
    shot(pg, "52-any-gemma3-layer-types")


def test_a_bert_checkpoint_is_bidirectional_and_fills_the_mask(pg):
    note = open_and_analyze(pg, "bert", "The keys and [MASK] are cached; attention looks back.")
    assert "model type bert" in note
    wait_for_plot_title(pg, "Self-attention (bidirectional, encoder-only)")
    shot(pg, "53-any-bert-bidirectional")
    generate(pg)
    info = pg.locator("p", has_text="The model puts there:").first
    info.wait_for(timeout=60_000)
    assert "Mask 0 of 0–0, at token" in info.inner_text()
    wait_for_plot_title(pg, "Mask 0")
    shot(pg, "54-any-bert-fill-mask")


def test_a_marian_checkpoint_translates_and_shows_its_cross_attention(pg):
    open_and_analyze(pg, "marian")
    wait_for_plot_title(pg, "Encoder self-attention (bidirectional)")
    wait_for_plot_title(pg, "Cross-attention")
    badge = pg.locator(".badge").inner_text()
    assert "cross · layers 0–1" in badge
    pg.get_by_label("Attention kind").click()
    pg.get_by_role("option", name="cross").click()
    pg.get_by_role("button", name="Open head").click()
    wait_for_plot_title(pg, "Cross-attention (Q: decoder, K/V: encoder) · layer 0, head 0")
    shot(pg, "55-any-marian-cross")
    ticks = pg.evaluate("() => [...document.querySelectorAll('.head-map .xtick text')].map(t => t.textContent)")
    assert any(t.endswith("The") for t in ticks), ticks  # the source tokens on the key axis
    generate(pg)
    pg.locator(".js-plotly-plot .legendtext", has_text="local:any-marian").first.wait_for(timeout=60_000)
    wait_for_plot_title(pg, "Step 0")
    shot(pg, "56-any-marian-translate")


def test_gpt_oss_shows_each_rows_sink_share_beside_its_keys(pg):
    open_and_analyze(pg, "gpt_oss")
    assert "Attention sinks" in pg.locator(".badge").inner_text()
    wait_for_plot_title(pg, "layer 0, head 0")
    sink = pg.evaluate("""() => { const gd = document.querySelector('.head-map .js-plotly-plot');
        const t = gd._fullData.find(d => d.xaxis === 'x2'); return t && {x: Array.from(t.x), z: Array.from(t.z, r => r[0])}; }""")
    assert sink["x"] == ["sink"] and all(0 < v < 1 for v in sink["z"])
    shot(pg, "57-any-gpt-oss-sinks")
