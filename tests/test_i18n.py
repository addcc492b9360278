"""English and 简体中文: the catalogues agree, every key the code uses exists, the language is chosen right."""
import re
import string
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from playground.ui import i18n
from playground import plots
from playground.ui import service
from playground import zoo
from playground.nn.cache import whatif
from playground.ui.i18n import LANGUAGES, Message, MessageError, catalogues, from_accept_language, msg, normalise, render
from playground.config import BACKENDS, DTYPES, FAMILIES, VARIANTS
from playground.nn.kernels import CALLS, KERNEL_LABELS
from playground.inspect.kernel_timing import PATTERNS
from playground.ui.learn_tab import STEPS
from playground.inspect.kv_lab import LAB_POLICIES
from playground.ui.lang import Words

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {p: p.read_text() for p in (ROOT / "playground").rglob("*.py")}


def fields(template: str) -> dict[str, str]:
    """placeholder name -> format spec ('{n:,}' -> {'n': ','})."""
    return {name: spec for _, name, spec, _ in string.Formatter().parse(template) if name is not None}


def test_every_language_has_every_key_with_the_same_placeholders():
    books = catalogues()
    assert set(books) == set(LANGUAGES)
    en = books["en"]
    for lang, book in books.items():
        assert set(book) == set(en), f"{lang}: missing {set(en) - set(book)}, extra {set(book) - set(en)}"
        for key, template in book.items():
            assert template.strip(), f"{lang}:{key} is empty"
            if "%{" in template:  # a Plotly hover template, never formatted by Python
                assert re.findall(r"%\{[^}]+\}", template) == re.findall(r"%\{[^}]+\}", en[key]), key
                continue
            assert fields(template) == fields(en[key]), f"{lang}:{key} placeholders differ from English"


def test_chinese_is_chinese():
    zh = catalogues()["zh-CN"]
    han = re.compile(r"[\u4e00-\u9fff]")
    untranslated = [k for k, v in zh.items() if v == catalogues()["en"][k] and re.search("[a-z]{4,}", v)]
    # what stays the same in both is technical: kernel names, 'A − B', units
    assert len(untranslated) <= 8, untranslated
    assert sum(bool(han.search(v)) for v in zh.values()) > 0.9 * len(zh)


# keys built at run time from a prefix and a known set of names
DYNAMIC = {
    "family.": list(FAMILIES),
    "kernel.": list(KERNEL_LABELS),
    "kind.": ["encoder_self", "decoder_self", "cross"],
    "kind_short.": ["self", "implicit", "encoder_self", "decoder_self", "cross"],
    "zoo.about.": list(zoo.ZOO),
    "position.": ["rope", "alibi", "sinusoidal", "learned", "none"],
    "backend.": list(BACKENDS),
    "dtype.": list(DTYPES),
    "call.": [c.replace(" ", "_") for c in CALLS],
    "variant.": list(VARIANTS),
    "col.": ["model", "layer", "head", "entropy", "mean_distance", "previous_token", "first_token_sink",
             "duplicate_token", "induction"],
    "train.data_": ["shakespeare", "induction", "copy", "associative_recall"],
    "kernels.pattern_": list(PATTERNS),
    "tab.": ["learn", "attention", "generate", "compare", "heads", "inside", "positions", "kernels", "train",
             "calculator", "kvlab", "zoo"],
    "kvlab.policy_": list(LAB_POLICIES),
    "kvlab.label_": ["full", "window", "sinks", "h2o", "snapkv"],
    "learn.": [f"{step.key}.{part}" for step in STEPS for part in ("title", "body")],
}


def test_every_key_in_the_code_exists_and_every_catalogue_key_is_used():
    en = catalogues()["en"]
    namespaces = {k.split(".")[0] for k in en}
    literal = re.compile(r"[\"']((?:%s)\.[A-Za-z0-9_.]+[A-Za-z0-9_])[\"']" % "|".join(map(re.escape, namespaces)))
    used = {m for src in SOURCES.values() for m in literal.findall(src)} - {"attention.json", "attention.npz", "app.py"}  # files
    used |= {prefix + name for prefix, names in DYNAMIC.items() for name in names}
    assert used - set(en) == set(), f"keys used in code but missing from the catalogue: {used - set(en)}"
    assert set(en) - used == set(), f"catalogue keys nothing uses: {set(en) - used}"


def test_zoo_descriptions_match_the_zoo():
    en = catalogues()["en"]
    for name, entry in zoo.ZOO.items():
        assert en[f"zoo.about.{name}"] == entry["about"]


@pytest.mark.parametrize("header, expected", [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("zh_cn", "zh-CN"),
    ("zh-TW,zh-CN;q=0.5", "zh-CN"), ("fr-FR,fr;q=0.9,zh-CN;q=0.5", "zh-CN"), ("fr-FR,de;q=0.9", "en"),
    ("en;q=0.2,zh-CN;q=0.9", "zh-CN"), ("", "en"), (None, "en"), ("*", "en"), ("zh-CN;q=abc", "en"),
    (";;,,", "en"),
    # the browser shows the Chinese catalogue only for exactly zh-CN; the server follows it
    ("zh", "en"), ("zh-Hans-CN", "en"),
])
def test_accept_language(header, expected):
    assert from_accept_language(header) == expected


def test_normalise():
    assert normalise("zh-cn") == normalise("zh_CN") == normalise(" zh-CN ") == "zh-CN"
    assert normalise("zh-TW") == normalise("zh") == "en"  # the browser side would show English for these
    assert normalise("ja") == normalise(None) == "en"


