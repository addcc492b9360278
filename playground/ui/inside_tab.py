"""The Inside one head tab: one head of the model step by step, then FlashAttention's replay of it tile by tile.

``/step`` takes a model spec, the prompt, a layer, a head and a query token and answers
``HeadSteps.to_dict()`` (every intermediate from x to the head's write into the residual stream,
with its formula), plus the token labels. The page draws each step; the replay below takes that
head's q, k and v (after RoPE where the model rotates them), or random ones before any step-through,
and runs ``flash_replay.replay`` with block sizes from the chosen GPU's shared memory.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import html

import gradio as gr
import numpy as np

from playground import plots
from playground.errors import check_int
from playground.inspect import flash_memory as fm
from playground.inspect import flash_replay as fr
from playground.inspect.step_through import step_through
from playground.inspect.hub_steps import hub_layer_steps
from playground.models.hf.model import HubModel
from playground.models.hf.shape import HubConfig
from playground.train import tasks
from playground.ui import service
from playground.serving.lanes import ANALYZE
from . import api, gpu
from .controls import Controls, choose
from .lang import Localized, Words, t

MAX_TOKENS = 64            # a step-through draws T x T and T x d matrices: kept light
SLOTS = 14                 # the most steps a head has (cross-attention with RoPE never happens: 13)
TRAFFIC_NS = [16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384]
MAX_TILES = 40_000         # the traffic plot counts each N's whole schedule: N stops where it would list more tiles
RANDOM_SHAPE = (24, 16)    # (N, d) of the replay before any step-through
MAX_SHRINK = 16            # the budget control divides M by up to 2^16


def _tokens(w: Words, spec, prompt: str) -> tuple[list[int], list[int] | None, list[str], list[str]]:
    """(ids, source ids or None, labels, source labels) the head runs on: the prompt, or a task model's own sequence."""
    if spec.is_task:
        ids, target, _ = service.task_sequence(spec.name)
        if target is not None:
            return target, ids, service.task_labels(spec, target), service.task_labels(spec, ids)
        return ids, None, service.task_labels(spec, ids), []
    ids = api.run(w, service.tokenize, spec, prompt)
    cfg = spec.config()
    if cfg.family == "encdec":  # the prompt is the encoder's; the decoder starts from its start token
        start = int(cfg.hf.get("decoder_start_token_id") or 0) if isinstance(cfg, HubConfig) else tasks.BOS_ID
        return [start], ids, service.labels(spec, [start]), service.labels(spec, ids)
    return ids, None, service.labels(spec, ids), []


def step_data(w: Words, spec_text: str, prompt: str, layer: int, head: int, query: int, prefix_len: int) -> dict:
    """The steps of one head as JSON, the token labels, and a note when the prompt was cut (or a model was
    unloaded to make room for this one)."""
    spec = api.spec(w, spec_text)
    ids, source, labels, source_labels = _tokens(w, spec, prompt)
    notes = []
    if len(source or ids) > MAX_TOKENS:
        notes.append(w("inside.cut", tokens=len(source or ids), limit=MAX_TOKENS))
        ids, labels = ids[:MAX_TOKENS], labels[:MAX_TOKENS]
        source, source_labels = (source[:MAX_TOKENS], source_labels[:MAX_TOKENS]) if source else (source, [])
    kind = "encoder_self" if source is not None else None
    service.prepare(spec, "cpu")
    out, loaded_notes = api.run(w, gpu.work, w, _steps, spec, ids, layer, head, query, kind, prefix_len, source)
    cfg = spec.config()
    q_labels = source_labels if kind == "encoder_self" else labels
    out.update(query_labels=q_labels, key_labels=q_labels, note=" ".join([w.render(n) for n in loaded_notes] + notes),
               spec=str(spec), n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads, untrained=not spec.trained)
    return out


def _steps(spec, ids: list[int], layer: int, head: int, query: int, kind: str | None, prefix_len: int,
           source: list[int] | None) -> tuple[tuple[dict, list], list]:
    """``step_data``'s model work, through the GPU door: ((the steps as JSON, the load's notes), [])."""
    loaded = service.load(spec)
    if isinstance(loaded.model, HubModel):  # stepped from what its attention function received
        steps = hub_layer_steps(loaded.model, ids, layer, query=query, kind=kind, source_ids=source, heads=[head])[0]
    else:
        steps = step_through(loaded.model, ids, layer, head, query=query, kind=kind, prefix_len=prefix_len,
                             source_ids=source)
    return (steps.to_dict(), loaded.notes), []


