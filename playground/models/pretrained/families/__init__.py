"""Checkpoint families: one module per Hugging Face ``model_type`` family.

Each module exposes ``MODEL_TYPES`` (the config.json ``model_type`` values it reads),
``to_config(hf) -> ModelConfig`` (ValueError naming the field on anything unsupported) and
``state_dict(cfg, hf, ckpt) -> dict`` (our model's state dict, taken from a ``Checkpoint``).
"""
from __future__ import annotations

from types import ModuleType

from playground.models.pretrained.families import mamba

FAMILIES: dict[str, ModuleType] = {model_type: module for module in (mamba,)
                                   for model_type in module.MODEL_TYPES}


def supported() -> list[str]:
    """The model_type values the playground loads, sorted."""
    return sorted(FAMILIES)


def family_for(model_type: object) -> ModuleType:
    """The family module for ``model_type``; ValueError naming it and the supported ones otherwise."""
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ValueError(f"model_type {model_type!r} is not supported; the playground loads: "
                         f"{', '.join(supported())}")
    return FAMILIES[model_type]
