"""The Generate tab: KV cache growth measured during generation, and a step-by-step decode timeline."""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import html

import gradio as gr

from playground import plots
from playground.inspect.analysis import Cancelled
from playground.nn.kernels import run_dtype
from playground.serving.lanes import GENERATE
from playground.ui import service
from playground.ui.i18n import msg
from . import api
from .cancels import cancel, visitor_job
from .controls import Controls, choose, index_range
from .progress import step_bar
from .lang import Localized, Words, t, visitor_error


def growth_figure(state: dict | None, log: bool, request: gr.Request = None):
    if not state or state["timeline"].choices is not None:  # filling masks caches nothing
        return None
    tl: service.Timeline = state["timeline"]
    held = [state["start"] + i for i in range(len(tl.cache_bytes))]
    label = msg("generate.cross_label", label=state["label"]) if tl.source_labels else state["label"]
    return plots.kv_growth(held, tl.cache_bytes, state["formulas"], label=label, log=log,
                           allocated_bytes=tl.cache_bytes_allocated,
                           max_tokens=max(held[-1], 2 * state["start"]), words=Words(request))


def step_view(state: dict | None, step: int, request: gr.Request = None):
    if not state:
        return None, ""
    w = Words(request)
    tl: service.Timeline = state["timeline"]
    step = max(0, min(int(step), len(tl.rows) - 1))
    if tl.choices is not None:
        return mask_view(w, state, step)
    kind = next(k for k in tl.rows[step] if k != "cross")  # self, decoder_self or implicit
    keys = tl.prompt_labels + tl.new_labels[:step]
    held = tl.held[step] if tl.held else tl.rows[step][kind].shape[-1]
    first = 0 if kind == "implicit" else len(keys) - held  # a sliding window drops older keys
    keys = keys[first:]
    row = tl.rows[step][kind]
    pooled = row.shape[-1] < len(keys)
    if pooled:  # a long cache: each column the max over a block of keys
        cell = -(-len(keys) // row.shape[-1])
        keys = [w("plot.cell_keys", a=first + a, b=first + min(a + cell, len(keys)) - 1)
                for a in range(0, len(keys), cell)]
    implicit = kind == "implicit"
    title = msg("generate.step_state" if implicit else "generate.step_cache", step=step, n=len(keys))
    fig = plots.step_rows(row, keys, title, new_token=tl.new_labels[step], untrained=state["untrained"],
                          signed=implicit, words=w, key_start=first, numbered=not pooled)
    info = w("generate.step_info_state" if implicit else "generate.step_info_cache", step=step,
             last=len(tl.rows) - 1, n=len(keys), bytes=tl.cache_bytes[step],
             allocated=tl.cache_bytes_allocated[step],
             token=html.escape(tl.new_labels[step]))
    return fig, info


def mask_view(w: Words, state: dict, step: int):
    """(figure, note) of one masked position: its attention over the whole prompt in every layer and head, and the
    tokens the model puts there."""
    tl: service.Timeline = state["timeline"]
    at = tl.positions[step]
    title = msg("generate.step_mask", step=step, position=at, n=len(tl.prompt_labels))
    fig = plots.step_rows(tl.rows[step]["self"], tl.prompt_labels, title, new_token=tl.new_labels[step],
                          untrained=state["untrained"], words=w, key_start=0, numbered=True, filled=True)
    best = ", ".join(f"{html.escape(label)} {p:.1%}" for label, p in tl.choices[step])
    return fig, w("generate.step_info_mask", step=step, last=len(tl.rows) - 1, position=at, best=best)


def generation_state(w: Words, spec: str, prompt: str, max_new_tokens: int, temperature: float, top_k: int,
                     top_p: float, seed: int, window: int, backend: str, device: str, dtype: str = "auto",
                     progress=None, cancelled=None) -> dict:
    """A spec, a prompt and the sampling options -> what the growth plot and the timeline draw from.

    The formula curves count bytes at the dtype the cache ran in (bf16 on CUDA under auto), as measured.
    ``progress(done, total)`` hears of each new token and ``cancelled()`` stops the generation after one (a
    ``gr.Error`` saying so); behind a GPU door (ZeroGPU) no callback crosses into the worker."""
    model = api.spec(w, spec)
    service.prepare(model, device, dtype)
    if api.checked(w, lambda: model.config().family) == "encoder":  # BERT-like: it fills masks, it does not generate
        timeline = api.run(w, service.fill_text, model, prompt, backend=backend, device=device, dtype=dtype,
                           lang=w.lang)
        return {"timeline": timeline, "untrained": not model.trained, "label": str(model), "start": 0,
                "formulas": {}}
    try:
        timeline = api.run(w, service.generate_text, model, prompt, max_new_tokens, temperature=temperature,
                           top_k=top_k, top_p=top_p, seed=seed, window=window, backend=backend, device=device,
                           dtype=dtype, lang=w.lang, progress=progress, cancelled=cancelled)
    except Cancelled as e:
        raise visitor_error(w("generate.cancelled", detail=str(e))) from None
    ran_in = run_dtype(dtype, device)  # what service.load ran the weights and their cache in
    return {"timeline": timeline, "untrained": not model.trained, "label": str(model),
            "start": len(timeline.prompt_labels),
            "formulas": service.kv_formulas(timeline.config, ran_in, source_tokens=len(timeline.source_labels))}


def generate(spec: str, prompt: str, max_new_tokens: int = 32, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, window: int = 0, log_axis: bool = False, backend: str = "auto",
             device: str = "cpu", dtype: str = "auto", request: gr.Request = None) -> tuple[str, dict, int, dict, str]:
    """Generate with the KV cache: the new text, the cache growth measured at every step (log_axis: log-log),
    the number of steps, and step 0 of the timeline (the new token's attention over the cache) with its caption.

    spec: 'zoo:gqa', 'user:<name>', 'untrained:<family>/<variant>/<position>', 'hf:owner/name' or 'local:<folder>';
    temperature 0 is greedy; top_k 0 and top_p 1 are off; window: sliding window (0: off); dtype: auto|float32|bfloat16|float16, the model's
    and its cache's."""
    w = Words(request)
    with visitor_job(w, request):
        state = generation_state(w, spec, prompt, max_new_tokens, temperature, top_k, top_p, seed, window, backend,
                                 device, dtype)
    fig, info = step_view(state, 0, request)
    timeline = state["timeline"]
    return timeline.text, api.plot(growth_figure(state, log_axis, request)), len(timeline.rows), api.plot(fig), info


def build_generation_tab(controls: Controls, prompt: gr.Textbox,
                         localized: Localized, first_views: api.FirstViews):
    state = gr.State(None)
    with gr.Row():
        new_tokens = gr.Slider(1, 128, value=32, step=1, label=t("generate.new_tokens"))
        temperature = gr.Slider(0, 2, value=0, step=0.05, label=t("generate.temperature"))
        top_k = gr.Slider(0, 200, value=0, step=1, label=t("generate.top_k"))
        top_p = gr.Slider(0.05, 1, value=1, step=0.05, label=t("generate.top_p"))
        seed = gr.Number(0, precision=0, label=t("generate.seed"))
        window = gr.Slider(0, 128, value=0, step=1, label=t("attention.window"), info=t("generate.window_info"))
        with gr.Column(scale=0, min_width=160):
            generate_btn = gr.Button(t("generate.generate"), variant="primary", elem_id="generate-run")
            cancel_btn = gr.Button(t("attention.cancel"), size="sm", elem_id="cancel-generate")
    output = gr.Textbox(label=t("generate.output"), lines=3, interactive=False)
    with gr.Row():
        log_axis = gr.Checkbox(False, label=t("generate.log_axis"))
    growth_plot = gr.Plot(label=t("generate.growth"))
    gr.Markdown(t("generate.timeline_help"))
    step = gr.Slider(0, 31, value=0, step=1, label=t("generate.step"))
    step_info = gr.Markdown()
    step_plot = gr.Plot(label=t("generate.step_plot"))

    def run(family, variant, position, task, fallback, backend, device, dtype, text, n, temp, k, p, s, win, log,
            request: gr.Request, progress=gr.Progress()):
        """The Generate button: the controls' spec through the same function as /generate, with a progress bar
        (new token k of n) and the Cancel button."""
        w = Words(request)
        spec, _ = choose(w, family, variant, position, task, fallback)

        report = step_bar(progress, lambda done, total: w("progress.token", done=done, total=total))

        with visitor_job(w, request) as cancelled:
            new_state = generation_state(w, str(spec), text, n, temp, k, p, s or 0, win, backend, device, dtype,
                                         progress=report, cancelled=cancelled)
        fig, info = step_view(new_state, 0, request)
        timeline = new_state["timeline"]
        return (timeline.text, growth_figure(new_state, log, request), index_range(len(timeline.rows)),
                fig, info, new_state)

    run_inputs = [*controls.inputs, prompt, new_tokens, temperature, top_k, top_p, seed, window, log_axis]
    run_outputs = [output, growth_plot, step, step_plot, step_info, state]
    generating = generate_btn.click(run, run_inputs, run_outputs, api_visibility="private",
                                    concurrency_limit=GENERATE.admitted, concurrency_id="generate")
    # Cancel takes a queued generation out of the queue (Gradio's cancels) and stops a running one after its token
    cancel_btn.click(cancel, None, None, api_visibility="private", queue=False, cancels=[generating])
    first_views.add(run, run_inputs, run_outputs)

    gr.api(generate, api_name="generate", concurrency_limit=GENERATE.admitted, concurrency_id="generate")
    log_axis.change(growth_figure, [state, log_axis], growth_plot, api_visibility="private")
    step.change(step_view, [state, step], [step_plot, step_info], api_visibility="private")

    def relocalize(state: dict | None, log: bool, at: int, request: gr.Request):
        """After a language switch: the growth plot and the decode step, drawn again from the same generation."""
        if not state:
            return [gr.skip()] * 3
        return [growth_figure(state, log, request), *step_view(state, at, request)]

    localized.on_switch(relocalize, [state, log_axis, step], [growth_plot, step_plot, step_info])
    return generate_btn
