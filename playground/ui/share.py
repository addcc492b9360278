"""Share links: a query string that restores the model, the prompt and the view.

    ?spec=untrained:prefix/GQA/alibi&prompt=To+be&prefix=4&window=0&backend=auto&kind=self&layer=2&head=1

The model travels as its spec, the same text the API and a notebook take. On load, the page reads
the query, sets the controls, runs the analysis of that spec and opens the head. Links made before
specs existed (``?arch=prefix&variant=GQA&pe=alibi&task=&fallback=nearest...``) still open: their
choices resolve to a spec the way the controls do.
"""
from __future__ import annotations

import logging

from urllib.parse import urlencode

import gradio as gr

from playground.config import BACKENDS, DTYPES
from playground.errors import check_int
from playground.ui import service
from playground.ui.i18n import MessageError
from playground.zoo import ZOO, ModelSpec, hub_source
from . import api
from .attention import AttentionTab, analysis_outputs
from .head_view import head_views
from .session import analysis_state
from .controls import Controls, choose, controls_for, pretrained_choices, specific_models
from .progress import download_bar
from .lang import Words, t, translated_js, visitor_error

SLIDER_MAX = 128  # the prefix and window sliders' range
LINK_JS = "(query) => globalThis.location.origin + globalThis.location.pathname + '?' + query"


def query_string(spec: ModelSpec, prompt: str, prefix: int, window: int, backend: str, kind: str, layer: int,
                 head: int, dtype: str = "auto") -> str:
    """The query of a share link: what ``parse`` reads back."""
    return urlencode({"spec": str(spec), "prompt": prompt, "prefix": int(prefix), "window": int(window),
                      "backend": backend, "dtype": dtype, "kind": kind, "layer": int(layer), "head": int(head)})


def _spec_of(query: dict) -> ModelSpec:
    """The link's model: its spec, or (an older link) its controls' choices resolved like the page does."""
    if query.get("spec"):
        return ModelSpec.parse(query["spec"])
    task = query.get("task") or None
    if task in ZOO:  # older links named a zoo task model without its scheme
        task = f"zoo:{task}"
    spec, _ = service.resolve(query.get("arch") or "decoder", query.get("variant") or "MHA", query.get("pe") or "rope",
                              task_model=task, fallback=query.get("fallback") or "nearest")
    return spec


def _int(query: dict, key: str, high: int | None = None) -> int:
    """A query value (text) as an int in 0..high; InputError naming the key otherwise."""
    text = query.get(key) or "0"
    try:
        value = int(text)
    except ValueError:
        value = text
    return check_int(key, value, 0, high)


def parse(query: dict) -> dict | None:
    """The view a query string asks for; None when it holds no prompt (nothing to restore).
    A value the page cannot show (an unknown spec, layer 'x', window -1) raises InputError."""
    if not query.get("prompt"):
        return None
    backend = query.get("backend") or "auto"
    if backend not in BACKENDS:
        raise MessageError("error.backend", backend=backend, valid=", ".join(BACKENDS))
    dtype = query.get("dtype") or "auto"  # older links carry none: the page's default
    if dtype not in DTYPES:
        raise MessageError("error.dtype", dtype=dtype, valid=", ".join(DTYPES))
    return {"spec": _spec_of(query), "prompt": query["prompt"][:service.MAX_PROMPT_CHARS],
            "prefix": _int(query, "prefix", SLIDER_MAX) if "prefix" in query else None,
            "window": _int(query, "window", SLIDER_MAX), "backend": backend, "dtype": dtype,
            "kind": query.get("kind") or "self",
            "layer": _int(query, "layer"), "head": _int(query, "head")}


