"""The Attention tab: analyze a prompt, see every layer and head, open one, see its mask.

A View switch (ui/views.py) shows the same prompt beyond raw weights: value-weighted norms, rollout,
logit lens, head ablation; one head's views live in ui/head_view.py. Its endpoints, ``/analyze`` (here),
``/head`` and ``/tile`` (head_view) and ``/view``, take a model spec, the prompt and named options; the
Analyze button resolves the model controls to a spec and calls the same function.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import html
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from playground import plots
from playground.config import RECURRENT_FAMILIES
from playground.inspect.analysis import Analysis
from playground.inspect.step_through import kv_groups
from playground.ui import service
from playground.serving.lanes import ANALYZE
from . import api
from .cancels import cancel, visitor_job
from .controls import Controls, choose, index_range
from .progress import step_bar
from .lang import Localized, Words, t
from .scripts import page_script
from .head_view import POOLING, block_view, head, head_figures, head_views, tile
from .session import AnalysisRef, analysis_state, kind_title, layer_name, layer_type
from .views import build_views

ZOOM_ID = "head-zoom"
EXPORT_MAX_WEIGHTS = 1 << 24  # an export writes every weight: 16.7 M of them is already ~150 MB of JSON
OVERVIEW_SLOTS = ("self", "decoder_self", "cross")  # encoder self-attention shares the first slot
PICK_ID = "head-pick"
# A click on an overview cell opens that head (assets/js/click_head.js): the cell becomes {kind, layer, head},
# typed into the hidden textbox PICK_ID, whose change event opens the head on the server.
CLICK_HEAD = page_script("click_head", headPickId=PICK_ID) + page_script("zoom_head", headZoomId=ZOOM_ID)


def kernel_groups(result: Analysis) -> list[tuple[str, list[int], str, str, str | None]]:
    """What ran, as recorded per layer: (kind, layers, kernel, call, layer type) for each run of consecutive layers
    of one attention kind and type that ran the same kernel with the same call."""
    groups: list[tuple[str, list[int], str, str, str | None]] = []
    for kind in result.kinds:
        for m in (m for m in result.maps if m.kind == kind):
            last = groups[-1] if groups else None
            if last and last[0] == kind and last[2:] == (m.kernel, m.call, m.layer_type) and last[1][-1] == m.layer - 1:
                last[1].append(m.layer)
            else:
                groups.append((kind, [m.layer], m.kernel, m.call, m.layer_type))
    return groups


def badge(w: Words, state: AnalysisRef) -> str:
    """The kernel each layer ran and how it was called (from the records, never a guess), why auto fell back
    where it did, and how far the output is from the float32 explicit path."""
    result = state.result(w)
    lines = [f"<code>{html.escape(str(state.spec))}</code>",
             w("badge.ran", asked=html.escape(state.backend), device=html.escape(state.device),
               dtype=html.escape(result.dtype), ms=result.elapsed_ms)]
    for kind, layers, kernel, call, code in kernel_groups(result):
        which = (w("badge.layer", n=layers[0]) if len(layers) == 1 else
                 w("badge.layers", first=layers[0], last=layers[-1]))
        if code:
            which = w("badge.typed", layers=which, type=w.render(layer_type(code)))
        how = "" if kernel == "implicit" else w(f"call.{call.replace(' ', '_')}")
        lines.append(w("badge.group", kind=w(f"kind_short.{kind}"), layers=which, kernel=w(f"kernel.{kernel}"),
                       call=html.escape(how)))
    for reason in dict.fromkeys(m.reason for m in result.maps if m.reason):
        lines.append(w("badge.fallback", reason=html.escape(reason)))
    caps = sorted({m.source.softcap for m in result.maps if getattr(m.source, "softcap", None)})
    if caps:  # Gemma 2: every score passes through c·tanh(s/c) before the softmax
        lines.append(w("badge.softcap", cap=", ".join(f"{c:g}" for c in caps)))
    if any(getattr(m.source, "sinks", None) is not None for m in result.maps):
        lines.append(w("badge.sinks"))
    if result.kernels == ["implicit"]:
        lines.append(w("badge.implicit", diff=result.max_abs_diff))
    elif result.recomputed:
        lines.append(w("badge.recomputed", diff=result.max_abs_diff))
    else:
        lines.append(w("badge.explicit"))
    if state.untrained:
        lines.append(f"<span class='untrained'>{w('plot.untrained')}</span>")
    return "<div class='badge'>" + "<br>".join(lines) + "</div>"


EXPORTS_KEPT = 16  # export folders kept on disk: the oldest go (Gradio serves its own copy from its cache)


def export_folder(root: Path | None = None, kept: int = EXPORTS_KEPT) -> Path:
    """A new folder for one export under ``root`` (default: the temp dir's ``playground-exports``), the oldest
    deleted past ``kept``: however many visitors export, the disk holds a bounded number of them."""
    root = Path(root or Path(tempfile.gettempdir()) / "playground-exports")
    root.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for stale in old[:max(0, len(old) - kept + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="attention-", dir=root))


def export_files(state: dict | None, request: gr.Request = None) -> list[str]:
    """The analysis as JSON (weights to 4 significant digits) and as a lossless .npz, both naming the model's spec
    (a Hub id for a pretrained model)."""
    if not state:
        raise Words(request).error("error.export_first")
    result: Analysis = state.result(Words(request))
    weights = sum(int(np.prod(m.shape)) for m in result.maps)
    if weights > EXPORT_MAX_WEIGHTS:  # every weight of a long prompt would be gigabytes of JSON
        raise Words(request).error("error.export_too_large", weights=weights, most=EXPORT_MAX_WEIGHTS)
    # while it is written: the weights as float32 arrays, a boolean mask each, and the JSON text (<= 16 B a weight)
    with api.admitted(Words(request), weights * (4 + 1 + 16), f"{state.spec} → JSON, npz"):
        folder = export_folder()
        (folder / "attention.json").write_text(json.dumps({"spec": str(state.spec), **result.to_dict()}))
        arrays = {f"{kind}_weights": result.weights(kind) for kind in result.kinds}  # (n_layer, nh, Tq, Tk)
        arrays.update({f"{kind}_mask": next(m.mask for m in result.maps if m.kind == kind) for kind in result.kinds})
        np.savez_compressed(folder / "attention.npz", token_ids=np.array(result.token_ids),
                            labels=np.array(result.labels), source_ids=np.array(result.source_ids, dtype=np.int64),
                            source_labels=np.array(result.source_labels, dtype=str),
                            config=np.array(json.dumps(result.config)), spec=np.array(str(state.spec)), **arrays)
    return [str(folder / "attention.json"), str(folder / "attention.npz")]


def head_groups(result: Analysis) -> list[list[int]] | None:
    """The query heads each K/V head serves, K/V head by K/V head; None for a recurrent model (no K/V heads)."""
    if result.config["family"] in RECURRENT_FAMILIES:
        return None
    source = result.maps[0].source  # the heads as the layer computed them (a Hub model's config may name them otherwise)
    return kv_groups(source.n_heads, source.n_kv_heads)


def group_note(w: Words, result: Analysis | None) -> str:
    """What grouping the overview's columns by K/V head does for this model: which query heads share which
    K/V head (GQA, MQA), or that it changes nothing (MHA, recurrent models)."""
    if result is None:
        return w("attention.group_kv_info")
    groups = head_groups(result)
    if groups is None:
        return w("attention.group_kv_none")
    if all(len(g) == 1 for g in groups):
        return w("attention.group_kv_mha", n=len(groups))
    shared = "; ".join(w("plot.kv_group", g=g, heads=" ".join(f"h{h}" for h in members))
                       for g, members in enumerate(groups))
    return w("attention.group_kv_shared", nh=sum(map(len, groups)), nkv=len(groups), groups=shared)


def overview_plots(w: Words, state: dict, group_kv: bool = False, how: str = "max") -> list:
    """(figure, title) of the three overview slots: self (or encoder self, or implicit), decoder self, cross;
    (None, None) for a slot this model has no attention for. ``group_kv``: head columns grouped by K/V head;
    ``how``: each cell the max or the mean of the weights it pools."""
    result, slots = state.result(w), []
    if how not in POOLING:
        raise w.error(ValueError(f"pooling must be one of {', '.join(POOLING)}, got {how!r}"))
    groups = head_groups(result) if group_kv else None
    for slot in OVERVIEW_SLOTS:
        kinds = [k for k in result.kinds if k == slot or (slot == "self" and k in ("encoder_self", "implicit"))]
        if kinds:
            title = w.render(kind_title(kinds[0], result))
            implicit = kinds[0] == "implicit"
            rows = [w.render(layer_name(m.layer, m.layer_type)) for m in result.of_kind(kinds[0])]
            slots.append((plots.pooled_overview(result, kinds[0], title, how, untrained=state.untrained, words=w,
                                                groups=None if implicit else groups, row_names=rows), title))
        else:
            slots.append((None, None))
    return slots


def kind_choices(w: Words, result: Analysis, value: str):
    return gr.update(choices=[(w(f"kind_short.{k}"), k) for k in result.kinds], value=value)


def overview_updates(w: Words, state: dict, group_kv: bool = False, how: str = "max") -> list:
    """The three overview slots, then the group-by-K/V-head box's note for this model."""
    return [*(gr.update(value=fig, visible=True, label=title) if fig else gr.update(value=None, visible=False)
              for fig, title in overview_plots(w, state, group_kv, how)), gr.update(info=group_note(w, state.result(w)))]


def analysis_outputs(w: Words, state: dict, group_kv: bool = False, how: str = "max") -> list:
    """What the Attention tab shows of an analysis: badge, overviews, the grouping note, head pickers, state."""
    result = state.result(w)
    cfg = result.config
    # the head, its mask and the overlay follow in a second step, so the overview shows first
    return [badge(w, state), *overview_updates(w, state, group_kv, how), kind_choices(w, result, result.kinds[0]),
            index_range(cfg["n_layer"]), index_range(cfg["n_heads"]), state]


# ----------------------------------------------------------------------------- the API


def analyze(spec: str, prompt: str, prefix_len: int = 0, window: int = 0, backend: str = "auto",
            device: str = "cpu", dtype: str = "auto", group_kv: bool = False,
            request: gr.Request = None) -> tuple[str, dict | None, dict | None, dict | None]:
    """Analyze a prompt: the badge (kernel that ran, timing, faithfulness) and the overview of every layer and
    head: self-attention (or encoder self, or implicit), decoder self and cross-attention (None where absent).

    spec: 'zoo:gqa', 'user:<name>', 'untrained:<family>/<variant>/<position>', 'hf:owner/name' or 'local:<folder>';
    prefix_len: bidirectional prefix of a prefix decoder; window: sliding window (0: off); backend: auto|flash|efficient|cudnn|math|flex|explicit;
    dtype: auto|float32|bfloat16|float16 (auto: bf16 or fp16 on CUDA, fp32 on the CPU); group_kv: head columns
    grouped by the K/V head they share (GQA, MQA; MHA and recurrent models: unchanged)."""
    w = Words(request)
    with visitor_job(w, request):
        state = analysis_state(w, spec, prompt, prefix_len, window, backend, device, dtype)
    return badge(w, state), *(api.plot(fig) for fig, _ in overview_plots(w, state, group_kv))


# ----------------------------------------------------------------------------- the tab


@dataclass
class AttentionTab:
    """What other parts of the page (the share link) wire to."""

    outputs: list            # what ``analysis_outputs`` fills
    prefix_len: gr.Slider
    window: gr.Slider
    kind: gr.Dropdown
    layer: gr.Slider
    head: gr.Slider
    state: gr.State
    view_outputs: list
    group_kv: gr.Checkbox


def prefix_and_window(prefix_applies: bool = False) -> tuple[gr.Slider, gr.Slider]:
    """The prefix-length and sliding-window sliders, the same in every tab that analyzes. The prefix slider
    starts disabled (``wire_prefix`` enables it for a prefix decoder) unless ``prefix_applies``."""
    return (gr.Slider(0, 128, value=8, step=1, label=t("attention.prefix"), interactive=prefix_applies,
                      info=t("attention.prefix_info" if prefix_applies else "attention.prefix_other")),
            gr.Slider(0, 128, value=0, step=1, label=t("attention.window"), info=t("attention.window_info")))


def wire_prefix(controls: Controls, prefix_len: gr.Slider, localized: Localized) -> None:
    """The prefix slider applies to the prefix decoder only: enable it, and say so, when that is the model."""
    def prefix_applies(family, task, request: gr.Request):
        applies = family == "prefix" and not task
        return gr.update(interactive=applies, info=Words(request)("attention.prefix_info" if applies
                                                                  else "attention.prefix_other"))

    localized.on_switch(prefix_applies, [controls.family, controls.task], [prefix_len])
    gr.on([controls.family.change, controls.task.change], prefix_applies, [controls.family, controls.task], prefix_len,
          api_visibility="private")


def build_attention_tab(controls: Controls, prompt: gr.Textbox, localized: Localized) -> AttentionTab:
    state = gr.State(None)
    with gr.Row():
        prefix_len, window = prefix_and_window()
        analyze_btn = gr.Button(t("attention.analyze"), variant="primary", scale=0, min_width=160,
                                elem_id="attention-analyze")
        cancel_btn = gr.Button(t("attention.cancel"), scale=0, min_width=100, elem_id="cancel-analysis")
    badge_html = gr.HTML()
    wire_views = build_views(state, localized)
    with gr.Row():  # grouping applies to the raw weights' overview and to the value norms' heads
        group_kv = gr.Checkbox(False, label=t("attention.group_kv"), info=t("attention.group_kv_info"),
                               elem_id="group-kv")
    with gr.Column() as overview_box:
        pooling = gr.Radio(list(POOLING), value="max", label=t("attention.pooling"),
                           info=t("attention.pooling_info"), elem_id="pooling")
        overviews = [gr.Plot(label=t(key), visible=i == 0, elem_classes="overview-plot") for i, key in
                     enumerate(["attention.overview", "kind.decoder_self", "kind.cross"])]
    redraw_view = wire_views(overview_box, group_kv)
    picked = gr.Textbox(visible="hidden", elem_id=PICK_ID)  # {kind, layer, head} from a click on the overview
    gr.Markdown(t("attention.one_head"))
    with gr.Row():
        kind = gr.Dropdown([(t("kind_short.self"), "self")], value="self", label=t("attention.kind"), scale=1)
        layer = gr.Slider(0, 3, value=0, step=1, label=t("common.layer"), scale=2)
        head_ = gr.Slider(0, 3, value=0, step=1, label=t("common.head"), scale=2)
        open_btn = gr.Button(t("attention.open_head"), scale=0, min_width=140)
    head_plot = gr.Plot(label=t("common.head"), elem_classes="head-map")
    zoom = gr.Textbox(visible="hidden", elem_id=ZOOM_ID)  # {kind, layer, head, rows, cols} from a box zoom
    with gr.Accordion(t("attention.masks"), open=True):
        with gr.Row():
            mask_plot = gr.Plot(label=t("attention.mask"))
            block_plot = gr.Plot(label=t("attention.blocks"), elem_id="block-mask")
            overlay_plot = gr.Plot(label=t("attention.mask_and_weights"))
        block_note = gr.Markdown(elem_id="block-note")
    with gr.Accordion(t("attention.export"), open=False):
        gr.Markdown(t("attention.export_help"))
        export_btn = gr.Button(t("attention.prepare"))
        files = gr.File(label=t("attention.data"), file_count="multiple", interactive=False)

    def analyze_controls(family, variant, position, task, fallback, backend, device, dtype, text, prefix, win,
                         grouped, how, request: gr.Request = None, progress=gr.Progress()):
        """The Analyze button: the controls' spec through the same function as /analyze, with a progress bar
        (attention layer k of L), an estimate first when the prompt is long, and the Cancel button."""
        w = Words(request)
        spec, _ = choose(w, family, variant, position, task, fallback)
        try:
            guess = service.estimate(spec, text, device) if not spec.is_task else None
        except ValueError:
            guess = None  # the analysis itself says what is wrong
        if guess and guess["seconds"] > 2:
            w.info("info.estimate", tokens=guess["tokens"], seconds=guess["seconds"], mb=guess["bytes"] / 1e6,
                   device=device)

        report = step_bar(progress, lambda done, total: w("progress.layer", done=done, total=total))

        with visitor_job(w, request) as cancelled:
            state = analysis_state(w, str(spec), text, prefix, win, backend, device, dtype, progress=report,
                                   cancelled=cancelled)
        return analysis_outputs(w, state, grouped, how)

    def first_head(state: dict | None, kind: str, how: str, request: gr.Request):
        """Layer 0, head 0 after an analysis (pooled to at most HEAD_CELLS a side), its mask and the block mask."""
        if not state:
            return None, None, None, *block_view(Words(request), state, kind, 0)
        return head_views(state, kind, 0, 0, how, request)

    outputs = [badge_html, *overviews, group_kv, kind, layer, head_, state]
    view_outputs = [head_plot, mask_plot, overlay_plot, block_plot, block_note]
    analysis = analyze_btn.click(analyze_controls, [*controls.inputs, prompt, prefix_len, window, group_kv, pooling],
                                 outputs, api_visibility="private", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    analysis.then(first_head, [state, kind, pooling], view_outputs, api_visibility="private").then(
        *redraw_view, api_visibility="private")
    # Cancel takes a queued analysis out of the queue (Gradio's cancels), and stops a running one after its current
    # layer (the session's flag, which the analysis reads between layers)
    cancel_btn.click(cancel, None, None, api_visibility="private", queue=False, cancels=[analysis])
    gr.api(analyze, api_name="analyze", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    # cheap reads of a stored analysis have a lane of their own: a zoom never waits behind two long analyses
    gr.api(head, api_name="head", concurrency_limit=2, concurrency_id="read")
    gr.api(tile, api_name="tile", concurrency_limit=2, concurrency_id="read")
    export_btn.click(export_files, state, files, api_visibility="private")
    view_inputs = [state, kind, layer, head_, pooling]

    def zoom_to(state: dict | None, asked: str, how: str, request: gr.Request):
        """A box zoom on the head map: the same head, mask and overlay for the window it names."""
        try:
            z = json.loads(asked)
            kind_, layer_, head_i = str(z["kind"]), int(z["layer"]), int(z["head"])
            window_ = {"rows": [int(v) for v in z["rows"]], "cols": [int(v) for v in z["cols"]]}
        except (ValueError, TypeError, KeyError):
            return [gr.skip()] * 3
        w = Words(request)
        if not state or kind_ not in state.result(w).kinds:
            return [gr.skip()] * 3
        return head_figures(w, state, kind_, layer_, head_i, window_, how)

    zoom.change(zoom_to, [state, zoom, pooling], [head_plot, mask_plot, overlay_plot], api_visibility="private",
                concurrency_limit=2, concurrency_id="read")
    open_btn.click(head_views, view_inputs, view_outputs, api_visibility="private")

    def open_picked(state: dict | None, picked: str, how: str, request: gr.Request):
        """The head a click on the overview named: set the pickers and open it."""
        try:
            p = json.loads(picked)
            kind_, layer_, head_i = str(p["kind"]), int(p["layer"]), int(p["head"])
        except (ValueError, TypeError, KeyError):
            return [gr.skip()] * (3 + len(view_outputs))
        if not state or kind_ not in state.result(Words(request)).kinds:
            return [gr.skip()] * (3 + len(view_outputs))
        return [kind_, layer_, head_i, *head_views(state, kind_, layer_, head_i, how, request)]

    picked.change(open_picked, [state, picked, pooling], [kind, layer, head_, *view_outputs], api_visibility="private")

    def regroup(state: dict | None, grouped: bool, how: str, request: gr.Request):
        """The group-by-K/V-head box and the max / mean switch: the overviews drawn again from the same analysis."""
        if not state:
            return [gr.skip()] * (len(overviews) + 1)
        return overview_updates(Words(request), state, grouped, how)

    gr.on([group_kv.change, pooling.change], regroup, [state, group_kv, pooling], [*overviews, group_kv],
          api_visibility="private")

    def relocalize(state: dict | None, kind_: str, layer_: int, head_i: int, grouped: bool, how: str,
                   request: gr.Request):
        """After a language switch: what is on screen, drawn again from the same analysis."""
        if not state:
            return [gr.skip()] * (3 + len(overviews) + len(view_outputs))
        w = Words(request)
        return [badge(w, state), *overview_updates(w, state, grouped, how),
                kind_choices(w, state.result(w), kind_), *head_views(state, kind_, layer_, head_i, how, request)]

    localized.on_switch(relocalize, [state, kind, layer, head_, group_kv, pooling],
                        [badge_html, *overviews, group_kv, kind, *view_outputs])
    gr.on([kind.input, layer.release, head_.release], head_views, view_inputs, view_outputs, api_visibility="private")
    wire_prefix(controls, prefix_len, localized)
    return AttentionTab(outputs, prefix_len, window, kind, layer, head_, state, view_outputs, group_kv)
