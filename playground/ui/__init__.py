"""The web page: ``build_app`` assembles the tabs; each tab lives in its own module."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from .attention import build_attention_tab
from .calculator import build_calculator_tab
from .compare import build_compare_tab
from .controls import build_controls
from .generation import build_generation_tab
from .heads_tab import build_heads_tab
from .kernel_lab import build_kernel_lab_tab
from .position_lab import build_position_lab_tab
from .share import build_share
from .train_tab import build_train_tab
from .zoo_tab import build_zoo_tab

ASSETS = Path(__file__).resolve().parents[2] / "assets"
CSS = (ASSETS / "style.css").read_text() if (ASSETS / "style.css").exists() else ""
INTRO = """# Attention Playground
Type a prompt, pick an architecture, an attention variant and a position encoding, and see what the model
computes: every layer's attention weights, the masks that shaped them, and how the KV cache grows while it
generates. Models are small and trained on Shakespeare; everything shown is the model's own computation."""


def examples() -> list[str]:
    return json.loads((ASSETS / "examples.json").read_text())


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Attention Playground") as demo:
        gr.Markdown(INTRO)
        controls = build_controls(demo)
        prompt = gr.Textbox(examples()[0], lines=3, max_lines=12, label="Prompt",
                            placeholder="Type anything: Shakespeare works best; emoji and Chinese tokenize too")
        gr.Examples([[e] for e in examples()], [prompt], label="Example prompts")
        with gr.Tabs():
            with gr.Tab("Attention", id="attention"):
                attention = build_attention_tab(controls, prompt)
                build_share(demo, controls, prompt, attention)
            with gr.Tab("Generate & KV cache", id="generate"):
                build_generation_tab(controls, prompt)
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(prompt, controls.device)
            with gr.Tab("Head insights", id="heads"):
                build_heads_tab(controls, prompt)
            with gr.Tab("Position-encoding lab", id="positions"):
                build_position_lab_tab()
            with gr.Tab("Kernel lab", id="kernels"):
                build_kernel_lab_tab()
            with gr.Tab("Train", id="train"):
                build_train_tab(controls)
            with gr.Tab("KV-cache calculator", id="calculator"):
                build_calculator_tab()
            with gr.Tab("Model zoo", id="zoo"):
                build_zoo_tab()
    return demo
