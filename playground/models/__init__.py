"""Models: the Transformers (decoder-only, prefix decoder, encoder-decoder), RWKV-5.2 and Mamba-1.

``build_model(cfg)`` is the one builder: a ``ModelConfig`` in, a ``LanguageModel`` out. Every model
takes token ids and returns ``ModelOutput(logits, attentions)``; ``checkpoint`` reads and writes
them as safetensors + JSON; ``pretrained`` turns Hugging Face checkpoints (GPT-2, Llama, Mistral,
Qwen2, Mamba) into these same models; ``mamba_implicit`` builds Mamba's hidden attention a block at a time.
"""
from __future__ import annotations

from playground.config import ModelConfig
from playground.models.base import LanguageModel, ModelOutput
from playground.models.mamba import Mamba
from playground.models.rwkv import RWKV
from playground.models.transformer import EncoderDecoder, TransformerLM

BUILDERS: dict[str, type[LanguageModel]] = {
    "decoder": TransformerLM, "prefix": TransformerLM, "encdec": EncoderDecoder, "rwkv": RWKV, "mamba": Mamba,
}


def build_model(cfg: ModelConfig) -> LanguageModel:
    """The one builder: config in, model out."""
    if cfg.family not in BUILDERS:
        raise ValueError(f"family={cfg.family!r} has no model; valid: {', '.join(BUILDERS)}")
    return BUILDERS[cfg.family](cfg)


__all__ = ["BUILDERS", "build_model", "LanguageModel", "ModelOutput", "EncoderDecoder", "TransformerLM", "RWKV", "Mamba"]
