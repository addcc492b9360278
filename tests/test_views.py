"""The Attention tab's views beyond raw weights: the handlers (ui/views.py) and the /view endpoint."""
import json

import numpy as np
import pytest
import torch
from gradio_client import Client

from playground.ui import service, views
from playground.ui.lang import Words
from playground.zoo import ModelSpec

PROMPT = "To be, or not to be, that is the question"
EN, ZH = Words(lang="en"), Words(lang="zh-CN")


def compute(spec: str, view: str, w=EN, **options):
    return views.compute(w, ModelSpec.parse(spec), PROMPT, view, **options)


def test_norms_draw_the_per_head_grid_and_the_per_layer_grid():
    (per_head, per_layer), numbers, _ = compute("zoo:baseline", "norms")
    nh, nl = np.array(numbers["per_head"]), np.array(numbers["per_layer"])  # (L, nh, T, T), (L, T, T)
    T = len(numbers["labels"])
    assert nh.shape[2:] == (T, T) and nl.shape == (nh.shape[0], T, T)
    # a causal model: no norm above the diagonal; a layer's norm is at most the sum of its heads' (triangle)
    assert np.all(np.triu(nh, 1) == 0)
    assert np.all(nl <= nh.sum(axis=1) + 1e-4) and np.any(nl < nh.sum(axis=1) - 1e-3)
    axis = per_head.layout.coloraxis
    assert axis.colorbar.title.text == "‖α f(x)‖" and axis.cmax == pytest.approx(nh.max(), rel=1e-5)
    assert per_head.layout.meta["rows"] == T and "per head" in per_head.layout.title.text
    assert list(per_layer.layout.xaxis.ticktext) == [f"layer {i}" for i in range(nl.shape[0])]
    assert "per layer" in per_layer.layout.title.text


def test_norms_group_their_head_columns_by_kv_head_when_asked():
    """GQA's 4 query heads over 2 K/V heads: grouped, the per-head norms are labelled by K/V head, as the overview
    of raw weights is; the numbers do not change."""
    (plain, _), numbers, _ = compute("zoo:gqa", "norms")
    (grouped, _), grouped_numbers, _ = compute("zoo:gqa", "norms", group_kv=True)
    assert list(plain.layout.xaxis.ticktext) == [f"head {h}" for h in range(4)]
    assert len(grouped.layout.xaxis.ticktext) == 2 and all("kv" in t for t in grouped.layout.xaxis.ticktext)
    assert "2 K/V" in grouped.layout.title.text
    assert grouped_numbers["per_head"] == numbers["per_head"]


@pytest.mark.parametrize("without_first", [False, True])
def test_rollout_rows_are_distributions_over_the_tokens(without_first):
    (final, layers), numbers, _ = compute("zoo:baseline", "rollout", without_first=without_first)
    R = np.array(numbers["rollout"])  # (L, T, T)
    heat = final.data[0]
    assert heat.x[0] == "0 To" and heat.y[1] == "1 ␣be"  # token labels on both axes
    z = np.array(heat.z, dtype=np.float64)
    np.testing.assert_allclose(z, R[-1], atol=1e-6)
    rows = z.sum(-1)
    if without_first:
        assert np.all(z[0] == 0) and np.all(z[:, 0] == 0)  # the first token taken out of every layer
        np.testing.assert_allclose(rows[1:], 1, atol=1e-5)
        assert "without the first token" in final.layout.title.text
    else:
        np.testing.assert_allclose(rows, 1, atol=1e-5)
        assert "with the first token" in final.layout.title.text
    assert final.layout.coloraxis.colorbar.title.text == "rollout"
    assert len(layers.layout.xaxis.ticktext) == R.shape[0]


