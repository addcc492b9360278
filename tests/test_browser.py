"""The page in a real browser (Debian chromium through playwright): type, click, look."""
import contextlib
import io
import re
from pathlib import Path

import pytest

from conftest import require, require_binary
from playground.bench.app import BUSY
from playground.bench.browser import CHROMIUM, INSTALL, launch

playwright = require("playwright.sync_api", "pip install -r requirements-dev.txt")
require_binary(CHROMIUM, INSTALL)
SHOTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def browser(app_url):
    with playwright.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True, locale="en-US")
    pg = context.new_page()
    dialogs = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs
    pg.goto(app_url, wait_until="load")
    pg.get_by_role("heading", name="Attention Playground").wait_for()
    settle(pg)
    yield pg
    context.close()


@contextlib.contextmanager
def fresh_page(browser, app_url, locale="en-US", width=1400):
    """A new browser context in ``locale`` with the page loaded; closed afterwards even if the test fails."""
    context = browser.new_context(viewport={"width": width, "height": 1000}, locale=locale)
    try:
        pg = context.new_page()
        pg.goto(app_url, wait_until="load")
        settle(pg)
        yield pg
    finally:
        context.close()


def settle(pg, timeout=120_000):
    """Wait for what the page draws on its own when it opens (the landing analysis and its first head, the
    default generation): a click before that could be answered by the landing's figures. The page says when
    the last of them is in (``html[data-first-views="drawn"]``)."""
    from playground.bench.app import BUSY

    pg.locator(".head-map .js-plotly-plot .gtitle").first.wait_for(timeout=timeout)
    pg.wait_for_function("() => document.documentElement.dataset.firstViews === 'drawn'", timeout=timeout)
    pg.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=timeout)


def shot(page, name):
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def set_prompt(page, text):
    box = page.get_by_label("Prompt")
    box.fill(text)


def badge_text(page):
    return page.locator(".badge").inner_text()


OVERVIEW_TITLE_JS = "() => document.querySelector('.overview-plot .gtitle')?.textContent || ''"


def wait_for_plot_title(page, text, timeout=60_000):
    page.locator(".js-plotly-plot .gtitle:visible", has_text=text).first.wait_for(timeout=timeout)


def open_advanced(page):
    """Unfold the model box's Advanced fold (fallback, backend, device, dtype, local folders) if it is folded."""
    if not page.locator("#local-models-note").is_visible():
        page.locator("#advanced-controls").get_by_text("Advanced:").first.click()
        page.locator("#local-models-note").wait_for()


def analyze_and_wait(page, timeout=60_000):
    """Press Analyze and wait until the overview on screen is a new one (not the landing's or the last one)."""
    read = "() => document.querySelector('.overview-plot .gtitle')?.textContent || ''"
    before = page.evaluate(read)
    page.get_by_role("button", name="Analyze").click()
    page.wait_for_function(f"() => ({read})() !== {before!r}", timeout=timeout)


def pick(page, label, option):
    page.get_by_label(label).click()
    page.get_by_role("option", name=option).click()


def test_type_analyze_and_see_the_overview(page):
    set_prompt(page, "To be, or not to be, that is the question")
    page.get_by_role("button", name="Analyze").click()
    wait_for_plot_title(page, "Self-attention (causal)")
    wait_for_plot_title(page, "layer 0, head 0")  # the head follows the overview
    assert "Kernel that ran" in badge_text(page)
    assert page.locator(".js-plotly-plot").count() >= 4  # overview, head, mask, overlay
    shot(page, "01-analyze")


def test_switch_variant_and_position_changes_the_model(page):
    before = page.locator(".prose.model-note").inner_text()
    page.get_by_label("MQA (1 K/V head)").check()
    pick(page, "Position encoding", "ALiBi")
    page.wait_for_function("(b) => document.querySelector('.prose.model-note').innerText !== b", arg=before)
    note = page.locator(".prose.model-note").inner_text()
    assert "MQA" in note  # the note names the picked variant, whether it shows the exact model or the nearest one
    spec = note.split("·")[0].split(":", 1)[1].strip()  # "Model: <spec> · <sentence>"
    assert spec not in badge_text(page)  # the landing ran another model
    page.get_by_role("button", name="Analyze").click()
    page.locator(".badge", has_text=spec).wait_for(timeout=60_000)  # this analysis, not the landing's
    wait_for_plot_title(page, "Self-attention")
    shot(page, "02-mqa-alibi")


