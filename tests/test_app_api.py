"""The page's API through gradio_client, as a script or notebook would call it."""
import json
import re
import time

import pytest
from gradio_client import Client

from playground import zoo
from playground.ui import service
from playground.zoo import ModelSpec

SPEC = "zoo:baseline"  # what the page's default controls resolve to


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def plot_json(value) -> dict:
    if value.get("__type__") == "update":  # a plot whose visibility the handler also sets
        value = value["value"]
    assert value["type"] == "plotly"
    return json.loads(value["plot"]) if isinstance(value["plot"], str) else value["plot"]


def test_named_endpoints(client):
    names = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/analyze", "/head", "/generate", "/kv_cache", "/models"} <= set(names)


def test_analyze_returns_overview_head_and_masks(client):
    out = client.predict(spec=SPEC, prompt="To be, or not to be, that is the question", api_name="/analyze")
    badge, overview = out[0], plot_json(out[1])
    assert "Kernel that ran" in badge and "max |Σ weight·v − the kernel's output|" in badge
    heat = overview["data"][0]
    assert heat["type"] == "heatmap"
    assert overview["layout"]["coloraxis"]["cmin"] == 0 and overview["layout"]["coloraxis"]["cmax"] == 1
    figures = client.predict(spec=SPEC, prompt="To be, or not to be, that is the question", kind="self", layer=1,
                             head=2, api_name="/head")
    head, mask = json.loads(figures["head"]), json.loads(figures["mask"])
    assert "layer 1, head 2" in head["layout"]["title"]["text"]
    labels = head["data"][0]["x"]
    assert labels[0].startswith("0 ") and any("␣" in label for label in labels)
    assert mask["data"][0]["type"] == "heatmap"


def test_analyze_encdec_shows_three_kinds(client):
    out = client.predict(spec="untrained:encdec/MHA/alibi", prompt="Friends, Romans", backend="explicit",
                         api_name="/analyze")
    titles = [plot_json(out[i])["layout"]["title"]["text"] for i in (1, 2, 3)]
    assert "Encoder self-attention" in titles[0] and "Decoder masked" in titles[1] and "Cross-attention" in titles[2]
    assert all("UNTRAINED" in t for t in titles)
    assert "explicit" in out[0]


def test_analyze_groups_the_overview_by_kv_head(client):
    """GQA: one label per K/V head over the query heads that share it, a line between groups; encoder-decoder
    groups every kind that has K/V heads; MHA and implicit attention are drawn as without grouping."""
    prompt = "To be, or not to be, that is the question"
    plain = plot_json(client.predict(spec="zoo:gqa", prompt=prompt, api_name="/analyze")[1])
    grouped = plot_json(client.predict(spec="zoo:gqa", prompt=prompt, group_kv=True, api_name="/analyze")[1])
    assert plain["layout"]["xaxis"]["ticktext"] == [f"head {h}" for h in range(4)]
    assert grouped["layout"]["xaxis"]["ticktext"] == ["kv0: h0 h1", "kv1: h2 h3"]
    assert len(grouped["layout"]["shapes"]) == 1 and grouped["layout"]["meta"]["heads"] == [0, 1, 2, 3]
    assert "columns grouped by K/V head (2 K/V heads)" in grouped["layout"]["title"]["text"]
    encdec = client.predict(spec="untrained:encdec/MQA/alibi", prompt="Friends, Romans", group_kv=True,
                            api_name="/analyze")
    for out in encdec[1:]:
        assert plot_json(out)["layout"]["xaxis"]["ticktext"] == ["kv0: h0 h1 h2 h3"]
    for spec in ("zoo:baseline", "zoo:rwkv"):
        a, b = (plot_json(client.predict(spec=spec, prompt=prompt, group_kv=g, api_name="/analyze")[1])
                for g in (False, True))
        assert a["layout"]["xaxis"]["ticktext"] == b["layout"]["xaxis"]["ticktext"] == [f"head {h}" for h in range(4)]
        assert "grouped" not in b["layout"]["title"]["text"] and "shapes" not in b["layout"]


