"""ZeroGPU without a GPU: the page under a stand-in ``spaces`` (``tests/standin/spaces``) that keeps ZeroGPU's
rules, with this machine's CPU playing the GPU. Every endpoint runs its model work inside the one GPU call
(``serving.gpu_call`` / ``ui.gpu``), nothing touches the "GPU" at start-up, arguments and results survive pickling,
errors keep their words, and each call asks for a duration from its own estimate. The real ``spaces`` package
is tried as far as it runs here: outside ZeroGPU its decorator hands the function back unchanged."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from playground.bench.server import AppServer
from playground.serving import gpu_call
from playground.ui import gpu
from playground.ui.lang import Words

from conftest import require

STANDIN = Path(__file__).parent / "standin"
SPEC = "zoo:baseline"


def _standin_env(log: Path, user_dir: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "SPACES_ZERO_GPU": "true", "STANDIN_SPACES_LOG": str(log), "PLAYGROUND_USER_MODELS": str(user_dir)}


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def zerogpu_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("zerogpu")
    log = root / "spaces.jsonl"
    with AppServer(_standin_env(log, root / "user")) as server:
        from gradio_client import Client

        yield Client(server.url, verbose=False), log, server


def test_nothing_runs_a_model_at_start_up_and_flex_is_not_offered(zerogpu_app):
    client, log, server = zerogpu_app
    assert not [e for e in _events(log) if e["event"] == "violation"]
    text = Path(server.log).read_text(errors="replace")
    assert "ZeroGPU" in text  # the start-up log says CUDA is reached only inside a GPU call


# every endpoint that runs a model or a kernel, with arguments a person would send
CALLS = [
    dict(api_name="/analyze", spec=SPEC, prompt="The cat sat on the mat. The cat"),
    dict(api_name="/head", spec=SPEC, prompt="The cat sat on the mat. The cat", kind="self", layer=1, head=2),
    dict(api_name="/tile", spec=SPEC, prompt="The cat sat on the mat. The cat", kind="self", layer=0, head=0,
         rows=[0, 8], cols=[0, 8]),
    dict(api_name="/heads", spec="zoo:induction", prompt="ignored"),
    dict(api_name="/compare", spec_a=SPEC, spec_b="zoo:mamba", prompt="To be, or not to be"),
    dict(api_name="/generate", spec=SPEC, prompt="Once upon a time", max_new_tokens=6),
    dict(api_name="/generate", spec="zoo:rwkv", prompt="Once upon a time", max_new_tokens=4),
    dict(api_name="/view", spec=SPEC, prompt="The cat sat on the mat", view="norms"),
    dict(api_name="/view", spec=SPEC, prompt="The cat sat on the mat", view="lens"),
    dict(api_name="/ablate", spec=SPEC, prompt="The cat sat on the mat"),
    dict(api_name="/step", spec=SPEC, prompt="The cat sat", layer=0, head=1, query=2),
    dict(api_name="/flash_replay", spec=SPEC, prompt="The cat sat on the mat", layer=0, head=0),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c["api_name"] + ":" + c.get("view", c.get("spec", "")))
def test_every_endpoint_runs_its_model_work_inside_the_gpu_call(zerogpu_app, call):
    client, log, _ = zerogpu_app
    before = len(_events(log))
    client.predict(**call)
    new = _events(log)[before:]
    assert not [e for e in new if e["event"] == "violation"], new
    if call["api_name"] != "/tile" and call["api_name"] != "/head":  # these read the stored analysis only
        calls = [e for e in new if e["event"] == "call"]
        assert calls and all(gpu.MIN_SECONDS <= e["duration"] <= gpu.MAX_SECONDS for e in calls), calls


def test_training_in_the_page_stays_on_the_host(zerogpu_app):
    """Training is CPU work on purpose (``gpu_call.host_work``): it runs outside the GPU call, and the model
    it saves then runs inside one like any other."""
    client, log, _ = zerogpu_app
    out = client.submit("decoder", "MHA", "rope", "task:copy", 10, 0.003, "zero-test", api_name="/train").result(timeout=300)
    assert "user:zero-test" in out[0]
    before = len(_events(log))
    client.predict(spec="user:zero-test", prompt="hi", api_name="/analyze")
    new = _events(log)[before:]
    assert not [e for e in _events(log) if e["event"] == "violation"]
    assert any(e["event"] == "call" for e in new)


@pytest.mark.parametrize("call, words", [
    (dict(api_name="/analyze", spec=SPEC, prompt="hello", backend="efficient"), "cannot run"),
    (dict(api_name="/generate", spec=SPEC, prompt="hello", backend="efficient"), "cannot run"),
    (dict(api_name="/view", spec=SPEC, prompt="hello", view="norms", backend="efficient"), "cannot run"),
])
def test_errors_inside_the_gpu_call_keep_their_words(zerogpu_app, call, words):
    """Inside the GPU call a refused kernel becomes a gr.Error in words; ZeroGPU would reduce anything else to
    its class name ("KernelUnavailable")."""
    client, log, _ = zerogpu_app
    with pytest.raises(Exception) as caught:
        client.predict(**call)
    assert words in str(caught.value) and "KernelUnavailable" not in str(caught.value)
    assert _events(log)[-1].get("error") == "gr.Error"


def test_an_empty_prompt_is_answered_in_words(zerogpu_app):
    client, _, _ = zerogpu_app
    with pytest.raises(Exception, match="The prompt is empty"):
        client.predict(spec=SPEC, prompt="", api_name="/analyze")


def test_the_door_is_a_plain_call_without_spaces_and_guards_with_one():
    """The guard holds the models the page watches to the door, and leaves every other module of the process be."""
    model, other = gpu_call.watch(torch.nn.Sequential(torch.nn.Linear(2, 2))), torch.nn.Linear(2, 2)
    assert not gpu_call.installed() and gpu_call.call(lambda x: x + 1, 1) == 2
    seen = []

    def decorate(entry):
        def door(*args):
            seen.append(args[0].__name__)
            return entry(*args)
        return door

    gpu_call.install(decorate)
    try:
        with gpu_call.guard("cpu"):
            with pytest.raises(gpu_call.OutsideGPUCall, match="outside the GPU call"):
                model(torch.zeros(1, 2))
            other(torch.zeros(1, 2))  # not the page's model: not watched
            assert gpu_call.call(lambda x: model(x).shape, torch.zeros(3, 2)) == (3, 2)
            with gpu_call.host_work():
                model(torch.zeros(1, 2))  # CPU work on purpose passes
        model(torch.zeros(1, 2))  # the guard is gone with its block
    finally:
        gpu_call.uninstall()
    assert seen == ["<lambda>"]


def test_a_calls_duration_comes_from_its_own_estimate(monkeypatch):
    """The door asks for what the call's own estimate says, within ZeroGPU's bounds; a call without one, the default."""
    from playground.ui import service
    from playground.zoo import ModelSpec

    spec = ModelSpec.parse("zoo:baseline")
    call = ("en", service.analyze_and_release, (spec, "hello " * 50), {"device": "cpu"})
    for estimate, asked in ((37.6, 37), (3.0, gpu.MIN_SECONDS), (1000.0, gpu.MAX_SECONDS)):
        assert gpu.seconds(None, call + (estimate,), {}) == asked
    real = service.gpu_seconds(spec, "hello " * 50, device="cpu")
    assert real > 10
    assert gpu.seconds(None, call + (real,), {}) == int(min(gpu.MAX_SECONDS, max(gpu.MIN_SECONDS, real)))
    assert gpu.seconds(None, call + (None,), {}) == gpu.DEFAULT_SECONDS
    assert gpu.seconds(None, ("en", print, (), {}, None), {}) == gpu.DEFAULT_SECONDS
    # the page's analysis carries its estimate through the door
    seen, text = [], "the door asks for this call's own estimate " * 30
    expected = int(min(gpu.MAX_SECONDS, max(gpu.MIN_SECONDS, service.gpu_seconds(spec, text))))  # before the call
    gpu_call.install(lambda entry: lambda *a: (seen.append(gpu.seconds(*a)), entry(*a))[1])
    try:
        service.analyze_text(spec, text)
    finally:
        gpu_call.uninstall()
    assert seen == [expected]


def test_the_real_spaces_package_hands_functions_back_outside_zerogpu():
    """``spaces`` 0.51 outside ZeroGPU (no SPACES_ZERO_GPU): its decorator returns the function itself, so the
    page's door is a plain call; on ZeroGPU without the Hub's device API it refuses to import."""
    require("spaces", "pip install -r requirements-dev.txt")
    import spaces

    def twice(x):
        return 2 * x

    assert spaces.GPU(twice, duration=lambda x: 20) is twice
    gpu.install(spaces, guard="cuda")
    try:
        assert gpu_call.installed() and gpu_call.call(twice, 4) == 8
    finally:
        gpu_call.reset()
    env = {**os.environ, "SPACES_ZERO_GPU": "true"}
    env.pop("SPACES_ZERO_DEVICE_API_URL", None)
    done = subprocess.run([sys.executable, "-c", "import spaces"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "SPACES_ZERO_DEVICE_API_URL" in done.stderr


def test_the_stand_in_catches_model_work_outside_a_gpu_call(tmp_path):
    """The stand-in's rule is real: a forward outside ``spaces.GPU`` fails and is logged, the same forward inside
    one runs, and a non-gr.Error exception comes back as its class name alone."""
    log = tmp_path / "spaces.jsonl"
    script = """
