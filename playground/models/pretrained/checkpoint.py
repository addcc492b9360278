"""A Hugging Face checkpoint folder, read lazily and only from safetensors.

A folder holds ``config.json`` and either ``model.safetensors`` or shards listed in
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``). ``Checkpoint``
opens each file with ``safetensors.safe_open``, which parses the header and maps the data: a tensor
is read when a family's mapping ``take``s it, with its shape checked first. Every tensor taken is
recorded, so the loader can refuse a checkpoint holding tensors the model has no place for.

Nothing here calls ``torch.load`` or ``pickle``: a folder whose weights are only
``pytorch_model.bin`` / ``*.pt`` / ``*.pth`` / ``*.ckpt`` is refused with a message saying so,
and such files beside safetensors are never opened. Every problem is a ``ValueError`` naming the
file and what is wrong.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Sizes past these are refused before anything is allocated: no real checkpoint comes near them.
LIMITS = {"n_layer": 512, "d_model": 65536, "n_heads": 1024, "vocab_size": 1_000_000, "context_length": 1 << 22}


def check_sizes(sizes: dict[str, int]) -> None:
    """ValueError naming the first of ``sizes`` (the page's names, as in ``LIMITS``) past its limit: a corrupt or
    hostile config.json, refused before a model is built."""
    for name, limit in LIMITS.items():
        value = sizes.get(name, 0)
        if value > limit:
            raise ValueError(f"config.json gives {name}={value:,}, past the playground's limit of {limit:,}: "
                             "refused before allocating (is the file corrupt?)")


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, or a ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{path.name} not found in {path.parent}: a checkpoint folder needs it")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_config(folder: str | Path) -> dict:
    """config.json of a checkpoint folder, as a dict (checked to exist and to be a JSON object)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder not found: {folder}")
    return read_json(folder / CONFIG)


def weight_files(folder: Path) -> dict[str, str]:
    """Tensor name -> file name, from the shard index or the single file's header.

    A folder without safetensors is refused; pickled weights are named in the message and never opened.
    """
    if (folder / INDEX).is_file():
        weight_map = read_json(folder / INDEX).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{folder / INDEX} has no 'weight_map' object naming each tensor's shard")
        for name, file in weight_map.items():
            if not isinstance(file, str) or Path(file).name != file or not file.endswith(".safetensors"):
                raise ValueError(f"{folder / INDEX}: tensor {name!r} points to {file!r}; shards must be "
                                 ".safetensors files in the checkpoint folder itself")
            if not (folder / file).is_file():
                raise ValueError(f"{folder / INDEX} names shard {file}, which is missing from {folder}")
        return dict(weight_map)
    if (folder / SINGLE).is_file():
        return {name: SINGLE for name in _open(folder / SINGLE).keys()}
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(f"{folder} holds weights only as {', '.join(pickles)}: weights are read only from "
                         f"safetensors ({SINGLE} or {INDEX}) and nothing is unpickled, because unpickling can run "
                         "code. Convert them to safetensors, or use the model's safetensors revision on the Hub")
    raise ValueError(f"no weights in {folder}: expected {SINGLE} or {INDEX}")


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt")  # reads and checks the header; data is mapped, not read
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path} is not a valid safetensors file (truncated or corrupt?): {e}") from None


class Checkpoint:
    """The tensors of a checkpoint folder, taken one by one.

    ``take(name, shape)`` returns the tensor after checking its shape, cast to ``dtype`` when it is a
    floating tensor and a dtype is given, and records it as used; ``unused()`` lists what nobody took.
    Use it as a context manager, or call ``close``.
    """

    def __init__(self, folder: str | Path, dtype: torch.dtype | None = None):
        self.folder, self.dtype = Path(folder), dtype
        if not self.folder.is_dir():
            raise ValueError(f"checkpoint folder not found: {self.folder}")
        self.files = weight_files(self.folder)  # tensor name -> file name
        self._handles: dict[str, object] = {}
        self._taken: set[str] = set()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._handles.clear()

    def _handle(self, file: str):
        if file not in self._handles:
            self._handles[file] = _open(self.folder / file)
        return self._handles[file]

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def names(self) -> list[str]:
        return sorted(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        """The stored shape of ``name``, read from the header without reading the data."""
        self._check_present(name)
        return tuple(self._handle(self.files[name]).get_slice(name).get_shape())

    def _check_present(self, name: str) -> None:
        if name not in self.files:
            raise ValueError(f"missing tensor {name!r} in {self.folder} (the config says the model has it)")

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """The tensor ``name``, checked to have ``shape`` (when given), recorded as used."""
        stored = self.shape(name)
        if shape is not None and stored != tuple(shape):
            raise ValueError(f"tensor {name!r} in {self.folder} has shape {stored}, but config.json "
                             f"implies {tuple(shape)}")
        file = self.files[name]
        try:
            tensor = self._handle(file).get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise ValueError(f"cannot read tensor {name!r} from {self.folder / file}: {e}") from None
        self._taken.add(name)
        if self.dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self.dtype)
        return tensor

    def ignore(self, name: str) -> None:
        """Mark ``name`` as accounted for without reading it (a buffer the reference saves, e.g. GPT-2's causal mask)."""
        self._check_present(name)
        self._taken.add(name)

    def unused(self) -> list[str]:
        """Tensors in the checkpoint that nobody took, sorted."""
        return sorted(set(self.files) - self._taken)

    def check_all_used(self) -> None:
        """ValueError listing the unexpected tensors, if any was left untaken."""
        left = self.unused()
        if left:
            shown = ", ".join(left[:8]) + (f" and {len(left) - 8} more" if len(left) > 8 else "")
            raise ValueError(f"unexpected tensor(s) in {self.folder} that config.json gives no place to: {shown}")
