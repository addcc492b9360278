"""The model spec (one string for page, API, share link and notebook), the option checks, and the views
that must honour the prefix length and sliding window like the Attention tab."""
import numpy as np
import pytest
import torch

from playground import zoo
from playground.errors import InputError, check_float, check_int
from playground.ui import service
from playground.ui.i18n import render
from playground.ui.lang import Words
from playground.zoo import ModelSpec
from playground.zoo.spec import SCHEMES, load


@pytest.mark.parametrize("text", ["zoo:gqa", "zoo:induction", "user:my-model", "untrained:decoder/GQA/alibi",
                                  "untrained:encdec/MQA/sinusoidal", "untrained:rwkv", "untrained:mamba"])
def test_a_spec_reads_back_as_written(text):
    spec = ModelSpec.parse(text)
    assert str(spec) == text and ModelSpec.parse(str(spec)) == spec
    assert spec.trained == (not text.startswith("untrained:"))


@pytest.mark.parametrize("text, code, names", [
    ("gqa", "error.spec_syntax", ["zoo, user, untrained"]),
    ("", "error.spec_syntax", []),
    ("bert:base", "error.spec_scheme", ["'bert'", "zoo, user, untrained"]),
    ("zoo:gpt5", "error.spec_zoo", ["'gpt5'", "baseline", "gqa"]),
    ("untrained:bert/MHA/rope", "error.spec_family", ["'bert'", "decoder, prefix, encdec, rwkv, mamba"]),
    ("untrained:decoder/MLX/rope", "error.spec_variant", ["'MLX'", "MHA, GQA, MQA, MLA"]),
    ("untrained:decoder/GQA/rotary", "error.spec_position", ["'rotary'", "alibi"]),
    ("untrained:decoder/GQA", "error.spec_untrained", ["untrained:rwkv"]),
    ("untrained:rwkv/MHA/none", "error.spec_untrained", []),
    ("user:../../etc", "error.spec_user", ["'../../etc'"]),
])
def test_a_bad_spec_says_what_is_valid(text, code, names):
    with pytest.raises(ValueError) as info:
        ModelSpec.parse(text)
    assert isinstance(info.value, InputError) and info.value.code == code
    assert all(n in str(info.value) for n in names), str(info.value)
    assert render(info.value, "zh-CN") != str(info.value)  # the page shows it in Chinese too


def test_specs_are_checked_however_they_are_made():
    with pytest.raises(InputError, match="valid sources"):
        ModelSpec("bert", "base")
    with pytest.raises(InputError, match="A Hub model is 'hf:owner/name'"):
        ModelSpec("hf", "gpt2")  # a bare legacy id is refused: a Hub id names its owner
    for name in ("../secrets", "/etc", "a/b", ".hidden"):
        with pytest.raises(InputError, match="A local model is"):
            ModelSpec.parse(f"local:{name}")  # one folder name: a visitor cannot name a path
    with pytest.raises(InputError, match="Unknown architecture"):
        ModelSpec("untrained", "bert/MHA/rope")
    assert ModelSpec.untrained("rwkv", "GQA", "alibi") == ModelSpec.parse("untrained:rwkv")  # nothing to choose
    assert set(SCHEMES) == {"zoo", "user", "untrained", "hf", "local"}


def test_load_by_spec():
    gqa = load("zoo:gqa")
    assert gqa.cfg.n_kv_heads == 2 and not gqa.training
    assert torch.equal(gqa.state_dict()["tok_emb.weight"], zoo.load("gqa").state_dict()["tok_emb.weight"])
    a, b = load("untrained:decoder/MQA/alibi", sliding_window=8), load(ModelSpec.parse("untrained:decoder/MQA/alibi"))
    assert a.cfg.sliding_window == 8 and a.cfg.n_kv_heads == 1 and a.cfg.position == "alibi"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # seeded
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    load("untrained:rwkv")
    assert torch.equal(torch.rand(1), before)  # the caller's random stream is untouched
    with pytest.raises(InputError, match="No model named 'nobody' was trained in the page"):
        load("user:nobody")


def test_check_int_and_float():
    assert check_int("layer", 3, 0, 3) == 3 and check_int("seed", 7.0, 0) == 7
    for bad in (4, -1, 1.5, "2", None, True):
        with pytest.raises(InputError, match="layer must be an integer from 0 to 3"):
            check_int("layer", bad, 0, 3)
    with pytest.raises(InputError, match="at least 0, got -2"):
        check_int("prefix_len", -2, 0)
    assert check_float("top_p", 0.5, 0.0, 1.0) == 0.5
    for bad in (1.5, float("nan"), "x"):
        with pytest.raises(InputError, match="top_p must be a number from 0.0 to 1.0"):
            check_float("top_p", bad, 0.0, 1.0)


def test_the_controls_resolve_to_a_spec():
    spec, sentence = service.resolve("decoder", "GQA", "rope")
    assert spec == ModelSpec("zoo", "gqa") and "gqa" in str(sentence)
    spec, _ = service.resolve("decoder", "MQA", "alibi", fallback="untrained")
    assert str(spec) == "untrained:decoder/MQA/alibi"
    spec, _ = service.resolve("decoder", "MQA", "alibi", fallback="nearest")
    assert spec.scheme == "zoo"
    assert str(service.resolve("rwkv", "GQA", "alibi", fallback="untrained")[0]) == "zoo:rwkv"
    assert str(service.resolve("decoder", "MHA", "rope", task_model="zoo:induction")[0]) == "zoo:induction"
    with pytest.raises(InputError, match="Unknown architecture 'bert'"):
        service.resolve("bert", "MHA", "rope")


