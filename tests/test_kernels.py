"""The SDPA dispatch as it must behave on a GPU, checked on the CPU with stand-ins for what needs CUDA.

Out of memory is not a refused kernel; ``auto`` runs PyTorch's own pick (``torch._fused_sdp_choice``);
dtype ``auto`` does not take emulated bf16; concurrent requests forcing different kernels each run
their own, at the same time; the CUDA kernels hand back one log-sum-exp per query row (their ops run
here on meta tensors, which carry PyTorch's shape rules); the start-up log says what runs here.
"""
import logging
import threading
import time
import types
import warnings

import gradio as gr
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from playground.nn import kernels
from playground.serving import runtime
from playground.nn.kernels import KernelUnavailable, OutOfDeviceMemory, sdpa, sdpa_call

OOM = "CUDA out of memory. Tried to allocate 4.00 GiB. GPU 0 has a total capacity of 22.05 GiB"


def enabled() -> set[str]:
    """The SDPA kernels the process-global flags enable now."""
    flags = {"flash": torch.backends.cuda.flash_sdp_enabled(), "efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
             "cudnn": torch.backends.cuda.cudnn_sdp_enabled(), "math": torch.backends.cuda.math_sdp_enabled()}
    return {name for name, on in flags.items() if on}


@pytest.fixture
def sdpa_log(monkeypatch):
    """The SDPA kernels called, in order: each of ``kernels.RUNNERS`` through a stand-in that notes its name."""
    calls = []
    for name, real in list(kernels.RUNNERS.items()):
        def noting(*args, _name=name, _real=real):
            calls.append(_name)
            return _real(*args)
        monkeypatch.setitem(kernels.RUNNERS, name, noting)
    return calls


def out_of_memory_sdpa(monkeypatch):
    calls = []

    for name in kernels.RUNNERS:
        def oom(*args, _name=name):
            calls.append(_name)
            raise torch.OutOfMemoryError(OOM)
        monkeypatch.setitem(kernels.RUNNERS, name, oom)
    return calls


# ----------------------------------------------------------------------------- out of memory

@pytest.mark.parametrize("kernel", ["auto", "flash", "math"])
def test_out_of_memory_is_raised_as_such_and_no_other_kernel_is_tried(monkeypatch, kernel):
    """torch.OutOfMemoryError is a RuntimeError: it must not read as "kernel refused" (auto would go on to
    kernels that need more memory). It is OutOfDeviceMemory, naming the tokens, after freeing the cache."""
    calls = out_of_memory_sdpa(monkeypatch)
    released = []
    monkeypatch.setattr(kernels, "release_cached_memory", lambda device: released.append(torch.device(device).type))
    q, k = torch.randn(1, 2, 3, 16), torch.randn(1, 2, 700, 16)
    with pytest.raises(OutOfDeviceMemory) as info:
        sdpa(q, k, k, kernel=kernel)
    assert not isinstance(info.value, KernelUnavailable) and isinstance(info.value, ValueError)
    assert (info.value.device, info.value.tokens) == ("cpu", 700)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert len(calls) == 1 and released == ["cpu"]


