"""The KV-cache lab's policies (``nn.kv_policies``) and runs (``inspect.kv_lab``) against direct implementations on
the zoo's baseline: the kept sets, the bytes held, the window against the model's own sliding window, every
eviction policy at a budget of the whole text against the full cache, and the quantizers' error bound."""
import numpy as np
import pytest
import torch

from playground.inspect.kv_lab import FULL, compare, run_policy
from playground.nn.cache import cache_shape
from playground.ui.service.kv_lab import run_lab
from playground.nn.kv_policies import GROUP, Policy, PolicyCache, _dequantize, _quantize, kept
from playground.ui import service
from playground.zoo import ModelSpec

SPEC = ModelSpec.parse("zoo:baseline")
TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York; and all the clouds that "
        "lour'd upon our house in the deep bosom of the ocean buried. ") * 3


@pytest.fixture(scope="module")
def model_ids():
    model = service.load(SPEC).model
    return model, SPEC.tokenizer().encode(TEXT)[:96]


def _direct_kept(policy: Policy, n: int, scores: list[float]) -> list[int]:
    """What each policy keeps of n positions, written out plainly."""
    if policy.kind in ("full", "quant") or n <= policy.budget:
        return list(range(n))
    if policy.kind == "window":
        return list(range(n - policy.budget, n))
    if policy.kind == "sinks":
        return list(range(policy.sinks)) + list(range(n - policy.budget + policy.sinks, n))
    recent = list(range(n - policy.recent, n))
    rest = sorted(range(n - policy.recent), key=lambda i: -scores[i])[:policy.budget - policy.recent]
    return sorted(rest) + recent


@pytest.mark.parametrize("policy", [Policy("window", 5), Policy("sinks", 6, sinks=2), Policy("sinks", 4, sinks=0),
                                    Policy("h2o", 7, recent=3), Policy("snapkv", 6, recent=2), Policy("quant", bits=8)])
def test_each_policy_keeps_what_a_direct_implementation_keeps(policy):
    rng = np.random.default_rng(0)
    for n in range(1, 20):
        scores = rng.permutation(n).astype(float).tolist()  # distinct: one right answer
        assert kept(policy, n, torch.tensor(scores)).tolist() == _direct_kept(policy, n, scores), (policy, n)


def test_the_bytes_held_are_the_tensors_allocated(model_ids):
    model, ids = model_ids
    per_token = 2 * model.cfg.n_layer * model.cfg.n_kv_heads * model.cfg.head_dim * 4  # K and V, float32
    run, _ = run_policy(model, ids, Policy("window", 16), None)
    expected = [min(t + 1, 16) * per_token for t in range(len(ids) - 1)]
    assert run.bytes.tolist() == expected
    full, _ = run_policy(model, ids, FULL)
    assert full.bytes.tolist() == [(t + 1) * per_token for t in range(len(ids) - 1)]


def test_a_window_of_w_cached_keys_is_the_models_own_sliding_window_of_w_plus_one(model_ids):
    """The model's sliding window W lets a query see itself and W - 1 keys back; a cache keeping the last W - 1
    positions between steps gives the same next-token distributions, to float32 rounding."""
    model, ids = model_ids
    windowed = service.load(SPEC, window=17).model
    with torch.no_grad():
        direct = windowed(torch.tensor(ids)[None]).logits[0, :-1].float().log_softmax(-1)  # (T - 1, V)
    _, logprobs = run_policy(model, ids, Policy("window", 16))
    assert torch.allclose(logprobs, direct, atol=2e-5)


@pytest.mark.parametrize("policy", [Policy("window", 96), Policy("sinks", 96, sinks=4), Policy("h2o", 96, recent=8),
                                    Policy("snapkv", 96, recent=8, prompt=48)])
def test_at_a_budget_of_the_whole_text_a_policy_is_the_full_cache(model_ids, policy):
    model, ids = model_ids
    full, full_logprobs = run_policy(model, ids, FULL)
    run, logprobs = run_policy(model, ids, policy, full_logprobs)
    assert torch.equal(logprobs, full_logprobs) and run.bytes.tolist() == full.bytes.tolist()
    assert run.kl.max() == 0 and run.agree.all()


