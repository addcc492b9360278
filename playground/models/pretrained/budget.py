"""How much memory a pretrained model needs, and how much this machine lets one model have.

A model's size is its parameter count times the bytes of one parameter at the dtype it will run in.
The count comes, best first, from the Hub's safetensors metadata (``hub.py`` asks), from the
safetensors headers of a folder (read lazily, no tensor is loaded), or from ``config.json`` by the
formula of its family (``estimate_parameters``). The budget is, first of all, what the caller
passes; else ``PLAYGROUND_MAX_MODEL_GB`` (an operator's choice, in GB); else half of the memory
this process has available now (its container's limit where that is lower than the machine's:
``models.memory``), which leaves room for activations, the KV cache and the page. Weights bound
for a CUDA device must also fit the memory free on it. This module only counts; ``hub.py`` refuses.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch

from playground.models import memory

ENV_MAX_GB = "PLAYGROUND_MAX_MODEL_GB"
DEFAULT_DTYPE = torch.float32  # dtype=None: what the playground computes in on a CPU
GB = 1024 ** 3

DTYPES = {  # accepted spellings -> torch dtype
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """None -> float32; a torch floating dtype as is; 'bf16', 'bfloat16', 'torch.float16', ... by name.
    'auto' (the page's choice, decided by the device later) counts as float32, the most it can take."""
    if dtype is None or (isinstance(dtype, str) and dtype.strip().lower() == "auto"):
        return DEFAULT_DTYPE
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    if isinstance(dtype, str) and dtype.strip().lower().removeprefix("torch.") in DTYPES:
        return DTYPES[dtype.strip().lower().removeprefix("torch.")]
    raise ValueError(f"Unknown dtype {dtype!r}; valid: {', '.join(sorted(DTYPES))} (or a torch floating dtype)")


def itemsize(dtype: str | torch.dtype | None) -> int:
    """Bytes per parameter at ``dtype`` (float32 4, bfloat16/float16 2)."""
    return parse_dtype(dtype).itemsize


def available_bytes() -> int:
    """Memory this process can take now: MemAvailable, or its cgroup's limit less its working set if lower."""
    return memory.host_available()


def budget_bytes(budget: int | None = None, device: str | torch.device | None = None) -> int:
    """The most bytes one model may take: ``budget`` if given, else $PLAYGROUND_MAX_MODEL_GB, else half of
    the available memory; for a CUDA ``device``, no more than the memory free on it. A malformed env value
    is a ValueError naming the variable."""
    allowed = _host_budget(budget)
    if memory.on_cuda(device):
        allowed = min(allowed, memory.device_memory(device)[0])
    return allowed


def spread_budget(offload_folder: str | Path | None = None, budget: int | None = None) -> dict[str, int]:
    """What a model spread over devices (``device_map="auto"``) may take on each: every CUDA device's free memory,
    the host's budget (as ``budget_bytes``), and the free disk under ``offload_folder`` when one is given.
    {"cuda:0": bytes, ..., "cpu": bytes, "disk": bytes}"""
    room = {f"cuda:{i}": memory.device_memory(torch.device("cuda", i))[0] for i in range(torch.cuda.device_count())}
    room["cpu"] = _host_budget(budget)
    if offload_folder is not None:
        folder = Path(offload_folder)
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
        room["disk"] = shutil.disk_usage(existing).free
    return room


def _host_budget(budget: int | None) -> int:
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ValueError(f"budget_bytes must be a positive integer, got {budget!r}")
        return budget
    raw = os.environ.get(ENV_MAX_GB, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = float("nan")
        if not 0 < gb < math.inf:  # NaN fails the comparison
            raise ValueError(f"{ENV_MAX_GB} must be a positive number of GB (e.g. 4 or 0.5), got {raw!r}")
        return int(gb * GB)
    return available_bytes() // 2


def dtype_name(dtype: str | torch.dtype | None) -> str:
    """'float32', 'bfloat16', ... for messages."""
    return str(parse_dtype(dtype)).removeprefix("torch.")


def size(n_bytes: int) -> str:
    """'1.23 GB', '498.3 MB' or '12.0 kB' for messages."""
    for unit, scale in (("GB", GB), ("MB", 1024 ** 2)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{n_bytes / 1024:.1f} kB"


# --- parameter counts ---------------------------------------------------------------------------

def parameters_in_folder(folder: Path) -> int | None:
    """Parameters stored in a folder's ``*.safetensors`` files, from their headers only; None when there
    are none or a header cannot be read (the loader then says what is wrong with the file)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for path in files:
            with safe_open(str(path), framework="pt") as f:
                total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    except Exception:  # a truncated or corrupt header: not this module's to diagnose
        return None
    return total


def _int(config: dict, *names: str, default: int | None = None) -> int:
    """The first of ``names`` present in the config, as a positive int; ValueError naming the field."""
    for name in names:
        value = config.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"config.json: {name} must be a positive integer, got {value!r}")
            return value
    if default is None:
        raise ValueError(f"config.json has no {names[0]!r}: the model's size cannot be estimated")
    return default


def _gpt2(c: dict) -> int:
    d, L, V = _int(c, "n_embd", "hidden_size"), _int(c, "n_layer", "num_hidden_layers"), _int(c, "vocab_size")
    ff, P = _int(c, "n_inner", default=4 * d), _int(c, "n_positions", "max_position_embeddings")
    attn = d * 3 * d + 3 * d + d * d + d                 # fused q/k/v (Conv1D) and the output, with biases
    mlp = d * ff + ff + ff * d + d
    return V * d + P * d + L * (attn + mlp + 4 * d) + 2 * d   # 2 LayerNorms per block, ln_f; head tied


def _llama(c: dict) -> int:
    """Llama, Mistral, Qwen2 and any decoder with the same config names: GQA attention, SwiGLU MLP."""
    d, L, V = _int(c, "hidden_size"), _int(c, "num_hidden_layers"), _int(c, "vocab_size")
    nh = _int(c, "num_attention_heads")
    n_kv, hs = _int(c, "num_key_value_heads", default=nh), _int(c, "head_dim", default=d // nh)
    ff = _int(c, "intermediate_size", default=4 * d)
    attn = d * nh * hs + 2 * d * n_kv * hs + nh * hs * d  # q, k, v, o
    if c.get("model_type") == "qwen2":
        attn += nh * hs + 2 * n_kv * hs                     # q/k/v biases
    elif c.get("attention_bias"):
        attn += nh * hs + 2 * n_kv * hs + d                 # q/k/v/o biases
    mlp = 3 * d * ff + (2 * ff + d if c.get("mlp_bias") else 0)  # gate, up, down
    head = 0 if c.get("tie_word_embeddings", False) else V * d
    return V * d + L * (attn + mlp + 2 * d) + d + head


def _mamba(c: dict) -> int:
    d, L, V = _int(c, "hidden_size", "d_model"), _int(c, "num_hidden_layers", "n_layer"), _int(c, "vocab_size")
    di = _int(c, "intermediate_size", default=2 * d)
    n, k = _int(c, "state_size", default=16), _int(c, "conv_kernel", default=4)
    rank = c.get("time_step_rank", "auto")
    r = math.ceil(d / 16) if rank == "auto" else _int(c, "time_step_rank")
    bias, conv_bias = bool(c.get("use_bias", False)), bool(c.get("use_conv_bias", True))
    layer = (d                                   # RMSNorm
             + d * 2 * di + (2 * di if bias else 0)   # in_proj (x and gate z)
             + di * k + (di if conv_bias else 0)      # depthwise conv1d
             + di * (r + 2 * n)                       # x_proj -> dt, B, C
             + r * di + di                            # dt_proj with bias
             + di * n + di                            # A_log, D
             + di * d + (d if bias else 0))           # out_proj
    head = 0 if c.get("tie_word_embeddings", True) else V * d
    return V * d + L * layer + d + head


FORMULAS = {"gpt2": _gpt2, "mamba": _mamba}


def estimate_parameters(config: dict) -> int:
    """Parameter count from a Hugging Face ``config.json`` dict: by its ``model_type``'s formula (gpt2, mamba;
    llama, mistral, qwen2), and for any other architecture by building transformers' model on the meta device
    (shapes only, nothing allocated)."""
    if not isinstance(config, dict):
        raise ValueError(f"config.json must hold a JSON object, got {type(config).__name__}")
    if config.get("model_type") in FORMULAS or config.get("model_type") in ("llama", "mistral", "qwen2"):
        return FORMULAS.get(config.get("model_type"), _llama)(config)
    from playground.models.hf.model import build
    from playground.models.hf.shape import HubConfig

    with torch.device("meta"):
        model = build(HubConfig.of(config))
    return sum(p.numel() for p in model.parameters())


def estimate_bytes(config: dict, dtype: str | torch.dtype | None = None) -> int:
    """Bytes the weights take at ``dtype`` (None: float32), from the config alone."""
    return estimate_parameters(config) * itemsize(dtype)
