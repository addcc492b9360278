"""Serving many visitors: weights loaded once, a model object per call, a memory budget with notes.

The page's cache holds each model's tensors once per (spec, device, dtype); every call builds its
own instance over them with its own backend, window, KV cache and recorder. These tests check the
sharing (same storage, same logits as a normally loaded model), that concurrent calls give each
exactly what it gives alone, and the budget: least recently used out, notes to the reader, a model
too large refused, an evicted model still in use still working.
"""
import dataclasses
import platform
import threading

import numpy as np
import pytest
import torch

from playground.errors import InputError
from playground.inspect.generation import generate, stream
from playground.models import build_model, weight_cache
from playground.models.shared import PER_CALL, Weights, estimated_bytes, instance, storage_bytes
from playground.models.weight_cache import BUDGET_ENV, WeightCache, memory_budget
from playground.ui import service
from playground.ui.i18n import render
from playground.zoo import ModelSpec
from playground.zoo import spec as spec_module

PROMPT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
# one shipped model of each kind of tensor layout: RoPE, ALiBi (a non-persistent buffer), learned positions,
# encoder-decoder, RWKV, Mamba
SPECS = ["zoo:baseline", "zoo:alibi", "zoo:learned", "zoo:encdec", "zoo:rwkv", "zoo:mamba"]


@pytest.fixture
def fresh_cache(monkeypatch):
    """The service with an empty weight cache of its own (budget from the environment, as served)."""
    cache = WeightCache()
    monkeypatch.setattr(service.loading, "WEIGHTS", cache)
    monkeypatch.setattr(service.analyses, "ANALYSES", WeightCache(env=service.ANALYSIS_BUDGET_ENV))
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    return cache


def _logits(model, ids: list[int]) -> torch.Tensor:
    x = torch.tensor([ids])
    with torch.no_grad():
        if model.cfg.family == "encdec":
            return model(x, x[:, :5]).logits
        return model(x).logits


# ----------------------------------------------------------------------------- sharing

@pytest.mark.parametrize("text", SPECS)
def test_an_instance_is_the_shared_storage_and_computes_what_a_loaded_model_computes(text):
    spec = ModelSpec.parse(text)
    loaded = spec.load()
    weights = Weights.of(spec.load())
    model = instance(weights)
    for name, p in model.named_parameters(remove_duplicate=False):
        assert p.data_ptr() == weights.parameters[name].data_ptr(), name
        assert not p.requires_grad
    buffers = dict(model.named_buffers(remove_duplicate=False))
    assert buffers.keys() == weights.buffers.keys()
    for name, b in buffers.items():
        assert b.data_ptr() == weights.buffers[name].data_ptr(), name
    if text == "zoo:alibi":  # the non-persistent slopes are shared too, not rebuilt on the meta device
        assert any("alibi_slopes" in name for name in buffers) and all(b.device.type == "cpu" for b in buffers.values())
    if model.cfg.tie_embeddings:
        assert model.lm_head.weight is model.tok_emb.weight
    assert weights.nbytes == storage_bytes([*loaded.parameters(), *loaded.buffers()])
    assert weights.nbytes == estimated_bytes(spec.config())
    ids = spec.tokenizer().encode(PROMPT)[:24]
    assert torch.equal(_logits(model, ids), _logits(loaded, ids))
    assert model.recorder is not loaded.recorder


def test_untied_embeddings_stay_two_tensors_and_tied_ones_one():
    spec = ModelSpec.parse("untrained:decoder/GQA/rope")
    untied = spec.load().cfg.replace(tie_embeddings=False)
    weights = Weights.of(build_model(untied))
    model = instance(weights)
    assert model.lm_head.weight is not model.tok_emb.weight
    assert model.lm_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    tied = Weights.of(spec.load())
    assert tied.parameters["lm_head.weight"] is tied.parameters["tok_emb.weight"]
    assert tied.nbytes < weights.nbytes  # the tied table counted once


