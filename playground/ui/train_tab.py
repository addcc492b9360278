"""The Train tab: train a combination the zoo does not ship, watch its loss, then explore it.

Training runs in a background thread fed by the same trainer as the zoo; the handler streams its
progress. The event has a concurrency limit of one, so a second person waits in Gradio's queue and
sees their place. Cancel stops the run at the next step (the thread checks a flag). Results go to
``zoo.USER_DIR`` as ``user:<name>``, never under models/.
"""
from __future__ import annotations

import logging
import shutil
import threading
import time

import gradio as gr

from playground.serving import gpu_call
from playground.train import corpus
from playground import plots
from playground import zoo
from playground.ui.i18n import MessageError, msg, redact_paths
from playground.train.loop import TrainConfig, train
from playground.zoo import ModelSpec, user_store
from playground.zoo.spec import USER_NAME
from .controls import ARCHITECTURES, POSITIONS, VARIANTS, Controls, specific_models
from .lang import Words, t

DATASETS = [(t(f"train.data_{key.removeprefix('task:')}"), key)
            for key in ("shakespeare", "task:induction", "task:copy", "task:associative_recall")]

log = logging.getLogger("playground")
DEFAULT_NAME = "my-model"  # a visitor who keeps it trains my-model-<their session>


def _configs(family: str, variant: str, position: str, dataset: str, steps: int, lr: float):
    mcfg = zoo.untrained_config(family, variant, position)
    train_over = dict(data=dataset, steps=int(steps), lr=float(lr), warmup=max(1, int(steps) // 10),
                      eval_every=max(5, int(steps) // 10), eval_windows=8, save_every=25, final_windows=64)
    if dataset.startswith("task:"):
        if family == "encdec" and dataset not in ("task:copy",):
            raise MessageError("error.encdec_task")
        mcfg = mcfg.replace(n_layer=2, context_length=64)
        train_over["task_length"] = 16
    elif family == "encdec":
        train_over["batch_size"] = 16  # a window in, the next out: the same tokens per step
    return mcfg, TrainConfig(**train_over)


def train_in_page(family, variant, position, dataset, steps, lr, name, request: gr.Request = None,
                  progress=gr.Progress()):
    w = Words(request)
    name = (name or "").strip()
    if name == DEFAULT_NAME:  # each visitor's own default: the first visitor to train does not take it for all
        name = f"{DEFAULT_NAME}-{(getattr(request, 'session_hash', None) or 'notebook')[:8]}"
    if not USER_NAME.match(name):  # the name a spec 'user:<name>' accepts
        raise w.error("error.train_name")
    out = zoo.USER_DIR / name
    if (out / "card.json").exists():
        raise w.error("error.train_exists", name=name)
    try:
        gone = user_store.prune()  # past their age, then the oldest: room for this one
    except ValueError as e:
        raise w.error(e) from None
    if gone:
        w.info("info.user_pruned", names=", ".join(gone), most=user_store.max_models(), days=user_store.max_days())
    try:
        mcfg, tcfg = _configs(family, variant, position, dataset, steps, lr)
        if dataset == "shakespeare" and not (corpus.DEFAULT_DATA_DIR / corpus.CORPUS_SUBDIR / "manifest.json").exists():
            w.info("info.fetching_corpus")
            corpus.fetch()
    except (ValueError, OSError) as e:
        raise w.error(e) from None
    events, stop, failure = [], threading.Event(), []

    def run():
        try:
            with gpu_call.host_work():  # on the CPU, in this thread, never behind a GPU call's time limit
                train(mcfg, tcfg, out, command=f"trained in the page: {family} {variant} {position} on {dataset}",
                      on_step=events.append, should_stop=stop.is_set)
        except KeyboardInterrupt:
            failure.append("cancelled")
        except Exception as e:  # reported to the person below, never a stack trace
            log.exception("training %s failed", name)  # the operator's log has the traceback
            failure.append(f"{type(e).__name__}: {redact_paths(str(e))}")
        finally:  # the page offers no resume: a run that did not finish leaves nothing, a finished one no
            if not (out / "card.json").exists():  # optimizer state (about 13 MB)
                shutil.rmtree(out, ignore_errors=True)
            for state in out.glob("train_state*"):
                state.unlink(missing_ok=True)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            time.sleep(1.0)
            if events:
                e = events[-1]
                progress((e["step"], e["steps"]), desc=w("train.progress", loss=e["loss"]))
                yield _status(w, events, name), _curve(w, events), gr.skip()
        worker.join()
    finally:
        stop.set()  # cancelled or closed: the thread saves a checkpoint and stops
    if failure:
        reason = w("train.cancelled") if failure[0] == "cancelled" else failure[0]
        yield w("train.stopped", reason=reason), _curve(w, events), gr.skip()
        return
    yield (_status(w, events, name) + "\n\n" + w("train.saved", name=str(ModelSpec("user", name)))), _curve(w, events), \
        gr.update(choices=specific_models())


def _status(w: Words, events: list[dict], name: str) -> str:
    e = events[-1]
    val = w("train.status_val", val=e["val_loss"]) if "val_loss" in e else ""
    return w("train.status", name=name, step=e["step"], steps=e["steps"], loss=e["loss"], val=val,
             speed=e["tokens_per_s"], seconds=e["elapsed_s"])


def _curve(w: Words, events: list[dict]):
    series = {w("train.series_train"): ([e["step"] for e in events], [e["loss"] for e in events])}
    val = [e for e in events if "val_loss" in e]
    if val:
        series[w("train.series_val")] = ([e["step"] for e in val], [e["val_loss"] for e in val])
    return plots.lines(series, msg("train.curve_title"), x_title=msg("train.step_axis"),
                       y_title=msg("positions.loss_axis"), words=w)


def build_train_tab(controls: Controls):
    gr.Markdown(t("train.help"))
    gr.Markdown(t("train.name_info"))
    with gr.Row():
        family = gr.Dropdown(ARCHITECTURES, value="decoder", label=t("controls.architecture"))
        variant = gr.Dropdown(VARIANTS, value="GQA", label=t("train.variant"))
        position = gr.Dropdown(POSITIONS, value="alibi", label=t("controls.position"))
        dataset = gr.Dropdown(DATASETS, value="task:induction", label=t("train.data"))
    with gr.Row():
        steps = gr.Slider(10, 600, value=150, step=10, label=t("train.steps"))
        lr = gr.Number(3e-3, label=t("train.lr"))
        name = gr.Textbox(DEFAULT_NAME, label=t("train.name"), max_lines=1)
        start = gr.Button(t("train.train"), variant="primary")
        cancel = gr.Button(t("train.cancel"), variant="stop")
    status = gr.Markdown()
    curve = gr.Plot(label=t("train.loss"))
    event = start.click(train_in_page, [family, variant, position, dataset, steps, lr, name],
                        [status, curve, controls.task], api_name="train", concurrency_limit=1,
                        concurrency_id="training")
    controls.then_describe(event)  # the trained model, picked in the controls, described in the note
    cancel.click(None, None, None, cancels=[event])