def test_the_controls_show_every_spec_they_can_make():
    from playground.ui.controls import controls_for

    # (an untrained model of a shipped shape, untrained:mamba say, is a spec the controls cannot make:
    # a share link with one sets the controls to that shape and analyzes the link's spec itself)
    for text in ("zoo:gqa", "zoo:rwkv", "zoo:induction", "untrained:decoder/MQA/alibi", "untrained:encdec/GQA/alibi"):
        spec = ModelSpec.parse(text)
        c = controls_for(spec)
        assert service.resolve(c["family"], c["variant"], c["position"], task_model=c["task"] or None,
                               fallback=c["fallback"])[0] == spec


def test_service_checks_the_head_it_is_asked_for():
    result, _ = service.analyze_text(ModelSpec.parse("zoo:baseline"), "To be, or not to be")
    m, h = service.attention_map(result, "self", 3, 2)
    assert m.layer == 3 and h == 2
    for kind, layer, head, message in [("self", 4, 0, "layer must be an integer from 0 to 3, got 4"),
                                       ("self", 0, -1, "head must be an integer from 0 to 3, got -1"),
                                       ("cross", 0, 0, "no 'cross' attention; it has: self")]:
        with pytest.raises(ValueError, match=message):
            service.attention_map(result, kind, layer, head)
    with pytest.raises(ValueError, match="window must be an integer from 0 to 128, got 500"):
        service.analyze_text(ModelSpec.parse("zoo:baseline"), "hi", window=500)


def test_share_links_carry_the_spec_and_older_links_still_open():
    from urllib.parse import parse_qsl

    from playground.ui.share import parse, query_string

    spec = ModelSpec.parse("untrained:prefix/GQA/alibi")
    query = dict(parse_qsl(query_string(spec, "To be & not", 4, 8, "explicit", "self", 1, 2, "bfloat16")))
    view = parse(query)
    assert view["spec"] == spec and view["prompt"] == "To be & not"
    assert (view["prefix"], view["window"], view["backend"], view["layer"], view["head"]) == (4, 8, "explicit", 1, 2)
    assert view["dtype"] == "bfloat16" and parse({"spec": "zoo:gqa", "prompt": "x"})["dtype"] == "auto"
    old = parse({"arch": "prefix", "variant": "MHA", "pe": "rope", "prompt": "Hi", "task": "", "fallback": "nearest"})
    assert old["spec"] == ModelSpec("zoo", "prefix")
    assert parse({"task": "induction", "prompt": "x"})["spec"] == ModelSpec("zoo", "induction")
    assert parse({"spec": "zoo:gqa"}) is None  # no prompt: nothing to restore
    assert len(parse({"spec": "zoo:gqa", "prompt": "x" * (service.MAX_PROMPT_CHARS + 10)})["prompt"]) == service.MAX_PROMPT_CHARS
    for bad, message in [({"spec": "bert:x"}, "Unknown model source"), ({"window": "-1"}, "window must be"),
                         ({"layer": "x"}, "layer must be"), ({"backend": "fastest"}, "backend 'fastest'"),
                         ({"dtype": "int4"}, "dtype 'int4'")]:
        with pytest.raises(ValueError, match=message):
            parse({"spec": "zoo:gqa", "prompt": "x", **bad})


def test_head_insights_honour_the_prefix_and_the_window():
    from playground.ui.heads_tab import heads

    prompt = "The cat sat on the mat. The cat sat on the mat."
    windowed = heads("zoo:baseline", prompt, window=1)
    assert all(row[3] == 0 for row in windowed["data"])  # mean distance: each query sees only itself
    plain = heads("zoo:baseline", prompt)
    assert any(row[3] > 0 for row in plain["data"])
    from playground.ui.heads_tab import heads_state

    state = heads_state(Words(lang="en"), "zoo:prefix", prompt, 6, 0, "auto", "cpu")
    w = state.result().weights("self")  # (L, nh, T, T)
    assert state.result().prefix_len == 6 and (w[:, :, 0, 1:6] > 0).all() and (w[:, :, 0, 6:] == 0).all()


def test_compare_honours_the_prefix_and_the_window_and_never_subtracts_implicit_attention():
    from playground.ui.compare import compare_views

    w = Words(lang="en")
    a, b, diff, table, note = compare_views(w, "zoo:baseline", "zoo:gqa", "To be, or not to be", 1, 2, 0, 1,
                                            "auto", "cpu")
    z = np.nan_to_num(np.asarray(a.data[0].z, dtype=float))  # masked cells are drawn empty (NaN)
    assert np.allclose(z, np.eye(len(z)))  # window 1: the diagonal
    assert diff is not None and note == ""
    a, _, _, _, _ = compare_views(w, "zoo:prefix", "zoo:baseline", "To be, or not to be", 0, 0, 3, 0, "auto", "cpu")
    z = np.nan_to_num(np.asarray(a.data[0].z, dtype=float))
    assert (z[0, 1:3] > 0).all() and (z[0, 3:] == 0).all()  # query 0 sees the prefix, bidirectionally
    for other in ("untrained:rwkv", "zoo:mamba"):
        _, b, diff, table, note = compare_views(w, "zoo:baseline", other, "To be", 0, 0, 0, 0, "auto", "cpu")
        assert diff is None and other in note and "signed and not normalised" in note
        assert {row[0] for row in table["data"]} == {"zoo:baseline"}