def test_the_grouping_note_says_what_shares_a_kv_head_or_that_nothing_changes():
    from playground.ui import service
    from playground.ui.attention import group_note
    from playground.ui.lang import Words
    from playground.zoo import ModelSpec

    def note(spec, lang="en"):
        result, _ = service.analyze_text(ModelSpec.parse(spec), "To be, or not to be")
        return group_note(Words(lang=lang), result)

    assert note("zoo:gqa") == "4 query heads share 2 K/V heads: kv0: h0 h1; kv1: h2 h3"
    assert note("zoo:mqa", "zh-CN") == "4 个查询头共享 1 个 K/V 头：KV0：h0 h1 h2 h3"
    assert "each of the 4 query heads has its own K/V head" in note("zoo:baseline")
    assert "no K/V heads" in note("zoo:mamba")


def test_html_in_prompt_is_text(client):
    figures = client.predict(SPEC, "<script>alert(1)</script><b>x</b>", "self", 0, 0, api_name="/head")
    labels = " ".join(json.loads(figures["head"])["data"][0]["x"])
    assert "<script" not in labels and "&lt;" in labels


def test_bad_input_is_a_clear_error_and_the_app_survives(client):
    with pytest.raises(Exception, match="empty"):
        client.predict(spec=SPEC, prompt="   ", api_name="/analyze")
    with pytest.raises(Exception, match="flash|efficient|cannot run"):
        client.predict(spec=SPEC, prompt="hello", backend="efficient", api_name="/analyze")
    out = client.predict(spec=SPEC, prompt="still works", api_name="/analyze")
    assert "Kernel that ran" in out[0]


def badge_diff(badge: str) -> float:
    return float(re.search(r"the kernel's output\| = ([0-9.e+-]+)", badge).group(1))


def test_dtype_runs_the_model_in_it_and_the_badge_names_each_layer(client):
    """On this CPU auto is float32; bfloat16 runs (SDPA flash takes it) and the badge says, per layer group, what
    ran and how it was called, and how far the output is from the float32 explicit path."""
    prompt = "To be, or not to be, that is the question"
    fp32 = client.predict(spec=SPEC, prompt=prompt, api_name="/analyze")[0]
    bf16 = client.predict(spec=SPEC, prompt=prompt, dtype="bfloat16", api_name="/analyze")[0]
    assert "in <b>float32</b>" in fp32 and "in <b>bfloat16</b>" in bf16
    for badge in (fp32, bf16):
        assert "self · layers 0–3: SDPA flash attention (is_causal=True, no mask)" in badge
    assert badge_diff(fp32) < 1e-5 < badge_diff(bf16) < 5e-2
    window = client.predict(spec=SPEC, prompt=prompt, window=4, api_name="/analyze")[0]
    assert "layers 0–3: SDPA flash attention (dense mask)" in window and "one 128-key block" in window
    long = client.predict(spec=SPEC, prompt="all the world's a stage " * 20, window=4, api_name="/analyze")[0]
    assert "layers 0–3: FlexAttention (compiled, block-sparse) (block mask)" in long and "128-key" not in long
    # the KV cache runs in the dtype too: baseline's 4,096 fp32 bytes per position are 2,048 in bf16
    text, growth = client.predict(spec=SPEC, prompt="Now is the winter", max_new_tokens=12, window=8,
                                  dtype="bfloat16", api_name="/generate")[:2]
    ys = plot_json(growth)["data"][-1]["y"]
    if isinstance(ys, dict):
        import base64

        import numpy as np
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    assert text and max(ys) == ys[-1] == 8 * 2048


def test_long_prompt_is_pooled_and_a_learned_model_cut_at_its_positions(client):
    out = client.predict(spec=SPEC, prompt="all the world's a stage " * 600, api_name="/analyze")
    title = plot_json(out[1])["layout"]["title"]["text"]
    tokens = len(service.tokenize(ModelSpec.parse(SPEC), "all the world's a stage " * 600)[0])
    assert tokens > 3000 and f"{tokens}×{tokens} tokens" in title and "max over cells of" in title
    learned = ModelSpec.parse("zoo:learned")
    ids, notes = service.tokenize(learned, "all the world's a stage " * 600)
    assert len(ids) == learned.config().context_length
    assert "the model's own positions end at" in str(notes[0])


