"""Where pretrained models come from (playground.models.pretrained.hub), without a network.

The Hub client is replaced by a fake that answers ``model_info`` like the Hub does (a real
``ModelInfo``) or raises the real huggingface_hub exception; ``snapshot_download`` is replaced by a
recorder, so a test can assert what would be fetched, or that nothing was. Offline runs use the real
huggingface_hub in offline mode against a cache folder the test writes.
"""
from __future__ import annotations

import json
import os

import httpx2
import huggingface_hub.constants as hf_constants
import pytest
import torch
from huggingface_hub.errors import (
    GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError,
)
from huggingface_hub.hf_api import ModelInfo
from huggingface_hub.utils import filter_repo_objects
from safetensors.torch import save, save_file

from playground.models.pretrained import budget, hub
from playground.models.pretrained.hub import HubError

GPT2_TINY = {"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "vocab_size": 10, "n_positions": 16}
SHA = "c" * 40


def http_error(cls, status=404):
    request = httpx2.Request("GET", "https://huggingface.co/api/models/owner/name")
    return cls(f"{status} error", response=httpx2.Response(status, request=request))


def model_info(files: dict[str, int], params: int | None = 1000, gated=False) -> ModelInfo:
    """What HfApi().model_info(..., files_metadata=True) returns for a repository holding ``files``."""
    meta = {"parameters": {"F32": params}, "total": params} if params is not None else None
    return ModelInfo(id="owner/name", sha=SHA, gated=gated, private=False, safetensors=meta,
                     siblings=[{"rfilename": f, "size": n} for f, n in files.items()])


STANDARD = {"config.json": 600, "generation_config.json": 100, "model.safetensors": 4000,
            "tokenizer.json": 2000, "tokenizer_config.json": 300, "merges.txt": 500, "vocab.json": 800,
            "README.md": 50, ".gitattributes": 10}


class FakeHub:
    """Stands in for HfApi, snapshot_download and hf_hub_download; records every call."""

    def __init__(self, tmp_path, info=None, info_error=None, download_error=None):
        self.tmp_path, self.info, self.info_error, self.download_error = tmp_path, info, info_error, download_error
        self.info_calls, self.downloads, self.config_calls = [], [], []
        self.bytes_per_update = 1000

    def api(self):
        fake = self

        class Api:
            def model_info(self, repo_id, **kwargs):
                fake.info_calls.append((repo_id, kwargs))
                if fake.info_error is not None:
                    raise fake.info_error
                return fake.info

        return Api()

    def snapshot_download(self, repo_id, *, allow_patterns=None, tqdm_class=None, **kwargs):
        self.downloads.append({"repo_id": repo_id, "allow_patterns": allow_patterns, **kwargs})
        if self.download_error is not None:
            raise self.download_error
        if tqdm_class is not None:  # the byte bar and the file bar, as snapshot_download creates them
            files = tqdm_class(total=3, desc="Fetching 3 files", disable=True)
            data = tqdm_class(name="huggingface_hub.snapshot_download", unit="B", total=0, disable=True)
            for _ in range(3):
                data.update(self.bytes_per_update)
                files.update(1)
        folder = self.tmp_path / "snapshot"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(GPT2_TINY))
        return str(folder)

    def hf_hub_download(self, repo_id, filename, **kwargs):
        self.config_calls.append((repo_id, filename))
        if self.info_error is not None:
            raise self.info_error
        path = self.tmp_path / "config-download.json"
        path.write_text(json.dumps(self.config))
        return str(path)

    config = GPT2_TINY


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path, info=model_info(STANDARD))
    monkeypatch.setattr(hub, "HfApi", fake.api)
    monkeypatch.setattr(hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(hub, "get_token", lambda: None)  # no stored login on the test machine
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    monkeypatch.delenv(hub.ENV_LOCAL, raising=False)
    return fake


# --- Hub ids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["openai-community/gpt2", "HuggingFaceTB/SmolLM2-135M", "Qwen/Qwen2.5-0.5B",
                                    "state-spaces/mamba-130m-hf", "a/b", "a_b/c.d"])