def test_open_a_head(page):
    page.get_by_role("button", name="Open head").click()
    wait_for_plot_title(page, "layer 0, head 0")
    assert page.locator(".js-plotly-plot .xtick").count() > 3  # token labels on the axis


CELL_JS = """([layer, head]) => {
  const gd = document.querySelector('.overview-plot .js-plotly-plot');
  gd.scrollIntoView({block: 'center'});
  const L = gd._fullLayout, m = L.meta;
  const row = layer * (m.rows + m.gap) + Math.floor(m.rows / 2), col = head * (m.cols + m.gap) + Math.floor(m.cols / 2);
  const area = gd.querySelector('.nsewdrag').getBoundingClientRect();
  return {x: area.left + L.xaxis.l2p(col), y: area.top + L.yaxis.l2p(row)};
}"""


def test_click_an_overview_cell_to_open_its_head(page):
    at = page.evaluate(CELL_JS, [2, 3])
    page.mouse.click(at["x"], at["y"])
    wait_for_plot_title(page, "layer 2, head 3")
    assert page.get_by_label("number input for Layer", exact=True).first.input_value() == "2"
    assert page.get_by_label("number input for Head", exact=True).first.input_value() == "3"
    shot(page, "03b-click-opens-head")


def test_html_prompt_is_shown_as_text(page):
    set_prompt(page, "<img src=x onerror=alert(1)><b>bold</b>")
    before = page.evaluate(OVERVIEW_TITLE_JS)
    page.get_by_role("button", name="Analyze").click()
    page.wait_for_function(f"() => ({OVERVIEW_TITLE_JS})() !== {before!r}", timeout=60_000)  # this prompt's length
    wait_for_plot_title(page, "Self-attention")
    page.get_by_role("button", name="Open head").click()
    page.locator(".js-plotly-plot .xtick text", has_text="<").first.wait_for(timeout=20_000)
    assert page.dialogs == []
    assert page.locator("img[src='x']").count() == 0


def test_generate_and_scrub_the_timeline(page):
    set_prompt(page, "Now is the winter of our discontent")
    page.get_by_role("tab", name="Generate & KV cache").click()
    output = page.get_by_label("Generated text")
    landing = output.input_value()  # the generation the page opened with, for the default prompt
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("(before) => { const t = [...document.querySelectorAll('label')].find(l => "
                           "l.innerText.startsWith('Generated text'))?.querySelector('textarea'); "
                           "return t && t.value && t.value !== before; }", arg=landing, timeout=60_000)
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
    page.get_by_text("The prompt is empty").first.wait_for(timeout=60_000)
    set_prompt(page, "Friends, Romans, countrymen")
    page.get_by_role("button", name="Analyze").click()
    wait_for_plot_title(page, "Self-attention")


def test_make_a_share_link_and_open_it(page, app_url):
    page.get_by_role("tab", name="Attention").click()
    set_prompt(page, "Friends, Romans, countrymen")
    page.get_by_role("button", name="Make a share link").click()
    box = page.locator("#share-link textarea")
    page.wait_for_function("() => document.querySelector('#share-link textarea').value.includes('?spec=')")
    assert "prompt=Friends" in box.input_value() and "spec=zoo%3A" in box.input_value()
    other = page.context.new_page()
    other.goto(box.input_value(), wait_until="load")  # the link just made restores the same analysis
    other.locator(".js-plotly-plot .gtitle", has_text="layer 0, head 0").first.wait_for(timeout=30_000)
    assert other.get_by_label("Prompt").input_value() == "Friends, Romans, countrymen"
    other.goto(app_url + "?spec=untrained:decoder/MQA/alibi&prompt=Hello+there+my+friend&window=2&kind=self"
                         "&layer=1&head=2&backend=explicit&dtype=bfloat16", wait_until="load")
    other.locator(".js-plotly-plot .gtitle", has_text="layer 1, head 2").first.wait_for(timeout=30_000)
    badge = other.locator(".badge").inner_text()
    assert "untrained:decoder/MQA/alibi" in badge and "explicit" in badge and "UNTRAINED" in badge
    assert "bfloat16" in badge  # the link's dtype, not the page's default
    other.locator(".prose.model-note", has_text="untrained:decoder/MQA/alibi").wait_for(timeout=60_000)
    # a link made before specs existed still opens: its choices resolve like the controls do
    link = app_url + "?arch=prefix&variant=MHA&pe=rope&prompt=Hello+there+my+friend&prefix=2&window=0" \
                     "&kind=self&layer=1&head=2&task=&fallback=nearest&backend=explicit"
    other.goto(link, wait_until="load")
    other.locator(".js-plotly-plot .gtitle", has_text="layer 1, head 2").first.wait_for(timeout=30_000)
    assert other.get_by_label("Prompt").input_value() == "Hello there my friend"
    assert "explicit" in other.locator(".badge").inner_text()
    assert "zoo:prefix" in other.locator(".badge").inner_text()
    shot(other, "04-shared-link")
    other.goto(app_url + "?spec=zoo:gpt5&prompt=Hi", wait_until="load")
    other.get_by_text("No zoo model is named 'gpt5'").first.wait_for(timeout=60_000)
    other.close()