def step(spec: str, prompt: str, layer: int = 0, head: int = 0, query: int = 0, prefix_len: int = 0,
         request: gr.Request = None) -> dict:
    """One head of one layer step by step (Transformers only): {kind, layer, head, kv_head, shared_by, query,
    query_tokens, key_tokens, steps: [{name, formula, axes, array}], query_labels, key_labels, note}. Arrays
    are nested lists, None where a masked score is -inf; at most 64 tokens (the note says when the prompt was cut)."""
    return step_data(Words(request), spec, prompt, layer, head, query, prefix_len)


def _labels(w: Words, axis: str, result: dict, size: int) -> list[str]:
    if axis == "query token":
        return result["query_labels"]
    if axis == "key token":
        return result["key_labels"]
    return [w("plot.dim", i=i) for i in range(size)]


def step_figures(w: Words, result: dict | None) -> list:
    """(formula, figure) updates for every slot: one per step, the rest hidden."""
    out = []
    steps = result["steps"] if result else []
    for slot in range(SLOTS):
        if slot >= len(steps):
            out += [gr.update(visible=False), gr.update(visible=False)]
            continue
        s = steps[slot]
        array = np.array([[np.nan if v is None else v for v in row] for row in s["array"]], dtype=float)
        if s["name"] == "masked":
            array = np.where(np.isnan(array), -np.inf, array)
        rows = _labels(w, s["axes"][0], result, array.shape[0])
        cols = _labels(w, s["axes"][1], result, array.shape[1])
        highlight = result["query"] if s["axes"][0] == "query token" else None
        title = w("inside.step_title", name=s["name"], rows=array.shape[0], cols=array.shape[1], layer=result["layer"],
                  head=result["head"])
        figure = plots.step_matrix(array, rows, cols, title, highlight=highlight, weights=s["name"] == "weights",
                                   words=w)
        formula = f"**{html.escape(s['name'])}**\n\n`{s['formula']}`\n\n{w('inside.axes', rows=s['axes'][0], cols=s['axes'][1])}"
        out += [gr.update(value=formula, visible=True), gr.update(value=figure, visible=True)]
    return out


def head_note(w: Words, result: dict) -> str:
    lines = [w("inside.head_note", layer=result["layer"], head=result["head"], kv=result["kv_head"],
               shared=", ".join(map(str, result["shared_by"])), nh=result["n_heads"], nkv=result["n_kv_heads"],
               query=result["query"], token=html.escape(result["query_labels"][result["query"]]))]
    if result["note"]:
        lines.append(result["note"])
    if result["untrained"]:
        lines.append(w("plot.untrained"))
    return "\n\n".join(lines)


# ---------------------------------------------------------------------------------------------
# FlashAttention, tile by tile
# ---------------------------------------------------------------------------------------------

