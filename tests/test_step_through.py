"""Step through one head: the steps reproduce the model's weights and its attention sublayer's output."""
import json

import numpy as np
import pytest
import torch

from playground.config import ModelConfig, from_name
from playground.errors import InputError
from playground.inspect.step_through import kv_groups, layer_steps, step_through
from playground import zoo
from playground.models import EncoderDecoder, build_model

IDS = [5, 17, 3, 17, 9, 40, 5, 17, 2, 11]
SOURCE = [7, 8, 9, 10, 11, 12]


def small(family="decoder", **overrides) -> ModelConfig:
    base = dict(family=family, vocab_size=64, context_length=32, n_layer=2, d_model=32, n_heads=4, d_ff=64)
    return ModelConfig(**{**base, **overrides})


def model_of(cfg: ModelConfig):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # biases start at 0: give them values, so a missed bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


def run(model, kind, prefix_len=0, capture=False):
    """One forward pass as the page runs it; returns its records."""
    with torch.no_grad():
        if isinstance(model, EncoderDecoder):
            return model(torch.tensor([SOURCE]), torch.tensor([IDS]), capture=capture).attentions
        return model(torch.tensor([IDS]), prefix_len=prefix_len, capture=capture).attentions


def sublayer_output(model, kind, layer, prefix_len=0):
    """The attention sublayer's output (T, d), read with a forward hook on the Attention module."""
    if kind == "encoder_self":
        attn = model.encoder.blocks[layer].self_attn
    elif kind == "cross":
        attn = model.decoder.blocks[layer].cross_attn
    else:
        attn = model.decoder.blocks[layer].self_attn
    out = []
    handle = attn.register_forward_hook(lambda module, args, output: out.append(output[0].double().numpy()))
    try:
        run(model, kind, prefix_len)
    finally:
        handle.remove()
    return out[0], attn.o_proj.bias


def check_layer(model, kind, layer, prefix_len=0):
    cfg = model.cfg
    expected, o_bias = sublayer_output(model, kind, layer, prefix_len)
    records = [r for r in run(model, kind, prefix_len, capture=True) if r.kind == kind and r.layer == layer]
    assert len(records) == 1
    recorded = records[0].weights[0].double().numpy()  # (nh, Tq, Tk)
    total = np.zeros_like(expected)
    every_head = layer_steps(model, IDS, layer, kind=kind, prefix_len=prefix_len,
                             source_ids=SOURCE if isinstance(model, EncoderDecoder) else None)
    assert [steps.head for steps in every_head] == list(range(cfg.n_heads))
    for head, steps in enumerate(every_head):
        assert np.abs(steps["weights"] - recorded[head]).max() < 1e-6
        total += steps["write"]
    if o_bias is not None:
        total += o_bias.detach().double().numpy()
    assert np.abs(total - expected).max() < 1e-5


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])  # MHA, GQA, MQA
@pytest.mark.parametrize("position", ["rope", "alibi", "learned", "sinusoidal", "none"])
def test_the_heads_writes_sum_to_the_decoder_layer(n_kv_heads, position):
    model = model_of(small(n_kv_heads=n_kv_heads, position=position))
    for layer in range(model.cfg.n_layer):
        check_layer(model, "self", layer)


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_the_heads_writes_sum_to_the_prefix_layer(position):
    model = model_of(small("prefix", n_kv_heads=2, position=position, norm="rmsnorm", bias=False))
    check_layer(model, "self", 1, prefix_len=4)
    masked = step_through(model, IDS, 1, 0, prefix_len=4)["masked"]
    allowed = np.isfinite(masked)
    assert allowed[:4, :4].all() and not allowed[:4, 4:].any()  # the prefix sees itself both ways, nothing after
    assert (allowed[4:] == np.tril(np.ones((len(IDS), len(IDS)), bool))[4:]).all()