def test_logit_lens_last_layer_is_the_models_own_next_token():
    (fig,), numbers, _ = compute("zoo:baseline", "lens")
    spec = ModelSpec.parse("zoo:baseline")
    loaded = service.load(spec)
    with torch.no_grad():
        logits = loaded.model(torch.tensor([numbers["token_ids"]])).logits[0]  # (T, V)
    own = service.labels(spec, logits.argmax(-1).tolist())
    heat = fig.data[0]
    assert [str(t) for t in heat.text[-1]] == [views.plots.safe(t) for t in own]
    probs = logits.float().softmax(-1).max(-1).values.numpy()
    np.testing.assert_allclose(np.array(heat.z[-1], dtype=np.float64), probs, atol=1e-4)
    assert heat.customdata[0][0].count("<br>") == views.LENS_TOP - 1  # hover: the top 3 with probabilities
    assert fig.layout.coloraxis.colorbar.title.text == "probability of the top token"


def test_ablation_on_the_induction_model_scores_its_answers_and_finds_the_heads():
    (loss_fig, logit_fig), numbers, notes = compute("zoo:induction", "ablation")
    ids, _, prompt_len = service.task_sequence("induction")
    assert numbers["token_ids"] == ids
    assert numbers["scored"][0] == prompt_len - 1 and numbers["scored"][-1] == len(ids) - 1
    d_loss, d_logit = np.array(numbers["d_loss"]), np.array(numbers["d_target_logit"])  # (L, nh)
    # every layer-1 head is an induction head: ablating it lowers the answer's logit more than any layer-0 head
    assert d_logit[1].max() < d_logit[0].min() < 0 and np.all(d_loss >= -1e-6)
    np.testing.assert_allclose(np.array(logit_fig.data[0].z, dtype=np.float64), d_logit, atol=1e-4)
    assert np.array(loss_fig.data[0].z).shape == d_loss.shape
    assert "Δ loss" in loss_fig.layout.title.text and "target-token logit" in logit_fig.layout.title.text
    assert any("synthetic-task" in n for n in notes) and any(n.startswith("Scored: 23 positions") for n in notes)


def test_ablation_reads_as_many_tokens_as_its_forwards_fit_in_one_jobs_ceiling_and_says_so(monkeypatch):
    """zoo:baseline's 17 forwards fit a prompt of 120 tokens in the default ceiling; under a ceiling of 0.05 s they
    fit fewer, and the note says how many forwards and which ceiling."""
    spec = ModelSpec.parse("zoo:baseline")
    long_prompt = " ".join(["the king is dead, long live the king"] * 12)
    _, numbers, notes = views.compute(EN, spec, long_prompt, "ablation", mode="mean")
    T = len(service.tokenize(spec, long_prompt)[0])
    assert len(numbers["token_ids"]) == T > 48 and not any("of the" in n for n in notes)
    monkeypatch.setenv(service.MAX_JOB_ENV, "0.05")
    cap = service.ablation_tokens(spec.config())
    assert 2 <= cap < T and service.ablation_forwards(spec.config()) * service.forward_seconds(spec.config(), cap) <= 0.05
    _, numbers, notes = views.compute(EN, spec, long_prompt, "ablation", mode="mean")
    assert len(numbers["token_ids"]) == cap and numbers["mode"] == "mean"
    assert any("runs the model 17 times" in n and f"first {cap} of the {T}" in n for n in notes)
    assert numbers["scored"][-1] == cap - 2  # the last one's next token was cut off


