"""Training: one trainer for every model and task, on CPU or GPU.

    python -m playground.train --out runs/mine --position alibi --n-kv-heads 1 --steps 600
    python -m playground.train --out runs/mine --resume          # continue after Ctrl-C
    python -m playground.train --zoo                               # rebuild every shipped model

AdamW, linear warmup then cosine decay, gradient clipping, periodic validation, a progress line
with loss and tokens/s, deterministic seeds. A checkpoint (fp32 weights, optimizer, RNG, loss
history) is written every ``save_every`` steps and on Ctrl-C; ``--resume`` continues from it
and reaches the same weights as an uninterrupted run. The finished model is saved as
``model.safetensors`` (float16) + ``config.json`` + ``card.json`` + ``loss_curve.svg``.

Data (``TrainConfig.data``):
    shakespeare          the fetched corpus (``python -m playground.train.data fetch``), split by works
    <path>.txt           any UTF-8 text file, split by lines
    task:<name>          a synthetic task (copy, reverse, induction, associative_recall)
Objectives follow the family: next-token for decoder; prefix LM for prefix (a random prefix
length P per step, loss only where the target lies past the prefix); for encdec, a passage of
T tokens in and the next T tokens out (text), or the task's seq2seq form.
"""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from playground.train import data as data_mod
from playground.train import tasks
from playground.models.checkpoint import save_model, sha256_file
from playground.config import ModelConfig
from playground.train.evaluate import batch_loss, evaluate_task, evaluate_text
from playground.train.tokenizer import DEFAULT_MODEL as TOKENIZER_PATH, Tokenizer
from playground.models.base import LanguageModel
from playground.models import build_model

STATE_FILE, STATE_JSON = "train_state.safetensors", "train_state.json"


@dataclass
class TrainConfig:
    data: str = "shakespeare"   # shakespeare | path to a UTF-8 .txt | task:<name>
    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 40
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_windows: int = 24      # validation windows per periodic evaluation
    save_every: int = 50
    seed: int = 1337
    task_length: int = 24       # synthetic tasks: items per sequence
    final_windows: int = 0      # final evaluation windows (0: the whole validation text)

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


class Batches:
    """Training and validation data for one model: text windows or a synthetic task."""

    def __init__(self, tcfg: TrainConfig, mcfg: ModelConfig, generator: torch.Generator):
        self.tcfg, self.mcfg, self.g = tcfg, mcfg, generator
        self.task = tcfg.data.removeprefix("task:") if tcfg.data.startswith("task:") else None
        self.info: dict = {}
        if self.task is None:
            corpus = data_mod.load_corpus(None if tcfg.data == "shakespeare" else tcfg.data)
            tok = Tokenizer.load()
            if tok.vocab_size != mcfg.vocab_size:
                raise ValueError(f"vocab_size={mcfg.vocab_size} but the tokenizer has {tok.vocab_size} pieces")
            self.train_ids = _cached_encode(tok, corpus.train_text, corpus.sha256 + "-train")
            self.val_ids = _cached_encode(tok, corpus.val_text, corpus.sha256 + "-val")
            self.chars_per_token = len(corpus.val_text) / len(self.val_ids)
            self.info = {"source": corpus.source, "sha256": corpus.sha256, "split": corpus.split,
                         "val_works": list(corpus.val_works), "train_tokens": int(len(self.train_ids)),
                         "val_tokens": int(len(self.val_ids)), "val_chars": len(corpus.val_text),
                         "tokenizer_sha256": sha256_file(TOKENIZER_PATH)}
        else:
            table = tasks.SEQ2SEQ_TASKS if mcfg.family == "encdec" else tasks.TASKS
            if self.task not in table:
                raise ValueError(f"unknown task {self.task!r} for family {mcfg.family}; valid: {', '.join(table)}")
            self.task_fn = table[self.task]
            self.info = {"source": f"synthetic task {self.task!r}, length {tcfg.task_length}, seeded"}

    def train_batch(self) -> dict:
        """One batch as model inputs plus targets and a loss mask."""
        B, T = self.tcfg.batch_size, self.mcfg.context_length
        if self.task is not None:
            if self.mcfg.family == "encdec":
                src, tgt_in, tgt_out = self.task_fn(B, self.tcfg.task_length, self.mcfg.vocab_size, self.g)
                return dict(src=src, tgt=tgt_in, targets=tgt_out, loss_mask=torch.ones_like(tgt_out, dtype=torch.bool))
            x, y, mask = self.task_fn(B, self.tcfg.task_length, self.mcfg.vocab_size, self.g)
            return dict(x=x, targets=y, loss_mask=mask.bool(), prefix_len=0)
        if self.mcfg.family == "encdec":
            window, _ = data_mod.get_batch(self.train_ids, B, 2 * T, self.g)  # (B, 2T)
            return encdec_text_batch(window)
        x, y = data_mod.get_batch(self.train_ids, B, T, self.g)  # (B, T)
        mask = torch.ones_like(y, dtype=torch.bool)
        prefix_len = 0
        if self.mcfg.family == "prefix":  # GLM: P tokens seen both ways; targets inside the prefix are leaked
            prefix_len = int(torch.randint(0, T // 2 + 1, (1,), generator=self.g))
            mask[:, : max(0, prefix_len - 1)] = False
        return dict(x=x, targets=y, loss_mask=mask, prefix_len=prefix_len)


def encdec_text_batch(window: torch.Tensor, bos_id: int = tasks.BOS_ID) -> dict:
    """A passage in, the next passage out: window (B, 2T) -> src (B, T), tgt (B, T) starting with BOS."""
    T = window.shape[1] // 2
    src, out = window[:, :T], window[:, T:]
    tgt_in = torch.cat([torch.full_like(out[:, :1], bos_id), out[:, :-1]], dim=1)
    return dict(src=src, tgt=tgt_in, targets=out, loss_mask=torch.ones_like(out, dtype=torch.bool))


def _cached_encode(tok: Tokenizer, text: str, key: str) -> np.ndarray:
    """Token ids of a corpus split, cached under data/ (keyed by corpus and tokenizer hashes)."""
    cache = data_mod.DEFAULT_DATA_DIR / "tokens" / f"{key}-{sha256_file(TOKENIZER_PATH)[:12]}.npy"
    if cache.exists():
        return np.load(cache)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, ids)
    return ids


# ----------------------------------------------------------------------------- the loop


def make_optimizer(model: LanguageModel, tcfg: TrainConfig) -> torch.optim.AdamW:
    # matrices decay; vectors (norms, biases, RWKV mixes) and parameters marked _no_weight_decay (Mamba's A, D) do not
    decays = {n: p.dim() >= 2 and not getattr(p, "_no_weight_decay", False) for n, p in model.named_parameters()}
    decay = [p for n, p in model.named_parameters() if decays[n]]
    no_decay = [p for n, p in model.named_parameters() if not decays[n]]
    return torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr, betas=(0.9, 0.95))


