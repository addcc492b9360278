"""Pretrained checkpoints in the page: every API endpoint with ``spec="local:..."`` on folders written by
``transformers`` (GPT-2, Llama with GQA, Mistral with a sliding window) in the operator's directory, the
picker's Open (a local folder, and a Hub download with its progress), Compare's tokenizer check and share links."""
import base64
import json

import numpy as np
import pytest
import torch
from gradio_client import Client

from conftest import require

PROMPT = "The keys and values are cached; attention looks back."
KINDS = ("gpt2", "llama")   # MHA with learned positions; GQA 4:2 with RoPE
HEADS, LAYERS = 4, 2        # pretrained_fixtures' tiny configs


@pytest.fixture(scope="module")
def local_models(tmp_path_factory):
    """The operator's directory ($PLAYGROUND_LOCAL_MODELS) with app-gpt2, app-llama and app-mistral."""
    require("transformers", "pip install -r requirements-dev.txt")
    from pretrained_fixtures import operator_models

    with operator_models(tmp_path_factory.mktemp("operator-models"), ("gpt2", "llama", "mistral"), "app") as root:
        yield root


@pytest.fixture(scope="module")
def client(local_models):
    """The page served with local folders on, and an API client of it."""
    from pretrained_fixtures import served_page

    with served_page() as url:
        yield Client(url, verbose=False)


def token_ids(folder, text=PROMPT) -> list[int]:
    """The ids transformers' own tokenizer gives: what every endpoint must have run on."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(folder)(text)["input_ids"]


def figure(value) -> dict:
    if isinstance(value, dict) and value.get("__type__") == "update":
        value = value["value"]
    if isinstance(value, dict) and value.get("type") == "plotly":
        value = value["plot"]
    return json.loads(value) if isinstance(value, str) else value


def array(data) -> np.ndarray:
    """A Plotly array: a (nested) list, or a typed array {dtype, bdata, shape}."""
    if isinstance(data, dict) and "bdata" in data:
        flat = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
        shape = [int(n) for n in str(data.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).astype(float)
    return np.array(data, dtype=float)


@pytest.mark.parametrize("kind", KINDS)
def test_analyze_shows_every_layer_and_head_of_the_checkpoint(client, local_models, kind):
    spec = f"local:app-{kind}"
    out = client.predict(spec=spec, prompt=PROMPT, api_name="/analyze")
    assert spec in out[0] and "Kernel that ran" in out[0]
    overview = figure(out[1])
    n = len(token_ids(local_models / f"app-{kind}"))
    assert overview["layout"]["meta"]["rows"] == overview["layout"]["meta"]["cols"] == n
    assert overview["layout"]["xaxis"]["ticktext"] == [f"head {h}" for h in range(HEADS)]
    assert "UNTRAINED" not in overview["layout"]["title"]["text"]
    assert out[2] is None and out[3] is None  # a decoder: no decoder-self or cross-attention


@pytest.mark.parametrize("kind", KINDS)
def test_one_head_is_the_checkpoint_s_own_attention(client, local_models, kind):
    """/head's weights equal what transformers returns with output_attentions=True for the same folder."""
    from pretrained_fixtures import reference

    folder = local_models / f"app-{kind}"
    figures = client.predict(spec=f"local:app-{kind}", prompt=PROMPT, kind="self", layer=1, head=2,
                             backend="explicit", api_name="/head")
    head = figure(figures["head"])
    assert "layer 1, head 2" in head["layout"]["title"]["text"]
    ids = token_ids(folder)
    with torch.no_grad():
        expected = reference(folder)(torch.tensor([ids]), output_attentions=True).attentions[1][0, 2].numpy()
    shown = np.nan_to_num(array(head["data"][0]["z"]))
    assert shown.shape == expected.shape
    np.testing.assert_allclose(shown, expected, atol=1e-4)
    labels = head["data"][0]["x"]
    assert len(labels) == len(ids) and labels[0].startswith("0 ")
    assert any("␣" in label for label in labels) and not any("Ġ" in label for label in labels)


def test_the_overview_groups_the_llama_heads_by_kv_head(client):
    grouped = figure(client.predict(spec="local:app-llama", prompt=PROMPT, group_kv=True, api_name="/analyze")[1])
    assert grouped["layout"]["xaxis"]["ticktext"] == ["kv0: h0 h1", "kv1: h2 h3"]
    mha = figure(client.predict(spec="local:app-gpt2", prompt=PROMPT, group_kv=True, api_name="/analyze")[1])
    assert mha["layout"]["xaxis"]["ticktext"] == [f"head {h}" for h in range(HEADS)]