def test_the_cuda_cache_is_emptied_only_for_cuda(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    kernels.release_cached_memory("cpu")
    assert emptied == []
    kernels.release_cached_memory("cuda:0")
    assert emptied == [True]


def test_the_message_names_the_memory_and_the_tokens_in_both_languages():
    from playground.ui.i18n import render

    error = OutOfDeviceMemory("cuda", tokens=8192)
    assert str(error) == "Out of GPU memory at 8,192 tokens; try fewer tokens or bf16"
    assert render(error, "zh-CN") == "GPU 内存不足（8,192 个词元）；请减少词元数或改用 bf16"
    assert str(OutOfDeviceMemory("cuda")) == "Out of GPU memory; try fewer tokens or bf16"


@pytest.mark.parametrize("lang, expected", [
    ("en", "Out of CPU memory at {n:,} tokens; try fewer tokens or bf16"),
    ("zh-CN", "CPU 内存不足（{n:,} 个词元）；请减少词元数或改用 bf16"),
])
def test_the_page_says_out_of_memory_with_the_tokens(monkeypatch, lang, expected):
    """Through the service and api.run, as a button or an API call reaches it."""
    from playground.ui import api, service
    from playground.ui.lang import Words
    from playground.zoo import ModelSpec

    from playground.models.weight_cache import WeightCache

    out_of_memory_sdpa(monkeypatch)
    monkeypatch.setattr(service.analyses, "ANALYSES", WeightCache(env=service.ANALYSIS_BUDGET_ENV))  # nothing stored yet
    spec = ModelSpec.parse("untrained:decoder/MHA/rope")
    prompt = "all the world's a stage"
    n = len(service.tokenize(spec, prompt)[0])
    with pytest.raises(gr.Error) as info:
        api.run(Words(lang=lang), service.analyze_text, spec, prompt, device="cpu")
    assert info.value.message == expected.format(n=n)


def test_an_out_of_memory_outside_the_kernels_still_reads_as_one(monkeypatch):
    from playground.ui import api
    from playground.ui.lang import Words

    released = []
    monkeypatch.setattr(api, "release_cached_memory", lambda device: released.append(device))

    def service_call(device="cuda"):
        raise torch.OutOfMemoryError(OOM)

    with pytest.raises(gr.Error) as info:
        api.run(Words(lang="en"), service_call, device="cuda")
    assert info.value.message == "Out of GPU memory; try fewer tokens or bf16" and released == ["cuda"]


def test_the_gpu_benchmark_reports_out_of_memory_as_a_row(monkeypatch):
    from playground.bench.gpu import attention_rows

    out_of_memory_sdpa(monkeypatch)
    rows = attention_rows([16], [16], heads=1, kernels=("flash", "math"), dtype=torch.float32, device="cpu",
                          repeats=5, tokens=16)
    assert [r["kernel"] for r in rows] == ["flash", "math"]
    for row in rows:
        assert not row["available"] and row["reason"] == f"out of memory: {OOM}", row


# ----------------------------------------------------------------------------- auto is PyTorch's choice

@pytest.fixture
def choice(monkeypatch):
    """``torch._fused_sdp_choice`` answering ``choice.backend``; ``choice.args`` holds what it was asked."""
    class Choice:
        backend = SDPBackend.CUDNN_ATTENTION
        args = []

    def fused_sdp_choice(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        Choice.args.append((attn_mask, dropout_p, is_causal))
        return int(Choice.backend)

    monkeypatch.setattr(torch, "_fused_sdp_choice", fused_sdp_choice)
    return Choice


def test_auto_runs_pytorchs_pick_first_and_a_refusal_falls_back_with_the_reason(choice, sdpa_log):
    """On Hopper PyTorch picks cuDNN: auto forces cuDNN first. Here the CPU refuses it, and auto falls back
    (to flash, by AUTO_ORDER) and keeps cuDNN's reason."""
    q = torch.randn(1, 2, 8, 16)
    run = sdpa_call(q, q, q, kernel="auto", is_causal=True)
    assert choice.args == [(None, 0.0, True)]
    assert sdpa_log == ["flash"]  # cuDNN is refused by the CPU's rule before any call
    assert run.kernel == "flash" and len(run.refused) == 1
    assert run.refused[0].startswith("cudnn: PyTorch's CPU dispatcher has only the flash and math kernels")
    ref, _ = kernels.explicit_attention(q, q, q, torch.ones(8, 8, dtype=torch.bool).tril())
    assert torch.allclose(run.out, ref, atol=1e-5)


def test_auto_names_the_kernel_pytorch_picks(choice, sdpa_log):
    choice.backend = SDPBackend.MATH
    q = torch.randn(1, 2, 8, 16)
    mask = torch.ones(8, 8, dtype=torch.bool).tril()
    run = sdpa_call(q, q, q, mask, kernel="auto")
    assert (run.kernel, run.refused, sdpa_log) == ("math", (), ["math"])
    assert choice.args[0][0] is mask


def test_on_the_cpu_pytorchs_pick_is_flash_as_before(sdpa_log):
    q = torch.randn(1, 2, 8, 16)
    for mask in (None, torch.ones(8, 8, dtype=torch.bool).tril()):
        assert int(torch._fused_sdp_choice(q, q, q, mask, 0.0, mask is None)) == int(SDPBackend.FLASH_ATTENTION)
        run = sdpa_call(q, q, q, mask, kernel="auto", is_causal=mask is None)
        assert (run.kernel, run.refused) == ("flash", ())
    assert kernels.auto_kernel("cpu", torch.bfloat16) == "flash"


# ----------------------------------------------------------------------------- dtype auto

@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda_is_bf16_only_where_the_device_computes_in_it(monkeypatch, native, expected):
    """A T4 (sm75) supports bf16 only by emulation (is_bf16_supported() is True there): auto takes fp16."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    assert kernels.run_dtype("auto", "cuda") == expected
    assert kernels.run_dtype("auto", "cpu") == torch.float32
    assert kernels.run_dtype("bfloat16", "cuda") == torch.bfloat16


# ----------------------------------------------------------------------------- concurrency

def test_concurrent_forced_kernels_each_run_their_own_at_the_same_time(monkeypatch):
    """The kernel is chosen per call: no process-global flag is set and no lock is held around a kernel, so
    requests forcing flash and math run side by side, each labelled with, and computing, its own. The
    stand-ins hold each call for a moment and count how many are inside at once."""
    inside, most, count = [0], [0], threading.Lock()
    for name, real in list(kernels.RUNNERS.items()):
        def slow(*args, _real=real):
            with count:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.005)
            try:
                return _real(*args)
            finally:
                with count:
                    inside[0] -= 1
        monkeypatch.setitem(kernels.RUNNERS, name, slow)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 16, 16, generator=g) for _ in range(3))
    expected = {name: sdpa(q, k, v, kernel=name, is_causal=True)[0] for name in ("flash", "math")}
    before = enabled()
    problems, lock = [], threading.Lock()
    start = threading.Barrier(8)

    def worker(i: int):
        start.wait()
        for j in range(12):
            forced = ("flash", "math")[(i + j) % 2]
            out, ran = sdpa(q, k, v, kernel=forced, is_causal=True)
            with lock:
                if ran != forced or not torch.equal(out, expected[forced]):
                    problems.append((forced, ran))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert most[0] > 1  # calls overlapped: nothing serialises them
    assert enabled() == before  # PyTorch's global flags were never touched


# ----------------------------------------------------------------------------- the kernels' own log-sum-exp

@pytest.mark.parametrize("name", ["flash", "efficient", "cudnn"])
def test_each_cuda_kernel_hands_back_one_lse_per_query_row(name):
    """Flash returns (B, nh, Tq), memory-efficient pads to a multiple of 32 rows, cuDNN adds a last dim of 1:
    each comes back as (B, nh, Tq). A head dim of 60 is padded to 64 for flash and the output cut back; a
    bool mask of 45 keys goes to the kernels that take one as a 16-aligned float bias."""
    q = torch.empty(2, 4, 37, 60, device="meta", dtype=torch.bfloat16)
    k = torch.empty(2, 4, 45, 60, device="meta", dtype=torch.bfloat16)
    mask = None if name == "flash" else torch.empty(37, 45, dtype=torch.bool, device="meta")
    out, lse = kernels.RUNNERS[name](q, k, k, mask, mask is None, None)
    assert out.shape == (2, 4, 37, 60) and lse.shape == (2, 4, 37)
    if name == "flash":
        with pytest.raises(KernelUnavailable, match="no attn_mask"):
            kernels.RUNNERS[name](q, k, k, torch.empty(37, 45, dtype=torch.bool, device="meta"), False, None)


@pytest.mark.parametrize("mask", [None, "causal"])
def test_the_cpu_kernels_compute_what_sdpa_does_and_flash_gives_its_lse(mask):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 3, 40, 16, generator=g) for _ in range(3))
    causal = torch.ones(40, 40, dtype=torch.bool).tril()
    attn_mask, is_causal = (causal, False) if mask else (None, True)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    for name in ("flash", "math"):
        run = sdpa_call(q, k, v, attn_mask, kernel=name, is_causal=is_causal, return_lse=True)
        assert run.kernel == name and torch.allclose(run.out, reference, atol=1e-5)
        assert (run.lse is None) == (name == "math")
    scores = (q @ k.transpose(-1, -2) / 4).masked_fill(~causal, float("-inf"))
    assert torch.allclose(sdpa_call(q, k, v, attn_mask, kernel="flash", is_causal=is_causal, return_lse=True).lse,
                          scores.logsumexp(-1), atol=5e-6, rtol=0)


def test_a_cuda_kernel_pytorch_refuses_is_named_with_pytorchs_reasons(monkeypatch):
    """On CUDA PyTorch's own check decides (``torch.backends.cuda.can_use_*``); its reasons, given as warnings
    when asked to debug, become the refusal. Stand-ins play the check; the CUDA device is only named."""
    asked = []

    def can_use_flash(params, debug):
        asked.append(debug)
        if debug:
            warnings.warn("Flash attention requires fp16 or bf16 inputs")
        return False

    monkeypatch.setattr(torch.backends.cuda, "can_use_flash_attention", can_use_flash)
    monkeypatch.setattr(torch.backends.cuda, "SDPAParams", lambda *args: args)
    q = types.SimpleNamespace(device=torch.device("cuda"))
    assert kernels.refusal("flash", q, q, q, None, True) == "Flash attention requires fp16 or bf16 inputs"
    assert asked == [False, True]  # the reasons are read only once the kernel is refused
    assert kernels.refusal("math", q, q, q, None, True) is None


# ----------------------------------------------------------------------------- the start-up log

def test_the_runtime_description_names_versions_device_and_auto():
    text = runtime.describe_runtime("cpu")
    assert f"torch {torch.__version__}" in text
    assert f"CUDA {torch.version.cuda or 'none (a CPU build)'}" in text
    assert f"device: cpu ({torch.get_num_threads()} threads)" in text
    assert "auto: dtype float32; SDPA flash (PyTorch's pick" in text
    assert "masks past one 128-key block:" in text


def test_on_zerogpu_the_description_does_not_touch_cuda(monkeypatch):
    def touched(*args, **kwargs):
        raise AssertionError("CUDA touched at start-up")

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("current_device", "get_device_properties", "is_bf16_supported", "mem_get_info"):
        monkeypatch.setattr(torch.cuda, name, touched)
    assert runtime.default_device() == "cuda"
    text = runtime.describe_runtime()
    assert "ZeroGPU" in text and "not probed" in text


def test_the_runtime_is_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(runtime, "LOGGED", threading.Event())
    with caplog.at_level(logging.INFO, logger="playground"):
        results = [runtime.log_runtime("cpu"), runtime.log_runtime("cpu")]
    assert results == [True, False]
    records = [r for r in caplog.records if r.name == "playground"]
    assert len(records) == 1 and f"torch {torch.__version__}" in records[0].getMessage()
