"""Where a pretrained model's files come from: the Hugging Face Hub, or a folder the operator allows.

``resolve(source)`` turns a source into a local folder holding ``config.json``, safetensors weights and
tokenizer files; ``loader.load_folder`` reads that folder. A source is

    owner/name            a Hub id (``openai-community/gpt2``): downloaded into the standard HF cache
    /abs/path, ./rel, x   a local folder, accepted only inside the directory named by
                          $PLAYGROUND_LOCAL_MODELS (a bare name or relative path is taken inside it),
                          or anywhere when a notebook passes ``allow_local=True``

On a public Space a visitor types the source, so by default no local path is read (the server's
files stay private): the operator turns folders on by naming one directory, and a path that leaves
it, through ``..`` or a symbolic link, is refused after every link is resolved.

Before anything is downloaded, ``resolve`` asks the Hub what the repository holds and reads its config.json
(a few kB): it refuses an architecture the playground cannot open, a repository with pickled weights only (nothing is ever unpickled), a gated one without a token, and a
model whose size at the chosen dtype exceeds the memory budget (``budget.py``). Then only
``*.json``, the safetensors weights, ``tokenizer*``, ``*.model`` and ``*.txt`` are fetched with
``snapshot_download``: a tqdm bar in a terminal, ``progress(fraction, text)`` calls for the page.
Offline (``HF_HUB_OFFLINE=1`` or no network), a model already in the cache is used as is.
Every failure is a ``HubError`` (a ValueError) whose message says what to do next.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors mean "no network"
import torch
from huggingface_hub import HfApi, get_token, hf_hub_download, snapshot_download
from huggingface_hub.constants import is_offline_mode
from huggingface_hub.errors import (
    EntryNotFoundError, GatedRepoError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
    RepositoryNotFoundError, RevisionNotFoundError,
)
from huggingface_hub.utils import filter_repo_objects, tqdm as hf_tqdm

from playground.models.pretrained import budget as mem, disk
from playground.models.pretrained.budget import estimate_bytes

__all__ = ["ENV_LOCAL", "HUB_ID", "HubError", "estimate_bytes", "fetch_config", "is_hub_id", "local_folder",
           "local_root", "resolve"]

ENV_LOCAL = "PLAYGROUND_LOCAL_MODELS"
ENV_TOKEN_REPOS = "PLAYGROUND_TOKEN_REPOS"  # the repositories a server may open with its own token (comma-separated)
# owner/name: letters, digits, '.', '_', '-'; starts and ends with a letter or digit; no '..' or '--'
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"(?!.*(?:\.\.|--)){_PART}/{_PART}")
FILES = ["*.json", "tokenizer*", "*.model", "*.txt", "*.spm"]  # besides the weights: config, tokenizer, merges/vocab,
                                                              # a Marian model's SentencePiece source and target
PICKLED = (".bin", ".pt", ".pth", ".ckpt")
NO_NETWORK = (ConnectionError, TimeoutError, LocalEntryNotFoundError, httpx2.TransportError)

Progress = Callable[[float, str], object]  # progress(fraction in 0..1, text); gradio's gr.Progress is one


class HubError(ValueError):
    """A pretrained source that cannot be used, with what to do about it.

    ``reason`` names the case for a caller that words it itself: bad_id, local_off, local_outside,
    local_missing, offline, not_found, gated, revision, http, pickle_only, no_weights, too_large, config,
    unsupported (an architecture the playground cannot open, read from config.json), disk (past the disk budget).
    """

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


# --- which source ------------------------------------------------------------------------------

def token_repos() -> set[str]:
    """The Hub ids the operator lets the server open with its own token (``$PLAYGROUND_TOKEN_REPOS``)."""
    return {r.strip() for r in os.environ.get(ENV_TOKEN_REPOS, "").split(",") if r.strip()}


def server_token(repo: str) -> bool | None:
    """The token a server uses for a repository a visitor named: the operator's (None: huggingface_hub's own
    lookup of HF_TOKEN or the stored login) only for the repositories in ``$PLAYGROUND_TOKEN_REPOS``, else False
    (no token at all), so a visitor never reaches the operator's private or gated repositories."""
    return None if repo in token_repos() else False


def _has_token(token) -> bool:
    return bool(get_token()) if token is None else bool(token)


def is_hub_id(source: str) -> bool:
    """True for a well-formed ``owner/name`` Hub id (no path tricks: no '..', no leading '/')."""
    return isinstance(source, str) and HUB_ID.fullmatch(source) is not None