def test_streamingllm_without_sinks_is_the_window(model_ids):
    model, ids = model_ids
    window, sinks = compare(model, ids, [Policy("window", 12), Policy("sinks", 12, sinks=0)])[1:]
    assert np.array_equal(window.nll, sinks.nll) and np.array_equal(window.bytes, sinks.bytes)
    assert all(np.array_equal(a, b) for sa, sb in zip(window.kept, sinks.kept) for a, b in zip(sa, sb))


def test_streamingllm_keeps_the_sinks_and_h2o_its_heavy_hitters(model_ids):
    """At the last step StreamingLLM still holds the first positions a window has dropped; H2O holds what the
    layer's heads attended to most, beyond its recent share."""
    model, ids = model_ids
    window, sinks, h2o = compare(model, ids, [Policy("window", 16), Policy("sinks", 16, sinks=4),
                                              Policy("h2o", 16, recent=8)])[1:]
    last = len(ids) - 2
    for layer in range(model.cfg.n_layer):
        assert list(sinks.kept[last][layer][:4]) == [0, 1, 2, 3]
        assert window.kept[last][layer][0] == last - 16
        assert len(h2o.kept[last][layer]) == 17 and h2o.kept[last][layer][-9:].tolist() == list(range(last - 8, last + 1))


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_values_come_back_within_half_a_step(bits):
    x = torch.randn(1, 2, GROUP, 16) * 3
    for dim in (2, 3):  # keys per channel over the group's tokens, values per token over channels
        codes, scale, zero = _quantize(x, bits, dim)
        back = _dequantize(codes, scale, zero, bits)
        assert (back - x).abs().le(scale.float() / 2 + 1e-3 * scale.float() + 1e-6).all()
        assert codes.dtype == torch.uint8 and codes.numel() == x.numel() // (8 // bits)


def test_a_quantized_cache_holds_fewer_bytes_and_its_last_group_in_full(model_ids):
    model, ids = model_ids
    full, int8, int4 = compare(model, ids, [Policy("quant", bits=8), Policy("quant", bits=4)])
    whole = 2 * GROUP - 1  # the step after which two whole groups are held, none in full precision
    assert int8.bytes[whole] < 0.3 * full.bytes[whole] and int4.bytes[whole] < 0.6 * int8.bytes[whole]
    assert int8.kl.mean() < int4.kl.mean() < 0.05 and int8.agree.mean() > 0.95
    cache = PolicyCache(Policy("quant", bits=8), n_kv_heads=2, head_dim=8)
    k = torch.randn(1, 2, GROUP + 3, 8)
    keys, _ = cache.update(torch.arange(GROUP + 3), k, k.clone())
    assert len(cache.groups) == 1 and torch.equal(keys[:, :, GROUP:], k[:, :, GROUP:])  # the residual, exact


def test_models_the_lab_cannot_read_are_refused_with_why():
    for spec, words in (("untrained:decoder/MHA/alibi", "ALiBi"), ("zoo:rwkv", "decoder-only")):
        with pytest.raises(ValueError, match=words):
            run_policy(service.load(ModelSpec.parse(spec)).model, [1, 2, 3], FULL)
    with pytest.raises(ValueError, match="budget"):
        Policy("window", 0)


@pytest.mark.parametrize("policy", [FULL, Policy("window", 16), Policy("sinks", 16, sinks=4),
                                    Policy("h2o", 16, recent=8), Policy("snapkv", 16, recent=4, prompt=40),
                                    Policy("quant", bits=8), Policy("quant", bits=4)])
def test_each_policys_measured_bytes_are_its_formula(model_ids, policy):
    from playground.nn.kv_policies import formula_bytes

    model, ids = model_ids
    run, _ = run_policy(model, ids, policy)
    cfg = model.cfg
    assert run.bytes.tolist() == [cfg.n_layer * formula_bytes(policy, t + 1, cache_shape(cfg))
                                  for t in range(len(ids) - 1)]