def test_only_backend_and_window_may_differ_between_instances():
    weights = Weights.of(ModelSpec.parse("zoo:gqa").load())
    assert PER_CALL == ("backend", "sliding_window")
    for change in ({"n_layer": 2}, {"n_kv_heads": 4}, {"vocab_size": 100}, {"position": "alibi"}):
        with pytest.raises(ValueError, match="may only change backend, sliding_window"):
            instance(weights, **change)
    a = instance(weights, backend="explicit", sliding_window=8)
    assert (a.cfg.backend, a.cfg.sliding_window) == ("explicit", 8)
    assert weights.config.backend == "auto" and weights.config.sliding_window == 0  # the shared config untouched


def test_two_instances_of_one_weights_have_their_own_window_mask_and_cache():
    weights = Weights.of(ModelSpec.parse("zoo:baseline").load())
    narrow, full = instance(weights, sliding_window=4), instance(weights)
    assert narrow.tok_emb.weight.data_ptr() == full.tok_emb.weight.data_ptr()
    ids = torch.tensor([list(range(10, 22))])  # (1, 12)
    with torch.no_grad():
        narrow_records = narrow(ids, capture=True).attentions
        full_records = full(ids, capture=True).attentions
    narrow_mask = narrow_records[0].mask.reshape(12, 12)
    full_mask = full_records[0].mask.reshape(12, 12)
    assert torch.equal(full_mask, torch.ones(12, 12, dtype=torch.bool).tril())
    assert narrow_mask.sum(-1).max() == 4 and not bool(narrow_mask[11, 7]) and bool(full_mask[11, 7])
    assert narrow_records[0].weights[0, :, 11, :8].abs().max() == 0
    narrow.setup_cache(1, 16)
    assert narrow.cache_bytes_allocated() > 0 and full.decoder.blocks[0].self_attn.cache is None
    assert full.cache_bytes_allocated() == 0


# ----------------------------------------------------------------------------- concurrency

