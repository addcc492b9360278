"""The tour (Learn / 导览) in chromium, in English and in Chinese: every step's Show me sets the model its step
names (the model note shows the spec), opens the tab the step names and draws its live view there."""
import pytest

from playground.bench.app import BUSY

from playground.ui.learn_tab import STEPS
from test_browser import browser, fresh_page, shot  # noqa: F401  (browser: the fixture)

TOUR = {"en-US": "Learn", "zh-CN": "导览"}
LABS = {"en-US": "Labs", "zh-CN": "实验室"}

# what each tab draws, in either language: (a selector that must appear inside the open tab, and the text it holds)
VIEWS = {
    "inside": ".js-plotly-plot .gtitle",
    "heads": "#head-table",
    "generate": ".js-plotly-plot .gtitle",
    "attention": ".overview-plot .js-plotly-plot",
    "labs": ".js-plotly-plot .gtitle",
}
TITLES = {  # a plot title (or table text) the step's view writes, per language
    ("inside", "en-US"): "· layer 0, head 0 ·", ("inside", "zh-CN"): "· 第 0 层，第 0 头 ·",
    ("generate", "en-US"): "Step 0", ("generate", "zh-CN"): "第 0 步",
    ("heads", "en-US"): "0.", ("heads", "zh-CN"): "0.",
    ("labs", "en-US"): "Validation loss by position", ("labs", "zh-CN"): "逐位置验证损失",
    ("attention", "en-US"): "", ("attention", "zh-CN"): "",
    ("kv_lab", "en-US"): "Bytes held against the loss", ("kv_lab", "zh-CN"): "缓存字节与损失",  # a step's own view
}


def _selected_tab(pg, container: str) -> str:
    return pg.evaluate(f"""() => [...document.querySelectorAll('{container} > .tab-wrapper [role=tab]')]
        .find(b => b.getAttribute('aria-selected') === 'true')?.innerText.trim()""")


@pytest.mark.parametrize("locale", TOUR)
def test_every_step_of_the_tour_shows_its_view(browser, app_url, locale, monkeypatch):
    """With the Hub out of reach (as here: no network), a step that names a pretrained model shows its shipped
    fallback, and a message says why."""
    from playground.models.pretrained.hub import HubError
    from playground.ui.lang import Words
    from playground.zoo import hub_source

    prepare = hub_source.prepare

    def offline(scheme, name, progress=None):
        if scheme == "hf":
            raise HubError("offline", "the Hugging Face Hub cannot be reached")
        return prepare(scheme, name, progress=progress)
    monkeypatch.setattr(hub_source, "prepare", offline)
    w = Words(lang="zh-CN" if locale == "zh-CN" else "en")
    with fresh_page(browser, app_url, locale, width=1400) as pg:
        for n, step in enumerate(STEPS, start=1):
            pg.get_by_role("tab", name=TOUR[locale], exact=True).click()
            title = pg.locator(f"#learn-{step.key}-title")
            assert title.inner_text().startswith(f"{n}.")
            overview_title = "() => document.querySelector('.overview-plot .gtitle')?.textContent || ''"
            before = pg.evaluate(overview_title)
            pg.locator(f"#learn-{step.key}").click()
            tab_name = LABS[locale] if step.tab == "labs" else w(f"tab.{step.tab}")
            pg.wait_for_function(f"""() => [...document.querySelectorAll('#main-tabs > .tab-wrapper [role=tab]')]
                .find(b => b.getAttribute('aria-selected') === 'true')?.innerText.trim() === {tab_name!r}""",
                                 timeout=60_000)
            shown = step.fallback or step.spec
            if step.fallback:  # the message names the model that could not be opened
                pg.locator(".toast-body", has_text=step.spec).first.wait_for(timeout=30_000)
            if step.tab != "labs":  # the model note names the step's model
                pg.locator(".prose.model-note", has_text=shown).wait_for(timeout=30_000)
            text = TITLES.get((step.key, locale), TITLES[(step.tab, locale)])
            view = pg.locator(f"{VIEWS[step.tab]}:visible", has_text=text) if text else \
                pg.locator(f"{VIEWS[step.tab]}:visible")
            view.first.wait_for(timeout=240_000 if step.long else 90_000)
            # the step's own run has finished, so the view on screen is its answer, not what the tab held before
            pg.wait_for_timeout(300)
            pg.wait_for_function(f"() => !document.querySelector({BUSY!r})", timeout=240_000 if step.long else 90_000)
            if step.tab == "generate":  # the cache curve's legend names the model that generated
                legend = pg.locator(".js-plotly-plot:visible .legendtext", has_text=shown)
                legend.first.wait_for(timeout=240_000 if step.long else 90_000)  # the step's own generation
            if step.tab == "attention":  # the overview is drawn anew for the step's model and prompt
                pg.wait_for_function(f"() => ({overview_title})() !== {before!r}",
                                     timeout=240_000 if step.long else 90_000)
                assert pg.locator(".badge").inner_text()
                if step.long:  # "... · 4,0xx×4,0xx tokens": the prompt's own length
                    grid = pg.evaluate(overview_title)
                    tokens = int(grid.split("×")[0].split()[-1].replace(",", ""))
                    assert tokens > 3500, grid
                if step.group_kv:
                    assert pg.get_by_label(w("attention.group_kv")).is_checked()
            shot(pg, f"tour-{locale}-{n}-{step.key}")
