"""The model picker shared by every tab: architecture, variant, position encoding, backend, device, dtype.

The five model controls resolve to one model spec (``choose``, through ``service.resolve``); the
model note shows it, and every tab hands it to the same function its API endpoint calls.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from playground import config, zoo
from playground.ui import service
from playground.zoo import ModelSpec
from .lang import Words, t

ARCHITECTURES = [(t(f"family.{family}"), family) for family in config.FAMILIES]
VARIANTS = [(t(f"variant.{variant}"), variant) for variant in config.VARIANTS]
POSITIONS = [(t(f"position.{p}"), p) for p in config.POSITIONS]
BACKENDS = [(t(f"backend.{b}"), b) for b in config.BACKENDS]
DTYPES = [(t(f"dtype.{d}"), d) for d in config.DTYPES]
FALLBACKS = [(t("fallback.nearest"), "nearest"), (t("fallback.untrained"), "untrained")]


@dataclass
class Controls:
    family: gr.Dropdown
    variant: gr.Radio
    position: gr.Dropdown
    task: gr.Dropdown
    fallback: gr.Radio
    backend: gr.Dropdown
    device: gr.Dropdown
    dtype: gr.Dropdown
    note: gr.Markdown
    describe: object = None   # (*inputs, request) -> updates of family, variant, position, note

    @property
    def model(self) -> list:
        """The controls that pick the model: their values resolve to a spec (``choose``)."""
        return [self.family, self.variant, self.position, self.task, self.fallback]

    @property
    def inputs(self) -> list:
        return [*self.model, self.backend, self.device, self.dtype]

    @property
    def described(self) -> list:
        """What ``describe`` updates: the three choices (enabled or not, and why) and the model note."""
        return [self.family, self.variant, self.position, self.note]


def choose(w: Words, family, variant, position, task, fallback) -> tuple[ModelSpec, str]:
    """The model controls' values -> the spec of the model to run and a sentence about it in the reader's
    language (bad values -> gr.Error)."""
    try:
        spec, sentence = service.resolve(family, variant, position, task_model=task or None, fallback=fallback)
    except ValueError as e:
        raise w.error(e) from None
    return spec, w.render(sentence)


def controls_for(spec: ModelSpec) -> dict:
    """The model controls' values that show a spec (a share link sets them): the inverse of ``choose``."""
    if spec.scheme == "untrained":
        family, *shape = spec.name.split("/")
        variant, position = shape or ("MHA", "none")
        return dict(family=family, variant=variant, position=position, task="", fallback="untrained")
    cfg = spec.config()
    chosen = dict(family=cfg.family, variant=cfg.variant, position=cfg.position, fallback="nearest")
    return {**chosen, "task": "" if spec.scheme == "zoo" and not spec.is_task else str(spec)}


def specific_models() -> list[tuple]:
    """Synthetic-task models and models trained in the page, for the 'specific model' picker (values are specs)."""
    return ([(t("controls.no_specific"), "")] +
            [(f"{n}: " + t(f"zoo.about.{n}"), f"zoo:{n}") for n in zoo.available() if zoo.is_task(n)] +
            [(f"{n} · " + t("controls.trained_here"), n) for n in zoo.user_models()])


def build_controls(demo: gr.Blocks) -> Controls:
    with gr.Row(equal_height=True):
        family = gr.Dropdown(ARCHITECTURES, value="decoder", label=t("controls.architecture"), scale=2)
        variant = gr.Radio(VARIANTS, value="MHA", label=t("controls.variant"), scale=3)
        position = gr.Dropdown(POSITIONS, value="rope", label=t("controls.position"), scale=2)
    with gr.Row(equal_height=True):
        task = gr.Dropdown(specific_models(), value="", label=t("controls.specific"), scale=3)
        fallback = gr.Radio(FALLBACKS, value="nearest", label=t("controls.fallback"), scale=2)
        backend = gr.Dropdown(BACKENDS, value="auto", label=t("controls.backend"), scale=2)
        device = gr.Dropdown(service.devices(), value=service.devices()[0], label=t("controls.device"), scale=1,
                             info=t("controls.device_info"))
        dtype = gr.Dropdown(DTYPES, value="auto", label=t("controls.dtype"), scale=1, info=t("controls.dtype_info"))
    note = gr.Markdown(elem_classes="model-note")
    controls = Controls(family, variant, position, task, fallback, backend, device, dtype, note)

    def describe(family, variant, position, task, fallback, backend, device, dtype, request: gr.Request):
        w = Words(request)
        spec, sentence = choose(w, family, variant, position, task, fallback)
        fixed = w("controls.fixed_by_model") if task else None
        recurrent = family in config.RECURRENT_FAMILIES and not task
        kv_reason = w("controls.no_kv_heads") if recurrent else fixed
        pe_reason = w("controls.no_position") if recurrent else fixed
        mark = "" if spec.trained else f" <span class='untrained'>{w('plot.untrained')}</span>"
        note = f"**{w('controls.model')}** `{spec}` · {sentence}{mark}"
        # info="" clears an earlier reason (None would leave it in place)
        return (gr.update(interactive=not fixed, info=fixed or ""),
                gr.update(interactive=not kv_reason, info=kv_reason or ""),
                gr.update(interactive=not pe_reason, info=pe_reason or ""), note)

    controls.describe = describe
    gr.on([demo.load] + [c.change for c in controls.inputs], describe, controls.inputs, controls.described,
          api_visibility="private")
    return controls
