"""Any transformers architecture through the playground's one attention function, against transformers' own eager path.

Each tiny checkpoint (``hf_archs``: random weights, written by transformers) runs twice: in eager attention with
``output_attentions`` (the reference) and wrapped in ``HubModel`` with the playground's attention function. The
logits must agree, and every record's weights, rebuilt from q, k, the rule and the log-sum-exp, must equal the
reference's weights of the same kind and layer.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from playground.bench import hf_archs
from conftest import require

require("transformers", "pip install -r requirements-dev.txt")

ATOL = 1e-5


def _wrapped(name: str, backend: str = "auto"):
    from playground.models.hf import NAME, HubModel

    ref = hf_archs.build(name)
    _, task, _ = hf_archs.ARCHS[name]
    hf = hf_archs.auto_class(task).from_config(hf_archs.config(name), attn_implementation=NAME)
    hf.load_state_dict(ref.state_dict())
    return ref, HubModel.wrap(hf.float().eval(), backend)


def _inputs(name: str, batch: int = 1, T: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 96, (batch, T), generator=g)
    tgt = torch.randint(3, 96, (batch, 7), generator=g) if hf_archs.ARCHS[name][1] == "seq2seq" else None
    return ids, tgt


def _reference(ref, ids, tgt, mask=None) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    with torch.no_grad():
        if tgt is not None:
            r = ref(input_ids=ids, decoder_input_ids=tgt, attention_mask=mask, output_attentions=True)
            return r.logits, {"encoder_self": list(r.encoder_attentions), "decoder_self": list(r.decoder_attentions),
                              "cross": list(r.cross_attentions)}
        r = ref(input_ids=ids, attention_mask=mask, output_attentions=True)
        return r.logits, {"self": [a for a in r.attentions if a is not None]}


def _capture(model, ids, tgt, mask=None):
    with torch.no_grad():
        return model(ids, tgt, mask, capture=True)


@pytest.mark.parametrize("name", list(hf_archs.ARCHS))
def test_logits_and_every_weight_equal_transformers_eager(name):
    ref, model = _wrapped(name)
    ids, tgt = _inputs(name)
    logits, weights = _reference(ref, ids, tgt)
    out = _capture(model, ids, tgt)
    assert (out.logits - logits).abs().max() < ATOL
    kinds = {}
    for rec in out.attentions:
        kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
        expected = weights[rec.kind][rec.layer]
        assert rec.weights.shape == expected.shape, (rec.kind, rec.layer)
        assert (rec.weights - expected).abs().max() < ATOL, (rec.kind, rec.layer, rec.kernel)
        assert rec.max_abs_diff < 1e-4  # sum_j weight v_j against the kernel's own output
    assert kinds == {kind: len(ws) for kind, ws in weights.items()}


@pytest.mark.parametrize("backend", ["explicit", "math", "flash"])
@pytest.mark.parametrize("name", ["gpt_oss", "t5", "modernbert"])
def test_every_cpu_kernel_gives_the_same_weights(name, backend):
    ref, model = _wrapped(name, backend)
    ids, tgt = _inputs(name)
    _, weights = _reference(ref, ids, tgt)
    for rec in _capture(model, ids, tgt).attentions:
        assert rec.kernel == backend
        assert (rec.weights - weights[rec.kind][rec.layer]).abs().max() < ATOL


def _drop(rec, **changes):
    """The record's source with one feature left out, its lse computed again without it."""
    from playground.nn.rebuild import AttentionSource

    src = dataclasses.replace(rec.source, lse=None, **changes)
    assert isinstance(src, AttentionSource)
    return src.dense()


@pytest.mark.parametrize("name, feature, changes", [
    ("gpt_oss", "sinks", {"sinks": None}),
    ("gemma2", "soft-capping", {"softcap": None}),
    ("t5", "relative position bias", {"rel_bias": None}),
])
def test_a_feature_left_out_would_be_seen(name, feature, changes):
    """Each feature the tiny configs exercise changes the weights: the exactness test fails without it."""
    ref, model = _wrapped(name)
    ids, tgt = _inputs(name)
    _, weights = _reference(ref, ids, tgt)
    recs = [r for r in _capture(model, ids, tgt).attentions if r.kind != "cross"]
    worst = max(float((_drop(r, **changes) - weights[r.kind][r.layer]).abs().max()) for r in recs)
    assert worst > 1e-3, feature