def _save_state(out: Path, model, opt, step: int, gen: torch.Generator, history: dict, elapsed: float) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()
               if not (model.cfg.tie_embeddings and k == "lm_head.weight")}
    names = {id(p): n for n, p in model.named_parameters()}
    for p, state in opt.state.items():
        for key, value in state.items():
            tensors[f"opt.{names[id(p)]}.{key}"] = value.detach().clone().contiguous().reshape(value.shape)
    tensors["rng"] = gen.get_state()
    tmp = out / (STATE_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(out / STATE_FILE)
    (out / STATE_JSON).write_text(json.dumps({"step": step, "elapsed_s": elapsed, "history": history}))


def _load_state(out: Path, model, opt, gen: torch.Generator) -> tuple[int, dict, float]:
    meta = json.loads((out / STATE_JSON).read_text())
    tensors = load_file(str(out / STATE_FILE))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
                          strict=not model.cfg.tie_embeddings)
    params = dict(model.named_parameters())
    for name, p in params.items():
        state = {key.split(".")[-1]: v for key, v in tensors.items()
                 if key.startswith(f"opt.{name}.") and key.count(".") == name.count(".") + 2}
        if state:
            opt.state[p] = state
    gen.set_state(tensors["rng"])
    return meta["step"], meta["history"], meta["elapsed_s"]


