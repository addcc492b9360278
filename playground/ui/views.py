"""The Attention tab's views beyond raw weights: value-weighted norms, attention rollout, logit lens, head ablation.

Each view runs the model's own computation from ``playground.inspect`` (attribution, logit_lens, ablation) on
the prompt's tokens (a synthetic-task model: a seeded sequence of its own task) and draws it with
``plots``; under the figure, a one-line definition and its paper. ``/view`` returns the same figures and
the numbers. The views read decoder-only and prefix Transformers; a recurrent or encoder-decoder model is
refused with a note (raw weights still work there). Head ablation runs the model once per head (L x nh + 1
forwards), so it reads as many tokens as those forwards fit in one job's time ceiling (``service.ablation_tokens``);
``/ablate`` returns its numbers alone, and can score one chosen target token at the last position instead of every
next token.
"""
# no `from __future__ import annotations`: gr.api reads the endpoints' annotations as types
import re

import gradio as gr
import numpy as np
import torch

from playground import plots, zoo
from playground.config import RECURRENT_FAMILIES
from playground.inspect.ablation import MODES, ablate_heads
from playground.inspect.analysis import overview_cells
from playground.inspect.attribution import rollout, value_norms
from playground.inspect.hooks import as_batch
from playground.inspect.logit_lens import logit_lens
from playground.inspect.step_through import kv_groups
from playground.models.hf.shape import HubConfig
from playground.train import tasks
from playground.ui import service
from playground.serving.lanes import ANALYZE
from playground.ui.i18n import msg
from playground.zoo import ModelSpec
from . import api, gpu
from .lang import Localized, Words, t

VIEWS = ("raw", "norms", "rollout", "lens", "ablation")
VIEW_KEYS = {"raw": "view.raw", "norms": "view.norms", "rollout": "view.rollout", "lens": "view.lens",
             "ablation": "view.ablation"}
DEFINITIONS = {"norms": "view.def_norms", "rollout": "view.def_rollout", "lens": "view.def_lens",
               "ablation": "view.def_ablation"}
# rollout multiplies every layer's (T, T) map (T³ per layer) and /view returns its numbers: past this many tokens it
# reads the first ones, and says so (value norms are pooled tile by tile and read every token, as raw weights do)
MAX_MAP_TOKENS = 512


def view_cap(view: str, cfg, device: str = "cpu") -> dict:
    """The tokens a view reads at most, and the note that says why: ``sequence``'s keywords ({} for every token)."""
    if view == "rollout":
        return {"cap": MAX_MAP_TOKENS, "cut_note": "view.maps_cut"}
    if view == "ablation":
        return {"cap": service.ablation_tokens(cfg, device), "cut_note": "view.ablation_cut",
                "forwards": service.ablation_forwards(cfg), "seconds": round(service.max_job_seconds(device))}
    return {}
LENS_TOP = 3


def sequence(w: Words, spec: ModelSpec, prompt: str, cap: int | None = None, cut_note: str = "view.ablation_cut",
             **note_args) -> dict:
    """The tokens a view reads: {ids, labels, scored (bool per position: its target is scored by ablation),
    targets (the token each position should predict), notes}; at most ``cap``, the cut said by ``cut_note``. A
    synthetic-task model reads a seeded sequence of its own task and scores its answer positions only; text is
    scored on the next token."""
    cfg = spec.config()
    notes = []
    if spec.is_task:
        _, tcfg = zoo.entry_configs(spec.name)
        task = tcfg.data.removeprefix("task:")
        if task not in tasks.TASKS:
            raise w.error("view.refused", family=cfg.family)
        x, y, mask = tasks.TASKS[task](1, tcfg.task_length, cfg.vocab_size, 0)
        ids, targets, scored = x[0].tolist(), y[0].tolist(), mask[0].tolist()
        labels = service.task_labels(spec, ids)
        notes.append(w("view.task_sequence", name=spec.name, n=sum(scored)))
    else:
        try:
            ids, cut = service.tokenize(spec, prompt)
        except ValueError as e:
            raise w.error(e) from None
        notes += [w.render(n) for n in cut]
        targets = ids[1:] + [0]
        scored = [True] * (len(ids) - 1) + [False]
        labels = service.labels(spec, ids)
    if cap and len(ids) > cap:
        notes.append(w(cut_note, tokens=len(ids), limit=cap, **note_args))
        ids, labels, targets, scored = ids[:cap], labels[:cap], targets[:cap], scored[:cap]
        if not spec.is_task:
            scored[-1] = False  # its next token was cut off
    return {"ids": ids, "labels": labels, "targets": targets, "scored": scored, "notes": notes}


