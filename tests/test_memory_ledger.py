"""One admission check for the server's memory (``serving.memory_ledger``): weights in use, evicted or not,
analyses stored and in flight, generation timelines, exports and the kernel lab, all counted against one limit."""
import gc

import gradio as gr
import pytest
import torch

from playground.errors import InputError
from playground.models.weight_cache import WeightCache
from playground.serving.memory_ledger import Ledger
from playground.ui import service
from playground.ui.lang import Words
from playground.zoo import ModelSpec

MB = 10 ** 6


class Blob:
    """A stored entry of a given size (the caches hold anything with ``nbytes``)."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.data = torch.empty(nbytes // 4)


def test_work_in_flight_is_counted_until_it_ends_and_past_the_limit_is_refused():
    ledger = Ledger(budget=100 * MB)
    with ledger.admit(60 * MB, "first"):
        assert ledger.held()["in flight"] == 60 * MB
        with pytest.raises(InputError) as refused:
            with ledger.admit(50 * MB, "second"):
                pass
        assert refused.value.code == "error.memory_full"
        assert refused.value.params["what"] == "second" and refused.value.params["held_mb"] == 60
        with ledger.admit(40 * MB, "third"):  # exactly the limit
            assert sum(ledger.held().values()) == 100 * MB
    with pytest.raises(RuntimeError):
        with ledger.admit(90 * MB, "failing"):
            raise RuntimeError("the work failed")
    assert ledger.held()["in flight"] == 0  # a failed job gives its reservation back


def test_a_full_server_frees_stored_entries_in_order_before_refusing():
    ledger = Ledger(budget=100 * MB)
    analyses, weights = WeightCache(budget=10 ** 12), WeightCache(budget=10 ** 12)
    ledger.register("analyses", analyses.in_use, analyses.free_one)
    ledger.register("weights", weights.in_use, weights.free_one)
    analyses.get("a", lambda: Blob(30 * MB), lambda: 30 * MB, "analysis a")
    weights.get("w", lambda: Blob(40 * MB), lambda: 40 * MB, "weights w")
    with ledger.admit(50 * MB, "job"):  # 70 held + 50 > 100: the analysis goes first, and that is enough
        assert analyses.contents() == [] and [n for n, _ in weights.contents()] == ["weights w"]
    with pytest.raises(InputError):
        with ledger.admit(101 * MB, "too large even alone"):
            pass
    assert weights.contents() == []  # it freed what it could before refusing


def test_evicted_weights_a_request_still_uses_stay_counted_until_it_lets_them_go():
    cache = WeightCache(budget=50 * MB)
    held = cache.get("a", lambda: Blob(40 * MB), lambda: 40 * MB, "a").weights  # a running request holds "a"
    cache.get("b", lambda: Blob(40 * MB), lambda: 40 * MB, "b")  # evicts "a" from the cache
    assert [n for n, _ in cache.contents()] == ["b"]
    assert cache.in_use() == 80 * MB
    del held
    gc.collect()
    assert cache.in_use() == 40 * MB


def test_a_cache_load_is_admitted_by_the_ledger_and_refused_with_its_name():
    ledger = Ledger(budget=100 * MB)
    cache = WeightCache(budget=10 ** 12, admit=ledger.admit)
    with ledger.admit(80 * MB, "something else"):
        with pytest.raises(InputError) as refused:
            cache.get("big", lambda: Blob(40 * MB), lambda: 40 * MB, "big model")
    assert refused.value.params["what"] == "big model" and cache.contents() == []


@pytest.fixture
def small_server(monkeypatch):
    """The page's own ledger with a limit of ``limit`` bytes, its stores emptied before and after."""
    def limit(nbytes: int):
        monkeypatch.setattr(service.LEDGER, "budget", nbytes)
    service.ANALYSES.clear()
    yield limit
    # what the small limit let go is forgotten too: a later test's load is not "loaded again" for it
    service.ANALYSES.clear()
    service.WEIGHTS.clear()


def test_a_generation_timeline_is_counted_while_a_session_holds_it(small_server):
    from playground.ui.generation import generation_state

    w = Words(None)
    spec = ModelSpec.parse("zoo:baseline")
    before = service.TIMELINES.total()
    state = generation_state(w, "zoo:baseline", "Once upon a time", 8, 0.0, 0, 1.0, 0, 0, "auto", "cpu")
    timeline = state["timeline"]
    prompt = len(service.tokenize(spec, "Once upon a time")[0])
    assert 0 < timeline.nbytes <= service.timeline_bytes(spec.config(), prompt, 8)
    assert service.TIMELINES.total() - before == timeline.nbytes
    assert service.LEDGER.held()["timelines"] >= timeline.nbytes
    del state, timeline
    gc.collect()
    assert service.TIMELINES.total() == before
    # a server with no room left for the next one, even with every stored entry let go, says so in the reader's
    # words before generating
    small_server(service.TIMELINES.total() + 1000)
    with pytest.raises(gr.Error) as refused:
        generation_state(Words(None, lang="zh-CN"), "zoo:baseline", "Once upon a time", 64, 0.0, 0, 1.0, 0, 0,
                         "auto", "cpu")
    assert "zoo:baseline" in refused.value.message and "内存" in refused.value.message


def test_the_kernel_lab_is_bounded_by_the_same_check(small_server):
    from playground.ui.kernel_lab import run_lab

    small_server(sum(service.LEDGER.held().values()) + 64 * MB)
    with pytest.raises(gr.Error) as refused:  # 16 heads x 4096² float32 scores: about 2 GB
        run_lab([4096], 16, 64, "float32", "cpu")
    assert "4,096" in refused.value.message and "MB" in refused.value.message


def test_an_analysis_frees_stored_analyses_to_fit(small_server):
    spec = ModelSpec.parse("zoo:baseline")
    service.analyze_text(spec, "The cat sat on the mat.")
    stored = service.ANALYSES.in_use()
    assert stored > 0
    second = "A different prompt here."
    needs = service.analysis_bytes(spec.config(), len(service.tokenize(spec, second)[0]))
    # room for what the server holds and half the first analysis again: the second pushes the first out
    small_server(sum(service.LEDGER.held().values()) + needs - stored // 2)
    service.analyze_text(spec, second)
    assert len(service.ANALYSES.contents()) == 1
