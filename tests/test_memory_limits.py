"""The memory budgets read what this process may really use: its container's cgroup limit where that is
below the machine's memory, and a CUDA device's free memory for weights bound there (stand-ins on the CPU)."""
import pytest
import torch

from playground.errors import InputError
from playground.models import memory, weight_cache
from playground.models.pretrained import budget, hub
from playground.models.shared import Weights
from playground.models.weight_cache import WeightCache
from playground.zoo import ModelSpec

MB, GB = 1024 ** 2, 1024 ** 3
HOST_TOTAL = 64 * GB
HOST_AVAILABLE = 48 * GB


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A host of 64 GB (48 available) with cgroup folders under tmp_path: ``machine(version, **files)``."""
    v2, v1 = tmp_path / "cgroup", tmp_path / "cgroup" / "memory"
    v1.mkdir(parents=True)
    monkeypatch.setattr(memory, "CGROUP_V2", v2)
    monkeypatch.setattr(memory, "CGROUP_V1", v1)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: {HOST_TOTAL // 1024} kB\nMemAvailable: {HOST_AVAILABLE // 1024} kB\n")
    monkeypatch.setattr(memory, "host_available", lambda real=memory.host_available: real(meminfo))
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": HOST_TOTAL // 4096}
    monkeypatch.setattr(memory.os, "sysconf", lambda name: pages[name])
    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    monkeypatch.delenv(weight_cache.BUDGET_ENV, raising=False)

    def write(version: int, **files):
        folder = v2 if version == 2 else v1
        for name, text in files.items():
            (folder / name.replace("_", ".", 1)).write_text(text)
    return write


def test_without_a_cgroup_limit_the_machine_counts(machine):
    assert memory.cgroup() is None
    assert memory.host_total() == HOST_TOTAL and budget.available_bytes() == HOST_AVAILABLE
    machine(2, memory_max="max\n", memory_current=str(GB))
    assert memory.cgroup() is None and memory.host_total() == HOST_TOTAL
    machine(1, memory_limit_in_bytes="9223372036854771712\n", memory_usage_in_bytes=str(GB))  # v1's "no limit"
    assert memory.cgroup() is None and budget.budget_bytes() == HOST_AVAILABLE // 2


@pytest.mark.parametrize("version, files", [
    (2, dict(memory_max=str(16 * GB), memory_current=str(5 * GB), memory_stat=f"anon 1\ninactive_file {GB}\n")),
    (1, dict(memory_limit_in_bytes=str(16 * GB), memory_usage_in_bytes=str(5 * GB),
             memory_stat=f"cache 1\ntotal_inactive_file {GB}\n")),
])
def test_a_container_limit_below_the_machine_is_the_limit(machine, version, files):
    """A Space with 16 GB on a 64 GB host, 4 GB in use (5 GB less 1 GB of reclaimable file cache)."""
    machine(version, **files)
    assert memory.cgroup() == (16 * GB, 4 * GB)
    assert memory.host_total() == 16 * GB
    assert budget.available_bytes() == 12 * GB
    assert budget.budget_bytes() == 6 * GB                   # half of what is available: the hub's check
    assert weight_cache.memory_budget() == 8 * GB            # half of the limit: the loaded weights' budget


def test_a_container_limit_above_the_machine_changes_nothing(machine):
    machine(2, memory_max=str(128 * GB), memory_current=str(GB))
    assert memory.host_total() == HOST_TOTAL and budget.available_bytes() == HOST_AVAILABLE


@pytest.fixture
def gpu(monkeypatch):
    """A stand-in CUDA device: ``gpu.free`` bytes free of 24 GB, 256 MB more held unused by PyTorch's cache."""
    class Gpu:
        free = 8 * GB
        cached = 256 * MB

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (Gpu.free, 24 * GB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 256 * MB + Gpu.cached)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 256 * MB)
    return Gpu


def test_the_free_memory_of_a_cuda_device_counts_pytorchs_unused_cache(gpu):
    assert memory.device_memory("cuda") == (8 * GB + 256 * MB, 24 * GB)
    assert budget.budget_bytes(100 * GB, device="cuda") == 8 * GB + 256 * MB
    assert budget.budget_bytes(GB, device="cuda") == GB
    assert budget.budget_bytes(100 * GB, device="cpu") == 100 * GB


def test_the_hub_refuses_weights_that_do_not_fit_the_gpu_before_downloading(gpu):
    gpu.free = 2 * GB
    with pytest.raises(hub.HubError, match="cuda has 2.25 GB free") as info:
        hub._check_budget("owner/name", 1_500_000_000, torch.bfloat16, 100 * GB, "cuda")  # 2.79 GB in bf16
    assert info.value.reason == "too_large"
    hub._check_budget("owner/name", 1_500_000_000, torch.bfloat16, 100 * GB, "cpu")
    hub._check_budget("owner/name", 1_000_000_000, torch.bfloat16, 100 * GB, "cuda")  # 1.86 GB fits


def test_load_pretrained_checks_the_gpu_before_reading_the_weights(gpu, tmp_path, monkeypatch):
    from safetensors.torch import save_file
    from playground.models.pretrained import load_pretrained

    monkeypatch.delenv(budget.ENV_MAX_GB, raising=False)
    save_file({"a": torch.zeros(10, 100)}, str(tmp_path / "model.safetensors"))  # 1,000 parameters
    gpu.free, gpu.cached = 1000, 0
    with pytest.raises(hub.HubError, match=r"needs 2.0 kB in float16 \(1,000 parameters\) but cuda has 1.0 kB free"):
        load_pretrained(tmp_path, device="cuda", dtype="float16")


def _fake(nbytes: int) -> Weights:
    return Weights(ModelSpec.parse("zoo:baseline").config(), {}, {}, nbytes)


def test_weights_bound_for_cuda_must_fit_its_free_memory(gpu):
    """The host budget is large; the stand-in GPU fills as weights go to it. Cached weights on the GPU are
    dropped (least recently used first) to make room; weights that would not fit even then are refused,
    nothing dropped; weights on the CPU are not counted."""
    cache = WeightCache(budget=1000 * GB)
    gpu.free = 3 * GB
    for key in ("a", "b"):
        cache.get(key, lambda: _fake(GB), lambda: GB, key, device="cuda")
        gpu.free -= GB
    cache.get("cpu-model", lambda: _fake(10 * GB), lambda: 10 * GB, "cpu-model", device="cpu")
    with pytest.raises(InputError, match=r"needs about 4,295 MB on cuda, which has 1,342 MB free") as info:
        cache.get("huge", lambda: _fake(4 * GB), lambda: 4 * GB, "huge", device="cuda")
    assert info.value.code == "error.model_too_large_device"
    assert [name for name, _ in cache.contents()] == ["a", "b", "cpu-model"]
    size = 3 * GB // 2
    out = cache.get("c", lambda: _fake(size), lambda: size, "c", device="cuda")
    assert out.evicted == ("a",)                             # 1.25 GB free + a's 1 GB is room enough
    assert [name for name, _ in cache.contents()] == ["b", "cpu-model", "c"]


def test_the_page_names_the_gpu_refusal_in_both_languages(gpu):
    from playground.ui.i18n import render

    gpu.free = 0
    with pytest.raises(InputError) as info:
        WeightCache(budget=1000 * GB).get("m", lambda: _fake(GB), lambda: GB, "hf:owner/name", device="cuda:0")
    assert "cuda:0" in render(info.value, "zh-CN") and "显存" in render(info.value, "zh-CN")