def token_labels(spec: ModelSpec, ids: list[int]) -> list[str]:
    return service.task_labels(spec, ids) if spec.is_task else service.labels(spec, ids)


def retarget(w: Words, spec: ModelSpec, seq: dict, target: str) -> dict:
    """The sequence scored on one chosen token at its last position (``target``: text that is exactly one
    token), instead of on every next token. A synthetic-task model scores its own answers: refused."""
    if spec.is_task:
        raise w.error("view.target_task", name=str(spec))
    ids = spec.tokenizer().encode(target, special=False)  # without what a tokenizer adds to a whole text (<s>)
    if len(ids) != 1:
        raise w.error("view.target_one_token", target=target, n=len(ids),
                      tokens=" ".join(service.labels(spec, ids)) or "—")
    T = len(seq["ids"])
    return {**seq, "targets": [0] * (T - 1) + ids, "scored": [False] * (T - 1) + [True]}


def compute(w: Words, spec: ModelSpec, prompt: str, view: str, *, prefix_len: int = 0, without_first: bool = False,
            mode: str = "zero", target: str = "", backend: str = "auto", device: str = "cpu",
            group_kv: bool = False) -> tuple[list, dict, list[str]]:
    """One view of a prompt: (figures, numbers, notes). A model the view cannot read: ValueError (its note).
    ``target`` (ablation): score this one token at the last position (``retarget``); empty: every next token.
    ``group_kv``: the value norms' head columns grouped by the K/V head they share, as the overview draws them."""
    if view not in DEFINITIONS:
        raise w.error("view.unknown", view=view, views=", ".join(DEFINITIONS))
    if mode not in MODES:
        raise w.error("view.unknown_mode", mode=mode, modes=", ".join(MODES))
    cfg = spec.config()
    if isinstance(cfg, HubConfig) and view not in HUB_VIEWS[cfg.family]:  # the others read the playground's own
        raise ValueError(w("view.refused_hub", model_type=cfg.model_type))  # layers (W_V, W_O, the final norm)
    if cfg.family in RECURRENT_FAMILIES or cfg.family == "encdec":
        raise ValueError(w("view.refused", family=cfg.family))
    service.prepare(spec, device)
    return gpu.work(w, _on_device, w, spec, prompt, view, prefix_len=prefix_len, without_first=without_first,
                    mode=mode, target=target, backend=backend, device=device, group_kv=group_kv)


HUB_VIEWS = {"decoder": ("norms", "rollout", "ablation", "lens"), "encoder": ("norms", "rollout"), "encdec": ()}
# a Hub model's views: the norms from its records' values and its own W_O, rollout from its records, ablation inside
# the attention function, the lens through its own final norm and head


def self_weights(model, ids: list[int], prefix_len: int = 0) -> np.ndarray:
    """Every self-attention layer's weights of one forward, (L, nh, T, T), from its records (rollout needs nothing
    else: not W_O, which some Hub models keep outside their attention module)."""
    with torch.no_grad():
        records = model(as_batch(model, ids), prefix_len=prefix_len, capture=True, logits="none").attentions
    return np.stack([rec.weights[0].numpy() for rec in records if rec.kind == "self"])