def test_mistral_s_mask_is_its_sliding_window(client, local_models):
    """With the window slider at 0 a pretrained model runs with its own window (8 keys in the fixture)."""
    figures = client.predict(spec="local:app-mistral", prompt=PROMPT, kind="self", layer=0, head=0, api_name="/head")
    mask = array(figure(figures["mask"])["data"][0]["z"])
    n = len(token_ids(local_models / "app-mistral"))
    assert n > 8
    i, j = np.indices((n, n))
    assert np.array_equal(mask > 0, (j <= i) & (i - j < 8))


@pytest.mark.parametrize("kind", KINDS)
def test_generate_measures_the_kv_cache_against_the_formula(client, local_models, kind):
    """Greedy text is transformers' greedy text; the cache grows by the MHA (GPT-2) or GQA 4:2 (Llama)
    formula's bytes per token, measured from the model's own cache."""
    from pretrained_fixtures import reference
    from tokenizers import Tokenizer

    folder = local_models / f"app-{kind}"
    text, growth, steps, step0, info = client.predict(spec=f"local:app-{kind}", prompt=PROMPT, max_new_tokens=8,
                                                      api_name="/generate")
    ids = token_ids(folder)
    with torch.no_grad():
        out = reference(folder).generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False,
                                         attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    new = out[0, len(ids):].tolist()
    assert text == Tokenizer.from_file(str(folder / "tokenizer.json")).decode(new, skip_special_tokens=False)
    assert steps == 8 and "Step **0**" in info
    traces = {t["name"]: t for t in figure(growth)["data"]}
    measured = array(traces[f"measured, in use: local:app-{kind}"]["y"])
    per_token = LAYERS * 2 * (HEADS if kind == "gpt2" else 2) * 16 * 4  # layers x (K, V) x kv heads x hs x fp32
    assert np.all(np.diff(measured) == per_token) and measured[0] == len(ids) * per_token
    formula = "MHA (4 K/V heads)" if kind == "gpt2" else "GQA (2 K/V heads)"
    xs, ys = array(traces[formula]["x"]), array(traces[formula]["y"])
    assert np.allclose(ys, xs * per_token)


@pytest.mark.parametrize("kind", KINDS)
def test_head_insights_score_every_head(client, kind):
    table = client.predict(spec=f"local:app-{kind}", prompt=PROMPT, api_name="/heads")
    assert [row[:2] for row in table["data"]] == [[layer, h] for layer in range(LAYERS) for h in range(HEADS)]
    assert all(0 <= row[4] <= 1 for row in table["data"])  # previous-token share


@pytest.mark.parametrize("kind", KINDS)
def test_step_through_and_flash_replay_read_the_checkpoint_s_head(client, local_models, kind):
    spec = f"local:app-{kind}"
    out = client.predict(spec=spec, prompt=PROMPT, layer=1, head=3, query=4, api_name="/step")
    assert out["query_tokens"] == token_ids(local_models / f"app-{kind}")
    assert (out["n_heads"], out["n_kv_heads"]) == ((4, 4) if kind == "gpt2" else (4, 2))
    assert out["kv_head"] == (3 if kind == "gpt2" else 1)
    assert out["shared_by"] == ([3] if kind == "gpt2" else [2, 3])
    replay = client.predict(spec=spec, prompt=PROMPT, layer=1, head=3, shrink=6, api_name="/flash_replay")
    assert replay["head_dim"] == 16 and replay["max_abs_diff"] < 1e-5 and len(replay["steps"]) > 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("view", ["norms", "rollout", "lens", "ablation"])
def test_every_view_runs_on_the_checkpoint(client, local_models, kind, view):
    main, second, numbers = client.predict(spec=f"local:app-{kind}", prompt=PROMPT, view=view, api_name="/view")
    assert figure(main)["data"], view
    assert numbers["token_ids"] == token_ids(local_models / f"app-{kind}")[:len(numbers["token_ids"])]
    if view == "lens":  # each layer's top-3 next tokens at each position, labelled by the checkpoint's tokenizer
        n = len(numbers["token_ids"])
        assert np.array(numbers["top_ids"]).shape == (LAYERS, n, 3)
        assert np.array(numbers["top_tokens"]).shape == (LAYERS, n, 3)
        assert all(0 <= i < 400 for i in np.ravel(numbers["top_ids"]))  # the checkpoint's 400-row vocabulary


