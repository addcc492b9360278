"""The web page: ``build_app`` assembles the tabs; each tab lives in its own module.

Launch it with ``demo.launch(**LAUNCH)``: the CSS, the page's scripts and the translations.
``build_app`` also starts compiling FlexAttention in a background thread (``FLEX``), once per
process, and the page says so until it is ready, or why it cannot run here.
"""
from __future__ import annotations

import json

import gradio as gr

from playground.paths import ASSETS_DIR

from .attention import CLICK_HEAD, build_attention_tab
from .calculator import build_calculator_tab
from .compare import build_compare_tab
from .controls import build_controls
from .figure_export import SCRIPT as EXPORT_SCRIPT, build_export_size
from .generation import build_generation_tab
from .heads_tab import build_heads_tab
from .inside_tab import build_inside_tab
from .kernel_lab import build_kernel_lab_tab
from .lang import HEAD, I18N, RELOCALIZE_ID, Localized, Words, t
from .position_lab import build_position_lab_tab
from .share import build_share
from .train_tab import build_train_tab
from .warmup import FLEX, flex_note
from .zoo_tab import build_zoo_tab

ASSETS = ASSETS_DIR
CSS = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else ""
# run_history=False: Gradio would otherwise copy every event's inputs and outputs (megabytes of figures)
# into the browser's localStorage on each click, trimming a full store entry by entry (seconds per click)
LAUNCH = dict(css=CSS, head=HEAD + CLICK_HEAD + EXPORT_SCRIPT, i18n=I18N, theme=gr.themes.Soft(), run_history=False)


def examples() -> list[str]:
    return json.loads((ASSETS / "examples.json").read_text())


# tab id -> the line at the top of the tab saying what it takes from the model controls and the prompt above
SCOPE = {"attention": "scope.attention", "generate": "scope.generate", "compare": "scope.compare",
         "heads": "scope.heads", "inside": "scope.inside", "positions": "scope.positions", "kernels": "scope.kernels", "train": "scope.train",
         "calculator": "scope.calculator", "zoo": "scope.zoo"}
USES_CONTROLS = ("attention", "generate", "compare", "heads", "inside")


def build_app(warm_up: bool = True) -> gr.Blocks:
    """The page; ``warm_up`` starts compiling FlexAttention in the background (once per process)."""
    if warm_up:
        FLEX.start()
    localized = Localized()
    with gr.Blocks(title="Attention Playground") as demo:
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
        builders = {  # tab id -> what fills it
            "attention": lambda: build_share(demo, controls, prompt, build_attention_tab(controls, prompt, localized)),
            "generate": lambda: build_generation_tab(controls, prompt, localized),
            "compare": lambda: build_compare_tab(prompt, controls.device, controls.dtype, localized),
            "heads": lambda: build_heads_tab(controls, prompt, localized),
            "positions": lambda: build_position_lab_tab(localized),
            "kernels": lambda: build_kernel_lab_tab(localized),
            "train": lambda: build_train_tab(controls),
            "calculator": lambda: build_calculator_tab(demo, localized),
            "zoo": lambda: build_zoo_tab(localized),
            "inside": lambda: build_inside_tab(controls, prompt, localized),
        }
        tabs = []
        with gr.Tabs():
            for tab_id, build in builders.items():
                with gr.Tab(t(f"tab.{tab_id}"), id=tab_id) as tab:
                    uses = "scope-uses" if tab_id in USES_CONTROLS else "scope-own"
                    gr.Markdown(t(SCOPE[tab_id]), elem_classes=["scope-note", uses])
                    build()
                tabs.append(tab)
        build_export_size()  # the size every figure's PNG and SVG buttons download at

        def tab_labels(request: gr.Request):
            """The browser re-translates a tab's label on a switch only when that tab redraws: name them all anew."""
            w = Words(request)
            return [gr.update(label=w(f"tab.{tab_id}")) for tab_id in builders]

        # pressed by the page's language script when the reader switches language (lang.HEAD)
        switch = gr.Button("relocalize", visible="hidden", elem_id=RELOCALIZE_ID)
        localized.on_switch(tab_labels, [], tabs)
        localized.on_switch(controls.describe, controls.inputs,
                            [controls.family, controls.variant, controls.position, controls.note])
        localized.wire(demo, switch)
    return demo
