import os
import tempfile

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# models trained through the page during tests go to a throwaway folder
os.environ.setdefault("PLAYGROUND_USER_MODELS", tempfile.mkdtemp(prefix="playground-user-models-"))

# The suite's models are tiny: one thread is faster than two threads waiting on each other.
torch.set_num_threads(1)

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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    """The page, served on 127.0.0.1 at a free port for the whole session."""
    from playground.ui import LAUNCH, build_app

    demo = build_app()
    port = free_port()
    demo.queue(default_concurrency_limit=2).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                                   quiet=True, **LAUNCH)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