def test_alternating_sliding_and_full_layers_are_read_from_the_mask():
    ref, model = _wrapped("gemma3")
    ids, _ = _inputs("gemma3", T=12)
    recs = _capture(model, ids, None).attentions
    assert [r.source.rule.window for r in recs] == [5, 5, 5, 0]
    assert [r.layer_type for r in recs] == ["sliding:5"] * 3 + ["full"]
    assert not bool(recs[0].mask[11, 0]) and bool(recs[3].mask[11, 0])


def test_nope_and_hybrid_layers_are_labelled():
    _, smol = _wrapped("smollm3")
    labels = [r.layer_type for r in _capture(smol, *_inputs("smollm3")).attentions]
    assert labels == [None, None, None, "nope"]
    _, granite = _wrapped("granitemoehybrid")
    recs = _capture(granite, *_inputs("granitemoehybrid")).attentions
    assert [(r.layer, r.layer_type) for r in recs] == [(0, "hybrid:1:3")]


def test_mla_keeps_its_query_key_width_apart_from_the_values():
    """DeepSeek-V2's MLA hands the kernel q and k of nope + rope dims (16 + 8) and v of 16: the record keeps them so."""
    ref, model = _wrapped("deepseek_v2")
    ids, _ = _inputs("deepseek_v2")
    rec = _capture(model, ids, None).attentions[0]
    v, out = rec.check
    assert rec.source.q.shape[-1] == rec.source.k.shape[-1] == 24 and v.shape[-1] == out.shape[-1] == 16
    assert rec.source.score_scale == pytest.approx(24 ** -0.5)


def test_encoder_only_attention_is_bidirectional_and_cross_sees_every_source_token():
    _, bert = _wrapped("bert")
    rec = _capture(bert, *_inputs("bert")).attentions[0]
    assert rec.source.rule.kind == "bidirectional" and bool(rec.mask.all())
    _, marian = _wrapped("marian")
    ids, tgt = _inputs("marian")
    cross = [r for r in _capture(marian, ids, tgt).attentions if r.kind == "cross"]
    assert cross[0].weights.shape == (1, 4, tgt.shape[1], ids.shape[1])


@pytest.mark.parametrize("name", ["qwen3", "bert", "bart"])
def test_a_padded_batch_rebuilds_the_rows_of_real_tokens(name):
    ref, model = _wrapped(name)
    ids, tgt = _inputs(name, batch=2)
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0  # the second sequence is 4 tokens shorter (right padding)
    logits, weights = _reference(ref, ids, tgt, mask)
    out = _capture(model, ids, tgt, mask)
    real = mask[1].bool()
    rows = slice(None) if tgt is not None else real
    assert (out.logits[1][rows] - logits[1][rows]).abs().max() < ATOL
    for rec in out.attentions:
        assert (rec.source.key_valid is not None) == (rec.kind != "decoder_self")  # the decoder's input is unpadded
        w, expected = rec.weights[1], weights[rec.kind][rec.layer][1]
        keys = real if rec.kind != "decoder_self" else slice(None)
        qrows = real if rec.kind in ("self", "encoder_self") else slice(None)
        assert (w[:, qrows][..., keys] - expected[:, qrows][..., keys]).abs().max() < ATOL


def test_a_chunked_mask_is_refused_by_name():
    from transformers.masking_utils import chunked_causal_mask_function

    from playground.models.hf.mask import UnsupportedMask, read_rule

    with pytest.raises(UnsupportedMask, match="chunked or custom"):
        read_rule(chunked_causal_mask_function(4, torch.zeros(1, dtype=torch.long)), 0, 16, 0, 16)


