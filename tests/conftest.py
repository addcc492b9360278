import importlib
import json
import os
import shutil
import tempfile

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# models trained through the page during tests go to a throwaway folder
os.environ.setdefault("PLAYGROUND_USER_MODELS", tempfile.mkdtemp(prefix="playground-user-models-"))

# The suite's models are tiny: one thread is faster than two threads waiting on each other.
torch.set_num_threads(1)

from playground.bench.browser import free_port  # noqa: E402
from playground.config import ModelConfig  # noqa: E402
from playground.models import build_model  # noqa: E402

# Under CI a missing dependency fails the run: a suite that skips its reference and browser checks must not pass.
CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _missing(what: str, install: str):
    message = f"{what} is missing: {install}"
    if CI:
        pytest.fail(f"{message} (CI=true: a missing test dependency fails the run)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str, install: str):
    """The imported ``module`` a test needs. Missing: skip with the line that installs it; under CI=true, fail."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    _missing(f"the Python module {module!r}", install)


def require_binary(name: str, install: str) -> str:
    """The path of the program ``name`` (a name on PATH or a path) a test needs; missing as for ``require``."""
    path = shutil.which(name)
    if path is None:
        _missing(f"the program {name!r}", install)
    return path

FAMILIES = ("decoder", "prefix", "encdec")
POSITIONS = ("sinusoidal", "learned", "rope", "alibi", "none")
VARIANTS = {"MHA": 4, "GQA": 2, "MQA": 1}


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=97, context_length=96, n_layer=2, d_model=32, n_heads=4, n_kv_heads=4, d_ff=64)
    return ModelConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_config(**overrides)).eval()


# The tests marked cuda run models whose head dim the CUDA kernels take: FlexAttention (TorchInductor's
# Triton template) needs at least 16, flash at most 256 and a multiple of 8. The tiny config's 8 is
# below FlexAttention's limit (tests/test_dispatch.py checks these configs against the limits on the CPU).
GPU_HEAD_DIMS = (16, 64, 128)


def gpu_config(head_dim: int, **overrides) -> ModelConfig:
    """The tiny config with 4 heads of ``head_dim`` and room for a few hundred tokens, for the cuda tests."""
    return tiny_config(**{"d_model": 4 * head_dim, "n_heads": 4, "d_ff": 8 * head_dim, "context_length": 512,
                          **overrides})


def gpu_model(head_dim: int, seed: int = 0, **overrides):
    """``gpu_config``'s model on CUDA in the dtype ``auto`` runs there (bf16, or fp16 without native bf16)."""
    from playground.nn.kernels import run_dtype

    torch.manual_seed(seed)
    return build_model(gpu_config(head_dim, **overrides)).eval().to("cuda", run_dtype("auto", "cuda"))


def implicit_records(model, ids, mixer: str):
    """Run ``ids`` (B, T) with capture; return the implicit-attention records, each paired with the input
    its layer's ``mixer`` submodule saw, after checking what every record must be: causal, exact, signed."""
    inputs = []
    hooks = [getattr(b, mixer).register_forward_hook(lambda m, args, out: inputs.append(args[0]))
             for b in model.blocks]
    with torch.no_grad():
        out = model(ids, capture=True)
    for h in hooks:
        h.remove()
    B, T = ids.shape
    assert len(out.attentions) == len(model.blocks)
    for rec in out.attentions:
        assert rec.kind == "implicit" and rec.kernel == "implicit" and not rec.recomputed and rec.bias is None
        assert rec.weights.shape == (B, model.cfg.n_heads, T, T)
        assert torch.equal(rec.mask, torch.ones(T, T, dtype=torch.bool).tril())
        assert (rec.weights.triu(1) == 0).all()
        assert rec.max_abs_diff < 1e-4
    return list(zip(out.attentions, inputs))


def assert_badge_catches(model, x, corrupt) -> None:
    """The faithfulness check (``max_abs_diff``) is rounding on an honest implicit matrix and far above it
    once ``corrupt()`` has made the matrix wrong: over the whole prompt x (B, T) and for its last token
    decoded from the state."""
    T = x.shape[1]

    def diffs() -> list[float]:
        try:
            with torch.no_grad():
                out = [r.max_abs_diff for r in model(x, capture=True).attentions]
                model.setup_cache(batch=x.shape[0])
                model(x[:, :-1], capture=True)
                return out + [r.max_abs_diff for r in model(x[:, -1:], start_pos=T - 1, capture=True).attentions]
        finally:
            model.clear_cache()

    honest = diffs()
    corrupt()
    wrong = diffs()
    assert len(wrong) == 2 * len(model.blocks)
    assert max(honest) < 1e-4 and min(wrong) > 1e-3, (honest, wrong)


def assert_state_is_constant(model, expected: int):
    """A recurrent model's state is ``expected`` bytes when set up, after 16 tokens and after 2048."""
    V = model.cfg.vocab_size
    with torch.no_grad():
        model.setup_cache(batch=1)
        assert model.cache_bytes() == expected
        model(torch.randint(0, V, (1, 16)))
        at_16 = model.cache_bytes()
        model.setup_cache(batch=1, max_len=4096)
        model(torch.randint(0, V, (1, 2047)))
        model(torch.randint(0, V, (1, 1)), start_pos=2047)
        at_2048 = model.cache_bytes()
    model.clear_cache()
    assert at_16 == at_2048 == expected
    assert model.cache_bytes() == 0


# Warnings of dependencies we cannot fix from here, each named with where it comes from; our own stay errors to fix.
DEPENDENCY_WARNINGS = (
    # the rwkv package (the RWKV-5 reference) decorates with torch.jit.script_method, deprecated in torch 2.13
    r"ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
    # gradio 6.31's queue (gradio/queueing.py) calls pandas options and arguments pandas 3 deprecates
    r"ignore:'future.no_silent_downcasting' is deprecated:Warning",
    r"ignore:The copy keyword is deprecated:Warning",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped where there is none (a legitimate skip, "
                                       "under CI too: the kernels it checks do not exist on the CPU)")
    for rule in DEPENDENCY_WARNINGS:
        config.addinivalue_line("filterwarnings", rule)


# The slowest test files (from the suite's --durations), run first. The README's command runs the suite on two
# pytest-xdist workers, one file at a time each (--dist loadfile), in this order (--no-loadscope-reorder): a worker
# takes the next file when it is nearly done with its own, so the long files first let the two end together
# instead of one finishing a long file alone.
SLOWEST_FIRST = ("test_browser.py", "test_browser_tour.py", "test_bench.py", "test_zerogpu.py",
                 "test_browser_any_model.py", "test_browser_pretrained.py", "test_app_api.py", "test_no_t_squared.py",
                 "test_browser_long.py", "test_generate.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device here: the flash / FlexAttention GPU checks run on a GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def app_url():
    """The page, served on 127.0.0.1 at a free port for the whole session."""
    from playground.ui import build_app, launch_options, queue_options

    demo = build_app()
    port = free_port()
    demo.queue(**queue_options()).launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                                                   quiet=True, **launch_options())
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    from playground.ui.warmup import FLEX

    FLEX.wait()  # a FlexAttention compile still running in its thread when Python exits would abort the process


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory):
    """A folder with the byte-level BPE tokenizer.json of ``pretrained_fixtures``, trained once per session."""
    require("tokenizers", "pip install -r requirements.txt")
    from pretrained_fixtures import write_tokenizer
    return write_tokenizer(tmp_path_factory.mktemp("hf-tokenizer"))


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory, hf_tokenizer_dir):
    """``hf_checkpoint(kind, **overrides)``: a tiny Hugging Face checkpoint folder written by transformers,
    once per session per (kind, overrides). Shared: copy it before changing anything in it."""
    require("transformers", "pip install -r requirements-dev.txt")
    from pretrained_fixtures import write_checkpoint
    folders = {}

    def folder(kind: str, **overrides):
        key = (kind, json.dumps(overrides, sort_keys=True))
        if key not in folders:
            folders[key] = write_checkpoint(kind, tmp_path_factory.mktemp(f"hf-{kind}"), **overrides)
        return folders[key]
    return folder


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    """huggingface_hub talking to tests/hub_server.py on 127.0.0.1, its cache in tmp_path/cache."""
    import huggingface_hub.constants as hf_constants
    from hub_server import FakeHub, serve
    from playground.models.pretrained import budget, hub

    fake = FakeHub()
    server = serve(fake)
    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "get_token", lambda: None)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    yield fake
    server.shutdown()
    server.server_close()