def test_hub_ids(source):
    assert hub.is_hub_id(source)


@pytest.mark.parametrize("source", ["gpt2", "a/../b", "../a/b", "/etc/passwd", "a/b/c", "a//b", "./a/b", "a/b/",
                                    "-a/b", "a/b.", "a--b/c", "a/b\x00", "", "a /b", "~/a", None, 3])
def test_not_hub_ids(source):
    assert not hub.is_hub_id(source)


def test_a_hub_model_downloads_only_config_safetensors_and_tokenizer(fake_hub):
    files = {**STANDARD, "pytorch_model.bin": 4000, "tf_model.h5": 4000, "flax_model.msgpack": 4000,
             "consolidated.safetensors": 4000, "onnx/model.onnx": 4000}
    fake_hub.info = model_info(files)
    folder = hub.resolve("owner/name", budget_bytes=10**9)
    assert folder == fake_hub.tmp_path / "snapshot"
    [call] = fake_hub.downloads
    assert call["repo_id"] == "owner/name" and call["revision"] is None  # main, so the cache knows it offline
    fetched = set(filter_repo_objects(list(files), allow_patterns=call["allow_patterns"]))
    assert fetched == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                       "tokenizer_config.json", "merges.txt", "vocab.json"}
    [(repo, kwargs)] = fake_hub.info_calls
    assert repo == "owner/name" and kwargs["files_metadata"] is True


def test_sharded_weights_are_all_fetched(fake_hub):
    files = {"config.json": 1, "model.safetensors.index.json": 1, "model-00001-of-00002.safetensors": 1,
             "model-00002-of-00002.safetensors": 1, "tokenizer.model": 1}
    fake_hub.info = model_info(files)
    hub.resolve("owner/name", budget_bytes=10**9)
    fetched = set(filter_repo_objects(list(files), allow_patterns=fake_hub.downloads[0]["allow_patterns"]))
    assert fetched == set(files)


def test_progress_reports_the_bytes_downloaded(fake_hub):
    calls = []
    fake_hub.bytes_per_update = sum(n for f, n in STANDARD.items()
                                    if f not in ("README.md", ".gitattributes")) // 3
    hub.resolve("owner/name", budget_bytes=10**9, progress=lambda f, text: calls.append((f, text)))
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions) and len(calls) == 5  # asking, three byte updates, done
    assert 0.3 < fractions[1] < 0.4 and "Downloading owner/name" in calls[1][1]


def test_a_refused_size_downloads_nothing(fake_hub):
    fake_hub.info = model_info(STANDARD, params=600_000_000)  # 2.4 GB in float32, 1.2 GB in bfloat16
    with pytest.raises(HubError, match="PLAYGROUND_MAX_MODEL_GB") as info:
        hub.resolve("owner/name", budget_bytes=2 * 1024 ** 3)
    assert info.value.reason == "too_large" and isinstance(info.value, ValueError)
    assert "2.24 GB" in str(info.value) and "2.00 GB" in str(info.value) and "600,000,000" in str(info.value)
    assert fake_hub.downloads == []
    hub.resolve("owner/name", budget_bytes=2 * 1024 ** 3, dtype="bf16")  # half the bytes fit
    assert len(fake_hub.downloads) == 1


def test_the_env_var_and_the_machine_set_the_budget(fake_hub, monkeypatch):
    fake_hub.info = model_info(STANDARD, params=300_000_000)  # 1.2 GB in float32
    monkeypatch.setattr(budget, "available_bytes", lambda: 2 * 1024 ** 3)  # default: half, 1 GB
    with pytest.raises(HubError, match=r"1\.12 GB.*1\.00 GB"):
        hub.resolve("owner/name")
    monkeypatch.setenv(budget.ENV_MAX_GB, "1.5")
    hub.resolve("owner/name")
    monkeypatch.setenv(budget.ENV_MAX_GB, "0.5")
    with pytest.raises(HubError, match="512.0 MB"):
        hub.resolve("owner/name")
    monkeypatch.setenv(budget.ENV_MAX_GB, "lots")
    with pytest.raises(ValueError, match="PLAYGROUND_MAX_MODEL_GB must be a positive number"):
        hub.resolve("owner/name")
    assert len(fake_hub.downloads) == 1


