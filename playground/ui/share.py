"""Share links: a query string that restores the model, the prompt and the view.

    ?arch=prefix&variant=GQA&pe=alibi&prompt=To%20be&prefix=4&window=0&kind=self&layer=2&head=1

On load, the page reads the query, sets the controls, runs the analysis and opens the head.
"""
from __future__ import annotations

import gradio as gr

from .attention import AttentionTab, head_views
from .controls import ARCHITECTURES, BACKENDS, FALLBACKS, POSITIONS, VARIANTS, Controls
from .lang import t

FIELDS = ("arch", "variant", "pe", "task", "fallback", "backend", "prompt", "prefix", "window", "kind", "layer", "head")
LINK_JS = """(arch, variant, pe, task, fallback, backend, prompt, prefix, win, kind, layer, head) => {
  const p = new URLSearchParams({arch, variant, pe, task, fallback, backend, prompt, prefix, window: win, kind,
                                 layer, head});
  return globalThis.location.origin + globalThis.location.pathname + '?' + p.toString();
}"""


def _pick(value: str | None, choices: list[tuple[str, str]]) -> str | None:
    return value if value in {v for _, v in choices} else None


def _int(value: str | None, low: int, high: int) -> int | None:
    try:
        return max(low, min(high, int(value)))
    except (TypeError, ValueError):
        return None


def parse(query: dict) -> dict | None:
    """Validated view from a query string; None when it holds no prompt (nothing to restore)."""
    if not query.get("prompt"):
        return None
    return {"arch": _pick(query.get("arch"), ARCHITECTURES), "variant": _pick(query.get("variant"), VARIANTS),
            "pe": _pick(query.get("pe"), POSITIONS), "task": query.get("task") or "",
            "fallback": _pick(query.get("fallback"), FALLBACKS), "backend": _pick(query.get("backend"), BACKENDS),
            "prompt": query["prompt"][:20_000], "prefix": _int(query.get("prefix"), 0, 128),
            "window": _int(query.get("window"), 0, 128), "kind": query.get("kind") or "self",
            "layer": _int(query.get("layer"), 0, 63) or 0, "head": _int(query.get("head"), 0, 63) or 0}


def build_share(demo: gr.Blocks, controls: Controls, prompt: gr.Textbox, tab: AttentionTab) -> None:
    with gr.Row():
        link_btn = gr.Button(t("share.make"), scale=0, min_width=200)
        link = gr.Textbox(label=t("share.link"), buttons=["copy"], scale=4,
                           elem_id="share-link")
    link_btn.click(None, [controls.family, controls.variant, controls.position, controls.task, controls.fallback,
                          controls.backend, prompt, tab.prefix_len, tab.window, tab.kind, tab.layer, tab.head],
                   link, js=LINK_JS)
    restored = gr.State(None)

    def restore(request: gr.Request):
        view = parse(dict(request.query_params)) if request is not None else None
        if view is None:
            return [gr.skip()] * 9 + [None]
        keep = lambda v: gr.skip() if v is None else v  # noqa: E731
        return [keep(view["arch"]), keep(view["variant"]), keep(view["pe"]), view["task"], keep(view["fallback"]),
                keep(view["backend"]), view["prompt"], keep(view["prefix"]), keep(view["window"]), view]

    def analyze_restored(view, family, variant, position, task, fallback, backend, device, text, prefix, win,
                         request: gr.Request):
        if view is None:
            return [gr.skip()] * len(tab.outputs)
        return tab.analyze(family, variant, position, task, fallback, backend, device, text, prefix, win, request)

    def open_restored(view, state, request: gr.Request):
        if view is None or state is None:
            return [gr.skip()] * (3 + len(tab.view_outputs))
        kind = view["kind"] if view["kind"] in state["result"].kinds else state["result"].kinds[0]
        return [kind, view["layer"], view["head"], *head_views(state, kind, view["layer"], view["head"], request)]

    demo.load(restore, None, [controls.family, controls.variant, controls.position, controls.task, controls.fallback,
                              controls.backend, prompt, tab.prefix_len, tab.window, restored],
              api_visibility="private").then(
        analyze_restored, [restored, *tab.inputs], tab.outputs, api_visibility="private").then(
        open_restored, [restored, tab.state], [tab.kind, tab.layer, tab.head, *tab.view_outputs],
        api_visibility="private")