def test_generate_measures_the_cache(client):
    text, growth, step, step_plot, info = client.predict(spec=SPEC, prompt="Now is the winter", max_new_tokens=12,
                                                         api_name="/generate")[:5]
    assert isinstance(text, str) and text
    measured = plot_json(growth)["data"][-1]
    assert measured["name"].startswith("measured")
    ys = measured["y"]
    if isinstance(ys, dict):  # plotly's typed-array encoding
        import base64

        import numpy as np
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    assert len(ys) == 12 and all(b > a for a, b in zip(ys, ys[1:]))
    assert "Step **0**" in info


def test_a_sliding_window_caps_the_measured_cache(client):
    """baseline caches 4,096 fp32 bytes per position; with a window of 8 it never holds more than 8 positions."""
    growth = plot_json(client.predict(spec=SPEC, prompt="Now is the winter", max_new_tokens=16, window=8,
                                      api_name="/generate")[1])
    names = [trace["name"] for trace in growth["data"]]
    assert any("window 8" in n for n in names)
    ys = growth["data"][-1]["y"]
    if isinstance(ys, dict):
        import base64

        import numpy as np
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    assert max(ys) == ys[-1] == 8 * 4096


def test_generate_plots_the_allocated_cache_bytes(client):
    """The allocated curve is tensor.nbytes: flat at every position without a window (preallocated);
    with a window of 8, the prefill holds the whole prompt, then 8 positions of 4,096 bytes."""
    import base64

    import numpy as np

    prompt = "Now is the winter of our discontent made glorious summer"  # longer than the window

    def curves(window: int) -> tuple[list, list]:
        growth = plot_json(client.predict(spec=SPEC, prompt=prompt, max_new_tokens=12, window=window,
                                          api_name="/generate")[1])
        allocated, used = growth["data"][-2:]
        assert allocated["name"].startswith("measured, allocated") and used["name"].startswith("measured, in use")
        ys = [t["y"] for t in (allocated, used)]
        return [np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist() if isinstance(y, dict)
                else y for y in ys]

    allocated, used = curves(0)
    assert len(set(allocated)) == 1 and allocated[0] == used[-1] + 4096  # the slot of a 13th token never written
    allocated, used = curves(8)
    assert allocated[0] == used[0] > 8 * 4096
    assert allocated[1:] == used[1:] == [8 * 4096] * 11


def test_kv_cache_calculator(client):
    table, chart = client.predict(32, 32, 8, 128, 512, 64, "bf16", 8192, 1, api_name="/kv_cache")
    rows = {r[0]: float(r[2]) for r in table["data"]}
    assert rows["MHA (32 K/V heads)"] == pytest.approx(4.0)   # 2*32*128*32 layers*2 bytes*8192 = 4 GiB
    assert rows["GQA (8 K/V heads)"] == pytest.approx(1.0)


def test_models_endpoint_lists_the_zoo(client):
    rows = client.predict(api_name="/models")
    assert [r["name"] for r in rows] == zoo.available()


def test_heads_endpoint_scores_every_head(client):
    table = client.predict(spec=SPEC, prompt="The cat sat on the mat. The cat sat on the mat.", api_name="/heads")
    assert table["headers"][:2] == ["layer", "head"] and "induction" in table["headers"]
    assert len(table["data"]) == 16  # 4 layers x 4 heads
    assert all(0 <= row[-1] <= 1 for row in table["data"])


def test_kernel_lab_reports_unavailable_kernels_honestly(client):
    table, _, _, note = client.predict([128], 2, 32, "float32", "cpu", api_name="/kernels")
    rows = {r[1]: r for r in table["data"]}
    assert rows["explicit softmax(QKᵀ/√d)V"][2] == "yes"
    efficient = rows["SDPA memory-efficient attention"]
    assert efficient[2] == "no" and "CPU" in efficient[-1]
    assert "A plain SDPA call runs" in note


