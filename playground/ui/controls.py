"""The model picker shared by every tab: architecture, variant, position encoding, backend, device."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import service, zoo
from ..kernels import KERNEL_LABELS

ARCHITECTURES = [(label, family) for family, label in zoo.FAMILY_LABELS.items()]
VARIANTS = [("MHA (4 K/V heads)", "MHA"), ("GQA (2 K/V heads)", "GQA"), ("MQA (1 K/V head)", "MQA")]
POSITIONS = [("RoPE", "rope"), ("ALiBi", "alibi"), ("Sinusoidal", "sinusoidal"), ("Learned absolute", "learned"),
             ("None (NoPE)", "none")]
BACKENDS = [("auto (what PyTorch picks)", "auto"), ("SDPA flash", "flash"), ("SDPA memory-efficient", "efficient"),
            ("SDPA math", "math"), (KERNEL_LABELS["explicit"], "explicit")]
FALLBACKS = [("nearest shipped model", "nearest"), ("untrained (random weights)", "untrained")]


@dataclass
class Controls:
    family: gr.Dropdown
    variant: gr.Radio
    position: gr.Dropdown
    task: gr.Dropdown
    fallback: gr.Radio
    backend: gr.Dropdown
    device: gr.Dropdown
    note: gr.Markdown

    @property
    def inputs(self) -> list:
        return [self.family, self.variant, self.position, self.task, self.fallback, self.backend, self.device]


def choose(family, variant, position, task, fallback, backend, device, window: int = 0) -> tuple[service.Choice, str]:
    """Controls' values -> the model to run and a sentence about it (ValueError -> gr.Error)."""
    try:
        return service.resolve(family, variant, position, task_model=task or None, fallback=fallback,
                               backend=backend, device=device, window=int(window or 0))
    except ValueError as e:
        raise gr.Error(str(e)) from None


def specific_models() -> list[tuple[str, str]]:
    """Synthetic-task models and models trained in the page, for the 'specific model' picker."""
    return ([("— none: use the choices above —", "")] +
            [(f"{n}: {zoo.ZOO[n]['about']}", n) for n in zoo.available() if zoo.is_task(n)] +
            [(f"{n} (trained in the page)", n) for n in zoo.user_models()])


def build_controls(demo: gr.Blocks) -> Controls:
    with gr.Row(equal_height=True):
        family = gr.Dropdown(ARCHITECTURES, value="decoder", label="Architecture", scale=2)
        variant = gr.Radio(VARIANTS, value="MHA", label="Attention variant", scale=3)
        position = gr.Dropdown(POSITIONS, value="rope", label="Position encoding", scale=2)
    with gr.Row(equal_height=True):
        task = gr.Dropdown(specific_models(), value="", label="Or a specific model (synthetic task, or trained here)",
                           scale=3)
        fallback = gr.Radio(FALLBACKS, value="nearest", label="If the combination is not shipped", scale=2)
        backend = gr.Dropdown(BACKENDS, value="auto", label="Attention backend", scale=2)
        device = gr.Dropdown(service.devices(), value=service.devices()[0], label="Device", scale=1,
                             info="CUDA appears when a GPU is present")
    note = gr.Markdown(elem_classes="model-note")
    controls = Controls(family, variant, position, task, fallback, backend, device, note)

    def describe(family, variant, position, task, fallback, backend, device):
        choice, sentence = choose(family, variant, position, task, fallback, backend, device)
        fixed = "fixed by the chosen model" if task else None
        recurrent = family in zoo.RECURRENT and not task
        kv_reason = "RWKV and Mamba keep a fixed-size state, not K/V heads" if recurrent else fixed
        pe_reason = "does not apply: the recurrence itself carries token order" if recurrent else fixed
        mark = " <span class='untrained'>UNTRAINED (random weights)</span>" if choice.untrained else ""
        # info="" clears an earlier reason (None would leave it in place)
        return (gr.update(interactive=not fixed, info=fixed or ""),
                gr.update(interactive=not kv_reason, info=kv_reason or ""),
                gr.update(interactive=not pe_reason, info=pe_reason or ""), f"**Model:** {sentence}{mark}")

    gr.on([demo.load] + [c.change for c in controls.inputs], describe, controls.inputs, [family, variant, position, note],
          api_visibility="private")
    return controls