def test_rollout_reads_at_most_its_cap_and_says_so_while_norms_read_every_token():
    """Rollout multiplies every layer's (T, T) map: the first MAX_MAP_TOKENS. Value norms are pooled tile by tile,
    so they read the whole prompt, in cells whose edges the numbers give."""
    long_prompt = " ".join(["the king is dead, long live the king"] * 80)  # past 512 tokens
    _, numbers, notes = views.compute(EN, ModelSpec.parse("zoo:baseline"), long_prompt, "rollout")
    assert len(numbers["labels"]) == views.MAX_MAP_TOKENS
    assert any(f"first {views.MAX_MAP_TOKENS} of the" in n for n in notes)
    (per_head, _), numbers, notes = views.compute(EN, ModelSpec.parse("zoo:baseline"), long_prompt, "norms")
    T = len(numbers["labels"])
    assert T > views.MAX_MAP_TOKENS and not any("of the" in n for n in notes)
    n = len(numbers["rows"]) - 1
    assert numbers["rows"][-1] == numbers["cols"][-1] == T and numbers["cell"][0] > 1
    assert np.array(numbers["per_head"]).shape[2:] == (n, n) and np.array(numbers["per_layer"]).shape[1:] == (n, n)
    c = numbers["cell"][0]
    assert f"{T}×{T} tokens" in per_head.layout.title.text and f"max over cells of {c}×{c}" in per_head.layout.title.text


def test_page_handler_shows_the_overview_for_raw_weights_and_a_note_for_rwkv():
    from playground.ui.session import analysis_state

    state = analysis_state(EN, "zoo:baseline", PROMPT)
    box, first, second, note = views.page_view(state, "raw", False, "zero")
    assert box["visible"] and not first["visible"] and not second["visible"] and note == ""
    box, first, second, note = views.page_view(state, "lens", False, "zero")
    assert not box["visible"] and first["visible"] and not second["visible"] and "nostalgebraist 2020" in note
    rwkv = state.extended(spec=ModelSpec.parse("zoo:rwkv"))
    with pytest.warns(UserWarning, match="decoder-only and prefix Transformers"):  # gr.Warning outside a request
        box, first, second, note = views.page_view(rwkv, "rollout", False, "zero")
    assert first["value"] is None and "decoder-only and prefix Transformers" in note and "rwkv" in note


def test_chinese_titles_and_bad_options():
    (fig,), _, _ = compute("zoo:baseline", "lens", w=ZH)
    assert "Logit 透镜" in fig.layout.title.text and "位置" in fig.layout.xaxis.title.text
    with pytest.raises(Exception, match="Unknown view"):
        compute("zoo:baseline", "saliency")
    with pytest.raises(Exception, match="Unknown ablation mode"):
        compute("zoo:baseline", "ablation", mode="half")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_view_endpoint_returns_figures_and_numbers(client):
    first, second, numbers = client.predict(spec="zoo:baseline", prompt=PROMPT, view="rollout", without_first=True,
                                            api_name="/view")
    fig = json.loads(first["plot"])
    assert "Attention rollout through every layer, without the first token" in fig["layout"]["title"]["text"]
    R = np.array(numbers["rollout"])
    assert R.shape[1:] == (len(numbers["labels"]),) * 2 and np.all(R[:, 0] == 0)
    assert second is not None
    first, second, numbers = client.predict(spec="zoo:induction", prompt="", view="ablation", mode="zero",
                                            api_name="/view")
    assert "Head ablation (zero)" in json.loads(first["plot"])["layout"]["title"]["text"]
    d_logit = np.array(numbers["d_target_logit"])
    assert d_logit[1].max() < d_logit[0].min() < 0 and len(numbers["scored"]) == 23


def test_view_endpoint_refuses_recurrent_and_encoder_decoder_models(client):
    for spec in ("zoo:rwkv", "zoo:mamba", "zoo:encdec"):
        with pytest.raises(Exception, match="decoder-only and prefix Transformers"):
            client.predict(spec=spec, prompt=PROMPT, view="norms", api_name="/view")
    first, _, _ = client.predict(spec="zoo:baseline", prompt=PROMPT, view="lens", api_name="/view")  # still serves
    assert "Logit lens" in json.loads(first["plot"])["layout"]["title"]["text"]


