"""A checkpoint folder -> a ``HubModel`` and its tokenizer, through transformers' own class for it.

config.json is read first (``shape.HubConfig``): an architecture the playground cannot record is refused before the
weights or the tokenizer are opened. The weights are read from safetensors only (``use_safetensors=True``, no code
from the repository), in the dtype asked for, then the model is wrapped for recording. A checkpoint that does not fill
the model config.json describes is refused by tensor name: one missing (transformers would start it from random
numbers), one of another shape, or one left over inside a module the model has (a bias the config turns off). A
tensor of a module the class does not build (another task's head, BERT's pooler) is passed over, as transformers does.
"""
from __future__ import annotations

from pathlib import Path

import torch

from playground.models.hf import NAME
from playground.models.hf.model import HubModel
from playground.models.hf.shape import HubConfig
from playground.models.pretrained.budget import parameters_in_folder, size, spread_budget
from playground.models.pretrained.checkpoint import read_config, weight_files
from playground.models.pretrained.tokenizer import HubTokenizer


def open_folder(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                backend: str = "auto", *, device_map: str | dict | None = None,
                offload_folder: str | Path | None = None) -> tuple[HubModel, HubTokenizer]:
    """The model in ``folder`` (config.json, *.safetensors, tokenizer.json) on ``device`` in ``dtype``.

    ``device_map`` (``"auto"`` or a dict of module -> device, ``"cpu"`` or ``"disk"``; needs ``accelerate``) spreads
    a model too large for one device over several GPUs, then the CPU, then ``offload_folder`` on disk, as
    transformers' big-model loading does; ``device`` is then ignored, and the weights must fit every device together
    (``check_spread``). Each layer's record moves to the CPU as it is
    written, so an analysis holds q, k and lse there whatever device the layer ran on.

    Raises ValueError (``shape.UnsupportedModel`` for the architecture) saying what is wrong, before any weight is
    read where config.json already says it.
    """
    folder = Path(folder)
    shape = HubConfig.of(read_config(folder), backend)
    weight_files(folder)  # no safetensors (pickles only): refused, nothing opened
    if device_map is not None:
        check_spread(folder, dtype, offload_folder)
    tokenizer = HubTokenizer.from_folder(folder)
    spread = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
    try:
        hf = _read(folder, shape, dtype, spread)
    except ValueError as e:
        error = e
    else:
        return HubModel((hf if device_map is not None else hf.to(device)).eval(), shape), tokenizer
    error.__context__ = error.__cause__ = None
    # raised here without the traceback whose frames hold the half-read model: after a refusal nothing of it is left
    raise error.with_traceback(None)


def check_spread(folder: Path, dtype: torch.dtype, offload_folder: str | Path | None, budget: int | None = None):
    """ValueError when the weights at ``dtype`` exceed every device together: the GPUs' free memory, the host's budget
    and the free disk under ``offload_folder`` (``budget.spread_budget``)."""
    need = (parameters_in_folder(folder) or 0) * dtype.itemsize
    room = spread_budget(offload_folder, budget)
    if need > sum(room.values()):
        where = ", ".join(f"{name} {size(n)}" for name, n in room.items())
        raise ValueError(f"the weights of {folder.name} take {size(need)} in {str(dtype).removeprefix('torch.')}, more "
                         f"than every device together has room for ({where}): give an offload_folder on a larger "
                         "disk, or pick a smaller dtype")


def _read(folder: Path, shape: HubConfig, dtype: torch.dtype, spread: dict):
    """transformers' model of ``shape`` with the folder's weights; ValueError naming what does not fit."""
    try:
        hf, info = shape.model_class.from_pretrained(
            folder, attn_implementation=NAME, dtype=dtype, use_safetensors=True, local_files_only=True,
            trust_remote_code=False, output_loading_info=True, ignore_mismatched_sizes=True, **spread)
    except (OSError, RuntimeError) as e:
        raise ValueError(f"transformers could not read the weights of this {shape.model_type} checkpoint: "
                         f"{str(e).splitlines()[0][:300]}") from None
    problems = [f"missing tensor {name!r}" for name in sorted(info["missing_keys"])]
    problems += [f"tensor {name!r} has shape {tuple(stored)}, but config.json implies {tuple(wanted)}"
                 for name, stored, wanted in sorted(info["mismatched_keys"])]
    problems += [f"unexpected tensor {name!r} that config.json gives no place to"
                 for name in sorted(info["unexpected_keys"]) if _inside(hf, name)]
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise ValueError(f"the weights in {folder.name} do not fit the {shape.model_type} model its config.json "
                         f"describes: {shown}")
    return hf


def _inside(model: torch.nn.Module, name: str) -> bool:
    """Whether the module holding tensor ``name`` exists in ``model`` (so the tensor is one the config turned off)."""
    try:
        model.get_submodule(name.rpartition(".")[0])
    except AttributeError:
        return False
    return True