@pytest.mark.parametrize("kind", ["encoder_self", "decoder_self", "cross"])
def test_the_heads_writes_sum_to_every_layer_of_the_post_norm_encoder_decoder(kind):
    model = model_of(from_name("vaswani-tiny", vocab_size=64, context_length=32, d_model=32, d_ff=64))
    for layer in range(model.cfg.n_layer):
        check_layer(model, kind, layer)
    steps = step_through(model, IDS, 0, 1, kind=kind, source_ids=SOURCE)
    assert steps.step("x").formula.endswith("(post-norm)")
    n_queries = len(SOURCE) if kind == "encoder_self" else len(IDS)
    n_keys = len(IDS) if kind == "decoder_self" else len(SOURCE)
    assert steps["scores"].shape == (n_queries, n_keys)
    assert ("memory" in steps.names) == (kind == "cross")


@pytest.mark.parametrize("overrides", [dict(backend="explicit"), dict(sliding_window=3), dict(dropout=0.2)])
def test_the_writes_sum_to_the_layer_whatever_the_kernel_window_or_dropout(overrides):
    model = model_of(small(n_kv_heads=2, **overrides))
    check_layer(model, "self", 1)
    if overrides.get("sliding_window"):
        masked = step_through(model, IDS, 0, 0)["masked"]
        assert np.isfinite(masked).sum(axis=1).tolist() == [1, 2] + [3] * (len(IDS) - 2)
    model.train()  # steps are taken at inference (dropout off), and the model keeps its mode
    assert np.isfinite(step_through(model, IDS, 0, 0)["write"]).all() and model.training


@pytest.mark.parametrize("name, kind", [("gqa", "self"), ("alibi", "self"), ("encdec", "cross")])
def test_the_writes_sum_to_the_layer_of_shipped_models(name, kind):
    if name not in zoo.available():
        pytest.skip(f"zoo model {name} is not built")
    model = zoo.load(name).eval()
    check_layer(model, kind, model.cfg.n_layer - 1)


def test_the_steps_a_rope_gqa_head_walks_through():
    model = model_of(small(n_kv_heads=2, position="rope"))
    steps = step_through(model, IDS, 1, 3, query=6)
    assert steps.names == ["x", "q", "k", "v", "q_rot", "k_rot", "scores", "scaled", "masked", "weights",
                           "output", "write"]
    assert (steps.kv_head, steps.shared_by) == (1, [2, 3])
    T, hs, d = len(IDS), 8, 32
    shapes = {"x": (T, d), "q": (T, hs), "k_rot": (T, hs), "scores": (T, T), "weights": (T, T),
              "output": (T, hs), "write": (T, d)}
    for name, shape in shapes.items():
        assert steps[name].shape == shape and steps[name].ndim == len(steps.step(name).axes)
    # RoPE rotates: position 0 is unchanged, later positions are not; a rotation keeps each vector's length
    assert np.allclose(steps["q"][0], steps["q_rot"][0], atol=1e-6)
    assert not np.allclose(steps["q"][5], steps["q_rot"][5], atol=1e-3)
    assert np.allclose(np.linalg.norm(steps["k"], axis=1), np.linalg.norm(steps["k_rot"], axis=1), atol=1e-5)
    # a causal row: weights after the query are 0 and the row sums to 1
    row = steps.row("weights")
    assert row[7:].max() == 0 and abs(row.sum() - 1) < 1e-12
    # the other query head of the same K/V head reads the very same keys and values
    other = step_through(model, IDS, 1, 2)
    assert np.array_equal(other["k"], steps["k"]) and np.array_equal(other["v"], steps["v"])
    assert not np.array_equal(other["q"], steps["q"])


def test_the_steps_as_json():
    steps = step_through(model_of(small(n_kv_heads=1)), IDS, 0, 2, query=3)
    data = json.loads(json.dumps(steps.to_dict(), allow_nan=False))
    assert (data["head"], data["kv_head"], data["shared_by"], data["query"]) == (2, 0, [0, 1, 2, 3], 3)
    by_name = {s["name"]: s for s in data["steps"]}
    assert by_name["masked"]["array"][0][1] is None and by_name["weights"]["array"][0][1] == 0
    assert by_name["masked"]["axes"] == ["query token", "key token"]
    assert np.allclose(np.array(by_name["write"]["array"]), steps["write"])


