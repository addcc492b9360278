"""The Generate tab: KV cache growth measured during generation, and a step-by-step decode timeline."""
from __future__ import annotations

import html

import gradio as gr

from .. import plots, service
from .controls import Controls, choose


def growth_figure(state: dict | None, log: bool):
    if not state:
        return None
    tl: service.Timeline = state["timeline"]
    held = [state["start"] + i for i in range(len(tl.cache_bytes))]
    label = state["label"] + (" (self + cross K/V)" if tl.source_labels else "")
    return plots.kv_growth(held, tl.cache_bytes, state["formulas"], label=label, log=log,
                           max_tokens=max(held[-1], 2 * state["start"]))


def step_view(state: dict | None, step: int):
    if not state:
        return None, ""
    tl: service.Timeline = state["timeline"]
    step = max(0, min(int(step), len(tl.rows) - 1))
    keys = tl.prompt_labels + tl.new_labels[:step]
    kind = next(k for k in tl.rows[step] if k != "cross")  # self, decoder_self or implicit
    what = "its state" if kind == "implicit" else f"{len(keys)} cached keys"
    fig = plots.step_rows(tl.rows[step][kind], keys, f"Step {step}: the new token over {what}",
                          new_token=tl.new_labels[step], untrained=state["untrained"], signed=kind == "implicit")
    held = "state summarises" if kind == "implicit" else "cache holds"
    info = (f"Step **{step}** of {len(tl.rows) - 1}: {held} **{len(keys)}** tokens, "
            f"**{tl.cache_bytes[step]:,} bytes** measured from the model's cache or state; next token "
            f"`{html.escape(tl.new_labels[step])}`")
    return fig, info


def build_generation_tab(controls: Controls, prompt: gr.Textbox):
    state = gr.State(None)
    with gr.Row():
        new_tokens = gr.Slider(1, 128, value=32, step=1, label="New tokens")
        temperature = gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0 = greedy)")
        top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k (0 = off)")
        top_p = gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p")
        seed = gr.Number(0, precision=0, label="Seed")
        generate_btn = gr.Button("Generate", variant="primary", scale=0, min_width=160)
    output = gr.Textbox(label="Generated text", lines=3, interactive=False)
    with gr.Row():
        log_axis = gr.Checkbox(False, label="Log y axis")
    growth_plot = gr.Plot(label="KV cache growth")
    gr.Markdown("### Decode timeline\nScrub through the steps: the new token's attention over the cache "
                "in every layer and head, and the cache size at that step.")
    step = gr.Slider(0, 31, value=0, step=1, label="Step")
    step_info = gr.Markdown()
    step_plot = gr.Plot(label="Attention of the new token")

    def run(family, variant, position, task, fallback, backend, device, text, n, temp, k, p, s, log):
        choice, _ = choose(family, variant, position, task, fallback, backend, device)
        try:
            timeline, notes = service.generate_text(choice, text, n, temperature=temp, top_k=int(k), top_p=p,
                                                    seed=int(s or 0))
        except ValueError as e:
            raise gr.Error(str(e)) from None
        for note in notes:
            gr.Warning(note)
        cfg = service.load(choice).model.cfg
        new_state = {"timeline": timeline, "untrained": choice.untrained, "label": choice.label,
                     "start": len(timeline.prompt_labels), "formulas": service.kv_formulas(cfg, "fp32")}
        fig, info = step_view(new_state, 0)
        return (timeline.text, growth_figure(new_state, log), gr.update(maximum=len(timeline.rows) - 1, value=0),
                fig, info, new_state)

    generate_btn.click(run, [*controls.inputs, prompt, new_tokens, temperature, top_k, top_p, seed, log_axis],
                       [output, growth_plot, step, step_plot, step_info, state], api_name="generate",
                       concurrency_limit=2)
    log_axis.change(growth_figure, [state, log_axis], growth_plot, api_visibility="private")
    step.change(step_view, [state, step], [step_plot, step_info], api_visibility="private")
    return generate_btn