import torch, spaces
model = torch.nn.Linear(2, 2)
try:
    model(torch.zeros(1, 2))
    raise SystemExit("a forward outside a GPU call ran")
except RuntimeError as e:
    assert "outside a GPU call" in str(e)
print(spaces.GPU(lambda x: model(x).shape, duration=20)(torch.zeros(3, 2)))
def refuse():
    raise ValueError("words that ZeroGPU drops")
try:
    spaces.GPU(refuse)()
except RuntimeError as e:
    print("error:", e)
"""
    env = {**os.environ, **_standin_env(log, tmp_path / "user")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch.Size([3, 2])" in done.stdout and "error: ValueError" in done.stdout
    assert "words" not in done.stdout
    events = _events(log)
    assert [e["event"] for e in events] == ["violation", "call", "call"] and events[1]["duration"] == 20


def test_the_page_clicked_through_runs_its_model_work_inside_the_gpu_call(zerogpu_app):
    """Analyze, the View switch, Generate, Inside a head and the kernel lab, clicked in chromium on the page under
    the stand-in: every figure is drawn and no model work ran outside a GPU call."""
    from playground.bench.browser import launch
    from test_browser import playwright, set_prompt, shot, wait_for_plot_title

    _, log, server = zerogpu_app
    before = len(_events(log))
    with playwright.sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_context(viewport={"width": 1800, "height": 1000}, locale="en-US").new_page()
        pg.goto(server.url, wait_until="load")
        set_prompt(pg, "The cat sat on the mat. The cat")
        pg.get_by_role("button", name="Analyze").click()
        wait_for_plot_title(pg, "layer 0, head 0", timeout=60_000)
        pg.get_by_label("Value-weighted norms").check()
        wait_for_plot_title(pg, "value-weighted", timeout=60_000)
        pg.get_by_role("tab", name="Generate & KV cache").click()
        pg.get_by_role("button", name="Generate").click()
        wait_for_plot_title(pg, "Step 0", timeout=60_000)
        pg.get_by_role("tab", name="Inside a head").click()
        pg.get_by_role("button", name="Step through").click()
        wait_for_plot_title(pg, "weights · layer 0, head 0", timeout=60_000)
        shot(pg, "30-zerogpu-stand-in")
        browser.close()
    new = _events(log)[before:]
    assert not [e for e in new if e["event"] == "violation"], [e for e in new if e["event"] == "violation"][:2]
    assert sum(e["event"] == "call" for e in new) >= 4


def test_behind_the_door_a_devices_weights_come_from_the_main_processs_cpu_copy(monkeypatch):
    """``prepare`` loads the CPU copy (in ZeroGPU's main process); the device's copy is made from it inside the
    call, never by reading the checkpoint again. The meta device stands in for CUDA."""
    from playground.ui import service
    from playground.zoo import ModelSpec

    spec = ModelSpec.parse("zoo:gqa")
    reads = []
    original = ModelSpec.load
    monkeypatch.setattr(ModelSpec, "load", lambda self, *a, **k: reads.append(str(self)) or original(self, *a, **k))
    monkeypatch.setattr(service.loading, "WEIGHTS", service.loading.WeightCache())
    gpu_call.install(lambda entry: entry)
    try:
        service.prepare(spec, "meta", "float32")
        assert reads == ["zoo:gqa"]
        moved = gpu_call.call(service.weights, spec, "meta", torch.float32).weights
    finally:
        gpu_call.reset()
    assert reads == ["zoo:gqa"] and moved.device.type == "meta"
    cpu = service.weights(spec, "cpu", torch.float32).weights
    assert cpu.device.type == "cpu" and set(cpu.parameters) == set(moved.parameters)


def test_on_zerogpu_flexattention_is_not_offered_on_cuda(monkeypatch):
    from playground.nn import flex
    from playground.serving import zerogpu

    monkeypatch.setattr(flex.KERNEL, "refused", {})
    monkeypatch.setitem(flex.KERNEL.status, "cuda", None)  # as on a CUDA machine with Triton
    assert flex.flex_status("cuda") is None
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert zerogpu.active()
    zerogpu.restrict_kernels()  # what app.py does on a ZeroGPU Space
    reason = flex.flex_status("cuda", torch.bfloat16, 64)
    assert reason is not None and "ZeroGPU" in reason and "SDPA with a mask" in reason
    assert flex.flex_status("cpu") != reason  # the CPU is not the GPU call's: its kernel stays
    monkeypatch.setenv("SPACES_ZERO_GPU", "")
    assert not zerogpu.active()


def test_work_on_another_device_than_the_guarded_one_spends_no_gpu_time():
    """On a ZeroGPU Space the door guards CUDA: work the visitor runs on the CPU stays on the host, outside the
    GPU call, and spends none of their quota; work on CUDA crosses."""
    seen = []
    gpu_call.install(lambda entry: lambda *a: (seen.append(a[1][1].__name__), entry(*a))[1])
    gpu_call.start_guard("cuda")
    try:
        def where(device):
            return gpu_call.inside(), gpu_call.on_host()
        assert gpu.work(Words(None), where, device="cpu") == (False, True) and seen == []
        assert gpu.work(Words(None), where, device="cuda") == (True, False) and seen == ["where"]
    finally:
        gpu_call.reset()


def test_a_refusal_by_zerogpu_reaches_the_visitor_in_their_language():
    """``spaces`` refuses a call past the visitor's quota with a gr.Error titled "ZeroGPU ..." before any worker
    starts: the page says it in the visitor's language, with what to do next."""
    import gradio as gr
    from playground.ui import api

    def door(entry):
        def refuse(*args):
            raise gr.Error("You have exceeded your free ZeroGPU quota (60s requested vs. 12s left). Try again in "
                           "0:42:00.", title="ZeroGPU quota exceeded", print_exception=False)
        return refuse
    gpu_call.install(door)
    try:
        with pytest.raises(api.GpuRefused) as refused:
            gpu.work(Words(None, lang="zh-CN"), print, device="cpu")  # the stand-in's door guards nothing: it crosses
        assert "12s left" in refused.value.message and "登录 Hugging Face" in refused.value.message
        with pytest.raises(gr.Error) as own:  # the work's own error is not a refusal
            gpu_call.install(lambda entry: lambda *a: (_ for _ in ()).throw(gr.Error("a bad prompt")))
            gpu.work(Words(None), print)
        assert not isinstance(own.value, api.GpuRefused)
    finally:
        gpu_call.reset()


@pytest.fixture(scope="module")
def spent_quota_app(tmp_path_factory):
    """The page under the stand-in with no seconds left in the visitor's quota, and the stand-in's log."""
    root = tmp_path_factory.mktemp("zerogpu-spent")
    env = {**_standin_env(root / "spaces.jsonl", root / "user"), "STANDIN_SPACES_QUOTA_S": "0"}
    with AppServer(env) as server:
        yield server, root / "spaces.jsonl"


@pytest.mark.parametrize("locale, words", [("en-US", "No GPU time for this page right now"),
                                           ("zh-CN", "现在无法为本页分配 GPU 时间")])
def test_with_the_quota_spent_every_tab_that_opens_drawn_says_so(spent_quota_app, locale, words):
    """A visitor whose quota is spent opens the page on ZeroGPU (the stand-in, no seconds left): the Attention,
    Generate, Head insights, Inside a head and Compare tabs each say why they are empty, in the visitor's language,
    instead of opening blank."""
    from playground.bench.browser import launch
    from test_browser import playwright, shot

    server, log = spent_quota_app
    with playwright.sync_playwright() as p:
        browser = launch(p)
        pg = browser.new_context(viewport={"width": 1600, "height": 1000}, locale=locale).new_page()
        pg.goto(server.url, wait_until="load")
        refusal = pg.locator(".refusal:visible", has_text=words)
        refusal.first.wait_for(timeout=60_000)  # the Attention tab's badge
        assert "0s left" in refusal.first.inner_text()
        w = Words(None, lang=locale)
        for tab in ("generate", "heads", "inside", "compare"):
            pg.get_by_role("tab", name=w(f"tab.{tab}"), exact=True).click()
            refusal.first.wait_for(timeout=60_000)
        shot(pg, f"31-zerogpu-quota-{locale}")
        browser.close()
    events = _events(log)
    assert events and all(e["event"] == "refused" for e in events)


def test_a_visitors_error_prints_no_traceback_in_the_servers_log(zerogpu_app):
    """Bad input is the visitor's, not a fault of the server's: the log has its one request line, no traceback
    (inside the GPU call too, where the error crosses back from ZeroGPU's worker)."""
    client, _, server = zerogpu_app
    before = len(Path(server.log).read_text(errors="replace"))
    for call in (dict(api_name="/analyze", spec=SPEC, prompt=""),
                 dict(api_name="/analyze", spec=SPEC, prompt="hello", backend="efficient"),
                 dict(api_name="/head", spec=SPEC, prompt="hello", kind="self", layer=99, head=0)):
        with pytest.raises(Exception):
            client.predict(**call)
    said = Path(server.log).read_text(errors="replace")[before:]
    assert '"outcome": "refused"' in said and "Traceback" not in said, said[-2000:]