def build_share(demo: gr.Blocks, controls: Controls, prompt: gr.Textbox, tab: AttentionTab, landing: bool = True):
    """The share-link button, and what the page does when it opens: the link's view (or, without one, the
    default prompt's analysis) restored and drawn. Returns that load chain's last event.

    ``landing``: the default prompt's analysis is made now and written into the page (``initial``), in the
    page's own language, so the overview is drawn as soon as the page is; the load chain then analyzes only
    for a link, a visitor reading another language, or controls that changed before it ran."""
    with gr.Row():
        link_btn = gr.Button(t("share.make"), scale=0, min_width=200)
        link = gr.Textbox(label=t("share.link"), buttons=["copy"], scale=4, elem_id="share-link")
    query = gr.Textbox(visible="hidden")

    def make_query(family, variant, position, task, fallback, backend, dtype, text, prefix, win, kind, layer, head,
                   request: gr.Request):
        spec, _ = choose(Words(request), family, variant, position, task, fallback)
        return query_string(spec, text, prefix, win, backend, kind, layer, head, dtype)

    link_btn.click(make_query, [*controls.model, controls.backend, controls.dtype, prompt, tab.prefix_len, tab.window,
                                tab.kind, tab.layer, tab.head], query, api_visibility="private").then(
        None, query, link, js=LINK_JS)
    restored = gr.State(None)

    def fetch(w: Words, spec: ModelSpec, progress) -> None:
        """A link to a Hub model this server has not downloaded yet: the download, with the page's progress bar."""
        if spec.scheme not in service.PRETRAINED:
            return
        try:
            hub_source.prepare(spec.scheme, spec.name, progress=download_bar(progress))
        except ValueError as e:
            raise visitor_error(w("error.pretrained_open", spec=str(spec), reason=w.render(e))) from None

    def restore(request: gr.Request, progress=gr.Progress()):
        """The link's view: the controls, prompt and sliders set to it (the analysis follows). A Hub model this
        server has not downloaded yet is downloaded first, with the page's progress bar."""
        w = Words(request)
        try:
            view = parse(dict(request.query_params)) if request is not None else None
            if view:
                fetch(w, view["spec"], progress)
            chosen = controls_for(view["spec"]) if view else None
        except ValueError as e:
            raise w.error(e) from None
        folders = pretrained_choices()  # the operator's folders as they are now
        if view is None:
            return [gr.skip()] * 10 + [None, gr.update(choices=folders)]
        keep = lambda v: gr.skip() if v is None else v  # noqa: E731
        pretrained = view["spec"].scheme in service.PRETRAINED  # the link names a Hub id or a local folder
        task = gr.update(choices=specific_models(chosen["task"]), value=chosen["task"]) if pretrained else chosen["task"]
        return [chosen["family"], chosen["variant"], chosen["position"], task, chosen["fallback"],
                view["backend"], view["dtype"], view["prompt"], keep(view["prefix"]), view["window"], view,
                gr.update(choices=folders, value=str(view["spec"])) if pretrained else gr.update(choices=folders)]

    def analyze_restored(view, prefix, device, dtype, grouped, family, variant, position, task, fallback, backend,
                         text, request: gr.Request):
        """The link's spec itself is analyzed (the controls show it, but a spec needs no resolving). Without a
        link the page opens on the controls' model and the default prompt, analyzed: something to see before
        any click (the server's store keeps the analysis, so later visitors get it at once)."""
        w = Words(request)
        if api.shows(shown, w.lang, [view, prefix, device, dtype, grouped, family, variant, position, task, fallback,
                                     backend, text]):
            return [gr.skip()] * len(tab.outputs)  # the page opened with this analysis drawn
        log = logging.getLogger("playground.requests")
        try:
            if view is not None:  # a link's own analysis: its failure is the reader's to see
                return analysis_outputs(w, analysis_state(w, str(view["spec"]), view["prompt"], prefix,
                                                          view["window"], view["backend"], device, view["dtype"]),
                                        grouped)
            try:
                spec, _ = choose(w, family, variant, position, task, fallback)
                state = analysis_state(w, str(spec), text, prefix, 0, backend, device, dtype)
            except api.GpuRefused:
                raise
            except gr.Error as e:  # the controls hold something the page cannot run yet: the reader sees why on Analyze
                log.warning("the landing analysis was not computed: %s", e.message)
                return [gr.skip()] * len(tab.outputs)
            return analysis_outputs(w, state, grouped)
        except api.GpuRefused as e:  # no GPU time for this visitor now: the tab says so, and what to do
            log.warning("the landing analysis was refused a GPU: %s", e.message)
            return api.refusal_outputs(tab.outputs, e.message)

    def open_restored(view, state, request: gr.Request):
        if state is None:
            return [gr.skip()] * (3 + len(tab.view_outputs))
        if view is None:  # the landing view: the first head of the first kind
            kind = state.result(Words(request)).kinds[0]
            return [kind, 0, 0, *head_views(state, kind, 0, 0, "max", request)]
        kinds = state.result(Words(request)).kinds
        kind = view["kind"] if view["kind"] in kinds else kinds[0]
        return [kind, view["layer"], view["head"], *head_views(state, kind, view["layer"], view["head"], "max", request)]

    analyze_inputs = [restored, tab.prefix_len, controls.device, controls.dtype, tab.group_kv, *controls.model,
                      controls.backend, prompt]
    shown = None  # read by analyze_restored, which built_in calls before it is set
    shown = api.built_in(analyze_restored, analyze_inputs, tab.outputs) if landing else None

    return controls.then_describe(demo.load(
        restore, None, [*controls.model, controls.backend, controls.dtype, prompt, tab.prefix_len, tab.window,
                        restored, controls.pretrained], api_visibility="private")).then(
        analyze_restored, analyze_inputs, tab.outputs,
        api_visibility="private").then(
        open_restored, [restored, tab.state], [tab.kind, tab.layer, tab.head, *tab.view_outputs],
        api_visibility="private").then(None, js=translated_js("landing"))