def local_root() -> Path | None:
    """The operator's model directory ($PLAYGROUND_LOCAL_MODELS, links resolved), or None when unset
    (local folders off: what the page tells a visitor)."""
    raw = os.environ.get(ENV_LOCAL, "").strip()
    if not raw:
        return None
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise HubError("local_off", f"{ENV_LOCAL}={raw!r} is not a directory: the operator must name an "
                                    "existing directory to allow local model folders")
    return root.resolve()


def local_folder(source: str, *, allow_local: bool = False) -> Path:
    """The real path of a local model folder, if this server allows it; HubError otherwise.

    With ``allow_local`` (a notebook's own files) any existing folder is accepted. Otherwise the folder
    must lie, after every symbolic link is resolved, inside $PLAYGROUND_LOCAL_MODELS; a relative path
    is taken inside that directory."""
    if not isinstance(source, str) or not source.strip() or "\x00" in source or len(source) > 4096:
        raise HubError("bad_id", f"A model source is a Hub id (owner/name) or a folder, got {source!r}")
    root = None if allow_local else local_root()
    if not allow_local and root is None:
        raise HubError("local_off", f"{source!r} is not a Hub id (owner/name, e.g. openai-community/gpt2), and "
                                    f"local folders are off on this server: an operator allows them by setting "
                                    f"{ENV_LOCAL} to a directory that holds the model folders")
    path = Path(source.strip())
    if root is None:
        path = path.expanduser()  # a notebook's '~/models/x'; on a server '~' is just a name
    elif not path.is_absolute():
        path = root / path
    try:
        real = path.resolve()  # every '..' and symbolic link resolved
    except (OSError, RuntimeError):  # a link loop
        raise HubError("local_missing", f"No model folder at {source!r}") from None
    if root is not None and real != root and root not in real.parents:
        raise HubError("local_outside", f"{source!r} is outside the model directory this server allows "
                                        f"({ENV_LOCAL}); put the model folder inside it")
    if not real.is_dir():
        raise HubError("local_missing", f"No model folder at {source!r}")
    return real


def _hub_or_local(source: str, allow_local: bool) -> tuple[str | None, Path | None]:
    """(repo id, None) for a Hub id, (None, folder) for a local folder. A notebook (allow_local) may name
    an existing folder shaped like an id; the page never reads one that way."""
    source = source.strip() if isinstance(source, str) else source
    if is_hub_id(source) and not (allow_local and Path(source).is_dir()):
        return source, None
    return None, local_folder(source, allow_local=allow_local)


# --- talking to the Hub ------------------------------------------------------------------------

def _gated(repo: str, token=None) -> HubError:
    if token is False:  # a server opening a visitor's id: the operator's token is not offered for it
        return HubError("gated", f"{repo} is a gated model, and this server opens gated or private models only for "
                                 f"the repositories its operator lists in {ENV_TOKEN_REPOS}; pick an open model")
    return HubError("gated", f"{repo} is a gated model: accept its licence on https://huggingface.co/{repo} "
                             "and set HF_TOKEN (or pass token=) to a token of that account")


@contextmanager
def _hub_errors(repo: str, revision: str | None, token=None):
    """Turn huggingface_hub's exceptions into a HubError that says what to do next."""
    try:
        yield
    except GatedRepoError:  # before RepositoryNotFoundError: it is one
        raise _gated(repo, token) from None
    except RepositoryNotFoundError:
        raise HubError("not_found", f"No model {repo!r} on the Hub (or it is private: set HF_TOKEN); check the "
                                    "id, e.g. openai-community/gpt2") from None
    except RevisionNotFoundError:
        raise HubError("revision", f"{repo} has no revision {revision!r}; give a branch, tag or commit "
                                   "that exists") from None
    except HFValidationError as e:
        raise HubError("bad_id", f"{repo!r} is not a valid Hub id: {e}") from None
    except NO_NETWORK:
        why = "HF_HUB_OFFLINE=1 is set" if is_offline_mode() else "the Hub cannot be reached"
        raise HubError("offline", f"{repo} is not in the local cache and {why}: connect once (unset "
                                  "HF_HUB_OFFLINE) to download it, or copy the model folder into the "
                                  f"directory named by {ENV_LOCAL}") from None
    except EntryNotFoundError:
        raise HubError("config", f"{repo} has no config.json: it is not a model the playground can open") from None
    except HfHubHTTPError as e:
        raise HubError("http", f"The Hub refused the request for {repo}: {e}; try again later") from None