def test_ablate_endpoint_returns_the_numbers_of_ablate_heads_called_directly(client):
    """/ablate against playground.ablate_heads on the same shipped model and the same tokens: every next token
    (mean ablation), then one chosen target token at the last position (zero ablation)."""
    from playground import Tokenizer, ablate_heads, zoo

    model = zoo.load("baseline").eval()
    ids = Tokenizer.load().encode(PROMPT)
    got = client.predict(spec="zoo:baseline", prompt=PROMPT, mode="mean", api_name="/ablate")
    want = ablate_heads(model, ids, mode="mean")
    assert got["token_ids"] == ids and got["mode"] == "mean" and got["scored"] == list(range(len(ids) - 1))
    assert got["targets"] == ids[1:] and got["target_tokens"] == got["labels"][1:]
    assert np.array(got["d_loss"]).shape == (model.cfg.n_layer, model.cfg.n_heads)
    np.testing.assert_allclose(got["d_loss"], want.d_loss, atol=1e-4)
    np.testing.assert_allclose(got["d_target_logit"], want.d_target_logit, atol=1e-4)
    assert got["loss"] == pytest.approx(want.loss, abs=1e-4) and np.abs(want.d_loss).max() > 1e-3

    (target,) = Tokenizer.load().encode(" be")
    got = client.predict(spec="zoo:baseline", prompt=PROMPT, mode="zero", target=" be", api_name="/ablate")
    T = len(ids)
    want = ablate_heads(model, ids, targets=[[0] * (T - 1) + [target]], mask=[[False] * (T - 1) + [True]])
    assert got["scored"] == [T - 1] and got["targets"] == [target] and got["target_tokens"] == ["␣be"]
    np.testing.assert_allclose(got["d_loss"], want.d_loss, atol=1e-4)
    np.testing.assert_allclose(got["d_target_logit"], want.d_target_logit, atol=1e-4)
    assert got["target_logit"] == pytest.approx(want.target_logit, abs=1e-4)
    assert any(n.startswith("Scored: the last position only") and "→ ␣be" in n for n in got["notes"])


@pytest.mark.parametrize("call, message", [
    (dict(target=" question"), "The target must be one token; “ question” is 2 tokens: ␣qu estion"),
    (dict(spec="zoo:induction", target="x"), "zoo:induction is a synthetic-task model: it is scored on its own"),
    (dict(mode="half"), "Unknown ablation mode"),
    (dict(spec="zoo:rwkv"), "decoder-only and prefix Transformers"),
])
def test_ablate_endpoint_refuses_what_it_cannot_score(client, call, message):
    with pytest.raises(Exception, match=message):
        client.predict(**({"spec": "zoo:baseline", "prompt": PROMPT} | call), api_name="/ablate")


def test_the_block_mask_timing_is_measured_once_per_call_shape_for_every_session(monkeypatch):
    """Two sessions' analyses of prompts of the same length make the same call: the second reads the first's timing;
    a prompt of another length is measured anew."""
    from playground.ui import head_view
    from playground.ui.session import analysis_state

    monkeypatch.setattr(head_view, "BLOCK_TIMINGS", head_view.BlockTimings(most=2))
    calls = []
    real = head_view.fused_vs_dense
    monkeypatch.setattr(head_view, "fused_vs_dense", lambda *a, **k: calls.append(a[1:5]) or real(*a, **k))
    a = analysis_state(EN, "zoo:baseline", "the king is dead, long live the king " * 30)
    b = analysis_state(EN, "zoo:baseline", "the queen is dead, long live the queen " * 30)
    assert len(a.result().token_ids) == len(b.result().token_ids) > 128  # one call shape
    first, note = head_view.block_view(EN, a, "self", 0)
    assert first is not None and "skipped" in note
    head_view.block_view(EN, b, "self", 1)
    assert len(calls) == 1 and len(head_view.BLOCK_TIMINGS) == 1
    head_view.block_view(EN, analysis_state(EN, "zoo:baseline", "long live the king " * 40), "self", 0)
    assert len(calls) == 2 and len(head_view.BLOCK_TIMINGS) == 2