def test_messages_are_english_by_default_and_render_in_chinese():
    m = msg("note.tokens_cut", tokens=9000, limit=8192, why=msg("note.why_page", n=8192, device="cpu"))
    assert str(m) == "The prompt has 9,000 tokens; it was truncated to the first 8,192 (the page's limit on cpu: 8,192 tokens)."
    assert render(m, "zh-CN") == "提示词有 9,000 个词元；已截断为前 8,192 个（本页在 cpu 上的上限：8,192 个词元）。"
    assert render("plain text", "zh-CN") == "plain text"
    assert hash(m) == hash(Message("note.tokens_cut", dict(m.params)))


def test_library_errors_are_value_errors_with_a_chinese_rendering():
    spec = zoo.ModelSpec.untrained("decoder", "MHA", "rope")
    with pytest.raises(ValueError, match="The prompt is empty") as info:
        service.tokenize(spec, "   ")
    assert isinstance(info.value, MessageError)
    assert render(info.value, "zh-CN") == "提示词为空：请输入一些文字（或选择一个示例）。"
    with pytest.raises(ValueError, match="must be divisible") as info:
        whatif(4, 6, 4, 64, d_latent=8, d_rope=4)
    assert "必须能被" in render(info.value, "zh-CN")


def test_service_notes_and_sentences_are_messages():
    _, sentence = service.resolve("decoder", "MQA", "alibi", fallback="nearest")
    assert isinstance(sentence, Message)
    assert "not shipped" in str(sentence) and "没有预训练模型" in render(sentence, "zh-CN")
    _, notes = service.tokenize(zoo.ModelSpec.untrained("rwkv"), "word " * 9000)  # RWKV: the page's limit too
    assert "本页在 cpu 上的上限：8,192 个词元" in render(notes[0], "zh-CN")


def test_plots_speak_the_reader_language():
    w = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    zh = plots.head(w, list("abc"), list("abc"), msg("kind.self"), untrained=True, words=Words(lang="zh-CN"))
    assert zh.layout.title.text == "自注意力（因果） · 未训练（随机权重）"
    assert zh.layout.xaxis.title.text == "键（被注意）" and zh.layout.coloraxis.colorbar.title.text == "权重"
    assert "查询" in zh.data[0].hovertemplate
    en = plots.head(w, list("abc"), list("abc"), msg("kind.self"))
    assert en.layout.title.text == "Self-attention (causal)" and en.layout.xaxis.title.text == "key (attended to)"
    rows = whatif(32, 32, 8, 128, d_latent=512, d_rope=64)
    bars = plots.kv_whatif(rows, "t", words=Words(lang="zh-CN"))
    assert list(bars.data[0].x) == ["MHA（32 个 K/V 头）", "GQA（8 个 K/V 头）", "MQA（1 个 K/V 头）",
                                    "MLA（潜向量 512 + rope 64）"]


def test_the_page_language_comes_from_the_cookie_then_accept_language():
    from playground.ui.lang import COOKIE, I18N, Words, language

    def request(**headers):
        return SimpleNamespace(headers={k.replace("_", "-"): v for k, v in headers.items()})

    assert language(None) == "en"
    assert language(request(accept_language="zh-CN,zh;q=0.9")) == "zh-CN"
    # the page's own choice (Settings -> Language) wins over the browser's header
    assert language(request(accept_language="zh-CN", cookie=f"other=1; {COOKIE}=en")) == "en"
    assert language(request(accept_language="en-US", cookie=f"{COOKIE}=zh-CN")) == "zh-CN"
    assert language(request(cookie='bad"cookie;;=', accept_language="zh-CN")) == "zh-CN"
    assert Words(request(cookie=f"{COOKIE}=zh-CN"))("common.yes") == "是"
    assert set(I18N.translations_dict) == set(LANGUAGES)


def test_gradio_sees_the_catalogue_languages():
    assert i18n.NAMES.keys() == set(LANGUAGES)


def test_every_translated_label_on_the_page_is_in_both_catalogues():
    """Walk the built page: every label, info, placeholder, value and choice marked for translation has a text."""
    from gradio.i18n import I18nData

    from playground.ui import build_app

    marked = re.compile(r'__i18n__\{"__type__": "translation_metadata", "key": "([^"]+)"\}')
    keys, tabs = set(), 0
    for block in build_app().blocks.values():
        values = [getattr(block, prop, None) for prop in ("label", "info", "placeholder", "value")]
        values += [label for label, _ in getattr(block, "choices", None) or []]
        for v in values:
            if isinstance(v, I18nData):
                keys.add(v.key)
            elif isinstance(v, str):
                keys.update(marked.findall(v))
        tabs += type(block).__name__ == "Tab"
    assert tabs == 13 and len(keys) > 100  # nine in the bar, four labs inside Labs
    for lang, book in catalogues().items():
        assert keys <= set(book), f"{lang}: {keys - set(book)}"


def test_the_library_owns_its_english_and_the_english_file_does_not_repeat_it():
    """errors, figure words and zoo descriptions are written once, in the library; en.json holds the rest."""
    written = i18n.read_catalogue("en")
    library = i18n.library_english()
    assert library and not set(written) & set(library)
    assert {"error.heads_divisible", "plot.weight", "zoo.about.gqa"} <= set(library)
    assert catalogues()["en"]["plot.weight"] == plots.WORDS["plot.weight"] == "weight"