def _weight_files(files: list[str]) -> list[str]:
    """The safetensors files to fetch: ``model*.safetensors`` at the top when there are any (a repo may
    also hold the same weights in another layout, e.g. Mistral's consolidated.safetensors)."""
    top = [f for f in files if "/" not in f and f.endswith(".safetensors")]
    model = [f for f in top if f.startswith("model")]
    return model or top


def _check_weights(repo: str, files: list[str]) -> list[str]:
    """The weight files to download; HubError for a repository with pickled weights only or none."""
    weights = _weight_files(files)
    if weights:
        return weights
    pickled = sorted(f for f in files if f.endswith(PICKLED))
    if pickled:
        raise HubError("pickle_only", f"{repo} holds its weights only as pickles ({', '.join(pickled[:3])}); "
                                      "the playground reads safetensors only, because unpickling a file can run "
                                      "any code. Pick a repository (or a revision) with model.safetensors")
    raise HubError("no_weights", f"{repo} holds no model weights (no .safetensors file)")


def _check_budget(name: str, n_params: int, dtype, budget: int | None, device=None) -> None:
    need, allowed = n_params * mem.itemsize(dtype), mem.budget_bytes(budget)
    if need > allowed:
        raise HubError("too_large", f"{name} needs {mem.size(need)} in {mem.dtype_name(dtype)} "
                                    f"({n_params:,} parameters) but one model may take {mem.size(allowed)} on this "
                                    f"server; an operator raises the limit with {mem.ENV_MAX_GB} (in GB), or "
                                    "pick a smaller model or dtype")
    if not mem.memory.on_cuda(device):
        return
    free = mem.memory.device_memory(device)[0]
    if need > free:
        raise HubError("too_large", f"{name} needs {mem.size(need)} in {mem.dtype_name(dtype)} "
                                    f"({n_params:,} parameters) but {torch.device(device)} has {mem.size(free)} "
                                    "free; pick a smaller model or dtype, or run it on the CPU")


def _bar_class(progress: Progress, name: str, expected: int):
    """A huggingface_hub tqdm class (the terminal bar) that also reports download bytes to ``progress``."""

    class PageBar(hf_tqdm):
        def __init__(self, *args, **kwargs):
            # snapshot_download names its byte bar; the per-file count bar is left alone
            self._page = kwargs.get("name") == "huggingface_hub.snapshot_download" and kwargs.get("unit") == "B"
            self._seen, self._count = 0, threading.Lock()  # files arrive on several threads
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if self._page and n:
                with self._count:
                    self._seen += n
                    seen = self._seen
                total = max(expected, seen, 1)
                progress(seen / total, f"Downloading {name}: {mem.size(seen)} of {mem.size(total)}")
            return super().update(n)

    return PageBar


