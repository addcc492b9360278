"""The model picker shared by every tab: architecture, variant, position encoding, backend, device, dtype.

The five model controls resolve to one model spec (``choose``, through ``service.resolve``); the
model note shows it, and every tab hands it to the same function its API endpoint calls.

A pretrained model (a Hugging Face Hub id, or a folder in the operator's $PLAYGROUND_LOCAL_MODELS)
is picked in its own dropdown and opened with a button: ``open_pretrained`` downloads it with the
page's progress bar, then makes its spec the "specific model", which wins over the three choices
as a synthetic-task or page-trained model does.
"""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from playground import config, zoo
from playground.models.pretrained.hub import HubError, is_hub_id, local_root
from playground.models.pretrained.suggested import SUGGESTED
from playground.ui import service
from playground.zoo import ModelSpec, hub_source
from .lang import Localized, Words, t, visitor_error
from .progress import download_bar

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
    pretrained: gr.Dropdown = None   # a Hub id or local: folder, opened with ``open``
    open: gr.Button = None
    describe: object = None   # (*inputs, request) -> updates of family, variant, position, note

    @property
    def model(self) -> list:
        """The controls that pick the model: their values resolve to a spec (``choose``)."""
        return [self.family, self.variant, self.position, self.task, self.fallback]

    @property
    def inputs(self) -> list:
        return [*self.model, self.backend, self.device, self.dtype]

    def then_describe(self, event):
        """``event`` (one that sets model controls) followed by the note's description of the values it set."""
        return event.then(self.describe, self.inputs, self.described, api_visibility="private")

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


def specific_models(*opened: str) -> list[tuple]:
    """Synthetic-task models and models trained in the page, for the 'specific model' picker (values are specs),
    then the pretrained specs ``opened`` in this page."""
    return ([(t("controls.no_specific"), "")] +
            [(f"{n}: " + t(f"zoo.about.{n}"), f"zoo:{n}") for n in zoo.available() if zoo.is_task(n)] +
            [(f"{n} · " + t("controls.trained_here"), n) for n in zoo.user_models()] +
            [(pretrained_label(spec), spec) for spec in dict.fromkeys(opened) if spec])


# ----------------------------------------------------------------------------- pretrained models

def pretrained_label(spec: str) -> str:
    """A pretrained spec as a picker shows it: a suggested Hub id with its size and layout, else the spec."""
    suggested = {f"hf:{s.hub_id}": s for s in SUGGESTED}
    return f"hf:{suggested[spec].label()}" if spec in suggested else spec


def pretrained_choices() -> list[tuple]:
    """The pretrained picker's list: the suggested Hub ids, then the operator's local folders (if on)."""
    return ([(pretrained_label(f"hf:{s.hub_id}"), f"hf:{s.hub_id}") for s in SUGGESTED] +
            [(f"local:{name} · " + t("controls.local_folder"), f"local:{name}") for name in hub_source.local_names()])


def local_note(w: Words) -> str:
    """Whether this server opens local model folders, and how an operator turns them on."""
    try:
        on = local_root() is not None
    except HubError as e:  # named, but not a directory
        return f"{w('controls.local_off')} ({e})"
    return w("controls.local_on", n=len(hub_source.local_names())) if on else w("controls.local_off")


def pretrained_spec(w: Words, text: str) -> ModelSpec:
    """What the pretrained picker holds -> its spec: 'hf:owner/name', 'local:name', or a bare Hub id."""
    text = (text or "").strip()
    if not text:
        raise w.error("error.pretrained_empty")
    if is_hub_id(text):
        text = f"hf:{text}"
    try:
        spec = ModelSpec.parse(text)
    except ValueError as e:
        raise w.error(e) from None
    if spec.scheme not in service.PRETRAINED:
        raise w.error("error.pretrained_empty")
    return spec