def test_export_downloads_json_and_npz(page, tmp_path):
    import json

    import numpy as np

    page.get_by_text("Export", exact=True).click()
    page.get_by_role("button", name="Prepare data files").click()
    links = page.locator("a", has_text="KB")  # the file list's download links: attention.json, attention.npz
    links.nth(1).wait_for(timeout=20_000)
    downloads = {}
    for i in range(2):
        with page.expect_download() as info:
            links.nth(i).click()
        downloads[info.value.suggested_filename] = info.value.path()
    data = json.loads(open(downloads["attention.json"]).read())
    assert data["maps"] and data["labels"]
    arrays = np.load(downloads["attention.npz"])
    assert arrays["self_weights"].ndim == 4 and arrays["self_mask"].dtype == bool


def test_head_insights_tab(page):
    page.get_by_role("tab", name="Head insights").click()
    page.get_by_role("button", name="Score every head").click()
    table = page.locator("#head-table")
    table.get_by_text("first-token sink").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#head-table').innerText.includes('0.')")
    box = table.bounding_box()  # the grid's cells report as hidden to playwright: click where row 1 is drawn
    page.mouse.click(box["x"] + 300, box["y"] + 95)
    wait_for_plot_title(page, "layer 0, head 0")
    shot(page, "05-heads")


def test_position_and_kernel_labs(page):
    page.get_by_role("tab", name="Labs").click()
    page.get_by_role("tab", name="Position-encoding lab").click()
    wait_for_plot_title(page, "Validation loss by position")
    wait_for_plot_title(page, "RoPE: q·k depends only on the offset")
    shot(page, "06-position-lab")
    page.get_by_role("tab", name="Kernel lab").click()
    page.get_by_label("1024").uncheck()
    page.get_by_role("button", name="Run the kernels").click()
    page.get_by_text("A plain SDPA call runs").wait_for(timeout=60_000)
    assert page.get_by_text("PyTorch's CPU dispatcher has only the flash and math kernels").count() >= 1
    shot(page, "07-kernel-lab")


def test_rwkv_shows_implicit_attention_and_disables_what_does_not_apply(page):
    page.get_by_role("tab", name="Attention").click()
    pick(page, "Architecture", "RWKV-5.2 (linear-attention RNN)")
    page.get_by_text("the recurrence itself carries token order").wait_for(timeout=60_000)
    assert page.get_by_label("Position encoding").is_disabled()
    open_advanced(page)
    page.get_by_label("untrained (random weights)").check()
    set_prompt(page, "To be, or not to be, that is the question")
    page.get_by_role("button", name="Analyze").click()
    wait_for_plot_title(page, "RWKV-5 implicit attention")
    assert "reproduces the mixer's output" in badge_text(page)
    shot(page, "08-rwkv")
    pick(page, "Architecture", "Decoder-only (GPT, LLaMA)")
    page.get_by_label("nearest shipped model").check()
    page.wait_for_function("() => !document.body.innerText.includes('the recurrence itself carries token order')")
    assert page.get_by_label("Position encoding").is_enabled()


def test_train_in_the_page_and_cancel(page):
    page.get_by_role("tab", name="Train").click()
    steps = page.get_by_label("number input for Steps")
    steps.fill("300")
    steps.press("Enter")
    page.get_by_label("Name", exact=True).fill("browser-run")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("browser-run").first.wait_for(timeout=60_000)  # progress text appears
    wait_for_plot_title(page, "Loss while training")
    shot(page, "09-train")
    page.get_by_role("button", name="Cancel").click()


