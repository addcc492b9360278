"""Any-architecture checkpoints through the API, as a notebook or another program calls the page: the views that read
them, and a clear refusal (never a traceback) from the views that read only the playground's own layers."""
from pathlib import Path

import pytest

from conftest import require

PROMPT = "The keys and [MASK] are cached; attention looks back."


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    require("transformers", "pip install -r requirements-dev.txt")
    from gradio_client import Client

    from pretrained_fixtures import any_models, served_page

    root = Path(tmp_path_factory.mktemp("operator-api"))
    bloom = root / "api-bloom"  # an architecture that computes attention in its own code
    bloom.mkdir()
    (bloom / "config.json").write_text('{"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4, '
                                       '"vocab_size": 320}')
    with any_models(root, ("qwen3", "bert", "t5"), "api"), served_page() as url:
        import shutil

        shutil.copytree(root / "api-qwen3", root / "api-notok", ignore=shutil.ignore_patterns("tokenizer.json"))
        yield Client(url, verbose=False)


@pytest.mark.parametrize("name", ["qwen3", "bert", "t5"])
def test_analysis_tiles_and_head_insights_read_any_architecture(client, name):
    spec = f"local:api-{name}"
    badge, overview, _, _ = client.predict(spec=spec, prompt=PROMPT, api_name="/analyze")
    assert spec in badge and overview["type"] == "plotly"
    kind = "encoder_self" if name == "t5" else "self"
    tile = client.predict(spec=spec, prompt=PROMPT, kind=kind, layer=1, head=2, rows=[0, 6], cols=[0, 6],
                          api_name="/tile")
    assert tile["exact"] and len(tile["values"]) == 6
    table = client.predict(spec=spec, prompt=PROMPT, api_name="/heads")
    assert table["headers"][:2] == ["layer", "head"] and len(table["data"]) >= 8


def test_a_bert_checkpoint_fills_the_mask_through_generate(client):
    text, growth, steps, step0, caption = client.predict(spec="local:api-bert", prompt=PROMPT, api_name="/generate")
    assert growth is None and steps == 1 and "The model puts there:" in caption
    assert "[MASK]" not in text and text.startswith("The keys and")


def test_value_norms_read_a_hub_model(client):
    _, _, numbers = client.predict(spec="local:api-qwen3", prompt=PROMPT, view="norms", api_name="/view")
    assert len(numbers["per_head"]) == 2 and len(numbers["per_head"][0]) == 4


def test_rollout_and_head_ablation_read_a_hub_model(client):
    _, _, numbers = client.predict(spec="local:api-qwen3", prompt=PROMPT, view="rollout", api_name="/view")
    rollout = numbers["rollout"]
    assert len(rollout) == 2 and abs(sum(rollout[-1][-1]) - 1) < 1e-6  # a distribution over the tokens
    ablation = client.predict(spec="local:api-qwen3", prompt=PROMPT, api_name="/ablate")
    assert len(ablation["d_loss"]) == 2 and len(ablation["d_loss"][0]) == 4
    assert any(abs(v) > 0 for row in ablation["d_loss"] for v in row)


def test_inside_a_head_and_the_flash_replay_read_a_hub_model(client):
    steps = client.predict(spec="local:api-qwen3", prompt=PROMPT, layer=1, head=2, api_name="/step")
    names = [s["name"] for s in steps["steps"]]
    assert names[:3] == ["q", "k", "v"] and "weights" in names and "write" in names
    replay = client.predict(spec="local:api-qwen3", prompt=PROMPT, layer=1, head=2, api_name="/flash_replay")
    assert replay["head_dim"] == 16 and replay["max_abs_diff"] < 1e-6


def test_an_architecture_that_bypasses_the_interface_is_refused_with_the_reason(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="BloomForCausalLM computes attention in its own code"):
        client.predict(spec="local:api-bloom", prompt=PROMPT, api_name="/analyze")


def test_a_notebook_gets_the_same_refusal_as_a_value_error(tmp_path):
    from playground.models.pretrained import load_pretrained

    (tmp_path / "config.json").write_text('{"model_type": "bloom", "hidden_size": 64, "n_layer": 2, "n_head": 4}')
    with pytest.raises(ValueError, match="BloomForCausalLM computes attention in its own code"):
        load_pretrained(tmp_path)


def test_an_error_names_the_file_never_the_servers_path(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(spec="local:api-notok", prompt=PROMPT, api_name="/analyze")
    text = str(info.value)
    assert "tokenizer.json not found" in text
    assert "/tmp" not in text and "operator-api" not in text and "/root" not in text, text


def test_the_logit_lens_reads_a_hub_decoder(client):
    _, _, numbers = client.predict(spec="local:api-qwen3", prompt=PROMPT, view="lens", api_name="/view")
    assert len(numbers["top_ids"]) == 2 and len(numbers["top_ids"][0]) == len(numbers["labels"])


def test_an_encoder_decoders_view_switch_says_what_reads_it(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="t5 checkpoint runs in transformers' own classes"):
        client.predict(spec="local:api-t5", prompt=PROMPT, view="norms", api_name="/view")


def test_the_badge_names_flexattention_and_its_block_mask_for_a_hub_model(client):
    badge, _, _, _ = client.predict(spec="local:api-qwen3", prompt=PROMPT, backend="flex", api_name="/analyze")
    assert "FlexAttention" in badge and "block mask" in badge
    figures = client.predict(spec="local:api-qwen3", prompt=PROMPT, kind="self", layer=0, head=0, backend="flex",
                             api_name="/head")
    assert figures["blocks"] is not None  # the block-mask view of the layer's own rule