def _on_device(w: Words, spec: ModelSpec, prompt: str, view: str, *, prefix_len: int, without_first: bool, mode: str,
               target: str, backend: str, device: str, group_kv: bool = False) -> tuple[list, dict, list[str]]:
    """``compute``'s model work, through the GPU door (``ui.gpu``)."""
    cfg = spec.config()
    try:
        loaded = service.load(spec, backend, device)
    except ValueError as e:
        raise w.error(e) from None
    model, untrained = loaded.model, not spec.trained
    seq = sequence(w, spec, prompt, **view_cap(view, cfg, device))
    if view == "ablation" and target:
        seq = retarget(w, spec, seq, target)
    seq["notes"][:0] = [w.render(n) for n in loaded.notes]  # models unloaded to make room, or this one reloaded
    ids, labels = seq["ids"], seq["labels"]
    prefix_len = min(int(prefix_len), len(ids)) if cfg.family == "prefix" else 0
    numbers: dict = {"view": view, "spec": str(spec), "labels": labels, "token_ids": ids}
    if view == "norms":
        n_heads = model.cfg.n_heads
        vn = value_norms(model, ids, prefix_len=prefix_len, cells=overview_cells(model.cfg.n_layer * n_heads))
        groups = kv_groups(n_heads, model.cfg.n_kv_heads) if group_kv and n_heads % model.cfg.n_kv_heads == 0 else None
        cells = {"tokens": (len(ids), len(ids)), "rows": vn.rows.tolist(), "cols": vn.cols.tolist(), "cell": vn.cell,
                 "how": vn.how}
        figures = [plots.overview(vn.per_head, msg("view.title_norms"), untrained=untrained, words=w,
                                  scale_title=w("view.scale_norm"), groups=groups, cells=cells),
                   plots.overview(vn.per_layer[None], msg("view.title_norms_layer"), untrained=untrained,
                                  words=w, row_names=[w("view.all_heads")], scale_title=w("view.scale_norm"),
                                  col_names=[w("plot.layer", i=i) for i in range(len(vn.per_layer))], cells=cells)]
        numbers.update(vn.to_dict())
    elif view == "rollout":
        weights = self_weights(model, ids, prefix_len)  # (L, nh, T, T), the model's own
        R = rollout(weights, without_first=without_first)  # (L, T, T)
        which = msg("view.without_first" if without_first else "view.with_first")
        figures = [plots.head(R[-1], labels, labels, msg("view.title_rollout", which=which),
                              untrained=untrained, words=w, scale_title=w("view.scale_rollout")),
                   plots.overview(R[None], msg("view.title_rollout_layers", which=which), untrained=untrained,
                                  words=w, row_names=[w("view.rollout_row")], scale_title=w("view.scale_rollout"),
                                  col_names=[w("view.through_layer", i=i) for i in range(len(R))])]
        numbers.update(rollout=R.tolist(), without_first=bool(without_first))
    elif view == "lens":
        lens = logit_lens(model, ids, k=LENS_TOP, prefix_len=prefix_len)
        tops = [[token_labels(spec, row.tolist()) for row in layer] for layer in lens.top_ids]  # [L][T][k]
        figures = [plots.logit_lens(lens.top_probs, tops, labels, msg("view.title_lens"), untrained=untrained,
                                    words=w)]
        numbers.update(top_ids=lens.top_ids.tolist(), top_tokens=tops, top_probs=lens.top_probs.tolist(),
                       next_prob=lens.next_prob.tolist())
    else:
        scored = seq["scored"]
        if not any(scored):
            raise w.error("view.ablation_short")
        ab = ablate_heads(model, ids, targets=[seq["targets"]], mask=[scored], mode=mode, prefix_len=prefix_len)
        mode_name = w("view.mode_zero") if mode == "zero" else w("view.mode_mean")
        figures = [plots.layer_head_grid(ab.d_loss, msg("view.title_ablation_loss", mode=mode_name,
                                                        loss=ab.loss), scale_title=w("view.scale_d_loss"),
                                         untrained=untrained, words=w),
                   plots.layer_head_grid(ab.d_target_logit, msg("view.title_ablation_logit", mode=mode_name,
                                                                logit=ab.target_logit),
                                         scale_title=w("view.scale_d_logit"), untrained=untrained, words=w)]
        numbers.update(ab.to_dict(), scored=[i for i, s in enumerate(scored) if s],
                       targets=[t for t, s in zip(seq["targets"], scored) if s])
        wanted = token_labels(spec, seq["targets"])
        pairs = [f"{i} {labels[i]} → {wanted[i]}" for i, s in enumerate(scored) if s]
        seq["notes"].append(w("view.scored_target" if target else "view.scored", n=len(pairs),
                              positions=", ".join(pairs[:24]) + (" …" if len(pairs) > 24 else "")))
    return figures, numbers, seq["notes"]


def definition(w: Words, view: str, notes: list[str]) -> str:
    """The one-line definition and paper of a view, then the notes (what was cut, what is scored)."""
    return "\n\n".join([w(DEFINITIONS[view]), *(f"*{literal(n)}*" for n in notes)])