def test_windows_are_read_off_the_mask_function():
    from transformers.masking_utils import (causal_mask_function, sliding_window_bidirectional_mask_function,
                                            sliding_window_causal_mask_function)

    from playground.models.hf.mask import read_rule

    assert read_rule(causal_mask_function, 0, 20, 0, 20).kind == "causal"
    rule = read_rule(sliding_window_causal_mask_function(6), 0, 20, 0, 20)
    assert (rule.kind, rule.window) == ("causal", 6)
    rule = read_rule(sliding_window_bidirectional_mask_function(3), 0, 20, 0, 20)  # keys at most 3 away either side
    assert (rule.kind, rule.window) == ("bidirectional", 4)
    rule = read_rule(causal_mask_function, 19, 1, 0, 20)  # one decoding query over a cache of 20
    assert (rule.kind, rule.window) == ("causal", 0)


GENERATORS = [n for n, (_, task, _) in hf_archs.ARCHS.items() if task != "masked"]


@pytest.mark.parametrize("name", GENERATORS)
def test_greedy_generation_with_the_cache_equals_transformers_generate(name):
    from playground.inspect.generation import generate

    ref, model = _wrapped(name)
    ids, _ = _inputs(name)
    got = generate(model, ids[0].tolist(), 6, record=True)
    kw = dict(decoder_start_token_id=model.start_id, forced_eos_token_id=None) if model.encoder_decoder else {}
    with torch.no_grad():
        want = ref.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, **kw)[0]
    want = want[1:] if model.encoder_decoder else want[ids.shape[1]:]
    assert got.tokens == want.tolist()
    assert all(step.cache_bytes > 0 for step in got.steps)


def test_the_cache_bytes_are_transformers_own_tensors():
    """Gemma-3-shaped: the sliding layers' cache stops at the window, so the bytes fall once the prompt passes it."""
    from playground.inspect.generation import stream

    _, model = _wrapped("gemma3")
    ids, _ = _inputs("gemma3", T=12)
    seen = []
    for step in stream(model, ids[0].tolist(), 3):
        layers = model.past.layers
        seen.append((step.cache_bytes, sum(layer.keys.nbytes + layer.values.nbytes for layer in layers)))
        assert step.cache_bytes_allocated >= step.cache_bytes
    assert all(measured == direct for measured, direct in seen)
    per_token_full = 2 * 2 * 16 * 4  # K and V, 2 K/V heads x 16 dims, float32, one full layer
    assert seen[0][0] < 4 * 13 * per_token_full  # three of four layers hold at most their window of 5 keys


def test_a_model_spread_over_cpu_and_disk_gives_the_figures_of_the_model_loaded_whole(tmp_path):
    """device_map with half the layers offloaded to disk (accelerate's big-model loading): the same analysis."""
    require("accelerate", "pip install -r requirements-dev.txt")
    import numpy as np

    from playground.bench.hf_folder import byte_level_bpe
    from playground.inspect.analysis import analyze
    from playground.models.hf.loader import open_folder

    name = "qwen3"
    model_type, task, fields = hf_archs.ARCHS[name]
    hf_archs.ARCHS["qwen3-4"] = (model_type, task, dict(fields, num_hidden_layers=4))
    try:
        hf_archs.save("qwen3-4", tmp_path / "ckpt")
    finally:
        del hf_archs.ARCHS["qwen3-4"]
    (tmp_path / "ckpt" / "tokenizer.json").write_text(byte_level_bpe(["the keys and values"] * 3, 300, ["<s>"]))
    whole, _ = open_folder(tmp_path / "ckpt")
    device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
                  "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu",
                  "lm_head": "cpu"}
    spread, _ = open_folder(tmp_path / "ckpt", device_map=device_map, offload_folder=tmp_path / "offload")
    assert spread.hf.hf_device_map["model.layers.3"] == "disk"
    assert all(p.device.type == "meta" for p in spread.hf.model.layers[3].parameters())  # read from disk per call
    ids = list(range(3, 40))
    a, b = analyze(whole, ids), analyze(spread, ids)
    assert len(a.maps) == len(b.maps) == 4
    for x, y in zip(a.maps, b.maps):
        np.testing.assert_array_equal(x.weights, y.weights)
        np.testing.assert_array_equal(x.overview.cells("max"), y.overview.cells("max"))