def test_alibi_adds_each_heads_distance_penalty():
    model = model_of(small(position="alibi"))
    slopes = [0.25, 0.0625]  # 2^(-8/4 * (h + 1)) for heads 0 and 1
    for head, slope in enumerate(slopes):
        steps = step_through(model, IDS, 0, head)
        distance = np.abs(np.subtract.outer(np.arange(len(IDS)), np.arange(len(IDS))))
        assert np.allclose(steps["biased"] - steps["scaled"], -slope * distance, atol=1e-6)
        assert "q_rot" not in steps.names


def test_kv_groups():
    assert kv_groups(8, 8) == [[h] for h in range(8)]
    assert kv_groups(8, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert kv_groups(8, 1) == [list(range(8))]


@pytest.mark.parametrize("args, code", [
    (dict(layer=2, head=0), "error.step_layer"),
    (dict(layer=-1, head=0), "error.step_layer"),
    (dict(layer=0, head=4), "error.step_head"),
    (dict(layer=0, head=1.5), "error.step_head"),
    (dict(layer=0, head=0, query=len(IDS)), "error.step_query"),
    (dict(layer=0, head=0, kind="cross"), "error.step_kind"),
])
def test_out_of_range_choices_name_the_valid_range(args, code):
    model = model_of(small())
    with pytest.raises(InputError) as info:
        step_through(model, IDS, **args)
    assert info.value.code == code and isinstance(info.value, ValueError)
    if code != "error.step_kind":
        assert "0 to" in str(info.value)


def test_models_without_heads_and_missing_tokens_are_refused():
    with pytest.raises(InputError) as info:
        step_through(model_of(small("rwkv", position="none")), IDS, 0, 0)
    assert info.value.code == "error.step_family"
    with pytest.raises(InputError) as info:
        step_through(model_of(small()), [], 0, 0)
    assert info.value.code == "error.step_ids"
    encdec = model_of(from_name("vaswani-tiny", vocab_size=64, context_length=32, d_model=32, d_ff=64))
    with pytest.raises(InputError) as info:
        step_through(encdec, IDS, 0, 0)
    assert info.value.code == "error.step_source"


@pytest.mark.parametrize("kind", ["gpt2", "qwen2", "mistral"])
def test_the_heads_writes_sum_to_a_pretrained_layer(hf_checkpoint, kind):
    """Checkpoints written by transformers, opened through its own classes: GPT-2 (fused Conv1D c_attn and c_proj,
    biases everywhere, learned positions), Qwen2 (q/k/v biases, no o_proj bias, RoPE theta 1e6), Mistral (GQA, a
    sliding window shorter than IDS). Every head's steps end in the recorded weights, and the heads' writes plus the
    output bias equal what the attention module returned in transformers' forward."""
    from playground.inspect.hub_steps import hub_layer_steps
    from playground.models.hf.model import OUTPUT_PROJECTIONS
    from playground.models.pretrained import load_folder

    model, _ = load_folder(hf_checkpoint(kind))
    modules = [m for m in model.hf.modules() if hasattr(m, "layer_idx") and hasattr(m, "scaling")]
    returned = {}

    def keep(module, args, out):  # the attention module's output, after its output projection: (T, d)
        returned[module.layer_idx] = out[0][0]
    handles = [m.register_forward_hook(keep) for m in modules]
    with torch.no_grad():
        records = model(torch.tensor([IDS]), capture=True).attentions
    for h in handles:
        h.remove()
    assert len(modules) == len(records) == model.cfg.n_layer
    for layer, module in enumerate(modules):
        projection = next(c for n, c in module.named_children() if n in OUTPUT_PROJECTIONS)
        total = np.zeros(returned[layer].shape)
        every_head = hub_layer_steps(model, IDS, layer)
        assert [steps.head for steps in every_head] == list(range(model.cfg.n_heads))
        for head, steps in enumerate(every_head):
            assert np.abs(steps["weights"] - records[layer].weights[0, head].double().numpy()).max() < 1e-6
            total += steps["write"]
        if projection.bias is not None:
            total += projection.bias.detach().double().numpy()
        assert np.abs(total - returned[layer].double().numpy()).max() < 1e-5
