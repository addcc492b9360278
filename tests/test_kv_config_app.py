"""The calculator's config.json section through the page's API (/kv_config), as a script would call it."""
import json
import sys
import types

import pytest
from gradio_client import Client

HUB_MODULE = "playground.models.pretrained.hub"
GEMMA_3_1B = {"model_type": "gemma3_text", "hidden_size": 1152, "num_attention_heads": 4, "num_key_value_heads": 1,
              "head_dim": 256, "num_hidden_layers": 26, "sliding_window": 512, "sliding_window_pattern": 6}
DEEPSEEK_V2 = {"model_type": "deepseek_v2", "hidden_size": 5120, "num_attention_heads": 128,
               "num_key_value_heads": 128, "num_hidden_layers": 60, "kv_lora_rank": 512, "qk_rope_head_dim": 64}


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def plot_json(value) -> dict:
    assert value["type"] == "plotly"
    return json.loads(value["plot"]) if isinstance(value["plot"], str) else value["plot"]


def last(ys) -> float:
    if isinstance(ys, dict):  # plotly's typed-array encoding
        import base64

        import numpy as np
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    return ys[-1]


def test_pasted_config_gives_each_layer_and_the_generic_formula(client):
    table, line, chart = client.predict(json.dumps(GEMMA_3_1B, indent=1), "bf16", 32768, 1, api_name="/kv_config")
    assert table["headers"][:4] == ["layer kind", "layers (count: which)", "bytes per token, each layer",
                                    "holds at most (tokens)"]
    rows = {row[0]: row for row in table["data"]}
    assert rows["sliding window"][1:4] == ["22: 0–4, 6–10, 12–16, 18–22, 24–25", "1,024", "512"]
    assert rows["full attention"][1:4] == ["4: 5, 11, 17, 23", "1,024", "—"]
    # 4 global layers keep 32,768 tokens (128 MiB), 22 local ones 512 (11 MiB); the formula says 26 x 32,768
    assert rows["full attention"][5] == "128.00 MiB" and rows["sliding window"][5] == "11.00 MiB"
    assert "**139.00 MiB**" in line and "2 × 26 × 1 × 256 × 2 bytes = 26,624 bytes per token" in line
    assert "**832.00 MiB**" in line and "5.99×" in line
    figure = plot_json(chart)
    bands = [trace for trace in figure["data"] if trace.get("stackgroup")]
    assert [trace["name"] for trace in bands] == ["sliding window (512)", "full attention"]
    assert last(bands[0]["y"]) == pytest.approx(11 / 1024) and last(bands[1]["y"]) == pytest.approx(0.125)
    assert figure["data"][-1]["name"].startswith("generic formula") and last(figure["data"][-1]["y"]) == 0.8125
    assert figure["layout"]["xaxis"]["title"]["text"] == "context (tokens)"

    _, line, _ = client.predict(json.dumps(DEEPSEEK_V2), "bf16", 1, 1, api_name="/kv_config")
    assert "69,120 bytes per token" in line


def test_bad_config_is_a_clear_error(client):
    with pytest.raises(Exception, match="not valid JSON: Expecting ',' delimiter .line 1, column 24"):
        client.predict('{"model_type": "llama" "x": 1}', "bf16", 1024, 1, api_name="/kv_config")
    with pytest.raises(Exception, match="config.json has no num_attention_heads / n_head"):
        client.predict('{"num_hidden_layers": 32, "hidden_size": 4096}', "bf16", 1024, 1, api_name="/kv_config")
    with pytest.raises(Exception, match="neither a Hub id .owner/name. nor JSON"):
        client.predict("just some words", "bf16", 1024, 1, api_name="/kv_config")
    with pytest.raises(Exception, match="not valid JSON: nested too deeply"):
        client.predict("[" * 100_000, "bf16", 1024, 1, api_name="/kv_config")
    with pytest.raises(Exception, match="Type a Hub id"):
        client.predict("   ", "bf16", 1024, 1, api_name="/kv_config")
    table, _, _ = client.predict(json.dumps(GEMMA_3_1B), "fp32", 10, 2, api_name="/kv_config")
    assert table["data"][0][5] == "880.00 KiB"  # the page still answers: 2 x 22 layers x 10 tokens x 2,048 bytes


def test_a_hub_id_is_fetched_by_the_loader(client, monkeypatch):
    """The Hub path calls the loader's fetch_config; without that module, the page says the Hub is not available."""
    asked = []

    def fetch_config(source, token=None):
        assert token is False  # a visitor's id: never with the operator's token
        asked.append(source)
        if source == "nobody/nothing":
            raise ValueError("Repository nobody/nothing was not found on the Hub")
        return DEEPSEEK_V2

    monkeypatch.setitem(sys.modules, HUB_MODULE, types.SimpleNamespace(fetch_config=fetch_config,
                                                                       server_token=lambda repo: False))
    _, line, _ = client.predict("deepseek-ai/DeepSeek-V2", "bf16", 1, 1, api_name="/kv_config")
    assert asked == ["deepseek-ai/DeepSeek-V2"] and "69,120 bytes per token" in line
    client.predict("hf:deepseek-ai/DeepSeek-V2", "bf16", 1, 1, api_name="/kv_config")  # the page's model spec
    assert asked == ["deepseek-ai/DeepSeek-V2"] * 2
    with pytest.raises(Exception, match="nobody/nothing was not found"):
        client.predict("nobody/nothing", "bf16", 1, 1, api_name="/kv_config")
    monkeypatch.setitem(sys.modules, HUB_MODULE, None)  # the import fails
    with pytest.raises(Exception, match="Fetching from the Hub is not available"):
        client.predict("deepseek-ai/DeepSeek-V2", "bf16", 1, 1, api_name="/kv_config")


def test_chinese_page(app_url):
    zh = Client(app_url, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    table, line, _ = zh.predict(json.dumps(GEMMA_3_1B), "bf16", 32768, 1, api_name="/kv_config")
    assert table["headers"][0] == "层类型" and table["data"][0][0] == "滑动窗口"
    assert "逐层计算" in line and "通用公式" in line