def test_a_spread_model_must_fit_every_device_together(tmp_path, monkeypatch):
    """The budget of a device_map load counts each device (GPUs' free memory, the host's budget, the offload disk):
    weights past their sum are refused before a tensor is read, naming each device's room."""
    from playground.models.hf import loader
    from playground.models.pretrained import budget

    hf_archs.save("qwen3", tmp_path / "ckpt")
    need = budget.parameters_in_folder(tmp_path / "ckpt") * 4
    monkeypatch.setattr(budget.shutil, "disk_usage", lambda path: type("Usage", (), {"free": need // 3})())
    room = budget.spread_budget(tmp_path / "offload", budget=need // 3)
    assert room["cpu"] == need // 3 and room["disk"] == need // 3 and sum(room.values()) < need
    with pytest.raises(ValueError, match="more than every device together") as err:
        loader.check_spread(tmp_path / "ckpt", torch.float32, tmp_path / "offload", budget=need // 3)
    assert "cpu" in str(err.value) and "disk" in str(err.value)
    loader.check_spread(tmp_path / "ckpt", torch.float32, tmp_path / "offload", budget=need)  # cpu + disk: enough
    loader.check_spread(tmp_path / "ckpt", torch.bfloat16, tmp_path / "offload", budget=need // 3)  # half the bytes


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablating_a_head_inside_the_attention_function_equals_a_hook_on_o_proj(mode):
    """Head ablation of a Hub model happens where the attention function hands y^h back; the same ablation done
    independently, by a pre-hook on transformers' own o_proj, gives the same loss changes."""
    from playground.inspect.ablation import ablate_heads

    _, model = _wrapped("qwen3")
    ids, _ = _inputs("qwen3", T=16)
    got = ablate_heads(model, ids[0].tolist(), mode=mode)
    targets = torch.cat([ids[:, 1:], torch.zeros_like(ids[:, :1])], dim=1)
    scored = torch.ones_like(ids, dtype=torch.bool)
    scored[:, -1] = False
    hs = 16
    for layer in range(2):
        for head in range(4):
            def hook(module, args, h=head):
                y = args[0].clone()  # (B, T, nh * hs)
                cols = slice(h * hs, (h + 1) * hs)
                y[..., cols] = 0.0 if mode == "zero" else y[..., cols].mean(dim=1, keepdim=True)
                return (y, *args[1:])
            handle = model.hf.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(hook)
            try:
                with torch.no_grad():
                    loss = float(torch.nn.functional.cross_entropy(model(ids).logits[scored].float(), targets[scored]))
            finally:
                handle.remove()
            assert abs((loss - got.loss) - got.d_loss[layer, head]) < 1e-5


@pytest.mark.parametrize("name", ["qwen3", "gemma2", "gpt2", "opt", "gpt_neox", "lfm2"])
def test_the_logit_lens_last_layer_is_the_models_own_output(name):
    """The lens reads each block's output through the model's own final norm and head: at the last block that is the
    model's output distribution (a wrong norm or head found by name would not be)."""
    from playground.inspect.logit_lens import layer_logits

    _, model = _wrapped(name)
    ids, _ = _inputs(name)
    lens = layer_logits(model, ids)
    with torch.no_grad():
        logits = model(ids).logits
    assert lens.shape[0] == model.cfg.n_layer
    assert (lens[-1] - logits).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_value_norms_of_a_hub_model_equal_kobayashis_formula_on_transformers_eager_forward(kind, tmp_path):
    """The norms from the records equal A^h_ij ||(x_j W_V^h + b_V^h) W_O^h|| computed here from transformers' eager
    forward: its attentions, each attention module's input and its own v and output projections (GPT-2's are Conv1D,
    stored (in, out), with q|k|v fused)."""
    import numpy as np

    from pretrained_fixtures import reference, write_checkpoint
    from playground.inspect.attribution import value_norms
    from playground.models.pretrained.loader import load_folder

    folder = write_checkpoint(kind, tmp_path / kind)
    hub, tok = load_folder(folder)
    ids = tok.encode("The keys and values are cached; attention looks back.")
    ref = reference(folder)
    layers = ref.transformer.h if kind == "gpt2" else ref.model.layers
    attns = [layer.attn if kind == "gpt2" else layer.self_attn for layer in layers]
    seen = []
    handles = [a.register_forward_pre_hook(lambda m, args, kw: seen.append(kw.get("hidden_states", args[0] if args
                                                                                   else None)), with_kwargs=True)
               for a in attns]
    with torch.no_grad():
        eager = ref(torch.tensor([ids]), output_attentions=True).attentions
    for h in handles:
        h.remove()
    d, nh = hub.cfg.d_model, hub.cfg.n_heads
    hs = d // nh
    for layer, (a, x, A) in enumerate(zip(attns, seen, eager)):
        x = x[0]  # (T, d)
        with torch.no_grad():
            if kind == "gpt2":
                v = (x @ a.c_attn.weight + a.c_attn.bias)[:, 2 * d:]  # (T, d): the v third of the fused Conv1D
                w_o = a.c_proj.weight  # (in, out)
            else:
                v = a.v_proj(x).view(-1, hub.cfg.n_kv_heads, hs).repeat_interleave(nh // hub.cfg.n_kv_heads, dim=1).flatten(1)
                w_o = a.o_proj.weight.T  # (in, out)
            f = torch.stack([v[:, h * hs:(h + 1) * hs] @ w_o[h * hs:(h + 1) * hs] for h in range(nh)])  # (nh, T, d)
        expected = (A[0] * f.norm(dim=-1)[:, None, :]).numpy()
        np.testing.assert_allclose(value_norms(hub, ids).per_head[layer], expected, atol=1e-5, rtol=1e-4)


def test_value_norms_say_where_a_layer_keeps_w_o_outside_its_attention_module():
    from playground.inspect.attribution import value_norms

    _, bert = _wrapped("bert")
    with pytest.raises(ValueError, match="keeps its output projection outside"):
        value_norms(bert, list(range(3, 12)))


@pytest.mark.parametrize("name, kind", [("qwen3", "self"), ("gpt_oss", "self"), ("gemma2", "self"), ("t5", "cross"),
                                        ("t5", "decoder_self"), ("deepseek_v2", "self")])
def test_inside_a_hub_head_the_steps_are_the_records_own_numbers(name, kind):
    """Each head's steps (scaling, soft-cap, T5's bias, the sink, MLA's widths) end in the weights the record
    rebuilds and the output the kernel returned."""
    from playground.inspect.hub_steps import hub_layer_steps

    _, model = _wrapped(name)
    ids, tgt = _inputs(name)
    source = ids[0].tolist() if tgt is not None else None
    target = tgt[0].tolist() if tgt is not None else ids[0].tolist()
    steps = hub_layer_steps(model, target, 1, kind=kind, source_ids=source)
    with torch.no_grad():
        out = model(ids, tgt, capture=True) if tgt is not None else model(ids, capture=True)
    rec = [r for r in out.attentions if r.kind == kind][1]
    v, kernel_out = rec.check
    for s in steps:
        assert abs(s["weights"] - rec.weights[0, s.head].numpy()).max() < 1e-5, (name, s.head)
        assert abs(s["output"] - kernel_out[0, s.head].numpy()).max() < 1e-4, (name, s.head)
    names = steps[0].names
    assert ("capped" in names) is (name == "gemma2") and ("biased" in names) is (name == "t5" and kind != "cross")


@pytest.mark.parametrize("name", ["qwen3", "gemma3", "bert", "gpt_oss"])
def test_flexattention_runs_a_hub_model_and_gives_the_eager_weights(name):
    """FlexAttention with the layer's own rule (causal, sliding, bidirectional) as a block mask; a layer with what
    the call cannot take (gpt-oss's sinks) runs the explicit path and says why."""
    from playground.models.hf.attention import FLEX_EXPLICIT

    ref, model = _wrapped(name, "flex")
    ids, tgt = _inputs(name, T=40)
    logits, weights = _reference(ref, ids, tgt)
    out = _capture(model, ids, tgt)
    assert (out.logits - logits).abs().max() < ATOL
    for rec in out.attentions:
        assert (rec.weights - weights[rec.kind][rec.layer]).abs().max() < ATOL
        if name == "gpt_oss":
            assert rec.kernel == "explicit" and rec.reason == FLEX_EXPLICIT
        else:
            assert rec.kernel == "flex" and rec.call == "block mask" and rec.block_mask is not None


def test_the_pages_sliding_window_narrows_every_causal_layer_as_the_models_own_window_would(tmp_path):
    """An instance with the page's window W computes what the same checkpoint computes with sliding_window=W in its
    config.json (Mistral: every layer slides); on GPT-2, which has no window, each row sees its W last keys."""
    import json
    import shutil

    from pretrained_fixtures import reference, write_checkpoint
    from playground.models.pretrained.loader import load_folder
    from playground.models.shared import Weights, instance

    folder = write_checkpoint("mistral", tmp_path / "mistral")  # its own window: 8
    narrow = shutil.copytree(folder, tmp_path / "narrow")
    config = json.loads((narrow / "config.json").read_text())
    (narrow / "config.json").write_text(json.dumps({**config, "sliding_window": 4}))
    model, tok = load_folder(folder)
    ids = torch.tensor([tok.encode("The keys and values are cached; attention looks back.")])
    four = instance(Weights.of(model), sliding_window=4)
    assert four.cfg.sliding_window == 4
    with torch.no_grad():
        out = four(ids, capture=True)
        assert (out.logits - reference(narrow)(ids).logits).abs().max() < 1e-4
        assert (out.logits - model(ids).logits).abs().max() > 1e-3  # the window changed what the model computes
    row = out.attentions[0].weights[0, 0, -1]
    assert (row[:-4] == 0).all() and (row[-4:] > 0).all()
    gpt2, tok = load_folder(write_checkpoint("gpt2", tmp_path / "gpt2"))
    three = instance(Weights.of(gpt2), sliding_window=3)
    with torch.no_grad():
        weights = three(ids, capture=True).attentions[1].weights[0]  # (nh, T, T)
    T = ids.shape[1]
    seen = torch.ones(T, T).tril() - torch.ones(T, T).tril(-3)  # key j seen by query i when i - 3 < j <= i
    assert torch.equal(weights > 0, seen.bool().expand_as(weights))
    # decoding under the page's window: the cache drops what no query can see any more, and the tokens are those
    # of decoding without a cache (every step the whole sequence under the same window)
    from playground.inspect.generation import stream

    prompt = ids[0].tolist()
    cached = list(stream(three, prompt, 6))
    uncached = list(stream(three, prompt, 6, use_cache=False))
    assert [s.token for s in cached] == [s.token for s in uncached]
    c = gpt2.cfg
    per_position = c.n_layer * 2 * c.n_kv_heads * c.head_dim * 4  # K and V of every layer, float32
    assert all(s.cache_bytes == 2 * per_position for s in cached)  # the window's 3 keys less the one being written
    full = list(stream(instance(Weights.of(gpt2)), prompt, 2))
    assert full[0].cache_bytes == len(prompt) * per_position  # without the window: the whole prompt
    bert = _wrapped("bert")[1]
    with pytest.raises(ValueError, match="applies to a decoder-only"):
        bert.cfg.replace(sliding_window=4)


@pytest.mark.parametrize("name", ["t5", "bart", "marian", "zoo:encdec"])
def test_an_encoder_decoders_measured_cache_is_its_formula(name):
    """The cache transformers' EncoderDecoderCache (or the playground's own encoder-decoder) holds at every decoding
    step equals the formula the Generate tab draws beside it: the cross-attention K/V of every decoder layer over
    the source, once, plus the self-attention K/V of every decoder layer per position."""
    from playground.inspect.generation import stream
    from playground.ui import service
    from playground.zoo import ModelSpec

    if name.startswith("zoo:"):
        model = ModelSpec.parse(name).load()
        ids = list(range(5, 17))
    else:
        model = _wrapped(name)[1]
        ids = _inputs(name)[0][0].tolist()
    formulas = service.kv_formulas(model.cfg, torch.float32, source_tokens=len(ids))
    (own,) = [f for label, f in formulas.items() if label.key == "kv.this_encdec"]
    steps = list(stream(model, ids, 5))
    assert [s.cache_bytes for s in steps] == [own["fixed"] + own["per_token"] * (i + 1) for i in range(5)]
