"""Pretrained models in a real browser: open one from the operator's directory through the picker, and
one from the Hub (tests/hub_server.py standing in for it) with the download's progress bar, then analyze,
open a head and generate. The page runs in this process, so the Hub stand-in's settings reach it."""

import pytest

from conftest import require
from playground.bench.browser import launch
from test_browser import (CELL_JS, SHOTS, badge_text, open_advanced, playwright, set_prompt, settle, shot,
                          wait_for_plot_title)

PROMPT = "The keys and values are cached; attention looks back at every token."


@pytest.fixture(scope="module")
def operator_dir(tmp_path_factory):
    """$PLAYGROUND_LOCAL_MODELS with web-gpt2 and web-llama, set before the page is built."""
    require("transformers", "pip install -r requirements-dev.txt")
    from pretrained_fixtures import operator_models

    with operator_models(tmp_path_factory.mktemp("operator-web"), ("gpt2", "llama"), "web") as root:
        yield root


@pytest.fixture(scope="module")
def site(operator_dir):
    from pretrained_fixtures import served_page

    with served_page() as url:
        yield url


@pytest.fixture(scope="module")
def chromium(site):
    with playwright.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def pg(chromium, site):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.goto(site, wait_until="load")
    page.get_by_role("heading", name="Attention Playground").wait_for()
    settle(page)  # the page's own landing analysis first: a click before it could be answered by its figures
    yield page
    context.close()


def note(page) -> str:
    return page.locator(".prose.model-note").inner_text()


def test_open_a_model_from_the_operator_s_directory_analyze_open_a_head_and_generate(pg):
    open_advanced(pg)
    pg.locator("#local-models-note", has_text="Local model folders: on").wait_for(timeout=60_000)
    assert "2 model folder" in pg.locator("#local-models-note").inner_text()
    pg.get_by_label("Or a pretrained model").click()
    pg.get_by_role("option", name="local:web-llama").click()
    pg.get_by_role("button", name="Open", exact=True).click()
    pg.locator(".prose.model-note", has_text="Pretrained model 'local:web-llama'").wait_for(timeout=30_000)
    assert "model type llama" in note(pg) and "GQA (4 query heads over 2 K/V heads)" in note(pg)
    shot(pg, "30-pretrained-local-opened")
    set_prompt(pg, PROMPT)
    pg.get_by_role("button", name="Analyze").click()
    pg.locator(".badge", has_text="local:web-llama").wait_for(timeout=60_000)
    settle(pg)  # and the head that follows it
    wait_for_plot_title(pg, "Self-attention (causal)")
    wait_for_plot_title(pg, "layer 0, head 0")
    ticks = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .xtick text')].map(t => t.textContent)")
    assert any("␣keys" in t for t in ticks)  # the checkpoint's own byte-level tokens, spaces shown as ␣
    shot(pg, "31-pretrained-local-analyzed")
    at = pg.evaluate(CELL_JS, [1, 2])
    pg.mouse.click(at["x"], at["y"])
    wait_for_plot_title(pg, "layer 1, head 2")
    shot(pg, "32-pretrained-local-head")
    pg.get_by_role("tab", name="Generate & KV cache").click()
    pg.get_by_role("button", name="Generate").click()
    pg.locator(".js-plotly-plot .legendtext", has_text="measured, in use: local:web-llama").first.wait_for(
        timeout=60_000)  # this generation, not the one the page opened with
    wait_for_plot_title(pg, "KV cache")
    wait_for_plot_title(pg, "Step 0")
    legends = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot .legendtext')].map(t => t.textContent)")
    assert "measured, in use: local:web-llama" in legends
    shot(pg, "33-pretrained-local-generate")