def test_without_hub_metadata_the_size_comes_from_the_config(fake_hub):
    fake_hub.info = model_info(STANDARD, params=None)
    fake_hub.config = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                       "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32000}
    with pytest.raises(HubError, match="6,738,415,616 parameters"):  # Llama-2-7B
        hub.resolve("owner/name", budget_bytes=10 * 1024 ** 3, dtype="float16")
    assert fake_hub.config_calls == [("owner/name", "config.json")] and fake_hub.downloads == []


def test_a_repository_with_only_pickled_weights_is_refused_before_download(fake_hub):
    fake_hub.info = model_info({"config.json": 1, "pytorch_model.bin": 10, "tokenizer.json": 1}, params=None)
    with pytest.raises(HubError, match="only as pickles.*pytorch_model.bin.*safetensors") as info:
        hub.resolve("owner/name")
    assert info.value.reason == "pickle_only" and fake_hub.downloads == []
    assert fake_hub.config_calls == [("owner/name", "config.json")]  # config.json only, a few kB
    fake_hub.info = model_info({"config.json": 1, "README.md": 1}, params=None)
    with pytest.raises(HubError, match="no model weights"):
        hub.resolve("owner/name")


@pytest.mark.parametrize("error, reason, words", [
    (http_error(RepositoryNotFoundError), "not_found", "No model 'owner/name' on the Hub"),
    (http_error(GatedRepoError, 403), "gated", "accept its licence.*HF_TOKEN"),
    (http_error(RevisionNotFoundError), "revision", "no revision 'v9'"),
    (httpx2.ConnectError("connection refused"), "offline", "the Hub cannot be reached"),
    (TimeoutError("timed out"), "offline", "the Hub cannot be reached"),
])
def test_hub_errors_say_what_to_do(fake_hub, monkeypatch, tmp_path, error, reason, words):
    fake_hub.info_error = error
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hub, "snapshot_download", __import__("huggingface_hub").snapshot_download)
    with pytest.raises(HubError, match=words) as info:
        hub.resolve("owner/name", revision="v9")
    assert info.value.reason == reason and info.value.__cause__ is None
    with pytest.raises(HubError, match=words):
        hub.fetch_config("owner/name", revision="v9")


def test_a_gated_model_without_a_token_is_refused_before_download(fake_hub):
    fake_hub.info = model_info(STANDARD, gated="manual")
    with pytest.raises(HubError, match="gated model: accept its licence") as info:
        hub.resolve("owner/name")
    assert info.value.reason == "gated" and fake_hub.downloads == []
    hub.resolve("owner/name", token="hf_secret", budget_bytes=10**9)
    assert fake_hub.downloads[0]["token"] == "hf_secret"
    fake_hub.download_error = http_error(GatedRepoError, 403)  # the token's account has not accepted
    with pytest.raises(HubError, match="gated"):
        hub.resolve("owner/name", token="hf_secret", budget_bytes=10**9)


# --- offline, with the real huggingface_hub ------------------------------------------------------

