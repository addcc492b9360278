"""Which path opens a checkpoint: the playground's own module for the family it wrote, transformers' class for the rest.

Mamba keeps its own module: its implicit attention needs the per-token delta, B and C that transformers' mixer does
not hand out. Every architecture transformers ships whose attention goes through the attention interface (GPT-2,
Llama, Qwen2 and Mistral among them) opens as a ``HubModel`` (``models.hf``).
"""
from __future__ import annotations

from playground.config import ModelConfig
from playground.models.hf.shape import HubConfig
from playground.models.pretrained.checkpoint import LIMITS, check_sizes
from playground.models.pretrained.families import FAMILIES, family_for


def handwritten(hf: dict) -> bool:
    """Whether the playground's own module reads this config.json's model_type."""
    return isinstance(hf, dict) and hf.get("model_type") in FAMILIES


def shape_of(hf: dict) -> ModelConfig | HubConfig:
    """The shape of a config.json: a ``ModelConfig`` for a hand-written family, else a ``HubConfig``. ValueError
    (``UnsupportedModel``) for a model neither can open, read from config.json alone."""
    return model_config(hf) if handwritten(hf) else HubConfig.of(hf)


def model_config(hf: dict) -> ModelConfig:
    """Our ModelConfig for a config.json dict, checked against ``LIMITS``; ValueError naming what is unsupported."""
    if not isinstance(hf, dict):
        raise ValueError(f"config.json must hold a JSON object, got {type(hf).__name__}")
    cfg = family_for(hf.get("model_type")).to_config(hf)
    check_sizes({name: getattr(cfg, name) for name in LIMITS})
    return cfg