def _cached(repo: str, revision: str | None, token) -> Path | None:
    """The cached snapshot of ``repo``, if a previous download left one (used offline); else None."""
    try:
        return Path(snapshot_download(repo, revision=revision, token=token, local_files_only=True,
                                      allow_patterns=["config.json"]))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _report(progress: Progress | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


# --- the public API ----------------------------------------------------------------------------

def resolve(source: str, *, dtype: str | torch.dtype | None = None, budget_bytes: int | None = None,
            progress: Progress | None = None, token: str | None = None, revision: str | None = None,
            allow_local: bool = False, device: str | torch.device | None = None,
            forget: Callable[[str], None] | None = None) -> Path:
    """A local folder with the model's config, safetensors weights and tokenizer files.

    Args:
        source: a Hub id ``owner/name`` or a local folder (see the module docstring for which are allowed).
        dtype: the dtype the model will run in (None: float32); it sets the size checked against the budget.
        budget_bytes: the most one model may take; None: $PLAYGROUND_MAX_MODEL_GB, else half the free memory.
        progress: ``progress(fraction, text)``, called while asking and downloading (e.g. gr.Progress()).
        token: a Hub token for gated or private models (None: HF_TOKEN or the stored login; False: none, as a
            server passes for a visitor's id outside ``$PLAYGROUND_TOKEN_REPOS``: ``server_token``).
        revision: a branch, tag or commit of the Hub repository (None: main).
        allow_local: accept any local folder (a notebook's own files); the page leaves it False.
        device: where the weights will go; a CUDA device must also have the memory free for them.
        forget: called with each repository deleted from the cache to make room (``disk.make_room``).
    Returns:
        The folder's real path. Raises HubError (a ValueError) with the next step on any refusal.
    """
    repo, folder = _hub_or_local(source, allow_local)
    if folder is not None:
        return _checked_folder(folder, folder.name, dtype, budget_bytes, device)

    _report(progress, 0.0, f"Asking the Hub about {repo}")
    try:
        with _hub_errors(repo, revision, token):
            info = HfApi().model_info(repo, revision=revision, files_metadata=True, token=token)
    except HubError as e:
        cached = _cached(repo, revision, token) if e.reason == "offline" else None
        if cached is None:
            raise
        return _checked_folder(cached, repo, dtype, budget_bytes, device)

    siblings = {s.rfilename: s.size for s in info.siblings or []}
    if info.gated and not _has_token(token):
        raise _gated(repo, token)
    has_metadata = info.safetensors is not None and bool(info.safetensors.total)
    if has_metadata:  # the size from the Hub's safetensors metadata: refused before any file is read
        _check_budget(repo, info.safetensors.total, dtype, budget_bytes, device)
    if "config.json" not in siblings:
        raise HubError("config", f"{repo} has no config.json: it is not a model the playground can open")
    config = fetch_config(repo, token=token, revision=revision)  # a few kB, read before any weight
    _check_architecture(repo, config)
    weights = _check_weights(repo, list(siblings))
    if not has_metadata:  # no metadata on the Hub: count from config.json
        _check_budget(repo, _count(config), dtype, budget_bytes, device)

    wanted = FILES + weights
    fetched = {"config.json"}  # already in the cache: the snapshot does not send it again
    expected = sum(siblings[f] or 0 for f in filter_repo_objects(list(siblings), allow_patterns=wanted)
                   if f not in fetched)
    bar = _bar_class(progress, repo, expected) if progress is not None else None
    with disk.downloading(repo):
        try:
            disk.make_room(repo, expected + (siblings.get("config.json") or 0), forget=forget)
        except disk.DiskFull as e:
            raise HubError("disk", str(e)) from None
        with _hub_errors(repo, revision, token):
            folder = Path(snapshot_download(repo, revision=revision, allow_patterns=wanted,
                                            token=token, tqdm_class=bar))
    _report(progress, 1.0, f"Downloaded {repo}")
    return folder


def _check_architecture(name: str, config: dict) -> None:
    """HubError("unsupported") when config.json names an architecture the playground cannot open."""
    from playground.models.pretrained.opening import shape_of

    try:
        shape_of(config)
    except ValueError as e:
        raise HubError("unsupported", f"{name}: {e}") from None


def _checked_folder(folder: Path, name: str, dtype, budget: int | None, device=None) -> Path:
    """``folder`` once its architecture is one the playground opens and its size (safetensors headers, else
    config.json) fits the budget. A folder whose config cannot be read is returned as is: the loader says what is
    wrong with it."""
    if (folder / "config.json").is_file():
        _check_architecture(name, _read_config(folder / "config.json"))
    n_params = mem.parameters_in_folder(folder)
    if n_params is None and (folder / "config.json").is_file():
        n_params = _count(_read_config(folder / "config.json"))
    if n_params is not None:
        _check_budget(name, n_params, dtype, budget, device)
    return folder


def _count(config: dict) -> int:
    """Parameters by the config's formula; HubError naming the field that makes it impossible."""
    try:
        return mem.estimate_parameters(config)
    except ValueError as e:
        raise HubError("config", str(e)) from None


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HubError("config", f"{path.name} cannot be read as JSON: {e}") from None
    if not isinstance(config, dict):
        raise HubError("config", f"{path.name} must hold a JSON object, got {type(config).__name__}")
    return config


def fetch_config(source: str, *, token: str | None = None, revision: str | None = None,
                 allow_local: bool = False) -> dict:
    """``config.json`` of a Hub model (only that file is downloaded) or of an allowed local folder."""
    repo, folder = _hub_or_local(source, allow_local)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise HubError("config", f"{source!r} has no config.json")
        return _read_config(folder / "config.json")
    with _hub_errors(repo, revision, token):
        path = hf_hub_download(repo, "config.json", revision=revision, token=token)
    return _read_config(Path(path))