@pytest.mark.parametrize("kind", KINDS)
def test_ablate_scores_each_head(client, kind):
    out = client.predict(spec=f"local:app-{kind}", prompt=PROMPT, api_name="/ablate")
    assert np.array(out["d_loss"]).shape == (LAYERS, HEADS)
    assert len(out["target_tokens"]) == len(out["targets"]) and out["spec"] == f"local:app-{kind}"


def test_an_ablation_target_is_one_token_without_the_bos_the_llama_tokenizer_adds(client, local_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(local_models / "app-llama")
    assert tok(" keys")["input_ids"][0] == tok.convert_tokens_to_ids("<s>")  # the whole-text encoding has <s>
    out = client.predict(spec="local:app-llama", prompt=PROMPT, target=" keys", api_name="/ablate")
    assert out["targets"][-1] == tok.convert_tokens_to_ids("Ġkeys") and out["target_tokens"][-1] == "␣keys"
    assert np.array(out["d_target_logit"]).shape == (LAYERS, HEADS)


def test_export_names_the_checkpoint_and_holds_its_weights(local_models):
    from playground.ui.attention import export_files
    from playground.ui.session import analysis_state
    from playground.ui.lang import Words

    state = analysis_state(Words(), "local:app-mistral", PROMPT)
    json_path, npz_path = export_files(state)
    data = json.loads(open(json_path).read())
    arrays = np.load(npz_path)
    n = len(token_ids(local_models / "app-mistral"))
    assert data["spec"] == str(arrays["spec"]) == "local:app-mistral" and data["token_ids"] == arrays["token_ids"].tolist()
    assert arrays["self_weights"].shape == (LAYERS, HEADS, n, n)
    i, j = np.indices((n, n))
    assert np.array_equal(arrays["self_mask"], (j <= i) & (i - j < 8))  # Mistral's own window


def test_compare_needs_the_same_tokenizer_for_a_difference(client):
    """Llama and Mistral share the fixture's tokenizer (it prepends <s>); GPT-2's does not, nor does the zoo's."""
    a, b, diff, table, note = client.predict(spec_a="local:app-llama", spec_b="local:app-mistral", prompt=PROMPT,
                                             layer=1, head=1, api_name="/compare")
    assert figure(diff)["data"] and note == ""
    assert {row[0] for row in table["data"]} == {"local:app-llama", "local:app-mistral"}
    for other in ("local:app-gpt2", "zoo:baseline"):
        a, b, diff, table, note = client.predict(spec_a="local:app-llama", spec_b=other, prompt=PROMPT,
                                                 api_name="/compare")
        assert diff is None and "different tokenizers" in note and other in note
        assert figure(a)["data"] and figure(b)["data"]


def test_a_folder_outside_the_operator_s_directory_is_refused(client):
    from gradio_client.exceptions import AppError

    for spec, words in (("local:app-nothing", "No model folder"), ("local:..", "one folder in the operator.s model directory")):
        with pytest.raises(AppError, match=words):
            client.predict(spec=spec, prompt=PROMPT, api_name="/analyze")


# ----------------------------------------------------------------------------- the picker, without a browser

class Recorder:
    """Stands in for gr.Progress: records progress(fraction, text)."""

    def __init__(self):
        self.calls = []

    def __call__(self, fraction, text=None, *args, **kwargs):
        self.calls.append((fraction, text))


def test_the_picker_lists_suggestions_and_the_operator_s_folders(local_models):
    from playground.models.pretrained.suggested import SUGGESTED
    from playground.ui import controls
    from playground.ui.lang import Words

    values = [value for _, value in controls.pretrained_choices()]
    assert values == [f"hf:{s.hub_id}" for s in SUGGESTED] + ["local:app-gpt2", "local:app-llama", "local:app-mistral"]
    assert "0.6B · qwen3 · 28 layers · GQA 16:8 · RoPE θ=1e6 · QK-norm" in controls.pretrained_choices()[0][0]
    assert "Local model folders: on" in controls.local_note(Words()) and "3 model folder" in controls.local_note(Words())
    assert "本地模型文件夹：已开启" in controls.local_note(Words(lang="zh-CN"))


def test_local_folders_are_off_without_the_operator_s_directory(local_models, monkeypatch):
    import gradio as gr

    from playground.ui import controls
    from playground.ui.lang import Words

    monkeypatch.delenv("PLAYGROUND_LOCAL_MODELS")
    assert [v for _, v in controls.pretrained_choices() if v.startswith("local:")] == []
    assert "PLAYGROUND_LOCAL_MODELS" in controls.local_note(Words()) and "off" in controls.local_note(Words())
    with pytest.raises(gr.Error, match="Could not open local:app-never-opened: .*local folders are off"):
        controls.open_pretrained("local:app-never-opened", "", None, progress=Recorder())


def test_open_makes_the_folder_the_model_and_the_note_describes_it(local_models):
    from playground.ui import controls
    from playground.ui.lang import Words

    task, picked = controls.open_pretrained("local:app-mistral", "zoo:induction", None, progress=Recorder())
    assert task["value"] == picked == "local:app-mistral"
    assert {"local:app-mistral", "zoo:induction"} <= {value for _, value in task["choices"]}
    spec, sentence = controls.choose(Words(), "decoder", "MHA", "rope", task["value"], "nearest")
    assert str(spec) == "local:app-mistral"
    assert sentence.startswith("Pretrained model 'local:app-mistral'") and "model type mistral" in sentence
    assert "GQA (4 query heads over 2 K/V heads)" in sentence and "RoPE" in sentence
    assert "a sliding window of 8 tokens" in sentence and "parameters" in sentence
    _, chinese = controls.choose(Words(lang="zh-CN"), "decoder", "MHA", "rope", task["value"], "nearest")
    assert "预训练模型" in chinese and "滑动窗口 8" in chinese


def test_open_refuses_what_it_cannot_open(local_models):
    import gradio as gr

    from playground.ui import controls

    for choice, words in (("", "Pick a suggested model"), ("zoo:gqa", "Pick a suggested model"),
                          ("local:app-missing", "Could not open local:app-missing: No model folder"),
                          ("not a model", "source:name")):
        with pytest.raises(gr.Error, match=words):
            controls.open_pretrained(choice, "", None, progress=Recorder())


def hub_repo(folder):
    """A Hub repository (tests/hub_server.py) holding the files of a checkpoint folder."""
    from hub_server import Repo

    from playground.models.pretrained.budget import parameters_in_folder
    return Repo(files={p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()},
                parameters={"F32": parameters_in_folder(folder)})


def test_open_downloads_a_hub_model_with_progress_then_every_tab_uses_it(hub_server, local_models, monkeypatch):
    import gradio as gr

    from playground.models.pretrained import budget
    from playground.ui import controls, service
    from playground.zoo import ModelSpec

    hub_server.repos["owner/tiny-gpt2"] = hub_repo(local_models / "app-gpt2")
    progress = Recorder()
    task, picked = controls.open_pretrained("owner/tiny-gpt2", "", None, progress=progress)  # a bare Hub id
    assert task["value"] == picked == "hf:owner/tiny-gpt2"
    fractions = [f for f, text in progress.calls if text and text.startswith("Downloading owner/tiny-gpt2")]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert "model.safetensors" in hub_server.downloads()
    result, _ = service.analyze_text(ModelSpec.parse(picked), PROMPT)
    assert len(result.maps) == LAYERS and result.maps[0].weights.shape[0] == HEADS
    # refusals come back as the page's error around the Hub's own reason, before anything is downloaded
    hub_server.repos["owner/too-big"] = hub_repo(local_models / "app-llama")
    monkeypatch.setenv(budget.ENV_MAX_GB, "0.0001")
    seen = len(hub_server.downloads())
    with pytest.raises(gr.Error, match=r"Could not open hf:owner/too-big: .*needs .* parameters"):
        controls.open_pretrained("hf:owner/too-big", "", None, progress=Recorder())
    with pytest.raises(gr.Error, match=r"Could not open hf:owner/absent: No model 'owner/absent' on the Hub"):
        controls.open_pretrained("hf:owner/absent", "", None, progress=Recorder())
    assert len(hub_server.downloads()) == seen


def test_a_share_link_names_the_pretrained_spec_and_restores_the_picker(local_models):
    from urllib.parse import parse_qsl

    from playground.ui import share
    from playground.ui.controls import controls_for
    from playground.zoo import ModelSpec

    query = share.query_string(ModelSpec.parse("local:app-llama"), PROMPT, 0, 0, "auto", "self", 1, 3)
    assert "spec=local%3Aapp-llama" in query
    view = share.parse(dict(parse_qsl(query)))
    assert str(view["spec"]) == "local:app-llama" and (view["layer"], view["head"]) == (1, 3)
    chosen = controls_for(view["spec"])
    assert chosen["task"] == "local:app-llama" and (chosen["variant"], chosen["position"]) == ("GQA", "rope")
    assert share.parse({"spec": "hf:openai-community/gpt2", "prompt": "Hi"})["spec"].name == "openai-community/gpt2"