def test_a_chinese_browser_gets_the_page_in_chinese(browser, app_url):
    with fresh_page(browser, app_url, "zh-CN") as pg:
        pg.get_by_role("heading", name="注意力游乐场 Attention Playground").wait_for()
        pg.get_by_role("tab", name="生成与 KV 缓存").wait_for()
        pg.locator(".prose.model-note", has_text="模型：").wait_for(timeout=60_000)  # written by the server
        pg.get_by_label("提示词").fill("To be, or not to be, that is the question")
        pg.get_by_role("button", name="分析").click()
        wait_for_plot_title(pg, "自注意力（因果）")
        wait_for_plot_title(pg, "层 0，头 0")
        assert "实际运行的算子" in pg.locator(".badge").inner_text()
        shot(pg, "14-zh-analyze")
        pg.get_by_label("提示词").fill("   ")
        pg.get_by_role("button", name="分析").click()
        pg.get_by_text("提示词为空：请输入一些文字（或选择一个示例）。").wait_for(timeout=60_000)
        pg.get_by_role("tab", name="模型库").click()
        pg.get_by_text("不同之处").first.wait_for(timeout=60_000)
        pg.get_by_text("仅解码器，MHA，RoPE（参照基准）").first.wait_for()
        shot(pg, "15-zh-zoo")


def test_a_chinese_reader_never_sees_the_english_views_the_page_was_built_with(browser, app_url):
    """The page is built in English; a Chinese reader's views wait, hidden, until the server has sent them in
    Chinese. Every animation frame records the overview's title and whether it is visible."""
    record = """() => { window.__titles = []; const look = () => {
        const t = document.querySelector('.overview-plot .gtitle');
        if (t) { const shown = getComputedStyle(t.closest('.js-plotly-plot')).visibility !== 'hidden';
                 const seen = (shown ? 'shown: ' : 'hidden: ') + t.textContent;
                 if (window.__titles.at(-1) !== seen) window.__titles.push(seen); }
        requestAnimationFrame(look); }; requestAnimationFrame(look); }"""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    try:
        pg = context.new_page()
        pg.add_init_script(f"({record})()")
        pg.goto(app_url, wait_until="load")
        pg.wait_for_function("() => (window.__titles || []).some(t => t.startsWith('shown: 自注意力'))",
                             timeout=60_000)
        titles = pg.evaluate("() => window.__titles")
        assert not [t for t in titles if t.startswith("shown: Self-attention")], titles
        # the first overview drawn was hidden (the English one, or the Chinese one before the page showed it),
        # or already the Chinese one
        assert titles[0].startswith("hidden: ") or titles[0].startswith("shown: 自注意力"), titles
    finally:
        context.close()


def test_switch_to_chinese_in_settings(browser, app_url):
    with fresh_page(browser, app_url, "en-US", width=1700) as pg:  # every tab in the bar, in both languages
        pg.get_by_role("heading", name="Attention Playground").wait_for()
        pg.locator(".prose.model-note", has_text="Model:").wait_for(timeout=60_000)
        pg.get_by_role("button", name="Analyze").click()
        wait_for_plot_title(pg, "layer 0, head 0")
        pg.get_by_role("tab", name="Model zoo").click()
        pg.get_by_text("what differs").first.wait_for(timeout=60_000)
        pg.locator("button.settings").click()
        pg.get_by_label("Language", exact=True).click()
        pg.get_by_role("option", name="简体中文").click()
        pg.get_by_role("tab", name="模型库").wait_for()
        # what the server wrote follows the switch: the model note and the zoo table's headers
        pg.locator(".prose.model-note", has_text="模型：").wait_for(timeout=60_000)
        pg.get_by_text("不同之处").first.wait_for(timeout=60_000)
        pg.locator(".backdrop").click(position={"x": 20, "y": 20})  # close the settings panel
        pg.get_by_role("tab", name="注意力", exact=True).click()
        # the analysis on screen is drawn again in Chinese, without analyzing again
        wait_for_plot_title(pg, "自注意力（因果） · 层 0，头 0")
        assert "实际运行的算子" in pg.locator(".badge").inner_text()
        for name in ("单个注意力头内部", "生成与 KV 缓存", "注意力头洞察", "对比", "实验室", "训练"):
            pg.get_by_role("tab", name=name).wait_for(timeout=60_000)  # every tab renamed, not just the open one
        pg.get_by_role("button", name="分析").click()
        wait_for_plot_title(pg, "自注意力（因果）")
        wait_for_plot_title(pg, "层 0，头 0")
        shot(pg, "16-settings-zh")


