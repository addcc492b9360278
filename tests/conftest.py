import os

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from playground.config import ModelConfig  # noqa: E402
from playground.transformer import build_model  # noqa: E402

FAMILIES = ("decoder", "prefix", "encdec")
POSITIONS = ("sinusoidal", "learned", "rope", "alibi", "none")
VARIANTS = {"MHA": 4, "GQA": 2, "MQA": 1}


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=97, context_length=96, n_layer=2, d_model=32, n_heads=4, n_kv_heads=4, d_ff=64)
    return ModelConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_config(**overrides)).eval()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
