"""The KV-cache lab: how small can the cache get, and what does the model lose for it?

One text through a zoo model, teacher-forced, with its cache under each chosen policy (a window, StreamingLLM's
sinks, H2O, SnapKV, int8 and int4 after KIVI) beside the full cache: a table and a chart of the bytes each held
against the loss it cost, the caches growing as the text is read (measured, and by formula), and at one step the
keys each policy had kept, over the full cache's attention. ``/kvlab`` runs the same from the API.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import gradio as gr

from playground import plots
from playground.inspect.analysis import Cancelled
from playground.serving.lanes import ANALYZE
from playground.ui.i18n import msg
from playground.inspect.kv_lab import EVICTING, LAB_DEFAULT, LAB_POLICIES, PolicyRun
from playground.ui.service.kv_lab import (
    MAX_LAB_TOKENS, LabResult, architecture_name, lab_defaults, lab_models, run_lab)
from playground.zoo import ModelSpec
from . import api
from .cancels import cancel, visitor_job
from .controls import index_range
from .progress import step_bar
from .lang import Localized, Words, english, t, visitor_error

HEADERS = ["kvlab.col_policy", "kvlab.col_bytes", "kvlab.col_share", "kvlab.col_nll", "kvlab.col_kl",
           "kvlab.col_agree"]
PASSAGE = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
           "arrows of outrageous fortune, or to take arms against a sea of troubles, and by opposing end them. To "
           "die, to sleep; no more; and by a sleep to say we end the heart-ache and the thousand natural shocks that "
           "flesh is heir to: 'tis a consummation devoutly to be wish'd. To die, to sleep; to sleep, perchance to "
           "dream: ay, there's the rub, for in that sleep of death what dreams may come when we have shuffled off "
           "this mortal coil, must give us pause.")


def run_label(w: Words, run: PolicyRun) -> str:
    """What the page calls a run, in the reader's language: a policy with its knob, or another architecture's name
    (the API's summaries keep the library's English labels, ``Policy.label``)."""
    p = run.policy
    if run.name != p.label:  # another architecture: its variant and spec
        return run.name
    if p.kind == "quant":
        return p.label
    return w(f"kvlab.label_{p.kind}", n=p.budget, sinks=p.sinks, window=p.budget - p.sinks, recent=p.recent)


def table(w: Words, result: LabResult) -> dict:
    full = result.runs[0]
    rows = []
    for run in result.runs:
        s = run.summary(full)
        rows.append([run_label(w, run), f"{s['bytes'] / 1024:,.1f} KiB", f"{s['bytes_share']:.0%}", f"{s['nll_increase']:+.4f}",
                     f"{s['kl']:.4f}", f"{s['top1_agreement']:.0%}"])
    return {"headers": [w(h) for h in HEADERS], "data": rows}


def tradeoff_figure(w: Words, result: LabResult):
    full = result.runs[0]
    names = {"full": w("plot.full_cache"), "quant": w("kvlab.family_quant"),
             **{kind: w(f"kvlab.policy_{kind}") for kind in EVICTING}}
    return plots.kv_tradeoff([{**run.summary(full), "policy": run_label(w, run)} for run in result.runs],
                             msg("kvlab.tradeoff_title", model=str(result.spec), n=len(result.labels)), words=w,
                             family_names=names)


def growth_figure(w: Words, result: LabResult):
    steps = list(range(1, len(result.labels)))
    series, formulas = {}, {}
    for run in result.runs:
        name = run_label(w, run)
        series[name], formulas[name] = (steps, run.bytes.tolist()), (steps, [run.formula(t) for t in steps])
    return plots.kv_policy_growth(series, formulas, msg("kvlab.growth_title", layers=result.n_layer), words=w)


def kept_figure(w: Words, result: LabResult, step: int, layer: int, head: int):
    """The keys each policy held at ``step`` (0-based: the step that read token ``step``) in ``layer``, over the
    full cache's attention of ``head`` there."""
    step = min(max(int(step), 0), len(result.runs[0].weights) - 1)
    layer, head = min(max(int(layer), 0), result.n_layer - 1), min(max(int(head), 0), result.n_heads - 1)
    row = result.runs[0].weights[step][layer, head]
    # the policies' kept keys (another architecture's full cache keeps every key: not drawn)
    kept = {run_label(w, run): run.kept[step][layer] for run in result.runs[1:] if run.policy.kind != "full"}
    return plots.kv_kept_map(row, kept, result.labels[:step + 1],
                             msg("kvlab.kept_title", step=step, layer=layer, head=head,
                                 token=result.labels[step]), words=w)


def lab_state(w: Words, spec: str, text: str, kinds: list[str], tokens: int, budget: float, sinks: int,
              recent: float, window: int, device: str, progress=None, cancelled=None,
              architectures: list[str] = (), sweep: bool = False) -> LabResult:
    model = api.spec(w, spec)
    others = [str(api.spec(w, a)) for a in architectures or []]
    try:
        return api.run(w, run_lab, model, text, list(kinds or []), architectures=others, tokens=tokens, budget=budget,
                       sinks=sinks, recent=recent, window=window, sweep=sweep, device=device, lang=w.lang,
                       progress=progress, cancelled=cancelled)
    except Cancelled as e:
        raise visitor_error(w("error.cancelled", detail=str(e))) from None