@pytest.mark.parametrize("policy", [Policy("window", 16), Policy("h2o", 16, recent=8), Policy("quant", bits=4)])
def test_an_mla_models_cache_is_one_latent_row_a_position_under_every_policy(policy):
    """MLA caches d_c + d_r numbers a position a layer (no value): each policy's measured bytes are its formula on
    that shape, and at a budget of the whole text every policy but quantization gives the full cache's logits."""
    from playground.nn.kv_policies import formula_bytes

    model = service.load(ModelSpec.parse("untrained:decoder/MLA/rope")).model
    cfg, ids = model.cfg, SPEC.tokenizer().encode(TEXT)[:72]
    assert cache_shape(cfg) == (1, cfg.kv_lora_rank + cfg.qk_rope_dim, 0)
    full, full_logprobs = run_policy(model, ids, FULL)
    run, logprobs = run_policy(model, ids, policy, full_logprobs)
    assert run.bytes.tolist() == [cfg.n_layer * formula_bytes(policy, t + 1, cache_shape(cfg))
                                  for t in range(len(ids) - 1)]
    assert full.bytes[-1] == cfg.n_layer * (len(ids) - 1) * (cfg.kv_lora_rank + cfg.qk_rope_dim) * 4
    whole = Policy(policy.kind, len(ids), recent=policy.recent) if policy.kind != "quant" else FULL
    _, same = run_policy(model, ids, whole, full_logprobs)
    assert torch.allclose(same, full_logprobs, atol=1e-5)


