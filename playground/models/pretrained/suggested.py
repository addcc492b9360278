"""Pretrained models the page suggests: small enough for a CPU Space, one per family the loader reads.

Plain data (no download): each entry's size and attention layout come from its published config.json,
so the page can show them before anything is fetched. Any other Hub id of a supported family works too.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suggested:
    hub_id: str
    params: str       # parameter count as published
    model_type: str   # config.json's model_type: the family the loader maps
    layers: int
    attention: str    # variant and heads (query:K/V)
    position: str
    note: str = ""    # what is special about it

    def label(self) -> str:
        """One line for a picker: 'openai-community/gpt2 · 124M · gpt2 · 12 layers · MHA 12 · learned'."""
        parts = [self.hub_id, self.params, self.model_type, f"{self.layers} layers", self.attention, self.position]
        return " · ".join(parts + ([self.note] if self.note else []))


SUGGESTED = (
    Suggested("openai-community/gpt2", "124M", "gpt2", 12, "MHA 12", "learned"),
    Suggested("HuggingFaceTB/SmolLM2-135M", "135M", "llama", 30, "GQA 9:3", "RoPE"),
    Suggested("HuggingFaceTB/SmolLM2-360M", "362M", "llama", 32, "GQA 15:5", "RoPE"),
    Suggested("Qwen/Qwen2.5-0.5B", "494M", "qwen2", 24, "GQA 14:2", "RoPE θ=1e6", "q/k/v biases, reads Chinese"),
    Suggested("state-spaces/mamba-130m-hf", "130M", "mamba", 24, "no attention (implicit)", "none"),
    Suggested("meta-llama/Llama-3.2-1B", "1.24B", "llama", 16, "GQA 32:8", "RoPE llama3 scaling", "gated: needs HF_TOKEN"),
    Suggested("mistralai/Mistral-7B-v0.1", "7.24B", "mistral", 32, "GQA 32:8", "RoPE", "sliding window 4096; needs ~29 GB"),
)