def test_tabs_open_filled_and_say_which_controls_they_use(browser, app_url):
    with fresh_page(browser, app_url, "en-US") as pg:
        pg.get_by_text("for the Attention, Generate & KV cache and Head insights tabs").wait_for()  # above the controls
        pg.get_by_role("tab", name="Labs").click()
        pg.get_by_role("tab", name="KV-cache calculator").click()
        pg.get_by_text("Ignores the model controls above: the KV-cache size").wait_for()
        # the default preset's chart and table, computed when the page loaded: Compute was never pressed
        wait_for_plot_title(pg, "KV cache for batch 1 × 8,192 tokens (bf16)")
        table = "document.querySelector('#calc-table').innerText"
        before = pg.evaluate(f"() => {table}")
        assert "bytes per token" in before and "MQA (1 K/V head)" in before
        shot(pg, "17-calculator-on-load")
        pg.get_by_label("Preset (published configurations)").click()
        pg.get_by_role("option").nth(0).click()  # another preset: its numbers follow without a click on Compute
        pg.wait_for_function(f"(before) => {table} !== before && {table}.includes('bytes per token')", arg=before)
        pg.get_by_role("tab", name="Labs").click()
        pg.get_by_role("tab", name="Kernel lab").click()
        pg.get_by_text("Nothing runs until you press Run the kernels").wait_for()


def test_a_sliding_window_shows_the_block_mask_and_its_skipped_share(browser, app_url):
    """384 tokens are 3 x 3 tiles of 128; a window of 16 leaves the diagonal and the two tiles below it."""
    from playground.bench.app import prompt_of

    with fresh_page(browser, app_url, "en-US") as pg:
        pg.get_by_role("tab", name="Attention").click()
        set_prompt(pg, prompt_of(384))
        window = pg.get_by_label("number input for Sliding window (0 = off)")
        window.fill("16")
        window.press("Enter")
        pg.get_by_role("button", name="Analyze").click()
        wait_for_plot_title(pg, "BlockMask for layer 0 (self): 3×3 tiles of 128×128 tokens", timeout=90_000)
        wait_for_plot_title(pg, "44% of tiles skipped")  # 4 of 9: the 3 above the diagonal and the bottom-left one
        note = pg.locator("#block-note")
        note.get_by_text("44% of the 9 tiles skipped").wait_for(timeout=30_000)
        text = note.inner_text()
        assert "5 computed with the mask applied, 0 computed in full" in text
        assert "Measured on this device" in text and "FlexAttention" in text and "with the dense mask" in text
        shot(pg, "18-block-mask")


def test_every_figure_downloads_as_svg_and_png_at_the_chosen_size(browser, app_url):
    """The overview's modebar: SVG at its on-screen size, then SVG and PNG at a typed width x height."""
    import xml.etree.ElementTree as ET

    from PIL import Image

    def download(pg, gd, fmt):
        gd.hover()
        with pg.expect_download() as info:
            gd.locator(f'.modebar-btn[data-title="Download as {fmt}"]').click()
        return info.value.suggested_filename, Path(info.value.path()).read_bytes()

    with fresh_page(browser, app_url, "en-US") as pg:
        pg.get_by_role("tab", name="Attention").click()
        set_prompt(pg, "To be, or not to be, that is the question")
        analyze_and_wait(pg)
        gd = pg.locator(".overview-plot .js-plotly-plot").first
        title = gd.locator(".gtitle").first.text_content()
        box = gd.bounding_box()

        name, data = download(pg, gd, "SVG")  # no size typed: the figure as on screen
        root = ET.fromstring(data)
        assert root.tag.endswith("svg") and name.startswith("Self-attention") and name.endswith(".svg")
        assert (int(root.get("width")), int(root.get("height"))) == (round(box["width"]), round(box["height"]))

        pg.get_by_label("Download width (px)", exact=True).fill("640")
        pg.get_by_label("Download height (px)", exact=True).fill("480")
        name, data = download(pg, gd, "SVG")
        root = ET.fromstring(data)
        assert (root.get("width"), root.get("height")) == ("640", "480")
        assert title and title in "".join(root.itertext())  # the figure's own title, drawn in the file

        name, data = download(pg, gd, "PNG")
        assert name.endswith(".png") and data[:8] == b"\x89PNG\r\n\x1a\n"
        assert Image.open(io.BytesIO(data)).size == (640, 480)
        assert gd.locator('.modebar-btn[data-title="Download plot as a PNG"]').count() == 0  # the camera it replaces
        gd.hover()
        gd.locator('.modebar-btn[data-title="Download as SVG"]').hover()
        gd.screenshot(path=str(SHOTS / "19-figure-export-modebar.png"))
        shot(pg, "19-figure-export")


