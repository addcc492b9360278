"""The web page: ``build_app`` assembles the tabs; each tab lives in its own module.

Launch it with ``demo.launch(**LAUNCH)``: the CSS, the language script and the translations.
"""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from .attention import CLICK_HEAD, build_attention_tab
from .calculator import build_calculator_tab
from .compare import build_compare_tab
from .controls import build_controls
from .generation import build_generation_tab
from .heads_tab import build_heads_tab
from .kernel_lab import build_kernel_lab_tab
from .lang import HEAD, I18N, RELOCALIZE_ID, Localized, t
from .position_lab import build_position_lab_tab
from .share import build_share
from .train_tab import build_train_tab
from .zoo_tab import build_zoo_tab

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CSS = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else ""
LAUNCH = dict(css=CSS, head=HEAD + CLICK_HEAD, i18n=I18N, theme=gr.themes.Soft())


def examples() -> list[str]:
    return json.loads((ASSETS / "examples.json").read_text())


def build_app() -> gr.Blocks:
    localized = Localized()
    with gr.Blocks(title="Attention Playground") as demo:
        gr.Markdown(t("app.intro"))
        controls = build_controls(demo)
        prompt = gr.Textbox(examples()[0], lines=3, max_lines=12, label=t("app.prompt"),
                            placeholder=t("app.placeholder"))
        gr.Examples([[e] for e in examples()], [prompt], label=t("app.examples"))
        with gr.Tabs():
            with gr.Tab(t("tab.attention"), id="attention"):
                attention = build_attention_tab(controls, prompt)
                build_share(demo, controls, prompt, attention)
            with gr.Tab(t("tab.generate"), id="generate"):
                build_generation_tab(controls, prompt)
            with gr.Tab(t("tab.compare"), id="compare"):
                build_compare_tab(prompt, controls.device, localized)
            with gr.Tab(t("tab.heads"), id="heads"):
                build_heads_tab(controls, prompt, localized)
            with gr.Tab(t("tab.positions"), id="positions"):
                build_position_lab_tab(localized)
            with gr.Tab(t("tab.kernels"), id="kernels"):
                build_kernel_lab_tab(localized)
            with gr.Tab(t("tab.train"), id="train"):
                build_train_tab(controls)
            with gr.Tab(t("tab.calculator"), id="calculator"):
                build_calculator_tab(localized)
            with gr.Tab(t("tab.zoo"), id="zoo"):
                build_zoo_tab(localized)
        # pressed by the page's language script when the reader switches language (lang.HEAD)
        switch = gr.Button("relocalize", visible="hidden", elem_id=RELOCALIZE_ID)
        localized.wire(demo, switch)
        switch.click(controls.describe, controls.inputs, [controls.family, controls.variant, controls.position,
                                                          controls.note], api_visibility="private")
    return demo
