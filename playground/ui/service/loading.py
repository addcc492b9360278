"""Models for one call: each spec's weights loaded once per (device, dtype) into ``WEIGHTS``, under a memory budget
(``models.weight_cache``: least recently used out first), and every call its own model object over them
(``models.shared.instance``), built with the call's backend and sliding window, so concurrent visitors neither wait
on each other nor share a KV cache. ``dtype`` "auto" runs bfloat16 on a CUDA device that supports it (float16
otherwise) and float32 on the CPU."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from playground.config import BACKENDS, DTYPES
from playground.errors import check_int
from playground.models.base import LanguageModel
from playground.models.shared import Weights, estimated_bytes, instance
from playground.models.weight_cache import Checkout, WeightCache
from playground.serving import gpu_call
from playground.nn.kernels import run_dtype
from playground.ui.i18n import Message, MessageError, msg
from playground.ui.service.choices import devices
from playground.serving.memory_ledger import LEDGER
from playground.zoo import ModelSpec


@dataclass
class Loaded:
    """One call's model: its own instance over the shared weights, and notes for the reader (models
    unloaded to make room for it, or this one loaded again after being unloaded)."""

    model: LanguageModel
    spec: ModelSpec
    notes: list[Message] = field(default_factory=list)


# budget: PLAYGROUND_MODEL_MEMORY_GB, read at each load (default: half the memory); each load also passes the
# server's one memory check
WEIGHTS = WeightCache(admit=LEDGER.admit)


def load(spec: ModelSpec, backend: str = "auto", device: str = "cpu", window: int = 0, dtype: str = "auto") -> Loaded:
    """A model of its own for one call: the spec's weights for this device and dtype (loaded once,
    shared), built with this backend and sliding window (0: the model's own, which only a pretrained
    model such as Mistral has; none otherwise)."""
    if device not in devices():
        raise MessageError("error.device", device=device, devices=", ".join(devices()))
    if backend not in BACKENDS:
        raise MessageError("error.backend", backend=backend, valid=", ".join(BACKENDS))
    if dtype not in DTYPES:
        raise MessageError("error.dtype", dtype=dtype, valid=", ".join(DTYPES))
    cfg = spec.config()
    window = check_int("window", window, 0, cfg.context_length) or cfg.sliding_window
    out = weights(spec, device, run_dtype(dtype, device))
    notes = [msg("note.unloaded", names=", ".join(out.evicted), budget_mb=round(WEIGHTS.limit() / 1e6))] if out.evicted else []
    if out.reloaded:
        notes.append(msg("note.reloaded", name=weights_name(spec, device, out.weights.dtype)))
    if not out.kept:
        notes.append(msg("note.not_kept", name=weights_name(spec, device, out.weights.dtype),
                         size_mb=round(out.weights.nbytes / 1e6), budget_mb=round(WEIGHTS.limit() / 1e6)))
    # the door's guard (ZeroGPU) holds this model's forwards, and no other module's, to the GPU call
    return Loaded(gpu_call.watch(instance(out.weights, backend=backend, sliding_window=window)), spec, notes)


def prepare(spec: ModelSpec, device: str, dtype: str = "auto") -> None:
    """Before model work goes through a GPU door (ZeroGPU): the weights into CPU memory here, in the main
    process, once; each call's worker moves them to the GPU (``weights``). Without a door: nothing to do."""
    if gpu_call.installed() and device != "cpu":
        weights(spec, "cpu", run_dtype(dtype, device))


def weights_name(spec: ModelSpec, device: str, dtype: torch.dtype) -> str:
    """How notes name a model's weights: the spec, with device and dtype unless CPU float32."""
    if device == "cpu" and dtype == torch.float32:
        return str(spec)
    return f"{spec} ({device}, {str(dtype).removeprefix('torch.')})"


def weights(spec: ModelSpec, device: str, dtype: torch.dtype) -> Checkout:
    """The spec's weights on this device in this dtype, from ``WEIGHTS`` (loaded on a miss). Behind a GPU door
    (ZeroGPU) a device's copy is made from the CPU copy ``prepare`` loaded in the main process."""
    def read() -> Weights:
        if device != "cpu" and gpu_call.installed():
            return Weights.of(instance(weights(spec, "cpu", dtype).weights).to(device))
        return Weights.of(spec.load().to(device=device, dtype=dtype))

    return WEIGHTS.get((spec, device, dtype), read,
                       lambda: estimated_bytes(spec.config(), dtype), weights_name(spec, device, dtype), device=device)