@pytest.fixture
def offline(tmp_path, monkeypatch):
    """huggingface_hub in offline mode (HF_HUB_OFFLINE=1) with its cache in tmp_path/cache."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    return tmp_path / "cache"


def write_cached(cache, repo, files: dict[str, str]):
    """A snapshot in the standard cache layout, as a previous download leaves it."""
    storage = cache / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(SHA)
    for name, text in files.items():
        (snapshot / name).write_text(text)
    return snapshot


def test_offline_without_a_cached_copy(offline):
    with pytest.raises(HubError, match="not in the local cache and HF_HUB_OFFLINE=1 is set") as info:
        hub.resolve("owner/name")
    assert info.value.reason == "offline"
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1"):
        hub.fetch_config("owner/name")


def test_offline_uses_the_cached_copy_and_still_checks_its_size(offline):
    snapshot = write_cached(offline, "owner/name", {"config.json": json.dumps(GPT2_TINY)})
    assert hub.resolve("owner/name") == snapshot.resolve()
    assert hub.fetch_config("owner/name") == GPT2_TINY
    n = budget.estimate_parameters(GPT2_TINY)
    with pytest.raises(HubError, match=f"owner/name needs .* \\({n:,} parameters\\)"):
        hub.resolve("owner/name", budget_bytes=4 * n - 1)
    assert hub.resolve("owner/name", budget_bytes=4 * n) == snapshot.resolve()


# --- local folders ------------------------------------------------------------------------------

@pytest.fixture
def folders(tmp_path, monkeypatch):
    """root/ (the operator's directory) holding model/; other/ beside it; root/escape -> other."""
    root, other = tmp_path / "root", tmp_path / "other"
    for folder in (root / "model", other):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(GPT2_TINY))
    (root / "escape").symlink_to(other, target_is_directory=True)
    (root / "inside").symlink_to(root / "model", target_is_directory=True)
    monkeypatch.delenv(hub.ENV_LOCAL, raising=False)
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    return root, other


def test_local_folders_are_off_unless_the_operator_names_a_directory(folders, monkeypatch):
    root, other = folders
    assert hub.local_root() is None
    for source in (str(root / "model"), "model", "./model"):
        with pytest.raises(HubError, match="local folders are off on this server.*PLAYGROUND_LOCAL_MODELS") as e:
            hub.resolve(source)
        assert e.value.reason == "local_off"
    monkeypatch.setenv(hub.ENV_LOCAL, str(root / "missing"))
    with pytest.raises(HubError, match="is not a directory"):
        hub.resolve(str(root / "model"))


def test_an_allowed_local_folder(folders, monkeypatch):
    root, _ = folders
    monkeypatch.setenv(hub.ENV_LOCAL, str(root))
    assert hub.local_root() == root.resolve()
    model = (root / "model").resolve()
    assert hub.resolve(str(root / "model")) == model
    assert hub.resolve("model") == model           # a name is taken inside the directory
    assert hub.resolve("./model/") == model
    assert hub.resolve("inside") == model          # a link that stays inside
    assert hub.fetch_config("model") == GPT2_TINY


@pytest.mark.parametrize("source", ["{other}", "escape", "{root}/escape", "../other", "model/../../other",
                                    "{root}/model/../../other", "/"])
def test_a_folder_outside_the_directory_is_refused(folders, monkeypatch, source):
    root, other = folders
    monkeypatch.setenv(hub.ENV_LOCAL, str(root))
    source = source.format(root=root, other=other)
    with pytest.raises(HubError, match="outside the model directory") as info:
        hub.resolve(source)
    assert info.value.reason == "local_outside"
    with pytest.raises(HubError, match="outside the model directory"):
        hub.fetch_config(source)


def test_a_missing_local_folder(folders, monkeypatch):
    root, _ = folders
    monkeypatch.setenv(hub.ENV_LOCAL, str(root))
    (root / "loop").symlink_to(root / "loop")
    for source in ("nothing", "loop", "~nosuchuser/x", "~"):
        with pytest.raises(HubError, match=f"No model folder at {source!r}"):
            hub.resolve(source)
    assert hub.resolve("  model ") == (root / "model").resolve()


def test_a_notebook_may_open_any_folder(folders):
    _, other = folders
    assert hub.resolve(str(other), allow_local=True) == other.resolve()
    with pytest.raises(HubError, match="No model folder"):
        hub.resolve(str(other / "nothing"), allow_local=True)