def test_open_a_hub_model_shows_the_download_progress_then_the_model(pg, hub_server, operator_dir):
    from hub_server import Repo

    from playground.models.pretrained.budget import parameters_in_folder

    folder = operator_dir / "web-gpt2"
    hub_server.repos["owner/web-gpt2"] = Repo(files={p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()},
                                              parameters={"F32": parameters_in_folder(folder)})
    hub_server.rate = 100_000  # bytes/s: the weights take seconds, long enough to see the bar move
    box = pg.get_by_label("Or a pretrained model")
    box.fill("owner/web-gpt2")  # free text: any Hub id
    box.press("Enter")
    pg.get_by_role("button", name="Open", exact=True).click()
    pg.get_by_text("Downloading owner/web-gpt2").first.wait_for(timeout=30_000)  # the small files are in
    bar = pg.locator(".progress-level-inner, .progress-bar, .eta-bar").first
    bar.wait_for(state="attached", timeout=10_000)
    pg.evaluate("() => window.scrollTo(0, 0)")
    pg.screenshot(path=str(SHOTS / "34-pretrained-hub-progress.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 900})
    print("progress DOM:", pg.evaluate("() => [...document.querySelectorAll('[class*=progress], [class*=eta]')]"
                                       ".map(e => e.className + ' :: ' + (e.textContent || '').slice(0, 80))"))
    pg.locator(".prose.model-note", has_text="Pretrained model 'hf:owner/web-gpt2'").wait_for(timeout=60_000)
    assert "model type gpt2" in note(pg) and "MHA (4 query heads over 4 K/V heads)" in note(pg)
    assert "model.safetensors" in hub_server.downloads()
    set_prompt(pg, PROMPT)
    pg.get_by_role("button", name="Analyze").click()
    pg.locator(".badge", has_text="hf:owner/web-gpt2").wait_for(timeout=60_000)
    settle(pg)
    wait_for_plot_title(pg, "layer 0, head 0")
    shot(pg, "35-pretrained-hub-analyzed")
    # a share link names the Hub id and restores the picker
    pg.get_by_role("button", name="Make a share link").click()
    pg.wait_for_function("() => document.querySelector('#share-link textarea').value.includes('?spec=hf')")
    link = pg.locator("#share-link textarea").input_value()
    assert "spec=hf%3Aowner%2Fweb-gpt2" in link
    other = pg.context.new_page()
    other.goto(link, wait_until="load")
    other.locator(".js-plotly-plot .gtitle", has_text="layer 0, head 0").first.wait_for(timeout=30_000)
    assert "hf:owner/web-gpt2" in other.locator(".badge").inner_text()
    assert other.get_by_label("Or a pretrained model").input_value() == "hf:owner/web-gpt2"
    try:
        other.locator(".prose.model-note", has_text="Pretrained model 'hf:owner/web-gpt2'").wait_for(timeout=60_000)
    finally:
        shot(other, "36-pretrained-share-link")
    other.close()


def test_a_share_link_to_a_hub_model_not_yet_here_shows_its_download_then_its_analysis(pg, hub_server, operator_dir):
    """The link's model is downloaded as the page opens, with the same progress bar as Open, then analyzed."""
    from urllib.parse import urlencode

    from hub_server import Repo

    from playground.models.pretrained.budget import parameters_in_folder

    folder = operator_dir / "web-llama"
    hub_server.repos["owner/linked-llama"] = Repo(
        files={p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()},
        parameters={"F32": parameters_in_folder(folder)})
    hub_server.rate = 100_000  # bytes/s: long enough to see the bar
    link = pg.url.split("?")[0] + "?" + urlencode({"spec": "hf:owner/linked-llama", "prompt": PROMPT})
    other = pg.context.new_page()
    other.goto(link, wait_until="load")
    try:
        other.get_by_text("Downloading owner/linked-llama").first.wait_for(timeout=30_000)
        shot(other, "37-share-link-download")
        other.locator(".badge", has_text="hf:owner/linked-llama").wait_for(timeout=90_000)
    finally:
        shot(other, "38-share-link-downloaded")
    assert "model.safetensors" in hub_server.downloads()
    other.close()


def test_a_hub_refusal_is_a_message(pg, hub_server):
    box = pg.get_by_label("Or a pretrained model")
    box.fill("owner/not-there")
    box.press("Enter")
    pg.get_by_role("button", name="Open", exact=True).click()
    pg.get_by_text("Could not open hf:owner/not-there: No model 'owner/not-there' on the Hub").first.wait_for(
        timeout=30_000)
    shot(pg, "37-pretrained-hub-refused")
    assert SHOTS.is_dir()