def test_concurrent_requests_on_one_model_each_get_what_they_get_alone(fresh_cache):
    spec = ModelSpec.parse("zoo:baseline")
    jobs = [(kind, backend, window) for kind in ("analyze", "generate") for backend in ("math", "explicit")
            for window in (0, 6)]

    def run(kind, backend, window):
        if kind == "analyze":
            result, _ = service.analyze_text(spec, PROMPT, window=window, backend=backend)
            return [m.weights for m in result.maps]
        timeline, _ = service.generate_text(spec, PROMPT, 12, window=window, backend=backend)
        return timeline.new_labels, timeline.cache_bytes, timeline.cache_bytes_allocated, timeline.rows

    alone = [run(*job) for job in jobs]
    # the options matter: a different window gives different weights and cache sizes (else the test proves nothing)
    assert not np.allclose(alone[0][-1], alone[1][-1])
    assert alone[4][1] != alone[5][1]
    start, results, errors = threading.Barrier(len(jobs)), [None] * len(jobs), []

    def worker(i):
        try:
            start.wait()
            results[i] = run(*jobs[i])
        except Exception as e:  # reported below with the job that raised it
            errors.append((jobs[i], e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # within 1e-6, not bit for bit: a BLAS may split a product over fewer threads when the machine is busy,
    # which moves the last bits; a request reading another's cache or mask is off by far more
    for job, mine, own in zip(jobs, results, alone):
        if job[0] == "analyze":
            assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(mine, own)), job
        else:
            assert mine[:3] == own[:3], job  # tokens, cache bytes held and allocated at every step
            assert all(np.allclose(a[k], b[k], rtol=0, atol=1e-6) for a, b in zip(mine[3], own[3]) for k in a), job
    assert [name for name, _ in fresh_cache.contents()] == ["zoo:baseline"]  # one copy of the weights


def test_two_requests_for_one_model_load_it_once():
    cache, calls = WeightCache(budget=10**9), []
    weights = Weights.of(ModelSpec.parse("zoo:gqa").load())
    release = threading.Event()

    def slow_load():
        calls.append(1)
        release.wait(5)
        return weights

    got, start = [], threading.Barrier(8)

    def request():
        start.wait()
        got.append(cache.get("gqa", slow_load, lambda: weights.nbytes, "zoo:gqa").weights)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    threading.Timer(0.3, release.set).start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(got) == 8 and all(w is weights for w in got)
    assert cache._loading == {}  # the key's lock went with the last request that held it


def test_the_stores_tables_stay_bounded_however_many_keys_pass():
    """A public store sees a new key per prompt: its per-key locks go when their loads end, and it remembers only
    the latest evicted keys (for the "loaded again" note)."""
    from playground.models import weight_cache

    cache = WeightCache(budget=100)
    for i in range(weight_cache.MAX_EVICTED_KEYS + 50):
        cache.get(i, lambda: _fake(60), lambda: 60, str(i))
    assert cache._loading == {} and len(cache._evicted) == weight_cache.MAX_EVICTED_KEYS
    assert cache.get(weight_cache.MAX_EVICTED_KEYS + 48, lambda: _fake(60), lambda: 60, "again").reloaded
    assert not cache.get(0, lambda: _fake(60), lambda: 60, "0").reloaded  # forgotten: loaded as new


# ----------------------------------------------------------------------------- the memory budget

def _fake(nbytes: int) -> Weights:
    cfg = ModelSpec.parse("zoo:baseline").config()
    return Weights(cfg, {}, {}, nbytes)


def test_the_least_recently_used_goes_first():
    cache = WeightCache(budget=100)
    for key in "ab":
        assert cache.get(key, lambda: _fake(40), lambda: 40, key).evicted == ()
    cache.get("a", lambda: _fake(40), lambda: 40, "a")  # a used again: b is now the oldest
    out = cache.get("c", lambda: _fake(40), lambda: 40, "c")
    assert out.evicted == ("b",) and not out.reloaded
    assert [name for name, _ in cache.contents()] == ["a", "c"]
    back = cache.get("b", lambda: _fake(40), lambda: 40, "b")
    assert back.reloaded and back.evicted == ("a",)
    again = cache.get("b", lambda: _fake(40), lambda: 40, "b")
    assert not again.reloaded and again.evicted == ()
    # an estimate that fell short: room is made once the real size is known, the new model stays
    out = cache.get("d", lambda: _fake(90), lambda: 10, "d")
    assert out.evicted == ("c", "b") and [name for name, _ in cache.contents()] == ["d"]
    # one that fell short of the whole budget serves its request and is not kept: it pushes nothing out, and
    # it is counted while the request holds it
    before = cache.in_use()  # d, and the evicted b that this test's checkouts still hold
    big = cache.get("e", lambda: _fake(150), lambda: 10, "e")
    assert not big.kept and big.evicted == () and [name for name, _ in cache.contents()] == ["d"]
    assert cache.in_use() == before + 150 and cache.held() == 90
    del big
    assert cache.in_use() == before


def test_the_page_says_which_model_was_unloaded_and_which_came_back(fresh_cache, monkeypatch):
    specs = [ModelSpec.parse(f"untrained:decoder/{v}/rope") for v in ("MHA", "GQA", "MQA")]
    sizes = [estimated_bytes(s.config()) for s in specs]
    monkeypatch.setenv(BUDGET_ENV, repr((sizes[0] + sizes[1] + sizes[2] // 2) / 1e9))  # two fit, not three
    assert [service.analyze_text(s, PROMPT)[1] for s in specs[:2]] == [[], []]
    _, notes = service.analyze_text(specs[2], PROMPT)
    assert [n.key for n in notes] == ["note.unloaded"] and notes[0].params["names"] == str(specs[0])
    assert "untrained:decoder/MHA/rope" in str(notes[0]) and "least recently used" in str(notes[0])
    assert "卸载了 untrained:decoder/MHA/rope" in render(notes[0], "zh-CN")
    timeline, notes = service.generate_text(specs[0], PROMPT, 4)
    assert {n.key for n in notes} == {"note.unloaded", "note.reloaded"}
    reloaded = next(n for n in notes if n.key == "note.reloaded")
    assert str(reloaded).startswith("untrained:decoder/MHA/rope had been unloaded")
    assert next(n for n in notes if n.key == "note.unloaded").params["names"] == str(specs[1])
    assert [name for name, _ in fresh_cache.contents()] == [str(specs[2]), str(specs[0])]
    assert len(timeline.new_labels) == 4


def test_the_attention_tab_shows_the_note_in_the_readers_language(fresh_cache, monkeypatch):
    from playground.ui import session
    from playground.ui.lang import Words

    specs = [f"untrained:decoder/{v}/rope" for v in ("MHA", "GQA")]
    monkeypatch.setenv(BUDGET_ENV, repr(1.5 * estimated_bytes(ModelSpec.parse(specs[0]).config()) / 1e9))
    with pytest.warns(UserWarning) as shown:  # gr.Warning outside a running page: a Python warning
        for spec in specs:
            session.analysis_state(Words(lang="zh-CN"), spec, PROMPT)
    assert [str(w.message) for w in shown if "卸载" in str(w.message)] == [
        f"已加载模型的内存上限为 {round(memory_budget() / 1e6):,} MB：为加载此模型，卸载了 {specs[0]}（最久未使用）；再次请求时会重新加载。"]


def test_a_model_larger_than_the_budget_is_refused_before_loading(fresh_cache, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "0.001")  # 1 MB: the baseline needs about 2.4
    spec = ModelSpec.parse("zoo:baseline")
    with pytest.raises(InputError, match=r"zoo:baseline needs about [\d,]+ MB of memory, more than this server's "
                                         r"budget for loaded models \(1 MB\).*PLAYGROUND_MODEL_MEMORY_GB") as info:
        service.load(spec)
    assert info.value.code == "error.model_too_large"
    assert info.value.params["size_mb"] == round(estimated_bytes(spec.config()) / 1e6) > 1
    assert "PLAYGROUND_MODEL_MEMORY_GB" in render(info.value, "zh-CN")
    assert fresh_cache.contents() == []
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(InputError, match="PLAYGROUND_MODEL_MEMORY_GB is a memory budget in GB"):
        service.load(spec)


def test_the_default_budget_is_half_the_machine(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert memory_budget() == int(weight_cache.DEFAULT_SHARE * weight_cache.machine_memory()) > 10**8
    monkeypatch.setenv(BUDGET_ENV, "2.5")
    assert memory_budget() == 2_500_000_000


def test_an_evicted_model_still_in_use_runs_to_the_end(fresh_cache, monkeypatch):
    spec, other = ModelSpec.parse("zoo:baseline"), ModelSpec.parse("zoo:gqa")
    monkeypatch.setenv(BUDGET_ENV, repr(1.5 * estimated_bytes(spec.config()) / 1e9))  # one model at a time
    ids = spec.tokenizer().encode(PROMPT)
    expected = generate(service.load(spec).model, ids, 16).tokens
    running = stream(service.load(spec).model, ids, 16)  # a request half way through its generation
    tokens = [next(running).token for _ in range(8)]
    assert service.load(other).notes[0].params["names"] == "zoo:baseline"  # its weights left the cache
    assert [name for name, _ in fresh_cache.contents()] == ["zoo:gqa"]
    tokens += [step.token for step in running]
    assert tokens == expected


# ----------------------------------------------------------------------------- the spec's tokenizer

class CharTokenizer:
    """A tokenizer of another source: one id per character (its code point mod 100)."""

    def encode(self, text):
        return [ord(c) % 100 for c in text]

    def decode(self, ids):
        return "".join(chr(65 + i % 26) for i in ids)

    def labels(self, ids):
        return [f"c{i}" for i in ids]


def test_text_goes_through_the_tokenizer_of_the_specs_own_scheme(fresh_cache, monkeypatch):
    scheme = spec_module.SCHEMES["untrained"]
    monkeypatch.setitem(spec_module.SCHEMES, "untrained", dataclasses.replace(scheme, tokenizer=lambda name: CharTokenizer()))
    spec, shipped = ModelSpec.parse("untrained:decoder/MHA/rope"), ModelSpec.parse("zoo:baseline")
    assert service.tokenize(spec, "abc") == ([97, 98, 99], [])
    assert service.labels(spec, [1, 2]) == ["c1", "c2"] and service.decode(spec, [0, 1]) == "AB"
    assert service.tokenize(shipped, "abc")[0] == shipped.tokenizer().encode("abc") != [97, 98, 99]
    result, _ = service.analyze_text(spec, "hello")
    assert result.labels == ["c4", "c1", "c8", "c8", "c11"]
    timeline, _ = service.generate_text(spec, "hi", 3)
    assert timeline.prompt_labels == ["c4", "c5"] and all(label.startswith("c") for label in timeline.new_labels)
    assert timeline.text == CharTokenizer().decode([int(label[1:]) for label in timeline.new_labels])


def test_an_analysis_larger_than_the_whole_store_is_shown_and_not_kept(fresh_cache, monkeypatch):
    """Its estimate fell short (here made to): measured once computed, it serves the request that asked, says so, and
    pushes nothing out of the store."""
    monkeypatch.setattr(service.analyses, "analysis_bytes", lambda cfg, tokens: 1)
    monkeypatch.setenv(service.ANALYSIS_BUDGET_ENV, "0.00002")  # 20 kB
    result, notes = service.analyze_text(ModelSpec.parse("zoo:baseline"), PROMPT * 4)
    assert len(result.token_ids) > 8 and "note.analysis_not_kept" in [n.key for n in notes]
    assert service.analyses.ANALYSES.contents() == []
    assert "not stored" in str(next(n for n in notes if n.key == "note.analysis_not_kept"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the C library is not glibc: no malloc_trim to call")
def test_memory_a_request_freed_goes_back_to_the_system():
    """A worker thread allocates 240 MB in small blocks (inside its malloc arena, below the mmap threshold) and
    frees all but one in sixteen, as a request frees its work around what it stores: glibc keeps the freed
    pages until ``release_freed`` (which every request ends with), which hands back most of them."""
    from playground.models.memory import release_freed
    from playground.nn.timing import rss_bytes
    kept = []

    def request():
        blocks = [np.ones(60_000 // 8) for _ in range(4000)]  # 60 KB each
        kept.extend(blocks[::16])

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    before = rss_bytes()
    assert release_freed()
    assert before - rss_bytes() > 100e6
    assert len(kept) == 250 and all(float(b.sum()) == 7500 for b in kept)  # what was kept is intact


def test_the_scale_is_the_worst_smoothed_shortfall_of_the_last_calls():
    from playground.serving.calibration import Calibration

    cal = Calibration(keep=3)
    assert cal.scale("cuda") == 1.0 and cal.calls("cuda") == 0  # nothing measured: the prior alone
    cal.record("cuda:0", 9.0, 19.0)    # took twice the estimate: (19 + 1) / (9 + 1)
    cal.record("cuda", 0.001, 0.2)     # a tiny call does not set the scale: (0.2 + 1) / 1.001
    assert cal.scale("cuda") == pytest.approx(2.0) and cal.calls("cuda") == 2
    assert cal.scale("cpu") == 1.0     # another device keeps its own
    for _ in range(3):                 # the GPU turns out faster than the prior: durations shrink
        cal.record("cuda", 39.0, 3.0)
    assert cal.scale("cuda") == pytest.approx(0.1) and cal.calls("cuda") == 3
    with pytest.raises(ValueError, match="non-negative"):
        cal.record("cuda", -1.0, 2.0)


def test_an_analysis_records_its_time_and_the_next_duration_follows_it(monkeypatch):
    """Each analysis computed (not one served from the store) records its estimate and the time it took; a GPU
    call's duration is the estimate times that scale, with room to spare and the weights' move, capped."""
    from playground.serving import calibration
    from playground.ui.service import analyses, costs
    from playground.models.weight_cache import WeightCache

    fresh = calibration.Calibration()
    monkeypatch.setattr(calibration, "ESTIMATES", fresh)
    monkeypatch.setattr(costs, "ESTIMATES", fresh)
    monkeypatch.setattr(analyses, "ESTIMATES", fresh)
    monkeypatch.setattr(analyses, "ANALYSES", WeightCache(env=service.ANALYSIS_BUDGET_ENV))
    spec = ModelSpec.parse("untrained:decoder/MHA/rope")
    text = "the quick brown fox " * 8
    before = service.gpu_seconds(spec, text, device="cpu")
    result, _ = service.analyze_text(spec, text, device="cpu")
    service.analyze_text(spec, text, device="cpu")  # from the store: nothing ran, nothing recorded
    expected = service.estimate(spec, text, "cpu")["seconds"]
    assert fresh.calls("cpu") == 1
    assert fresh.scale("cpu") == pytest.approx((result.elapsed_ms / 1e3 + 1) / (expected + 1))
    assert service.gpu_seconds(spec, text, device="cpu") == pytest.approx(10 + 1.5 * fresh.scale("cpu") * expected)
    assert before == pytest.approx(10 + 1.5 * expected)
