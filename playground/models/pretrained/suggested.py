"""Pretrained models the page suggests: current small models, one per idea worth seeing (QK-norm, alternating
sliding and full layers, encoder-only, encoder-decoder, implicit attention, sinks).

Plain data (no download): each entry's size and attention layout come from its published config.json,
so the page can show them before anything is fetched. Any other Hub id whose architecture transformers runs
through its attention interface works too.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suggested:
    hub_id: str
    params: str       # parameter count as published
    model_type: str   # config.json's model_type: the family the loader maps
    layers: int | None  # None: read from its config.json once opened
    attention: str    # variant and heads (query:K/V)
    position: str
    note: str = ""    # what is special about it

    def label(self) -> str:
        """One line for a picker: 'openai-community/gpt2 · 124M · gpt2 · 12 layers · MHA 12 · learned'."""
        parts = [self.hub_id, self.params, self.model_type] + ([f"{self.layers} layers"] if self.layers else [])
        parts += [self.attention, self.position]
        return " · ".join(parts + ([self.note] if self.note else []))


SUGGESTED = (
    Suggested("Qwen/Qwen3-0.6B", "0.6B", "qwen3", 28, "GQA 16:8", "RoPE θ=1e6", "QK-norm"),
    Suggested("google/gemma-3-270m", "270M", "gemma3_text", 18, "MQA 4:1", "RoPE",
              "5 sliding-window (512) layers per full one; gated: needs HF_TOKEN"),
    Suggested("HuggingFaceTB/SmolLM2-135M", "135M", "llama", 30, "GQA 9:3", "RoPE"),
    Suggested("HuggingFaceTB/SmolLM2-360M", "362M", "llama", 32, "GQA 15:5", "RoPE"),
    Suggested("openai-community/gpt2", "124M", "gpt2", 12, "MHA 12", "learned"),
    Suggested("meta-llama/Llama-3.2-1B", "1.24B", "llama", 16, "GQA 32:8", "RoPE llama3 scaling", "gated: needs HF_TOKEN"),
    Suggested("allenai/OLMo-2-0425-1B", "1.5B", "olmo2", 16, "MHA 16", "RoPE", "QK-norm"),
    Suggested("google-bert/bert-base-uncased", "110M", "bert", 12, "MHA 12", "learned", "encoder-only: fill the mask"),
    Suggested("answerdotai/ModernBERT-base", "149M", "modernbert", 22, "MHA 12", "RoPE",
              "encoder-only; local window 128, global every 3rd layer"),
    Suggested("google-t5/t5-small", "60M", "t5", 6, "MHA 8", "relative buckets", "encoder-decoder"),
    Suggested("Helsinki-NLP/opus-mt-en-zh", "77M", "marian", 6, "MHA 8", "sinusoidal",
              "encoder-decoder: translates English to Chinese; cross-attention aligns them"),
    Suggested("ibm-granite/granite-4.0-h-350m", "350M", "granitemoehybrid", None, "a few attention layers",
              "none (NoPE)", "hybrid: attention among Mamba-2 layers"),
    Suggested("state-spaces/mamba-130m-hf", "130M", "mamba", 24, "no attention (implicit)", "none"),
    Suggested("openai/gpt-oss-20b", "21B", "gpt_oss", 24, "GQA 64:8", "RoPE",
              "attention sinks; sliding (128) and full layers alternate; GPU only (~42 GB in bf16)"),
)
