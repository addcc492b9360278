"""Building the zoo: train every entry, and time one training step of each on this machine.

``python -m playground.train --zoo`` (or ``python -m playground.zoo build``) trains the entries;
a finished one is skipped unless ``force``, an interrupted one resumes from its checkpoint.
"""
from __future__ import annotations

import statistics
import time

import torch

from playground.models import build_model
from playground.models.checkpoint import CARD
from playground.train.evaluate import batch_loss
from playground.train.loop import Batches, make_optimizer, print_progress, train
from playground.zoo.registry import MODELS_DIR, ZOO, entry_configs


def train_zoo(names: list[str] | None = None, *, force: bool = False, device: str = "cpu") -> None:
    for name in names or list(ZOO):
        mcfg, tcfg = entry_configs(name)
        out = MODELS_DIR / name
        if (out / CARD).exists() and not force:
            print(f"{name}: already trained ({out / CARD}); --force retrains")
            continue
        print(f"== {name}: {ZOO[name]['about']}")
        train(mcfg, tcfg, out, resume=True, command=f"python -m playground.train --zoo {name}",
              on_step=print_progress, device=device)


def step_seconds(name: str, steps: int = 8, warmup: int = 2) -> float:
    """Median seconds of one training step of a zoo entry on this machine, measured now."""
    mcfg, tcfg = entry_configs(name)
    torch.manual_seed(tcfg.seed)
    model = build_model(mcfg)
    opt = make_optimizer(model, tcfg)
    batches = Batches(tcfg, mcfg, torch.Generator().manual_seed(tcfg.seed))
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = batch_loss(model, batches.train_batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