def test_view_switch_to_rollout_and_to_head_ablation(browser, app_url):
    with fresh_page(browser, app_url, "en-US") as pg:
        pg.get_by_role("tab", name="Attention").click()
        set_prompt(pg, "To be, or not to be, that is the question")
        pg.get_by_role("button", name="Analyze").click()
        wait_for_plot_title(pg, "Self-attention (causal)")
        switch = pg.locator("#view-switch")
        switch.get_by_label("Attention rollout").check()
        wait_for_plot_title(pg, "Attention rollout through every layer, with the first token")
        pg.get_by_text("Abnar & Zuidema 2020").wait_for()
        assert not pg.locator(".overview-plot").first.is_visible()  # the raw overview makes way
        pg.get_by_label("Rollout without the first token").check()
        wait_for_plot_title(pg, "Attention rollout through every layer, without the first token")
        shot(pg, "19-view-rollout")
        switch.get_by_label("Head ablation").check()
        wait_for_plot_title(pg, "Head ablation (zero): Δ loss per head", timeout=60_000)
        wait_for_plot_title(pg, "Δ target-token logit per head")
        pg.get_by_text("Scored: 12 positions").wait_for()  # 13 tokens, the last has no next one
        shot(pg, "20-view-ablation")
        switch.get_by_label("Raw weights").check()
        wait_for_plot_title(pg, "Self-attention (causal)")


OVERVIEW_TICKS_JS = """() => [...document.querySelectorAll('.overview-plot .js-plotly-plot')][0]
  .querySelectorAll('.xtick text')"""


def overview_ticks(pg) -> list[str]:
    return pg.evaluate(f"() => [...({OVERVIEW_TICKS_JS})()].map(t => t.textContent)")


def test_group_the_overview_by_kv_head_on_the_gqa_model(browser, app_url):
    """GQA (4 query heads, 2 K/V heads): ticking the box labels the columns by K/V group, draws a line between
    the groups, and a click on a grouped cell still opens that head; unticking restores the head labels."""
    with fresh_page(browser, app_url, "en-US") as pg:
        pg.get_by_role("tab", name="Attention").click()
        pg.get_by_label("GQA (2 K/V heads)").check()
        set_prompt(pg, "To be, or not to be, that is the question")
        pg.get_by_role("button", name="Analyze").click()
        pg.locator(".badge", has_text="zoo:gqa").wait_for(timeout=60_000)  # this analysis, not the landing one
        wait_for_plot_title(pg, "Self-attention (causal)")
        assert overview_ticks(pg) == ["head 0", "head 1", "head 2", "head 3"]
        box = pg.locator("#group-kv")
        box.get_by_text("4 query heads share 2 K/V heads: kv0: h0 h1; kv1: h2 h3").wait_for()
        box.get_by_label("Group by K/V head").check()
        wait_for_plot_title(pg, "columns grouped by K/V head (2 K/V heads)")
        assert overview_ticks(pg) == ["kv0: h0 h1", "kv1: h2 h3"]
        assert pg.locator(".overview-plot .js-plotly-plot").first.locator(".shapelayer path").count() == 1
        pg.locator(".overview-plot").first.screenshot(path="/tmp/group-kv-overview.png")
        shot(pg, "21-group-by-kv-head")
        at = pg.evaluate(CELL_JS, [1, 3])
        pg.mouse.click(at["x"], at["y"])
        wait_for_plot_title(pg, "layer 1, head 3")
        box.get_by_label("Group by K/V head").uncheck()
        pg.wait_for_function(f"() => [...({OVERVIEW_TICKS_JS})()].map(t => t.textContent).join() === "
                             "'head 0,head 1,head 2,head 3'")


def test_inside_one_head_steps_through_and_replays_tile_by_tile(browser, app_url):
    with fresh_page(browser, app_url) as pg:
        tab = pg.get_by_role("tab", name="Inside a head")
        if not tab.is_visible():  # the last tab: in the tab bar's overflow menu on a narrow window
            pg.locator(".overflow-menu button").first.click()
            tab = pg.locator(".overflow-dropdown button", has_text="Inside a head")
        tab.click()
        pg.get_by_label("Query token").fill("3")
        pg.get_by_role("button", name="Step through").click()
        # the page opened with this tab drawn for query token 0: wait for this step-through, then for its replay
        pg.locator("#inside-note", has_text="Query token 3:").wait_for(timeout=60_000)
        pg.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=60_000)
        wait_for_plot_title(pg, "weights · layer 0, head 0")
        wait_for_plot_title(pg, "write · layer 0, head 0")
        pg.get_by_text("which query heads 0 share").wait_for()
        summary = pg.locator("#inside-flash-summary")
        summary.get_by_text("Replaying layer 0, head 0").wait_for(timeout=30_000)
        assert "max |Δ|" in summary.inner_text()
        wait_for_plot_title(pg, "Step 0: query block 0, key block 0")
        step = pg.locator("#inside-step input[type=number]")
        step.fill("4")
        step.press("Enter")
        wait_for_plot_title(pg, "Step 4: query block 1, key block 0")
        assert "**" not in pg.locator("#inside-step-text").inner_text()
        assert "Step 4" in pg.locator("#inside-step-text").inner_text()
        wait_for_plot_title(pg, "HBM traffic over N")
        wait_for_plot_title(pg, "Memory hierarchy of the H100 SXM")
        shot(pg, "15-inside-one-head")


