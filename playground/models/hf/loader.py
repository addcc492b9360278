"""A checkpoint folder -> a ``HubModel`` and its tokenizer, through transformers' own class for it.

config.json is read first (``shape.HubConfig``): an architecture the playground cannot record is refused before the
weights or the tokenizer are opened. The weights are read from safetensors only (``use_safetensors=True``, no code
from the repository), in the dtype asked for, then the model is wrapped for recording.
"""
from __future__ import annotations

from pathlib import Path

import torch

from playground.models.hf import NAME
from playground.models.hf.model import HubModel
from playground.models.hf.shape import HubConfig
from playground.models.pretrained.checkpoint import read_config, weight_files
from playground.models.pretrained.tokenizer import HubTokenizer


def open_folder(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                backend: str = "auto", *, device_map: str | dict | None = None,
                offload_folder: str | Path | None = None) -> tuple[HubModel, HubTokenizer]:
    """The model in ``folder`` (config.json, *.safetensors, tokenizer.json) on ``device`` in ``dtype``.

    ``device_map`` (``"auto"`` or a dict of module -> device, ``"cpu"`` or ``"disk"``; needs ``accelerate``) spreads
    a model too large for one device over several GPUs, then the CPU, then ``offload_folder`` on disk, as
    transformers' big-model loading does; ``device`` is then ignored. Each layer's record moves to the CPU as it is
    written, so an analysis holds q, k and lse there whatever device the layer ran on.

    Raises ValueError (``shape.UnsupportedModel`` for the architecture) saying what is wrong, before any weight is
    read where config.json already says it.
    """
    folder = Path(folder)
    shape = HubConfig.of(read_config(folder), backend)
    weight_files(folder)  # no safetensors (pickles only): refused, nothing opened
    tokenizer = HubTokenizer.from_folder(folder)
    spread = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
    try:
        hf = shape.model_class.from_pretrained(folder, attn_implementation=NAME, dtype=dtype, use_safetensors=True,
                                               local_files_only=True, trust_remote_code=False, **spread)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"transformers could not read the weights of this {shape.model_type} checkpoint: "
                         f"{str(e).splitlines()[0][:300]}") from None
    return HubModel((hf if device_map is not None else hf.to(device)).eval(), shape), tokenizer