def test_compare_two_models(client):
    names = [f"zoo:{n}" for n in zoo.available() if not zoo.ZOO[n].get("task")]
    if len(names) < 2:
        pytest.skip("fewer than two text models are installed")
    a, b, diff, table, note = client.predict(spec_a=names[0], spec_b=names[1], prompt="To be, or not to be", layer=1,
                                             head=2, api_name="/compare")
    assert names[0] in plot_json(a)["layout"]["title"]["text"]
    assert plot_json(diff)["layout"]["coloraxis"]["cmid"] == 0
    assert {row[0] for row in table["data"]} == {names[0], names[1]}


@pytest.mark.parametrize("family", ["rwkv", "mamba"])
def test_recurrent_models_show_signed_implicit_attention_and_a_flat_state(client, family):
    out = client.predict(spec=f"untrained:{family}", prompt="To be, or not to be", api_name="/analyze")
    overview = plot_json(out[1])
    assert "implicit attention" in overview["layout"]["title"]["text"]
    assert overview["layout"]["coloraxis"]["cmid"] == 0  # signed: diverging scale
    assert "reproduces the mixer's output" in out[0]
    growth = plot_json(client.predict(spec=f"untrained:{family}", prompt="To be", max_new_tokens=6,
                                      api_name="/generate")[1])
    ys = growth["data"][-1]["y"]
    if isinstance(ys, dict):
        import base64

        import numpy as np
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    assert len(set(ys)) == 1  # the state does not grow


def test_train_in_the_page_then_explore_the_result(client):
    job = client.submit("decoder", "GQA", "alibi", "task:induction", 20, 0.003, "api-test", api_name="/train")
    outputs = job.result(timeout=300)
    assert "Saved as **user:api-test**" in outputs[0]
    assert "user:api-test" in zoo.user_models()
    out = client.predict(spec="user:api-test", prompt="hi", api_name="/analyze")
    assert "Kernel that ran" in out[0]
    with pytest.raises(Exception, match="already exists"):
        client.predict("decoder", "GQA", "alibi", "task:induction", 20, 0.003, "api-test", api_name="/train")
    with pytest.raises(Exception, match="Name the model"):
        client.predict("decoder", "GQA", "alibi", "task:induction", 20, 0.003, "../evil", api_name="/train")


def test_cancel_stops_training_and_leaves_nothing_behind(client):
    import time

    job = client.submit("decoder", "MHA", "none", "task:copy", 600, 0.003, "cancel-me", api_name="/train")
    deadline = time.time() + 120
    while time.time() < deadline and not (zoo.USER_DIR / "cancel-me" / "train_state.json").exists():
        time.sleep(0.5)  # the trainer checkpoints every 25 steps
    job.cancel()
    folder = zoo.USER_DIR / "cancel-me"
    deadline = time.time() + 60
    while time.time() < deadline and folder.exists():  # the trainer stops, then its unfinished run is deleted
        time.sleep(0.2)
    assert not folder.exists()
    time.sleep(2)
    assert not folder.exists()  # and nothing writes it again: the trainer stopped