def literal(text: str) -> str:
    """Text (token labels included) shown as written in Markdown: its markup characters escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~-])", r"\\\1", text)


# ----------------------------------------------------------------------------- the API


def view(spec: str, prompt: str, view: str, prefix_len: int = 0, without_first: bool = False, mode: str = "zero",
         backend: str = "auto", device: str = "cpu", group_kv: bool = False,
         request: gr.Request = None) -> tuple[dict, dict | None, dict]:
    """A view beyond raw weights (decoder-only and prefix Transformers): (figure, second figure or null, numbers).

    view: norms (Kobayashi et al. 2020: per head, then per layer) | rollout (Abnar & Zuidema 2020; without_first
    drops the first token) | lens (the logit lens: top-3 next tokens per layer and position) | ablation (each head
    zero- or mean-ablated, mode: zero|mean; change in loss, then in the target token's logit; at most 48 tokens).
    group_kv: the norms' head columns grouped by the K/V head they share (GQA, MQA).
    A synthetic-task model reads its own seeded sequence and ablation scores its answer positions."""
    w = Words(request)
    model = api.spec(w, spec)
    try:
        figures, numbers, notes = compute(w, model, prompt, view, prefix_len=prefix_len, without_first=without_first,
                                          mode=mode, backend=backend, device=device, group_kv=group_kv)
    except gr.Error:
        raise
    except ValueError as e:
        raise w.error(e) from None
    numbers["notes"] = notes
    return api.plot(figures[0]), api.plot(figures[1]) if len(figures) > 1 else None, numbers


def ablate(spec: str, prompt: str, mode: str = "zero", target: str = "", prefix_len: int = 0, backend: str = "auto",
           device: str = "cpu", request: gr.Request = None) -> dict:
    """Head ablation as numbers (decoder-only and prefix Transformers), the data of /view's ablation view: each
    head of each layer zero- or mean-ablated in turn (mode: zero|mean), at most 48 tokens.

    Returns {spec, mode, labels, token_ids, scored (positions), targets (their target ids), target_tokens,
    loss, target_logit (the unablated model's), d_loss and d_target_logit ([layer][head]: ablated minus
    unablated), notes}. target: text that is one token, scored at the last position only; empty: every
    position's next token (a synthetic-task model: its own sequence and answers)."""
    w = Words(request)
    model = api.spec(w, spec)
    try:
        _, numbers, notes = compute(w, model, prompt, "ablation", prefix_len=prefix_len, mode=mode, target=target,
                                    backend=backend, device=device)
    except gr.Error:
        raise
    except ValueError as e:
        raise w.error(e) from None
    del numbers["view"]
    numbers.update(target_tokens=token_labels(model, numbers["targets"]), notes=notes)
    return numbers


# ----------------------------------------------------------------------------- the page


def view_choices(w: Words) -> list[tuple[str, str]]:
    return [(w(VIEW_KEYS[v]), v) for v in VIEWS]


def page_view(state: dict | None, chosen: str, without_first: bool, mode: str, group_kv: bool = False,
              request: gr.Request = None):
    """The View switch: (show the overviews?, first figure, second figure, definition). Raw weights: the
    overviews; another view of a model it cannot read: a note (and a warning), never an error page."""
    w = Words(request)
    if chosen == "raw" or not state:
        return gr.update(visible=True), gr.update(value=None, visible=False), gr.update(value=None, visible=False), \
            ("" if chosen == "raw" else w("view.analyze_first"))
    try:
        figures, _, notes = compute(w, state.spec, state.prompt, chosen, prefix_len=state.result(w).prefix_len,
                                    without_first=without_first, mode=mode, backend=state.backend,
                                    device=state.device, group_kv=group_kv)
    except gr.Error:
        raise
    except ValueError as e:
        gr.Warning(str(e))
        return gr.update(visible=False), gr.update(value=None, visible=False), gr.update(value=None, visible=False), \
            f"**{e}**"
    second = figures[1] if len(figures) > 1 else None
    return (gr.update(visible=False), gr.update(value=figures[0], visible=True),
            gr.update(value=second, visible=second is not None), definition(w, chosen, notes))


def build_views(state: gr.State, localized: Localized):
    """The View switch, its options, two figures and a note. Returns ``wire(overview_box)``, which hooks them
    to the box of raw-weight overviews (shown for raw weights only) and returns (handler, inputs, outputs)
    for the Attention tab to run again after each analysis."""
    with gr.Row():
        chosen = gr.Radio([(t(VIEW_KEYS[v]), v) for v in VIEWS], value="raw", label=t("view.switch"),
                          elem_id="view-switch", scale=3)
        without_first = gr.Checkbox(False, label=t("view.without_first_box"), scale=1)
        mode = gr.Radio([(t("view.mode_zero"), "zero"), (t("view.mode_mean"), "mean")], value="zero",
                        label=t("view.mode"), scale=1)
    first = gr.Plot(visible=False, show_label=False, elem_id="view-plot")
    second = gr.Plot(visible=False, show_label=False, elem_id="view-plot-2")
    note = gr.Markdown(elem_id="view-note")

    def wire(overview_box: gr.Column, group_kv: gr.Checkbox) -> tuple:
        inputs, outputs = [state, chosen, without_first, mode, group_kv], [overview_box, first, second, note]
        gr.on([chosen.change, without_first.change, mode.change, group_kv.change], page_view, inputs, outputs,
              api_visibility="private", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
        localized.on_switch(page_view, inputs, outputs)
        gr.api(view, api_name="view", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
        gr.api(ablate, api_name="ablate", concurrency_limit=ANALYZE.admitted, concurrency_id="analyze")
        return page_view, inputs, outputs

    return wire