def test_a_local_folder_is_sized_from_its_safetensors_headers(folders, monkeypatch):
    root, _ = folders
    monkeypatch.setenv(hub.ENV_LOCAL, str(root))
    save_file({"a": torch.zeros(10, 30), "b": torch.zeros(700, dtype=torch.float16)},
              str(root / "model" / "model.safetensors"))
    assert budget.parameters_in_folder(root / "model") == 1000
    with pytest.raises(HubError, match=r"1,000 parameters"):
        hub.resolve("model", budget_bytes=3999)                   # float32: 4,000 bytes
    assert hub.resolve("model", budget_bytes=4000) == (root / "model").resolve()
    assert hub.resolve("model", budget_bytes=2000, dtype=torch.bfloat16) == (root / "model").resolve()
    (root / "model" / "model.safetensors").write_bytes(b"\x10\x00")  # truncated: left to the loader
    assert budget.parameters_in_folder(root / "model") is None


# --- sizes and budgets ----------------------------------------------------------------------------

def tiny_configs():
    import transformers as T
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=48, vocab_size=100)
    return [
        (T.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64), T.GPT2LMHeadModel),
        (T.LlamaConfig(**small), T.LlamaForCausalLM),
        (T.LlamaConfig(**small, tie_word_embeddings=True, attention_bias=True, mlp_bias=True), T.LlamaForCausalLM),
        (T.Qwen2Config(**small), T.Qwen2ForCausalLM),
        (T.MistralConfig(**small, head_dim=16), T.MistralForCausalLM),
        (T.MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=100, state_size=8), T.MambaForCausalLM),
    ]


def test_estimate_bytes_counts_what_transformers_builds():
    for config, cls in tiny_configs():
        n = cls(config).num_parameters()  # tied embeddings counted once
        hf = json.loads(config.to_json_string())
        assert hub.estimate_bytes(hf, "float32") == 4 * n, config.model_type
        assert hub.estimate_bytes(hf, torch.bfloat16) == 2 * n, config.model_type


def test_estimate_bytes_refuses_a_config_it_cannot_size():
    with pytest.raises(ValueError, match="no 'hidden_size'"):
        hub.estimate_bytes({"model_type": "llama"}, None)
    with pytest.raises(ValueError, match="num_hidden_layers must be a positive integer"):
        hub.estimate_bytes({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": -1}, None)
    with pytest.raises(ValueError, match="Unknown dtype 'int8'"):
        hub.estimate_bytes(GPT2_TINY, "int8")


@pytest.mark.parametrize("dtype, size", [(None, 4), ("auto", 4), ("float32", 4), ("fp32", 4), (torch.float32, 4),
                                         ("bf16", 2), ("bfloat16", 2), ("torch.bfloat16", 2), ("float16", 2),
                                         ("fp16", 2), ("half", 2), (torch.float16, 2), (" BF16 ", 2)])
def test_dtypes(dtype, size):
    assert budget.itemsize(dtype) == size


@pytest.mark.parametrize("dtype", ["int8", "float8", "", torch.int8, 16, "fp64x"])
def test_unknown_dtypes(dtype):
    with pytest.raises(ValueError, match="Unknown dtype"):
        budget.parse_dtype(dtype)


def test_budget_defaults_to_half_the_available_memory(monkeypatch):
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    assert 0 < budget.budget_bytes() <= budget.available_bytes()
    monkeypatch.setattr(budget, "available_bytes", lambda: 8 * 1024 ** 3)
    assert budget.budget_bytes() == 4 * 1024 ** 3
    assert budget.budget_bytes(123) == 123
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="budget_bytes"):
            budget.budget_bytes(bad)


def test_the_real_machine_reports_its_memory():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < budget.available_bytes() <= total


# --- the real huggingface_hub against a local stand-in for the Hub -----------------------------

def tiny_repo(**overrides):
    from hub_server import Repo

    weights = save({"wte": torch.zeros(10, 8), "rest": torch.zeros(920)})  # 1,000 parameters
    files = {"config.json": json.dumps(GPT2_TINY).encode(), "model.safetensors": weights,
             "tokenizer.json": b"{}", "merges.txt": b"#", "pytorch_model.bin": b"p" * 4000, "README.md": b"#"}
    return Repo(files=files, parameters={"F32": 1000}, **overrides)


def test_a_real_download_then_the_same_model_offline(hub_server, monkeypatch):
    hub_server.repos["owner/name"] = tiny_repo()
    calls = []
    folder = hub.resolve("owner/name", progress=lambda f, text: calls.append((f, text)))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "merges.txt", "model.safetensors",
                                                         "tokenizer.json"]
    assert budget.parameters_in_folder(folder) == 1000
    assert sorted(hub_server.downloads()) == ["config.json", "merges.txt", "model.safetensors", "tokenizer.json"]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 4
    total = sum(len(hub_server.repos["owner/name"].files[f]) for f in hub_server.downloads()
                if f != "config.json")  # read first, to check the architecture, before the progress bar
    assert f"Downloading owner/name: {budget.size(total)} of {budget.size(total)}" in [text for _, text in calls]
    # offline, the cached copy is found without one request, and still sized
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    seen = len(hub_server.requests)
    assert hub.resolve("owner/name") == folder.resolve()
    assert hub.fetch_config("owner/name") == GPT2_TINY
    with pytest.raises(HubError, match=r"1,000 parameters"):
        hub.resolve("owner/name", budget_bytes=3999)
    assert len(hub_server.requests) == seen