def test_calculator_reads_a_config_json(browser, app_url):
    """Pick a published config: its JSON fills the box and each kind of layer gets a row; in Chinese too."""
    with fresh_page(browser, app_url, "zh-CN") as pg:
        pg.get_by_role("tab", name="实验室").click()
        pg.get_by_role("tab", name="KV 缓存计算器").click()
        table = "document.querySelector('#calc-config-table').innerText"
        pg.wait_for_function(f"() => {table}.includes('层类型')")  # column names in the page's language on load
        pg.get_by_label("示例（已发表的配置）").click()
        pg.get_by_role("option", name="Gemma-3-1B (5 local : 1 global)").click()
        pg.wait_for_function(f"() => {table}.includes('滑动窗口') && {table}.includes('5, 11, 17, 23')")
        assert '"sliding_window_pattern": 6' in pg.locator("#calc-config-source textarea").input_value()
        assert "通用公式" in pg.locator("#calc-config-summary").inner_text()
        wait_for_plot_title(pg, "gemma3_text")
        shot(pg, "18-calculator-config-zh")


TOP_TABS = {"en-US": ("Learn", "Attention", "Inside a head", "Generate & KV cache", "Head insights", "Compare", "Labs", "Train",
                      "Model zoo"),
            "zh-CN": ("导览", "注意力", "单个注意力头内部", "生成与 KV 缓存", "注意力头洞察", "对比", "实验室", "训练", "模型库")}


@pytest.mark.parametrize("locale", TOP_TABS)
def test_every_tab_is_in_sight_at_1280_px(browser, app_url, locale):
    """Nine tabs in the order a newcomer needs them, none folded into Gradio's "..." overflow menu, in English
    and in Chinese; the advanced model settings sit in a fold that says what it holds."""
    with fresh_page(browser, app_url, locale, width=1280) as pg:
        names = TOP_TABS[locale]
        pg.get_by_role("tab", name=names[0], exact=True).wait_for()
        pg.wait_for_timeout(500)  # Gradio measures the tab bar after the first paint
        shown = pg.evaluate("""() => [...document.querySelectorAll('#main-tabs > .tab-wrapper [role=tab]')]
            .filter(b => b.offsetParent !== null).map(b => b.innerText.trim())""")
        assert shown == list(names), shown
        assert not pg.locator("#main-tabs > .tab-wrapper .overflow-menu").first.is_visible()
        assert not pg.locator("#local-models-note").is_visible()  # folded under Advanced
        shot(pg, f"22-tabs-1280-{locale}")


def test_the_page_is_usable_in_a_768_px_window(browser, app_url):
    """A tablet-wide window: nothing wider than the window (no sideways scrolling), the figures fit it, and the
    landing analysis is drawn."""
    with fresh_page(browser, app_url, "en-US", width=768) as pg:
        wait_for_plot_title(pg, "layer 0, head 0", timeout=60_000)
        overflow = pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px wider than the window"
        widths = pg.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.offsetParent)"
                             ".map(p => p.getBoundingClientRect().right)")
        assert widths and max(widths) <= 768, widths
        shot(pg, "23-768px")


def test_the_page_opens_with_attention_and_a_generation_drawn(browser, app_url):
    """Nothing pressed: the default prompt's overview and first head, and the Generate tab's cache curves and
    timeline, are on screen."""
    with fresh_page(browser, app_url, "en-US") as pg:
        wait_for_plot_title(pg, "Self-attention (causal)", timeout=60_000)
        wait_for_plot_title(pg, "layer 0, head 0", timeout=60_000)
        assert "Kernel that ran" in badge_text(pg)
        pg.get_by_role("tab", name="Generate & KV cache").click()
        wait_for_plot_title(pg, "KV cache", timeout=60_000)
        wait_for_plot_title(pg, "Step 0", timeout=60_000)
        assert pg.get_by_label("Generated text").input_value().strip()
        shot(pg, "00-landing")


