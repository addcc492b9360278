"""What every family's mapping shares: reading config fields, and filling our state dict by templates.

A family's tensor names are data (STYLE 13, litgpt's ``convert_hf_checkpoint``): a weight map from our
names to theirs with ``{}`` for the layer index, each with a reshape function (``same`` where the layouts
agree). ``fill`` walks our model's own state dict (built on the meta device, so nothing is allocated), so every
tensor the config implies is asked for at the shape it implies, and nothing else.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import torch

from playground.config import ModelConfig
from playground.models import build_model
from playground.models.pretrained.checkpoint import Checkpoint

Reshape = Callable[[Checkpoint, str, tuple[int, ...]], torch.Tensor]
_LAYER = re.compile(r"\.(\d+)\.")


def field(hf: dict, name: str, kind: type | tuple[type, ...] = int, default=...):
    """``hf[name]`` checked to be of ``kind`` (ints count as floats); ``default`` when absent (else required)."""
    if name not in hf or hf[name] is None:
        if default is ...:
            raise ValueError(f"config.json lacks {name!r}, which this model type needs")
        return default
    value = hf[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"config.json field {name!r} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    return value


def refuse_unless(hf: dict, name: str, supported, default) -> None:
    """ValueError naming ``name`` when the config sets it to anything but ``supported`` (absent: ``default``)."""
    value = hf.get(name, default)
    allowed = supported if isinstance(supported, tuple) else (supported,)
    if value not in allowed:
        raise ValueError(f"config.json sets {name}={value!r}, which the playground does not support "
                         f"(supported: {', '.join(map(repr, allowed))})")


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Our model's state-dict names and shapes for ``cfg``, from a model built on the meta device."""
    with torch.device("meta"):
        model = build_model(cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def same(ckpt: Checkpoint, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    return ckpt.take(name, shape)


def template_of(name: str) -> tuple[str, str | None]:
    """'decoder.blocks.3.mlp.up.weight' -> ('decoder.blocks.{}.mlp.up.weight', '3'); no layer: (name, None)."""
    match = _LAYER.search(name)
    if match is None:
        return name, None
    return name[:match.start()] + ".{}." + name[match.end():], match.group(1)


def fill(cfg: ModelConfig, ckpt: Checkpoint, weight_map: dict[str, tuple[str, Reshape]],
         tied: tuple[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Our state dict, each tensor taken through ``weight_map`` (our template -> (their template, reshape)).

    ``tied`` = (our output head, our embedding) when they share one tensor: the head is not read, unless
    the checkpoint stores it anyway under ``weight_map``'s name, which must then equal the embedding.
    """
    state: dict[str, torch.Tensor] = {}
    shapes = expected_shapes(cfg)
    for ours, shape in shapes.items():
        if tied and ours == tied[0]:
            continue
        template, layer = template_of(ours)
        if template not in weight_map:
            raise ValueError(f"no checkpoint tensor maps to {ours!r} for model_type's layout (config not supported)")
        theirs, reshape = weight_map[template]
        state[ours] = reshape(ckpt, theirs.format(layer) if layer is not None else theirs, shape)
    if tied:
        head, embedding = tied
        state[head] = state[embedding]
        stored = weight_map.get(head, (None,))[0]
        if stored is not None and stored in ckpt:
            if not torch.equal(ckpt.take(stored, shapes[head]), state[embedding]):
                raise ValueError(f"config.json ties the embeddings (tie_word_embeddings), but {stored!r} "
                                 "differs from the token embedding")
    return state