def test_real_client_errors(hub_server):
    hub_server.repos["owner/gated"] = tiny_repo(gated=True)
    hub_server.repos["owner/large"] = tiny_repo()
    with pytest.raises(HubError, match="No model 'owner/missing' on the Hub") as info:
        hub.resolve("owner/missing")
    assert info.value.reason == "not_found"
    with pytest.raises(HubError, match="gated model: accept its licence"):
        hub.resolve("owner/gated")
    with pytest.raises(HubError, match="gated model"):  # a token the Hub does not accept for it
        hub.fetch_config("owner/gated")
    assert hub_server.downloads() == []
    assert (hub.resolve("owner/gated", token="hf_accepted") / "config.json").is_file()  # sent as Authorization
    hub_server.requests.clear()
    with pytest.raises(HubError, match="no revision 'v2'"):
        hub.resolve("owner/large", revision="v2")
    with pytest.raises(HubError, match="needs 3.9 kB in float32") as info:
        hub.resolve("owner/large", budget_bytes=1000)
    assert info.value.reason == "too_large"
    assert hub_server.downloads() == []


def test_an_architecture_that_bypasses_the_interface_is_refused_after_config_json_alone(hub_server):
    """bloom computes attention in its own code: refused from its config.json, not one weight byte fetched."""
    repo = tiny_repo()
    repo.files["config.json"] = json.dumps({"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4,
                                            "vocab_size": 96}).encode()
    hub_server.repos["owner/bloom"] = repo
    with pytest.raises(HubError, match="BloomForCausalLM computes attention in its own code") as info:
        hub.resolve("owner/bloom")
    assert info.value.reason == "unsupported"
    assert hub_server.downloads() == ["config.json"]
    fetched = sum(len(repo.files[f]) for f in hub_server.downloads())
    assert fetched < 200  # the bytes sent before the refusal: config.json's


def test_any_interface_architecture_downloads_and_opens(hub_server):
    """A Qwen3-shaped checkpoint on the stand-in Hub: resolved, downloaded and opened as transformers' own class."""
    import tempfile
    from pathlib import Path

    from playground.bench import hf_archs
    from hub_server import Repo

    from playground.models.hf import HubModel
    from playground.models.pretrained import load_pretrained
    from playground.bench.hf_folder import byte_level_bpe

    folder = Path(tempfile.mkdtemp())
    ref = hf_archs.save("qwen3", folder)
    (folder / "tokenizer.json").write_text(byte_level_bpe(["the keys and values are cached"] * 4, 300,
                                                          ["<pad>", "<s>", "</s>"]))
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    hub_server.repos["owner/qwen3"] = Repo(files=files, parameters={"F32": sum(p.numel() for p in ref.parameters())})
    model, tok = load_pretrained("owner/qwen3")
    assert isinstance(model, HubModel) and model.cfg.model_type == "qwen3"
    ids = torch.tensor([tok.encode("the keys and values")])
    with torch.no_grad():
        assert (model(ids).logits - ref(ids).logits).abs().max() < 1e-5


