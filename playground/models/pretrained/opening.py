"""Which path opens a checkpoint: the playground's own module for the families it wrote, transformers' class for the rest.

Mamba keeps its own module (its implicit attention needs the per-token delta, B and C that transformers' mixer does
not hand out); GPT-2, Llama, Qwen2 and Mistral keep theirs while the Generate tab, Inside a head and the View switch
run on the playground's KV cache and layers. Every other architecture transformers ships whose attention goes
through the attention interface opens as a ``HubModel`` (``models.hf``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from playground.config import ModelConfig
from playground.models.hf.shape import HubConfig
from playground.models.pretrained.families import FAMILIES


def handwritten(hf: dict) -> bool:
    """Whether the playground's own module reads this config.json's model_type."""
    return isinstance(hf, dict) and hf.get("model_type") in FAMILIES


def shape_of(hf: dict) -> ModelConfig | HubConfig:
    """The shape of a config.json: a ``ModelConfig`` for a hand-written family, else a ``HubConfig``. ValueError
    (``UnsupportedModel``) for a model neither can open, read from config.json alone."""
    from playground.models.pretrained.loader import model_config

    return model_config(hf) if handwritten(hf) else HubConfig.of(hf)


def open_checkpoint(folder: str | Path, device: str | torch.device, dtype: torch.dtype):
    """(model, tokenizer) of a checkpoint folder by the path ``shape_of`` picks."""
    from playground.models.hf.loader import open_folder
    from playground.models.pretrained.checkpoint import read_config
    from playground.models.pretrained.loader import load_folder

    if handwritten(read_config(folder)):
        return load_folder(folder, device, dtype)
    return open_folder(folder, device, dtype)