def train(mcfg: ModelConfig, tcfg: TrainConfig, out_dir: str | Path, *, resume: bool = False,
          command: str = "", on_step: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None, device: str = "cpu") -> Path:
    """Train a model and write it to ``out_dir``. ``on_step`` gets a progress dict every step;
    ``should_stop`` returning True ends training early with a checkpoint (as Ctrl-C does)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tcfg.seed)
    model = build_model(mcfg).to(device)
    opt = make_optimizer(model, tcfg)
    gen = torch.Generator().manual_seed(tcfg.seed)
    batches = Batches(tcfg, mcfg, gen)
    val_gen_seed = tcfg.seed + 1
    step, history, elapsed = 0, {"step": [], "train_loss": [], "val_step": [], "val_loss": []}, 0.0
    if resume and (out / STATE_JSON).exists():
        step, history, elapsed = _load_state(out, model, opt, gen)
    interrupted = False

    def on_sigint(*_):
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    try:
        tokens_per_step = tcfg.batch_size * mcfg.context_length * (2 if mcfg.family == "encdec" else 1)
        t0 = time.perf_counter() - elapsed
        cpu0 = time.process_time()
        while step < tcfg.steps:
            model.train()
            for group in opt.param_groups:
                group["lr"] = tcfg.lr_at(step)
            t_step = time.perf_counter()
            loss = batch_loss(model, {k: _to(v, device) for k, v in batches.train_batch().items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            opt.step()
            step += 1
            history["step"].append(step)
            history["train_loss"].append(round(loss.item(), 4))
            event = {"step": step, "steps": tcfg.steps, "loss": loss.item(), "lr": tcfg.lr_at(step - 1),
                     "tokens_per_s": tokens_per_step / (time.perf_counter() - t_step),
                     "elapsed_s": time.perf_counter() - t0}
            if step % tcfg.eval_every == 0 or step == tcfg.steps:
                val = _validate(model, batches, tcfg.eval_windows, val_gen_seed)
                history["val_step"].append(step)
                history["val_loss"].append(round(val, 4))
                event["val_loss"] = val
            if on_step:
                on_step(event)
            stop = interrupted or (should_stop is not None and should_stop())
            if step % tcfg.save_every == 0 or stop:
                _save_state(out, model, opt, step, gen, history, time.perf_counter() - t0)
            if stop:
                raise KeyboardInterrupt
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0  # this process's CPU seconds since start or resume
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    card = {"name": out.name, "command": command, "train": dataclasses.asdict(tcfg), "data": batches.info,
            "steps": step, "wall_time_s": round(wall, 1), "cpu_time_s_since_start_or_resume": round(cpu, 1),
            "threads": torch.get_num_threads(), "parameters": model.n_params,
            "device": device, "torch": torch.__version__}
    card.update(_final_metrics(model, batches, tcfg))
    card["history"] = history
    model.cpu()
    save_model(model, out, dtype=torch.float16, card=card)
    (out / "loss_curve.svg").write_text(loss_curve_svg(history, title=out.name))
    for name in (STATE_FILE, STATE_JSON):
        (out / name).unlink(missing_ok=True)
    return out


def _to(v, device):
    return v.to(device) if isinstance(v, torch.Tensor) else v


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


@torch.no_grad()
def _validate(model: LanguageModel, batches: Batches, windows: int, seed: int) -> float:
    model.eval()
    if batches.task is not None:
        return evaluate_task(model, batches, windows, seed)["loss"]
    return evaluate_text(model, batches.val_ids, model.cfg.context_length, windows)["loss"]


@torch.no_grad()
def _final_metrics(model: LanguageModel, batches: Batches, tcfg: TrainConfig) -> dict:
    """Validation at the training length T and at 4T, and loss by position up to 4T."""
    model.eval()
    T = model.cfg.context_length
    if batches.task is not None:
        return {"val": evaluate_task(model, batches, 64, tcfg.seed + 2)}
    windows = tcfg.final_windows or None
    at_t = evaluate_text(model, batches.val_ids, T, windows)
    metrics = {"val_loss_nats_per_token": round(at_t["loss"], 4),
               "val_bits_per_char": round(at_t["loss"] / math.log(2) / batches.chars_per_token, 4),
               "val_tokens_evaluated": at_t["tokens"], "chars_per_token": round(batches.chars_per_token, 4)}
    try:
        at_4t = evaluate_text(model, batches.val_ids, 4 * T, windows and max(1, windows // 4), by_position=True)
        metrics["val_bits_per_char_4x"] = round(at_4t["loss"] / math.log(2) / batches.chars_per_token, 4)
        metrics["loss_by_position_4x"] = [round(x, 4) for x in at_4t["by_position"]]
    except ValueError as e:  # learned positions stop at T
        metrics["val_bits_per_char_4x"] = None
        metrics["val_4x_note"] = str(e)
    return metrics


def loss_curve_svg(history: dict, title: str = "", width: int = 640, height: int = 320) -> str:
    """A self-contained SVG of train (grey) and validation (blue) loss against step."""
    steps, train_loss = history["step"], history["train_loss"]
    if not steps:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    ys = train_loss + history["val_loss"]
    lo, hi = min(ys), max(ys)
    pad = 40

    def pt(s, y):
        return (f"{pad + (width - 2 * pad) * (s - steps[0]) / max(1, steps[-1] - steps[0]):.1f},"
                f"{height - pad - (height - 2 * pad) * (y - lo) / max(1e-9, hi - lo):.1f}")

    train_pts = " ".join(pt(s, y) for s, y in zip(steps, train_loss))
    val_pts = " ".join(pt(s, y) for s, y in zip(history["val_step"], history["val_loss"]))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' "
            f"font-size='12'><rect width='100%' height='100%' fill='white'/>"
            f"<text x='{pad}' y='20'>{title}: loss (nats/token) vs step; grey train, blue validation</text>"
            f"<text x='4' y='{pad}'>{hi:.2f}</text><text x='4' y='{height - pad}'>{lo:.2f}</text>"
            f"<text x='{width - pad - 30}' y='{height - 10}'>{steps[-1]}</text>"
            f"<polyline fill='none' stroke='#999' points='{train_pts}'/>"
            f"<polyline fill='none' stroke='#1f77b4' stroke-width='2' points='{val_pts}'/></svg>\n")


# ----------------------------------------------------------------------------- CLI


def print_progress(event: dict) -> None:
    done = event["step"] / event["steps"]
    bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
    eta = event["elapsed_s"] / max(done, 1e-9) * (1 - done)
    val = f" val {event['val_loss']:.3f}" if "val_loss" in event else ""
    end = "\n" if "val_loss" in event or done >= 1 else ""
    print(f"\r[{bar}] {event['step']}/{event['steps']} loss {event['loss']:.3f}{val} "
          f"{event['tokens_per_s']:,.0f} tok/s eta {eta:,.0f}s   ", end=end, flush=True)