def test_another_architecture_runs_the_same_text_with_its_own_full_cache_against_the_first_models(model_ids):
    """compare(..., others=): MQA's model reads the same ids with its full cache; its bytes are its own (a quarter of
    MHA's at 4 heads), and what it costs is measured against the MHA model's full cache."""
    model, ids = model_ids
    mqa = service.load(ModelSpec.parse("zoo:mqa")).model
    runs = compare(model, ids[:40], [Policy("quant", bits=8)], others={"MQA": mqa})
    assert [r.name for r in runs] == ["full", "int8", "MQA"]
    full, _, other = runs
    assert other.bytes.tolist() == [(full.bytes[t] // 4) for t in range(39)] == [other.formula(t + 1) for t in range(39)]
    alone, mqa_logprobs = run_policy(mqa, ids[:40], FULL)
    assert np.allclose(other.nll, alone.nll) and other.kl.mean() > 0  # its own predictions, against MHA's
    assert other.summary(full)["policy"] == "MQA" and other.summary(full)["bytes_share"] == 0.25


def test_the_lab_compares_architectures_by_spec_and_refuses_what_it_cannot_read():
    text = "To be, or not to be, that is the question. " * 6
    result, _ = run_lab(SPEC, text, ["int4"], architectures=["zoo:gqa", "zoo:baseline"], tokens=32)
    assert [r.name for r in result.runs] == ["full", "int4", "GQA · zoo:gqa"]  # the model itself is the full cache
    result, _ = run_lab(SPEC, text, [], architectures=["zoo:mqa"], tokens=32)
    assert [r.name for r in result.runs] == ["full", "MQA · zoo:mqa"]
    with pytest.raises(ValueError, match="zoo:alibi"):
        run_lab(SPEC, text, ["int4"], architectures=["zoo:alibi"], tokens=32)
    with pytest.raises(ValueError, match="window, sinks"):
        run_lab(SPEC, text, [], tokens=32)


def test_a_budget_sweep_gives_each_evicting_policy_three_budgets_and_the_chart_a_curve_each():
    from playground import plots
    from playground.inspect.kv_lab import lab_policies

    policies = lab_policies(["window", "h2o", "int4", "int8"], 64, budget=0.25, sweep=True)
    assert [p.label for p in policies] == ["window 8", "window 16", "window 32", "H2O 8 (4 recent)",
                                           "H2O 16 (8 recent)", "H2O 32 (16 recent)", "int8", "int4"]
    assert len(lab_policies(["window"], 64, budget=0.75, sweep=True)) == 3  # 24, 48 and the whole text (64)
    assert len(lab_policies(["window"], 64, budget=1.0, sweep=True)) == 2  # twice the whole text is the text
    text = "To be, or not to be, that is the question. " * 6
    result, _ = run_lab(SPEC, text, ["window", "int4"], architectures=["zoo:mqa"], tokens=32, sweep=True)
    full = result.runs[0]
    points = [run.summary(full) for run in result.runs]
    assert [p["family"] for p in points] == ["full", "window", "window", "window", "quant", "MQA · zoo:mqa"]
    shares = [p["bytes_share"] for p in points if p["family"] == "window"]
    assert shares == sorted(shares) and len(set(shares)) == 3  # more budget, more bytes held
    fig = plots.kv_tradeoff(points, "t", family_names={"window": "window"})
    assert [(trace.name, len(trace.x), trace.mode) for trace in fig.data] == [
        ("full", 1, "markers+text"), ("window", 3, "lines+markers+text"), ("quant", 1, "markers+text"),
        ("MQA · zoo:mqa", 1, "markers+text")]
    assert list(fig.data[1].x) == sorted(fig.data[1].x)  # a curve, drawn along the bytes


def _hub(name: str):
    """A tiny ``name`` model written by transformers, through the playground's attention function."""
    from playground.bench import hf_archs
    from playground.models.hf import NAME, HubModel

    ref = hf_archs.build(name)
    hf = hf_archs.auto_class("causal").from_config(hf_archs.config(name), attn_implementation=NAME)
    hf.load_state_dict(ref.state_dict())
    return ref.float().eval(), HubModel.wrap(hf.float().eval(), "auto")


def test_the_lab_reads_a_hub_model_through_transformers_own_cache_under_each_policy():
    """A Llama written by transformers: its full cache gives transformers' own next-token distributions (eager, no
    cache); a window of W keeps exactly the last W positions, and every policy's bytes are its formula."""
    from playground.nn.kv_policies import formula_bytes

    ref, model = _hub("llama")
    ids = torch.randint(3, 96, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    full, full_logprobs = run_policy(model, ids, FULL)
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)  # (T - 1, V)
    assert torch.allclose(full_logprobs, want, atol=1e-4)
    cfg = model.cfg
    shape = (cfg.n_kv_heads, cfg.head_dim, cfg.head_dim)
    for policy in (Policy("window", 8), Policy("h2o", 8, recent=4), Policy("quant", bits=4)):
        run, _ = run_policy(model, ids, policy, full_logprobs)
        assert run.bytes.tolist() == [cfg.n_layer * formula_bytes(policy, t + 1, shape) for t in range(len(ids) - 1)]
        if policy.kind == "window":
            assert [list(k[0]) for k in run.kept[-3:]] == [list(range(t - 8, t + 1)) for t in (26, 27, 28)]
            assert run.kl.mean() > 0
    _, whole = run_policy(model, ids, Policy("window", len(ids)), full_logprobs)
    assert torch.allclose(whole, full_logprobs, atol=1e-5)  # a window as long as the text is the full cache


def test_the_lab_refuses_a_hub_model_with_sliding_window_layers():
    _, model = _hub("mistral")
    with pytest.raises(ValueError, match="full attention"):
        run_policy(model, [3, 4, 5], FULL)


def test_the_lab_runs_an_operators_pretrained_decoder_by_its_spec(tmp_path):
    """local:<name>: a Llama checkpoint in the operator's folder, through the service as the page runs it; a
    Mistral (sliding-window layers) is refused by name."""
    from pretrained_fixtures import any_models

    with any_models(tmp_path, ("llama", "mistral"), "lab"):
        text = "To be, or not to be, that is the question. " * 3
        result, _ = run_lab(ModelSpec.parse("local:lab-llama"), text, ["window", "int8"], tokens=24)
        assert [r.name for r in result.runs] == ["full", "window 6", "int8"]
        assert result.runs[1].bytes[-1] < result.runs[0].bytes[-1]
        with pytest.raises(ValueError, match="local:lab-mistral"):
            run_lab(ModelSpec.parse("local:lab-mistral"), text, ["window"], tokens=24)