def test_messages_and_figures_follow_accept_language(app_url):
    zh = Client(app_url, verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    with pytest.raises(Exception, match="提示词为空"):
        zh.predict(spec=SPEC, prompt="   ", api_name="/analyze")
    out = zh.predict(spec=SPEC, prompt="To be, or not to be, that is the question", api_name="/analyze")
    assert "实际运行的算子" in out[0]
    assert plot_json(out[1])["layout"]["title"]["text"].startswith("自注意力（因果）")
    table, _ = zh.predict(32, 32, 8, 128, 512, 64, "bf16", 8192, 1, api_name="/kv_cache")
    assert table["headers"] == ["变体", "每词元字节数", "GiB"] and table["data"][1][0] == "GQA（8 个 K/V 头）"
    en = Client(app_url, verbose=False)  # no header: English
    table, _ = en.predict(32, 32, 8, 128, 512, 64, "bf16", 8192, 1, api_name="/kv_cache")
    assert table["headers"] == ["variant", "bytes per token", "GiB"] and table["data"][1][0] == "GQA (8 K/V heads)"


@pytest.mark.parametrize("call, message", [
    (dict(api_name="/head", kind="self", layer=99, head=0), "layer must be an integer from 0 to 3, got 99"),
    (dict(api_name="/head", kind="self", layer=0, head=-1), "head must be an integer from 0 to 3, got -1"),
    (dict(api_name="/head", kind="cross", layer=0, head=0), "no 'cross' attention; it has: self"),
    (dict(api_name="/analyze", spec="untrained:bert/MHA/rope"), "Unknown architecture 'bert'; valid: decoder"),
    (dict(api_name="/analyze", spec="bert:base"), "Unknown model source 'bert'.*valid sources: zoo, user, untrained"),
    (dict(api_name="/analyze", spec="zoo:gpt5"), "No zoo model is named 'gpt5'; the zoo has: baseline"),
    (dict(api_name="/analyze", spec="gqa"), "A model spec is 'source:name'"),
    (dict(api_name="/analyze", prompt=""), "The prompt is empty"),
    (dict(api_name="/analyze", window=-1), "window must be an integer from 0 to 128, got -1"),
    (dict(api_name="/analyze", prefix_len=-2), "prefix_len must be an integer of at least 0, got -2"),
    (dict(api_name="/analyze", backend="fastest"), "backend 'fastest' is not one of"),
    (dict(api_name="/analyze", dtype="int8"), "dtype 'int8' is not one of: auto, float32, bfloat16, float16"),
    (dict(api_name="/generate", dtype="fp8"), "dtype 'fp8' is not one of"),
    (dict(api_name="/heads", window=-1), "window must be an integer from 0 to 128"),
    (dict(api_name="/heads", spec="untrained:rwkv"), "Head roles are shares of softmax attention"),
    (dict(api_name="/generate", max_new_tokens=0), "max_new_tokens must be an integer from 1 to 256, got 0"),
    (dict(api_name="/generate", top_p=1.5), "top_p must be a number from 0.0 to 1.0, got 1.5"),
    (dict(api_name="/compare", spec_b="zoo:nope", layer=9), "zoo:baseline: layer must be an integer from 0 to 3"),
    (dict(api_name="/compare", spec_b="untrained:decoder/GQA/rotary"), "Unknown position encoding 'rotary'"),
    (dict(api_name="/compare", spec_b="user:ghost"), "No model named 'ghost' was trained in the page"),
    (dict(api_name="/compare", spec_b="untrained:rwkv", window=-3), "zoo:baseline: window must be an integer"),
])
def test_every_endpoint_answers_bad_input_with_a_clear_message(client, call, message):
    """Nothing is clamped or guessed: a value the model does not have is an error that says what it has."""
    args = {"spec": SPEC, "prompt": "To be, or not to be"} | call
    if args["api_name"] == "/compare":
        args["spec_a"] = args.pop("spec")
        args.setdefault("spec_b", "zoo:gqa")
    with pytest.raises(Exception, match=message):
        client.predict(**args)


def test_compare_shows_implicit_attention_beside_softmax_without_a_difference(client):
    a, b, diff, table, note = client.predict(spec_a=SPEC, spec_b="untrained:rwkv", prompt="To be, or not to be",
                                             api_name="/compare")
    assert diff is None
    assert "No difference map" in note and "untrained:rwkv" in note and "signed" in note
    assert "implicit attention" in plot_json(b)["layout"]["title"]["text"]
    assert plot_json(b)["layout"]["coloraxis"]["cmid"] == 0  # signed: diverging scale
    assert {row[0] for row in table["data"]} == {SPEC}  # role scores only for the softmax side


def test_readme_api_examples_run(app_url):
    """The README's "## API" code block, run as written against the test server."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "http://127.0.0.1:7860/" in code
    scope: dict = {}
    exec(compile(code.replace("http://127.0.0.1:7860/", app_url), "README.md", "exec"), scope)
    assert "Kernel that ran" in scope["badge"] and plot_json(scope["overview"])["data"][0]["type"] == "heatmap"
    assert "layer 1, head 2" in json.loads(scope["figs"]["head"])["layout"]["title"]["text"]
    assert scope["gen"][0] and scope["gen"][2] == 16
    assert len(scope["roles"]["data"]) == 16 and scope["diff"] is None and "No difference map" in scope["note"]
    assert [row[0] for row in scope["table"][0]["data"]] == ["MHA (32 K/V heads)", "GQA (8 K/V heads)",
                                                            "MQA (1 K/V head)", "MLA (latent 512 + rope 64)"]
    assert [r["name"] for r in scope["models"]] == zoo.available()
    ablation = scope["ablation"]
    assert [len(row) for row in ablation["d_loss"]] == [4] * 4 and ablation["target_tokens"] == ["␣be"]


def test_a_zoom_answers_while_two_long_analyses_hold_the_analyze_lane(client, app_url):
    """/tile (like /head and the page's box zoom) reads a stored analysis in a lane of its own: while two long
    analyses of two visitors fill the analyze lane, it comes back before either of them finishes. A visitor's
    second heavy job while the first runs is refused: one at a time per session."""
    import time

    from gradio_client.utils import Status

    short = "To be, or not to be, that is the question"
    client.predict(spec="zoo:baseline", prompt=short, api_name="/analyze")  # stored
    text = "Whether 'tis nobler in the mind to suffer the slings and arrows of outrageous fortune. " * 90
    visitors = [client, Client(app_url, verbose=False)]
    jobs = [v.submit(spec="zoo:baseline", prompt=f"{i} {text}", api_name="/analyze") for i, v in enumerate(visitors)]
    deadline = time.monotonic() + 120
    while not all(job.status().code == Status.PROCESSING for job in jobs):  # both hold the lane now
        assert time.monotonic() < deadline and not any(job.done() for job in jobs), "the analyses did not start"
        time.sleep(0.05)
    tile = client.predict(spec="zoo:baseline", prompt=short, kind="self", layer=0, head=0, rows=[0, 4], cols=[0, 4],
                          api_name="/tile")
    assert tile["exact"] and not any(job.done() for job in jobs)
    with pytest.raises(Exception, match="one runs at a time for each visitor"):
        client.predict(spec="zoo:baseline", prompt="a third " + text, api_name="/generate")
    for job in jobs:
        job.result(timeout=300)


def test_fifty_exports_leave_a_bounded_folder(tmp_path):
    from playground.ui.attention import EXPORTS_KEPT, export_folder

    for i in range(50):
        (export_folder(tmp_path) / "attention.json").write_text("x" * 1000)
    folders = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(folders) <= EXPORTS_KEPT
    assert sum(f.stat().st_size for p in folders for f in p.iterdir()) <= EXPORTS_KEPT * 1000


def test_gradio_deletes_its_cached_copies_of_exports():
    from playground.ui import build_app

    assert build_app(warm_up=False, landing=False).delete_cache == (3600, 3600)


def test_every_request_writes_one_line_to_the_operators_log(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="playground.requests"):
        client.predict(spec="zoo:baseline", prompt="To be, or not", max_new_tokens=4, api_name="/generate")
        with pytest.raises(Exception, match="max_new_tokens"):
            client.predict(spec="zoo:baseline", prompt="To be", max_new_tokens=100_000, api_name="/generate")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "playground.requests"]
    ok = next(line for line in lines if line["outcome"] == "ok" and line["route"] == "generate_text")
    assert ok["spec"] == "zoo:baseline" and ok["prompt_chars"] == len("To be, or not") and ok["ms"] > 0
    assert ok["tokens"] == len(service.tokenize(ModelSpec.parse("zoo:baseline"), "To be, or not")[0])
    assert 0 < ok["estimate_s"] < 60  # the estimate it was admitted with
    # the server's memory after it: the memory check's sources (the model's weights among them) and the process's
    assert ok["held_mb"]["weights"] > 0 and {"analyses", "timelines", "in flight"} <= set(ok["held_mb"])
    assert ok["rss_mb"] > sum(ok["held_mb"].values())
    refused = [line for line in lines if line["outcome"] == "refused"]
    assert refused and all(line["message"] for line in refused)


def test_an_analysis_past_the_operators_ceiling_is_refused_with_what_fits(monkeypatch):
    from playground.ui.i18n import MessageError

    spec = ModelSpec.parse("zoo:baseline")
    text = "To be, or not to be, that is the question. " * 40
    monkeypatch.setenv(service.MAX_JOB_ENV, "0.05")
    with pytest.raises(MessageError) as info:
        service.analyze_text(spec, text + "ceiling")
    params = info.value.params
    assert info.value.code == "error.job_too_long" and params["seconds"] >= 0 and 0 < params["fits"] < params["tokens"]
    fitting = spec.tokenizer().decode(spec.tokenizer().encode(text)[:params["fits"]])
    assert service.estimate(spec, fitting)["seconds"] <= 0.05 * 1.01
    monkeypatch.delenv(service.MAX_JOB_ENV)
    result, _ = service.analyze_text(spec, text + "ceiling")  # the default ceiling takes it
    assert result.maps


def test_a_generation_past_the_operators_ceiling_is_refused_before_it_starts(monkeypatch):
    """The Generate tab and /generate estimate the time first (the prompt's forward, then each new token's forward
    and attention over the cache); past the ceiling the message says how many new tokens would fit, and that many
    pass the check."""
    import gradio as gr
    from playground.ui.generation import generation_state
    from playground.ui.lang import Words

    spec, text = ModelSpec.parse("zoo:baseline"), "Once upon a time there was a cat. " * 20
    est = service.generation_seconds(spec, text, 200)
    assert est["seconds"] > service.generation_seconds(spec, text, 20)["seconds"] > 0
    monkeypatch.setenv(service.MAX_JOB_ENV, str(est["seconds"] / 2))
    calls = []
    monkeypatch.setattr(service.timelines, "decode_timeline", lambda *a, **k: calls.append(a))
    with pytest.raises(gr.Error, match="new tokens fit") as refused:
        generation_state(Words(None), "zoo:baseline", text, 200, 0.0, 0, 1.0, 0, 0, "auto", "cpu")
    assert not calls  # nothing started
    fits = int(re.search(r"About ([\d,]+) new tokens fit", refused.value.message).group(1).replace(",", ""))
    assert 0 < fits < 200
    service.check_generation_seconds(spec, text, fits)  # passes
    with pytest.raises(ValueError):
        service.check_generation_seconds(spec, text, fits + 2)


def test_cancel_also_takes_a_queued_analysis_or_generation_out_of_the_queue():
    """Each Cancel button cancels its tab's event itself (Gradio removes it from the queue if it has not started),
    besides the flag that stops a running one between layers or tokens."""
    from playground.ui import build_app

    demo = build_app(warm_up=False, landing=False)
    config = demo.get_config_file()
    labels = {c["id"]: str(c.get("props", {}).get("value")) for c in config["components"]}
    deps = config["dependencies"]

    def clicks(key: str) -> list[dict]:  # the page's buttons carry their label as a translation key
        return [d for d in deps if any(f'"key": "{key}"' in labels.get(t[0], "") and t[1] == "click"
                                       for t in d["targets"])]

    analyses = {d["id"] for d in clicks("attention.analyze")}
    generations = {d["id"] for d in clicks("generate.generate")}
    comparisons = {d["id"] for d in clicks("compare.compare")}
    assert analyses and generations and comparisons
    cancels = [set(cancel["cancels"]) for cancel in clicks("attention.cancel")]
    assert all(any(c & jobs for c in cancels) for jobs in (analyses, generations, comparisons))
    assert any(t[1] == "unload" for d in deps for t in d["targets"])  # a closed tab presses Cancel for its session


def test_cancel_stops_a_running_generation_after_its_token():
    """The Generate tab's flag, read between tokens: pressed during the third token, the generation stops there
    with a Cancelled (the tab says so in words); a press with nothing running is
    forgotten, so the next generation runs to the end."""
    from playground.inspect.analysis import Cancelled
    from playground.ui.cancels import Cancels

    cancels, spec, seen = Cancels(), ModelSpec.parse("zoo:baseline"), []
    assert not cancels.press("s1")  # nothing runs: forgotten
    with cancels.job("s1") as cancelled:
        def progress(done, total):
            seen.append((done, total))
            if done == 3:
                assert cancels.press("s1")
        with pytest.raises(Cancelled, match="after 3 of 20 new tokens"):
            service.generate_text(spec, "The cat sat", 20, progress=progress, cancelled=cancelled)
    assert seen == [(i, 20) for i in (1, 2, 3)] and not cancels.running("s1")
    with cancels.job("s1") as cancelled:
        timeline, _ = service.generate_text(spec, "The cat sat", 5, cancelled=cancelled)
    assert len(timeline.rows) == 5


def test_the_default_model_name_is_each_visitors_own(app_url):
    """Two visitors who keep the default name both train: each gets my-model-<their session>, and no optimizer
    state is left beside a finished model."""
    names = []
    for _ in range(2):
        visitor = Client(app_url, verbose=False)
        status = visitor.predict("decoder", "MHA", "none", "task:copy", 10, 0.003, "my-model", api_name="/train")[0]
        names.append(re.search(r"user:(my-model-[A-Za-z0-9]+)", status).group(1))
    assert names[0] != names[1]
    for name in names:
        folder = zoo.USER_DIR / name
        assert (folder / "card.json").exists() and not list(folder.glob("train_state*"))


def test_one_heavy_job_per_session_and_the_pages_own_views_do_not_count():
    from playground.ui.cancels import Cancels, page_own
    from playground.ui.i18n import MessageError

    cancels = Cancels()
    with cancels.job("s", exclusive=True):
        with pytest.raises(MessageError, match="one runs at a time"), cancels.job("s", exclusive=True):
            pass
        with cancels.job("another visitor", exclusive=True):
            pass
        with page_own(), cancels.job("s", exclusive=True):  # the page's first views are not the visitor's jobs
            pass
        with cancels.job("s"):  # nor is work that is not exclusive
            pass
    with cancels.job("s", exclusive=True):  # the first one ended: free again
        assert cancels.running("s")
    assert not cancels.running("s")


def test_an_api_client_cancels_its_own_running_job(app_url):
    """/cancel from the client that started a job stops it after its current step; from another client it
    stops nothing (each client is its own session)."""
    owner, other = Client(app_url, verbose=False), Client(app_url, verbose=False)
    text = " ".join(f"word{i} and more of the long text" for i in range(450))  # about 3,000 tokens: seconds
    job = owner.submit(spec_a="zoo:baseline", spec_b="zoo:gqa", prompt=text, api_name="/compare")
    deadline = time.monotonic() + 60
    while not owner.predict(api_name="/cancel"):  # True once the comparison runs
        assert not job.done() and time.monotonic() < deadline
        assert not other.predict(api_name="/cancel")
        time.sleep(0.05)
    with pytest.raises(Exception, match="[Cc]ancel"):
        job.result(timeout=120)


def test_the_kv_cache_lab_answers_from_the_api(client):
    """/kvlab: each policy's mean bytes and what it cost against the full cache, and the two figures."""
    summary, tradeoff, growth = client.predict(spec="zoo:gqa", text="To be, or not to be, that is the question. " * 8,
                                               policies="window,int8", tokens=64, budget=0.25, api_name="/kvlab")
    assert [row["policy"] for row in summary] == ["full", "window 16", "int8"]
    full, window, int8 = summary
    assert full["bytes_share"] == 1 and full["kl"] == 0 and window["bytes_share"] < 0.5 and int8["bytes_share"] < 1
    assert tradeoff["type"] == "plotly" and growth["type"] == "plotly"
    with pytest.raises(Exception, match="zoo:gqa|decoders"):
        client.predict(spec="zoo:alibi", text="hello there " * 10, api_name="/kvlab")