def open_pretrained(choice: str, task: str, request: gr.Request, progress=gr.Progress()):
    """The Open button: fetch the picked model (Hub download with progress, or the operator's folder), read
    its config and tokenizer, and make it the specific model every tab runs. Refusals -> gr.Error."""
    w = Words(request)
    spec = pretrained_spec(w, choice)
    progress(0, w("controls.open") + f" {spec}")
    try:
        hub_source.prepare(spec.scheme, spec.name, progress=download_bar(progress))
        spec.config(), spec.tokenizer()  # a model the playground cannot read is refused here, not in a tab
    except ValueError as e:
        raise visitor_error(w("error.pretrained_open", spec=str(spec), reason=w.render(e))) from None
    w.info("info.pretrained_open", spec=str(spec))
    return gr.update(choices=specific_models(str(spec), task), value=str(spec)), str(spec)


def index_range(count: int) -> dict:
    """The update of a slider over indices 0..count-1 (layers, heads, decode steps), back at 0. With one index
    there is nothing to pick: the slider shows 0, locked (Gradio refuses a slider whose minimum equals its maximum)."""
    return gr.update(maximum=max(count - 1, 1), value=0, interactive=count > 1)


def build_controls(demo: gr.Blocks, localized: Localized | None = None) -> Controls:
    with gr.Row(equal_height=True):
        family = gr.Dropdown(ARCHITECTURES, value="decoder", label=t("controls.architecture"), scale=2)
        variant = gr.Radio(VARIANTS, value="MHA", label=t("controls.variant"), scale=3)
        position = gr.Dropdown(POSITIONS, value="rope", label=t("controls.position"), scale=2)
    with gr.Row(equal_height=True, elem_classes="pretrained-picker"):
        # custom values: a spec opened or restored here stays valid when another event (a training) resets the list
        task = gr.Dropdown(specific_models(), value="", label=t("controls.specific"), scale=3, allow_custom_value=True)
        pretrained = gr.Dropdown(pretrained_choices(), value=None, allow_custom_value=True, scale=4,
                                 label=t("controls.pretrained"), info=t("controls.pretrained_info"),
                                 elem_id="pretrained-picker")
        open_btn = gr.Button(t("controls.open"), scale=0, min_width=120, elem_id="pretrained-open")
    note = gr.Markdown(elem_classes="model-note")
    # what fewer people change, folded: the fold's title says what it holds
    with gr.Accordion(t("controls.advanced"), open=False, elem_id="advanced-controls"):
        with gr.Row(equal_height=True):
            fallback = gr.Radio(FALLBACKS, value="nearest", label=t("controls.fallback"), scale=2)
            backend = gr.Dropdown(BACKENDS, value="auto", label=t("controls.backend"), scale=2)
            device = gr.Dropdown(service.devices(), value=service.devices()[0], label=t("controls.device"), scale=1,
                                 info=t("controls.device_info"))
            dtype = gr.Dropdown(DTYPES, value="auto", label=t("controls.dtype"), scale=1,
                                info=t("controls.dtype_info"))
        local_line = gr.Markdown(elem_classes="scope-note", elem_id="local-models-note")
    controls = Controls(family, variant, position, task, fallback, backend, device, dtype, note, pretrained, open_btn)

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
    # The reader's own edits are described as they come (``input``, not ``change``). An event that sets several
    # controls at once (a share link, Open, a tour step, a training) describes them itself once it has set them
    # (``controls.then_describe``): the page sends one ``change`` per control it sets, the first ones with the
    # others still old, and one of those could be answered last and leave the note on another model.
    gr.on([c.input for c in controls.inputs], describe, controls.inputs, controls.described,
          api_visibility="private", trigger_mode="always_last")
    controls.then_describe(open_btn.click(open_pretrained, [pretrained, task], [task, pretrained],
                                          api_visibility="private", show_progress_on=[pretrained],
                                          concurrency_limit=2, concurrency_id="open_pretrained"))
    # the operator's folders as they are when the page loads come with the load chain's restore (``share``)
    if localized is not None:
        localized.add(local_line, lambda w, _: local_note(w))
    return controls
