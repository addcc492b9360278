"""The web page: ``build_app`` assembles the tabs; each tab lives in its own module.

Launch it with ``demo.launch(**launch_options())``: the CSS, the page's scripts and the translations.
``build_app`` also starts compiling FlexAttention in a background thread (``FLEX``), once per
process, and the page says so until it is ready, or why it cannot run here.
"""
from __future__ import annotations

import json

import gradio as gr

from playground.paths import ASSETS_DIR

from . import api
from .attention import CLICK_HEAD, build_attention_tab
from .calculator import build_calculator_tab
from .cancels import cancel, cancel_job
from .compare import build_compare_tab
from .controls import build_controls
from .figure_export import SCRIPT as EXPORT_SCRIPT, build_export_size
from .generation import build_generation_tab
from .heads_tab import build_heads_tab
from .inside_tab import build_inside_tab
from .kernel_lab import build_kernel_lab_tab
from .kv_lab_tab import build_kv_lab_tab
from .learn_tab import build_learn_tab
from .lang import HEAD, I18N, RELOCALIZE_ID, Localized, Words, t
from .position_lab import build_position_lab_tab
from .share import build_share
from .train_tab import build_train_tab
from .warmup import FLEX, flex_note
from .zoo_tab import build_zoo_tab

ASSETS = ASSETS_DIR
CSS = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else ""
THEME = gr.themes.Soft()
FIRST_VIEWS_DRAWN = "() => { document.documentElement.dataset.firstViews = 'drawn'; }"


def launch_options() -> dict:
    """What ``demo.launch`` takes besides the address: the CSS, the page's scripts, the translations.

    run_history=False: Gradio would otherwise copy every event's inputs and outputs (megabytes of figures)
    into the browser's localStorage on each click, trimming a full store entry by entry (seconds per click).
    ssr_mode=False: the browser renders the page from the config Gradio serves, here and on a Space alike
    (where server-side rendering, which needs Node.js beside Python, is otherwise on by default). The figures
    draw with the plotly.js Gradio's Plot component bundles.
    """
    return dict(css=CSS, head=HEAD + CLICK_HEAD + EXPORT_SCRIPT, i18n=I18N, theme=THEME, run_history=False,
                ssr_mode=False)


# Gradio's one queue for the whole app only bounds a flood: each heavy route has its own workers and waiting room
# (``serving.lanes``, which refuses the next at once), and the cheap reads their own concurrency
QUEUE_MAX_SIZE = 256


def queue_options() -> dict:
    """What ``demo.queue`` takes: the default concurrency of an event that names none, and the flood bound."""
    return dict(default_concurrency_limit=2, max_size=QUEUE_MAX_SIZE)


def examples() -> list[str]:
    return json.loads((ASSETS / "examples.json").read_text())


# tab id -> the line at the top of the tab saying what it takes from the model controls and the prompt above
SCOPE = {"learn": "scope.learn", "attention": "scope.attention", "generate": "scope.generate", "compare": "scope.compare",
         "heads": "scope.heads", "inside": "scope.inside", "positions": "scope.positions", "kernels": "scope.kernels", "train": "scope.train",
         "calculator": "scope.calculator", "kvlab": "scope.kvlab", "zoo": "scope.zoo"}
USES_CONTROLS = ("learn", "attention", "generate", "compare", "heads", "inside")
LABS = ("positions", "kernels", "calculator", "kvlab")  # one "Labs" tab holds these, in this order


