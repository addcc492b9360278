"""The page in a real browser (Debian chromium through playwright): type, click, look."""
import os
import shutil
from pathlib import Path

import pytest

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path(__file__).parent / "artifacts"

if not os.path.exists(CHROMIUM):
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def page(app_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        dialogs = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.dialogs = dialogs
        pg.goto(app_url, wait_until="load")
        pg.get_by_role("heading", name="Attention Playground").wait_for()
        yield pg
        browser.close()


def shot(page, name):
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def set_prompt(page, text):
    box = page.get_by_label("Prompt")
    box.fill(text)


def badge_text(page):
    return page.locator(".badge").inner_text()


def wait_for_plot_title(page, text, timeout=30_000):
    page.locator(".js-plotly-plot .gtitle", has_text=text).first.wait_for(timeout=timeout)


def pick(page, label, option):
    page.get_by_label(label).click()
    page.get_by_role("option", name=option).click()


def test_type_analyze_and_see_the_overview(page):
    set_prompt(page, "To be, or not to be, that is the question")
    page.get_by_role("button", name="Analyze").click()
    wait_for_plot_title(page, "Self-attention (causal)")
    assert "Kernel that ran" in badge_text(page)
    assert page.locator(".js-plotly-plot").count() >= 4  # overview, head, mask, overlay
    shot(page, "01-analyze")


def test_switch_variant_and_position_changes_the_model(page):
    before = page.locator(".prose.model-note").inner_text()
    page.get_by_label("MQA (1 K/V head)").check()
    pick(page, "Position encoding", "ALiBi")
    page.wait_for_function("(b) => document.querySelector('.prose.model-note').innerText !== b", arg=before)
    note = page.locator(".prose.model-note").inner_text()
    assert "MQA" in note or "mqa" in note or "alibi" in note
    page.get_by_role("button", name="Analyze").click()
    page.wait_for_timeout(300)
    wait_for_plot_title(page, "Self-attention")
    shot(page, "02-mqa-alibi")


def test_open_a_head(page):
    page.get_by_role("button", name="Open head").click()
    wait_for_plot_title(page, "layer 0, head 0")
    assert page.locator(".js-plotly-plot .xtick").count() > 3  # token labels on the axis


def test_html_prompt_is_shown_as_text(page):
    set_prompt(page, "<img src=x onerror=alert(1)><b>bold</b>")
    page.get_by_role("button", name="Analyze").click()
    page.wait_for_timeout(500)
    wait_for_plot_title(page, "Self-attention")
    page.get_by_role("button", name="Open head").click()
    page.locator(".js-plotly-plot .xtick text", has_text="<").first.wait_for(timeout=20_000)
    assert page.dialogs == []
    assert page.locator("img[src='x']").count() == 0


def test_generate_and_scrub_the_timeline(page):
    set_prompt(page, "Now is the winter of our discontent")
    page.get_by_role("tab", name="Generate & KV cache").click()
    page.get_by_role("button", name="Generate").click()
    wait_for_plot_title(page, "KV cache")
    wait_for_plot_title(page, "Step 0")
    step = page.get_by_label("number input for Step")
    step.fill("5")
    step.press("Enter")
    wait_for_plot_title(page, "Step 5")
    assert "Step 5" in page.get_by_text("cache holds").inner_text()
    shot(page, "03-generate")


def test_empty_prompt_shows_a_message_and_page_stays_usable(page):
    page.get_by_role("tab", name="Attention").click()
    set_prompt(page, "   ")
    page.get_by_role("button", name="Analyze").click()
    page.get_by_text("The prompt is empty").first.wait_for(timeout=15_000)
    set_prompt(page, "Friends, Romans, countrymen")
    page.get_by_role("button", name="Analyze").click()
    wait_for_plot_title(page, "Self-attention")