def test_the_readme_screenshot_is_the_page_as_it_opens(browser, app_url):
    """The README's picture, made the way ``python -m playground.bench.screenshot`` makes it: the landing view at
    1,280 x 1,000 from the tab bar down, a PNG under 300 KB. Written to the artifacts on every run, so a changed page shows."""
    from PIL import Image

    from playground.bench import screenshot

    out = SHOTS / "readme-screenshot.png"
    n = screenshot.capture(app_url, out, browser=browser)
    assert n == out.stat().st_size <= screenshot.MAX_BYTES
    assert Image.open(out).size == screenshot.SIZE
    committed = screenshot.OUT
    assert committed.is_file() and committed.stat().st_size <= screenshot.MAX_BYTES
    assert Image.open(committed).size == screenshot.SIZE


def test_the_landing_overview_is_timed_from_navigation_start(browser, app_url):
    from playground.bench.app import landing_ms

    times = landing_ms(app_url, 1, browser)
    boot, overview = times["landing_boot_ms"], times["landing_overview_ms"]
    assert len(boot) == len(overview) == 1 and 0 < boot[0] <= overview[0] < 120_000


def test_gradios_plotly_draws_every_trace_the_figures_make(browser, app_url):
    """The figures draw with the plotly.js Gradio's Plot component loads: every trace type ``playground.plots``
    makes is one it knows, and the overview is drawn as a heatmap."""
    import playground.plots

    made = set()
    for path in Path(playground.plots.__file__).parent.glob("*.py"):
        made |= {name.lower() for name in re.findall(r"\bgo\.([A-Z]\w*)\(", path.read_text())}
    made.discard("figure")
    with fresh_page(browser, app_url) as pg:
        pg.locator(".overview-plot .js-plotly-plot .heatmaplayer").first.wait_for(timeout=60_000)
        known = set(pg.evaluate("() => Object.keys(window.Plotly.PlotSchema.get().traces)"))
        assert pg.evaluate("() => window.Plotly.version")
    assert {"heatmap", "scatter", "bar"} <= made <= known


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_the_kv_cache_lab_runs_three_policies_and_draws_what_each_kept(browser, app_url, locale):
    """Labs → KV-cache lab: three policies beside the full cache of the 512-context MHA model, and the MQA and MLA
    models with their own full caches; their table, the bytes-against-loss chart, the caches growing and the map of
    the keys each policy kept, in the reader's language."""
    from playground.ui.lang import Words
    from playground.ui.service.kv_lab import architecture_name, lab_defaults
    from playground.zoo import ModelSpec

    model, others = lab_defaults()
    assert model == "zoo:lab-mha" and len(others) == 2  # the lab's models are installed
    w = Words(None, lang=locale)
    with fresh_page(browser, app_url, locale) as pg:
        pg.get_by_role("tab", name=w("tab.labs"), exact=True).click()
        pg.get_by_role("tab", name=w("tab.kvlab"), exact=True).click()
        pg.get_by_label(w("kvlab.policy_window"), exact=True).check()
        pg.get_by_label(w("kvlab.policy_int4"), exact=True).uncheck()  # window, StreamingLLM and H2O
        pg.locator("#kvlab-run").click()
        pg.locator("#kvlab-kept .js-plotly-plot .gtitle").wait_for(timeout=180_000)
        table = pg.locator("#kvlab-table").inner_text()
        for policy in (w("kvlab.label_full"), w("kvlab.label_window", n=32), w("kvlab.label_sinks", sinks=4, window=28),
                       w("kvlab.label_h2o", n=32, recent=16)):  # the full cache and the three, in the reader's words
            assert policy in table
        for other in others:  # MQA and MLA, each with its own full cache
            assert architecture_name(ModelSpec.parse(other)) in table
        assert "SnapKV" not in table and "int4" not in table
        for plot, words in (("#kvlab-tradeoff", w("kvlab.tradeoff_title", model=model, n=128)[:8]),
                            ("#kvlab-growth", w("kvlab.growth_title", layers=4)[:8])):
            assert words in pg.locator(f"{plot} .gtitle").text_content()  # SVG text
        kept = pg.locator("#kvlab-kept .gtitle").text_content()
        assert w("kvlab.kept_title", step=126, layer=0, head=0, token="x")[:6] in kept
        shot(pg, f"32-kv-cache-lab-{locale}")