def kvlab(spec: str, text: str, policies: str = ",".join(LAB_DEFAULT), tokens: int = 128, budget: float = 0.25,
          sinks: int = 4, recent: float = 0.5, window: int = 8, device: str = "cpu", architectures: str = "",
          sweep: bool = False, request: gr.Request = None) -> tuple[list, dict, dict]:
    """The KV-cache lab: the first ``tokens`` tokens of ``text`` through a zoo decoder (``spec``, e.g. 'zoo:lab-mha')
    with its cache under each policy of ``policies`` (comma-separated: window, sinks, h2o, snapkv, int8, int4) beside
    the full cache, then through each of ``architectures`` (comma-separated lab models, e.g. 'zoo:lab-mqa,zoo:lab-mla')
    with its own full cache, against the first model's. Returns per run {policy, bytes (mean held), bytes_share,
    nll_increase, kl, top1_agreement}, and the bytes-against-loss and cache-growth figures. ``budget``: the share of
    the tokens an evicting cache keeps; ``sinks``: StreamingLLM's first tokens; ``recent``: H2O's share of its budget
    for the latest tokens; ``window``: SnapKV's observation window; ``sweep``: each of window, sinks, h2o and snapkv
    at half, the given and twice the given budget (a curve each in the bytes-against-loss figure)."""
    w = Words(request)
    with visitor_job(w, request) as cancelled:
        result = lab_state(w, spec, text, _names(policies), tokens, budget, sinks, recent, window, device,
                           cancelled=cancelled, architectures=_names(architectures), sweep=bool(sweep))
    full = result.runs[0]
    return ([run.summary(full) for run in result.runs], api.plot(tradeoff_figure(w, result)),
            api.plot(growth_figure(w, result)))


def _names(text: str) -> list[str]:
    return [p.strip() for p in str(text or "").split(",") if p.strip()]


def build_kv_lab_tab(localized: Localized, device: gr.Dropdown):
    gr.Markdown(t("kvlab.help"))
    models = lab_models()
    first, compared = lab_defaults()
    with gr.Row():
        model = gr.Dropdown(models, value=first, label=t("kvlab.model"), info=t("kvlab.model_info"),
                            allow_custom_value=True, scale=2)
        tokens = gr.Slider(8, MAX_LAB_TOKENS, value=128, step=8, label=t("kvlab.tokens"), scale=2)
        kinds = gr.CheckboxGroup([(t(f"kvlab.policy_{k}"), k) for k in LAB_POLICIES], value=list(LAB_DEFAULT),
                                 label=t("kvlab.policies"), scale=3)
    architectures = gr.CheckboxGroup([(architecture_name(ModelSpec.parse(m)), m) for m in models], value=compared,
                                     label=t("kvlab.architectures"), info=t("kvlab.architectures_info"),
                                     elem_id="kvlab-architectures")
    with gr.Row():
        budget = gr.Slider(0.05, 1.0, value=0.25, step=0.05, label=t("kvlab.budget"), info=t("kvlab.budget_info"))
        sinks = gr.Slider(0, 16, value=4, step=1, label=t("kvlab.sinks"))
        recent = gr.Slider(0.1, 1.0, value=0.5, step=0.1, label=t("kvlab.recent"))
        window = gr.Slider(1, 32, value=8, step=1, label=t("kvlab.window"))
        sweep = gr.Checkbox(False, label=t("kvlab.sweep"), info=t("kvlab.sweep_info"), elem_id="kvlab-sweep")
    text = gr.Textbox(PASSAGE, lines=3, label=t("kvlab.text"))
    with gr.Row():
        run_btn = gr.Button(t("kvlab.run"), variant="primary", elem_id="kvlab-run")
        cancel_btn = gr.Button(t("attention.cancel"), variant="stop", elem_id="kvlab-cancel")
    summary = gr.Dataframe(headers=english(HEADERS), interactive=False, label=t("kvlab.table"), elem_id="kvlab-table")
    localized.table(summary, HEADERS)
    with gr.Row():
        tradeoff = gr.Plot(show_label=False, elem_id="kvlab-tradeoff")
        growth = gr.Plot(show_label=False, elem_id="kvlab-growth")
    with gr.Row():
        step = gr.Slider(0, 1, value=0, step=1, label=t("kvlab.step"))
        layer = gr.Slider(0, 1, value=0, step=1, label=t("common.layer"))
        head = gr.Slider(0, 1, value=0, step=1, label=t("common.head"))
    kept = gr.Plot(show_label=False, elem_id="kvlab-kept")
    state = gr.State(None)

    def run(model_, text_, kinds_, tokens_, budget_, sinks_, recent_, window_, device_, architectures_, sweep_,
            request: gr.Request, progress=gr.Progress()):
        w = Words(request)

        report = step_bar(progress, lambda done, total: w("kvlab.progress", done=done, total=total))

        with visitor_job(w, request) as cancelled:
            result = lab_state(w, model_, text_, kinds_, tokens_, budget_, sinks_, recent_, window_, device_,
                               progress=report, cancelled=cancelled, architectures=architectures_, sweep=sweep_)
        last = len(result.runs[0].weights) - 1
        return (table(w, result), tradeoff_figure(w, result), growth_figure(w, result),
                gr.update(maximum=last, value=last), index_range(result.n_layer), index_range(result.n_heads),
                kept_figure(w, result, last, 0, 0), result)

    def redraw(result, step_, layer_, head_, request: gr.Request):
        return None if result is None else kept_figure(Words(request), result, step_, layer_, head_)

    running = run_btn.click(run, [model, text, kinds, tokens, budget, sinks, recent, window, device, architectures,
                                  sweep],
                            [summary, tradeoff, growth, step, layer, head, kept, state], api_visibility="private",
                            concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    cancel_btn.click(cancel, None, None, api_visibility="private", queue=False, cancels=[running])
    gr.on([step.release, layer.release, head.release], redraw, [state, step, layer, head], kept,
          api_visibility="private")
    gr.api(kvlab, api_name="kvlab", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