def test_the_cache_stays_under_its_disk_budget_least_recently_used_out_first(hub_server, monkeypatch):
    """Three repositories of ~4 kB each under a 10 kB budget: opening the third deletes the oldest, never the one
    downloading, and a model larger than the whole budget is refused before a byte is fetched."""
    import time as clock

    from huggingface_hub import scan_cache_dir

    from playground.models.pretrained import disk

    for name in ("owner/a", "owner/b", "owner/c"):
        hub_server.repos[name] = tiny_repo()
    monkeypatch.setenv(disk.ENV_DISK_GB, str(10_000 / 1e9))
    forgotten = []
    hub.resolve("owner/a", forget=forgotten.append)
    clock.sleep(0.01)
    hub.resolve("owner/b", forget=forgotten.append)
    cached = {r.repo_id for r in scan_cache_dir(disk.cache_dir()).repos}
    assert cached == {"owner/a", "owner/b"}
    hub.resolve("owner/c", forget=forgotten.append)
    cached = {r.repo_id for r in scan_cache_dir(disk.cache_dir()).repos}
    assert forgotten == ["owner/a"] and cached == {"owner/b", "owner/c"}
    assert scan_cache_dir(disk.cache_dir()).size_on_disk <= 10_000
    monkeypatch.setenv(disk.ENV_DISK_GB, str(3_000 / 1e9))
    hub_server.repos["owner/big"] = tiny_repo()
    before = len(hub_server.downloads())
    with pytest.raises(HubError, match="needs .* on disk but this server keeps at most") as info:
        hub.resolve("owner/big")
    assert info.value.reason == "disk" and hub_server.downloads()[before:] == ["config.json"]


def test_a_visitors_hub_id_never_carries_the_operators_token(hub_server, monkeypatch):
    """The page opens an id a visitor typed with no token; the operator's token goes only to the repositories they
    list in PLAYGROUND_TOKEN_REPOS. (The stand-in records each request's Authorization header.)"""
    from playground.zoo import hub_source

    monkeypatch.setattr(hub, "get_token", lambda: "hf_operator")
    monkeypatch.setenv("HF_TOKEN", "hf_operator")
    monkeypatch.delenv(hub.ENV_TOKEN_REPOS, raising=False)
    hub_server.repos["owner/open"] = tiny_repo()
    hub_server.repos["owner/gated"] = tiny_repo(gated=True)
    hub_source.prepare("hf", "owner/open")
    assert hub_server.tokens and not any(hub_server.tokens)  # not one request carried a token
    with pytest.raises(HubError, match="only for the repositories its operator lists in PLAYGROUND_TOKEN_REPOS"):
        hub_source.prepare("hf", "owner/gated")
    assert not any(hub_server.tokens)
    hub_server.tokens.clear()
    monkeypatch.setenv(hub.ENV_TOKEN_REPOS, "owner/gated, owner/other")
    folder = hub_source.prepare("hf", "owner/gated")
    assert (folder / "config.json").is_file() and all(t == "Bearer hf_operator" for t in hub_server.tokens)
    # the KV-cache calculator reads a visitor's config.json the same way
    hub_server.tokens.clear()
    monkeypatch.setenv(hub.ENV_TOKEN_REPOS, "")
    assert hub.fetch_config("owner/open", token=hub.server_token("owner/open")) == GPT2_TINY
    assert not any(hub_server.tokens)
