"""One model's tensors shared by many model objects: weights loaded once, a fresh model per request.

A page serving many visitors loads each model's tensors once per device and dtype into a
``Weights``. Every request then runs its own ``instance(weights, backend=..., sliding_window=...)``:
a module tree built on the meta device (no memory, no initialisation work) whose every parameter
and buffer is then pointed at the shared tensor, without a copy. What a request writes belongs to
its instance alone: the KV cache (``setup_cache``), the recorder, hooks, the config with its
backend and window. Only options that leave every tensor's shape alone (``PER_CALL``) may differ
between instances of one ``Weights``.

    weights = Weights.of(load_model(folder))
    a = instance(weights, sliding_window=16)        # its own mask rule and cache
    b = instance(weights, backend="explicit")       # the same tensors (data_ptr), its own kernel
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from playground.config import ModelConfig
from playground.models import build_model
from playground.models.base import LanguageModel
from playground.models.hf.model import build as hub_model

PER_CALL = ("backend", "sliding_window")  # config fields an instance may change: no tensor depends on them


def storage_bytes(tensors) -> int:
    """Bytes of memory behind ``tensors``: each storage counted once (tied weights share one)."""
    storages = {}
    for t in tensors:
        storage = t.untyped_storage()
        storages[(t.device.type, t.device.index, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


def build(cfg) -> nn.Module:
    """The model of a config: a playground ``ModelConfig`` through ``build_model``, a Hub model's shape
    (``models.hf.shape.HubConfig``) through ``models.hf.model.build``."""
    return build_model(cfg) if isinstance(cfg, ModelConfig) else hub_model(cfg)


def estimated_bytes(cfg, dtype: torch.dtype = torch.float32) -> int:
    """What ``Weights`` of this config will hold at ``dtype`` (floating tensors cast, others as built),
    counted from the tensors' shapes on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model = build(cfg)
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
    return sum(t.numel() * (dtype.itemsize if t.is_floating_point() else t.element_size()) for t in tensors)


@dataclass
class Weights:
    """The tensors of one loaded model, by name: every parameter and every buffer (non-persistent ones,
    such as ALiBi slopes, included), its config, the bytes they hold and when they were last used.

    A tied weight appears under each of its names as the same tensor. The tensors never require
    grad: instances run inference only.
    """

    config: ModelConfig
    parameters: dict[str, Tensor]
    buffers: dict[str, Tensor]
    nbytes: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, model: LanguageModel) -> "Weights":
        """The tensors of ``model`` as they are (device, dtype); the model object itself is not kept."""
        detached: dict[int, Tensor] = {}  # one tensor per parameter object: tied names stay one tensor
        params = {name: detached.setdefault(id(p), p.detach())
                  for name, p in model.named_parameters(remove_duplicate=False)}
        buffers = {name: b for name, b in model.named_buffers(remove_duplicate=False)}
        return cls(model.cfg, params, buffers, storage_bytes([*params.values(), *buffers.values()]))

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters.values())).device

    @property
    def dtype(self) -> torch.dtype:
        return next(t for t in self.parameters.values() if t.is_floating_point()).dtype


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attr = name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


def instance(weights: Weights, **overrides) -> LanguageModel:
    """A new model object over the shared tensors of ``weights``, in eval mode.

    Args:
        overrides: config fields of this instance, only those in ``PER_CALL`` (backend,
            sliding_window); anything else could change a tensor's shape and is refused.
    Returns:
        A ``LanguageModel`` whose parameters and buffers are the tensors of ``weights`` (the same
        storage: nothing is copied), tied weights tied, with its own config, recorder and cache.
    """
    refused = sorted(set(overrides) - set(PER_CALL))
    if refused:
        raise ValueError(f"an instance may only change {', '.join(PER_CALL)}, not {', '.join(refused)}: "
                         "other fields can change the shape of a shared tensor; load that model separately")
    cfg = weights.config.replace(**overrides)
    with torch.device("meta"):
        model = build(cfg)
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    if params.keys() != weights.parameters.keys() or buffers.keys() != weights.buffers.keys():
        missing = sorted((params.keys() | buffers.keys()) - (weights.parameters.keys() | weights.buffers.keys()))
        extra = sorted((weights.parameters.keys() | weights.buffers.keys()) - (params.keys() | buffers.keys()))
        raise ValueError(f"the weights do not fit this config: missing {missing[:5]}, unexpected {extra[:5]}")
    wrapped: dict[int, nn.Parameter] = {}  # shared tensor -> this instance's Parameter over it (tied: one)
    for name, empty in params.items():
        tensor = _fitting(name, weights.parameters[name], empty)
        if id(tensor) not in wrapped:  # its own Parameter object: a .to() on one instance leaves the others alone
            wrapped[id(tensor)] = nn.Parameter(tensor, requires_grad=False)
        module, attr = _owner(model, name)
        module._parameters[attr] = wrapped[id(tensor)]
    for name, empty in buffers.items():
        module, attr = _owner(model, name)
        module._buffers[attr] = _fitting(name, weights.buffers[name], empty)
    return model.eval()


def _fitting(name: str, tensor: Tensor, empty: Tensor) -> Tensor:
    if tensor.shape != empty.shape:
        raise ValueError(f"tensor {name} has shape {tuple(tensor.shape)}, this config needs {tuple(empty.shape)}")
    return tensor