def head_qkv(result: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(q, k, v, from_model): the stepped head's q and k (rotated where RoPE rotates them) and v, or seeded
    random ones before any step-through."""
    if result:
        arrays = {s["name"]: np.array(s["array"], dtype=float) for s in result["steps"]}
        q = arrays.get("q_rot", arrays["q"])
        k = arrays.get("k_rot", arrays["k"])
        return q, k, arrays["v"], True
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(RANDOM_SHAPE) for _ in range(3))
    return q, k, v, False


def flash_state(w: Words, result: dict | None, gpu_name: str, shrink: int, causal: bool, order: str) -> dict:
    """The replay of the stepped head with blocks from the GPU's shared memory divided by 2^shrink."""
    try:
        card = fm.gpu(gpu_name)
        shrink = check_int("shrink", shrink, 0, MAX_SHRINK)
        q, k, v, from_model = head_qkv(result)
        d = q.shape[1]
        budget = max(4 * d, card.budget() >> shrink)
        br, bc = fm.block_sizes(budget, d)
        rep = fr.replay(q, k, v, block_rows=br, block_cols=bc, causal=bool(causal), order=order)
        ns = [n for n in TRAFFIC_NS if -(-n // br) * -(-n // bc) <= MAX_TILES]
        traffic = fm.traffic_over_n(ns, d, budget, causal=bool(causal))
    except ValueError as e:
        raise w.error(e) from None
    labels = result["query_labels"] if result else [str(i) for i in range(len(q))]
    return {"replay": rep, "gpu": card, "budget": budget, "d": d, "labels": labels, "from_model": from_model,
            "traffic": traffic, "full_budget": card.budget()}


def _moves(items) -> list[dict]:
    return [dict(tensor=x.tensor, block=x.block, elements=x.elements) for x in items]


def flash_replay(spec: str, prompt: str, layer: int = 0, head: int = 0, gpu: str = "H100 SXM", shrink: int = 0,
                 causal: bool = True, order: str = "fa2", prefix_len: int = 0, request: gr.Request = None) -> dict:
    """One head (as /step runs it) replayed as FlashAttention computes it, blocks from the GPU's shared memory
    divided by 2^shrink: {gpu, budget, head_dim, block_rows, block_cols, max_abs_diff (against standard
    attention), hbm_elements, steps: [{i, j, rows, cols, skipped, reads, writes, placement}]}."""
    w = Words(request)
    st = flash_state(w, step_data(w, spec, prompt, layer, head, 0, prefix_len), gpu, shrink, causal, order)
    rep = st["replay"]
    steps = [dict(i=s.i, j=s.j, rows=list(s.rows), cols=list(s.cols), skipped=s.skipped, reads=_moves(s.reads),
                  writes=_moves(s.writes), placement=s.placement) for s in rep.steps]
    return dict(gpu=st["gpu"].name, budget=st["budget"], head_dim=st["d"], block_rows=rep.block_rows,
                block_cols=rep.block_cols, order=rep.order, causal=rep.causal, max_abs_diff=rep.max_abs_diff,
                hbm_elements=rep.hbm_elements, steps=steps)


def flash_summary(w: Words, st: dict, result: dict | None) -> str:
    rep = st["replay"]
    source = (w("inside.flash_from_head", layer=result["layer"], head=result["head"]) if st["from_model"]
              else w("inside.flash_random", n=RANDOM_SHAPE[0], d=RANDOM_SHAPE[1]))
    return "\n\n".join([source, w("inside.flash_blocks", m=st["budget"], full=st["full_budget"], d=st["d"],
                                  br=rep.block_rows, bc=rep.block_cols, steps=len(rep.steps), skipped=rep.skipped),
                        w("inside.flash_diff", diff=rep.max_abs_diff, hbm=rep.hbm_elements)])


def _transfers(items) -> str:
    return ", ".join(f"{x.tensor}[{x.block}] ({x.elements:,})" for x in items) or "—"


def flash_views(w: Words, st: dict | None, index: int) -> tuple:
    """(step text, tile grid, step figure, hierarchy) at step ``index`` of the replay."""
    if not st:
        return "", None, None, None
    rep = st["replay"]
    index = min(max(int(index), 0), len(rep.steps) - 1)
    s = rep.steps[index]
    grid = plots.tile_states(max(x.i for x in rep.steps) + 1, max(x.j for x in rep.steps) + 1,
                             [dict(i=x.i, j=x.j, skipped=x.skipped) for x in rep.steps], index)
    title = w("inside.tile_title", step=index, i=s.i, j=s.j)
    tiles = plots.tile_grid(grid, title, words=w)
    if s.skipped:
        text = w("inside.step_skipped", step=index, i=s.i, j=s.j)
        figure = None
    else:
        text = w("inside.step_text", step=index, i=s.i, j=s.j, r0=s.rows[0], r1=s.rows[1] - 1, c0=s.cols[0],
                 c1=s.cols[1] - 1, reads=_transfers(s.reads), writes=_transfers(s.writes))
        labels = st["labels"]
        figure = plots.replay_step(s.scores, s.m, s.l, s.output, labels[s.rows[0]:s.rows[1]],
                                   labels[s.cols[0]:s.cols[1]], title, row_start=s.rows[0], col_start=s.cols[0],
                                   words=w)
    hierarchy = plots.memory_hierarchy(st["gpu"].hierarchy(), s.placement, st["gpu"].name, words=w)
    return text, tiles, figure, hierarchy


def build_inside_tab(controls: Controls, prompt: gr.Textbox,
                     localized: Localized, first_views: api.FirstViews):
    result_state = gr.State(None)
    flash = gr.State(None)
    gr.Markdown(t("inside.help"))
    with gr.Row():
        layer = gr.Number(0, precision=0, minimum=0, label=t("inside.layer"), scale=0, min_width=100)
        head = gr.Number(0, precision=0, minimum=0, label=t("inside.head"), scale=0, min_width=100)
        query = gr.Number(0, precision=0, minimum=0, label=t("inside.query"), scale=0, min_width=120)
        prefix_len = gr.Number(0, precision=0, minimum=0, label=t("inside.prefix"), scale=0, min_width=120)
        button = gr.Button(t("inside.run"), variant="primary", scale=0, min_width=160, elem_id="inside-run")
    note = gr.Markdown(elem_id="inside-note")
    slots = []
    for _ in range(SLOTS):
        with gr.Row():
            formula = gr.Markdown(visible=False, elem_classes="inside-formula")
            figure = gr.Plot(visible=False, show_label=False, scale=3)
            slots += [formula, figure]

    gr.Markdown(t("inside.flash_help"))
    with gr.Row():
        gpu_name = gr.Dropdown(list(fm.GPUS), value="H100 SXM", label=t("inside.gpu"))
        shrink = gr.Slider(0, MAX_SHRINK, value=7, step=1, label=t("inside.shrink"), info=t("inside.shrink_info"))
        causal = gr.Checkbox(True, label=t("inside.causal"))
        order = gr.Radio([(t("inside.order_fa2"), "fa2"), (t("inside.order_fa1"), "fa1")], value="fa2",
                         label=t("inside.order"))
        replay_button = gr.Button(t("inside.replay"), scale=0, min_width=160, elem_id="inside-replay")
    summary = gr.Markdown(elem_id="inside-flash-summary")
    slider = gr.Slider(0, 1, value=0, step=1, label=t("inside.step"), elem_id="inside-step")
    step_text = gr.Markdown(elem_id="inside-step-text")
    with gr.Row():
        tiles = gr.Plot(show_label=False)
        hierarchy = gr.Plot(show_label=False)
    tile_figure = gr.Plot(show_label=False)
    traffic_figure = gr.Plot(show_label=False)

    def run(family, variant, position, task, fallback, text, lay, hd, qry, prefix, request: gr.Request):
        """The button: the controls' spec through the same function as /step."""
        w = Words(request)
        spec, _ = choose(w, family, variant, position, task, fallback)
        result = step_data(w, str(spec), text, int(lay or 0), int(hd or 0), int(qry or 0), int(prefix or 0))
        return result, head_note(w, result), *step_figures(w, result)

    def do_replay(result, card, shr, cau, ordr, request: gr.Request):
        w = Words(request)
        st = flash_state(w, result, card, int(shr), cau, ordr)
        rep = st["replay"]
        first = next((s.index for s in rep.steps if not s.skipped), 0)
        figure = plots.traffic(st["traffic"], w, head_dim=st["d"], budget=st["budget"])
        return (st, flash_summary(w, st, result), gr.update(maximum=max(1, len(rep.steps) - 1), value=first),
                *flash_views(w, st, first), figure)

    def move(st, index, request: gr.Request):
        return flash_views(Words(request), st, index)

    replay_inputs = [result_state, gpu_name, shrink, causal, order]
    replay_outputs = [flash, summary, slider, step_text, tiles, tile_figure, hierarchy, traffic_figure]
    run_inputs, run_outputs = [*controls.model, prompt, layer, head, query, prefix_len], [result_state, note, *slots]
    button.click(run, run_inputs, run_outputs, api_visibility="private", concurrency_limit=ANALYZE.admitted,
                 concurrency_id="analyze").then(do_replay, replay_inputs, replay_outputs, api_visibility="private")
    first_views.add(run, run_inputs, run_outputs, then=(do_replay, replay_inputs, replay_outputs))
    for control in (replay_button,):
        control.click(do_replay, replay_inputs, replay_outputs, api_visibility="private")
    for control in (gpu_name, shrink, causal, order):
        control.change(do_replay, replay_inputs, replay_outputs, api_visibility="private")
    slider.change(move, [flash, slider], [step_text, tiles, tile_figure, hierarchy], api_visibility="private")
    gr.api(step, api_name="step", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
    gr.api(flash_replay, api_name="flash_replay", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