def build_app(warm_up: bool = True, landing: bool = True) -> gr.Blocks:
    """The page; ``warm_up`` starts compiling FlexAttention in the background (once per process); ``landing``
    analyzes the default prompt now, so the page opens with it drawn (else each visitor's page asks for it)."""
    if warm_up:
        FLEX.start()
    localized = Localized()
    first_views = api.FirstViews()  # the tabs that draw on open add theirs below
    # Gradio copies every file a handler returns (exports) into its cache: files older than an hour go, hourly
    with gr.Blocks(title="Attention Playground", delete_cache=(3600, 3600)) as demo:
        # an API client's Cancel, not queued behind its own job (named first: the Cancel buttons' own events, also
        # calling a function named cancel, take "cancel_1" and on)
        gr.api(cancel_job, api_name="cancel", queue=False)
        gr.Markdown(t("app.intro"))
        flex_line = gr.Markdown(elem_id="flex-status", elem_classes="scope-note")
        flex_timer = gr.Timer(1.0, active=False)
        demo.load(flex_note, None, [flex_line, flex_timer], api_visibility="private")
        flex_timer.tick(flex_note, None, [flex_line, flex_timer], api_visibility="private")
        with gr.Column(elem_classes="model-controls"):  # framed: what the tabs that run a model share
            gr.Markdown(t("scope.controls"), elem_classes="scope-note")
            controls = build_controls(demo, localized)
            prompt = gr.Textbox(examples()[0], lines=3, max_lines=12, label=t("app.prompt"),
                                placeholder=t("app.placeholder"))
            gr.Examples([[e] for e in examples()], [prompt], label=t("app.examples"))
        built = {}  # what a builder hands back that another part wires to

        def attention_tab():
            built["attention"] = build_attention_tab(controls, prompt, localized)
            built["landing"] = build_share(demo, controls, prompt, built["attention"], landing)

        builders = {  # tab id -> what fills it, in the order a newcomer needs them
            "learn": lambda: built.setdefault("learn", build_learn_tab(localized)),
            "attention": attention_tab,
            "inside": lambda: build_inside_tab(controls, prompt, localized, first_views),
            "generate": lambda: build_generation_tab(controls, prompt, localized, first_views),
            "heads": lambda: build_heads_tab(controls, prompt, localized, first_views),
            "compare": lambda: build_compare_tab(prompt, controls.device, controls.dtype, localized, first_views),
            "positions": lambda: build_position_lab_tab(localized),
            "kernels": lambda: build_kernel_lab_tab(localized),
            "calculator": lambda: build_calculator_tab(demo, localized),
            "kvlab": lambda: build_kv_lab_tab(localized, controls.device),
            "train": lambda: build_train_tab(controls),
            "zoo": lambda: build_zoo_tab(localized),
        }
        tabs = {}

        def add_tab(tab_id: str) -> None:
            with gr.Tab(t(f"tab.{tab_id}"), id=tab_id) as tab:
                uses = "scope-uses" if tab_id in USES_CONTROLS else "scope-own"
                gr.Markdown(t(SCOPE[tab_id]), elem_classes=["scope-note", uses])
                builders[tab_id]()
            tabs[tab_id] = tab

        # the tour comes first in the bar; the page opens on Attention, already drawn
        with gr.Tabs(elem_id="main-tabs", selected="attention") as main_tabs:
            for tab_id in builders:
                if tab_id in LABS[1:]:
                    continue
                if tab_id == LABS[0]:  # the three labs share one tab, each a tab of its own inside it
                    with gr.Tab(t("tab.labs"), id="labs") as labs:
                        gr.Markdown(t("scope.labs"), elem_classes=["scope-note", "scope-own"])
                        with gr.Tabs(elem_id="lab-tabs") as lab_tabs:
                            for lab in LABS:
                                add_tab(lab)
                    tabs["labs"] = labs
                else:
                    add_tab(tab_id)
        built["learn"].wire(controls, prompt, main_tabs, lab_tabs, built["attention"].group_kv)
        # the other tabs' first views, after the landing analysis (drawn first), as one event; then the page
        # says they are all in (``html[data-first-views="drawn"]``), which a script or a test can wait on
        first_views.chain(built["landing"], precompute=landing).then(None, js=FIRST_VIEWS_DRAWN)
        build_export_size()  # the size every figure's PNG and SVG buttons download at

        def tab_labels(request: gr.Request):
            """The browser re-translates a tab's label on a switch only when that tab redraws: name them all anew."""
            w = Words(request)
            return [gr.update(label=w(f"tab.{tab_id}")) for tab_id in tabs]

        # pressed by the page's language script when the reader switches language (lang.HEAD)
        switch = gr.Button("relocalize", visible="hidden", elem_id=RELOCALIZE_ID)
        localized.on_switch(tab_labels, [], list(tabs.values()))
        localized.on_switch(controls.describe, controls.inputs,
                            [controls.family, controls.variant, controls.position, controls.note])
        localized.wire(demo, switch)
        demo.unload(cancel)  # a closed tab stops its session's running analysis or generation
    return demo
