"""The benchmarks run end to end in a tiny configuration and report what they claim to.

No speed targets: timings on a shared machine are noise. What is checked is the shape of the
report, that ratios are real positive numbers, and that nothing unavailable is faked.
"""
import json
import math

import pytest
import torch

from playground.bench.__main__ import main
from playground.bench.measure import PeakRSS

TOP_KEYS = {"benchmark", "device", "torch", "summary", "rows"}


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object: anything else around it fails to parse


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_kernel_rows(result: dict, lengths: list[int], cells: list[tuple[str, str]]) -> None:
    """``cells``: (kernel, call) in row order for each length; explicit first."""
    assert set(result) == TOP_KEYS and result["benchmark"] == "kernels"
    assert [(r["L"], r["kernel"], r["call"]) for r in result["rows"]] == [(L, *c) for L in lengths for c in cells]
    for row in result["rows"]:
        if row["kernel"] == "explicit":  # the reference: timed, never compared with itself
            assert row["available"] and positive(row["median_ms"]) and row["repeats"] >= 1 and row["peak_mib"] >= 0
            assert row["explicit_over_kernel"] is None and row["max_abs_diff"] is None
        elif row["available"]:
            assert row["reason"] is None and row["repeats"] >= 1
            for key in ("median_ms", "explicit_over_kernel"):
                assert positive(row[key]), (key, row)
            assert row["peak_mib"] >= 0
            assert 0 <= row["max_abs_diff"] < 1e-4  # fp32: every kernel computes the same attention
        else:
            assert isinstance(row["reason"], str) and row["reason"].strip()
            assert row["median_ms"] is None and row["explicit_over_kernel"] is None
        if row["call"] == "is_causal":
            assert "not the model's call" in row["label"]


def test_kernels_report(capsys):
    result = run_json(capsys, "kernels", "--lengths", "64", "128", "--repeats", "5", "--in-process", "--device", "cpu")
    check_kernel_rows(result, [64, 128], [("explicit", "mask"), ("flash", "mask"), ("efficient", "mask"),
                                          ("math", "mask")])
    summary = result["summary"]
    assert "flash_over_math_L2048" in summary and summary["flash_over_math_L2048"] is None  # 2048 not measured
    assert set(summary["flash_over_math"]) == {"64", "128"}
    assert all(positive(v) for v in summary["flash_over_math"].values())
    assert summary["kernel_auto"] in ("flash", "efficient", "math")
    assert "attn_mask" in summary["call"] and "kernel_auto_is_causal" not in summary
    assert summary["device_name"] and result["device"] == summary["device_name"]
    by_kernel = {(r["L"], r["kernel"]): r for r in result["rows"]}
    # PyTorch has no memory-efficient kernel on the CPU: it must say so, with PyTorch's reason
    assert not by_kernel[64, "efficient"]["available"]
    assert "efficient" in by_kernel[64, "efficient"]["reason"]
    assert by_kernel[64, "math"]["available"] and by_kernel[64, "flash"]["available"]


def test_kernels_in_fresh_processes(capsys):
    result = run_json(capsys, "kernels", "--lengths", "64", "--repeats", "5", "--kernels", "flash", "--device", "cpu")
    check_kernel_rows(result, [64], [("explicit", "mask"), ("flash", "mask")])
    assert result["summary"]["memory"] == "peak RSS rise, fresh process per cell"
    for row in result["rows"]:
        assert positive(row["peak_rss_mib"]) and row["peak_rss_mib"] >= row["peak_mib"]
    assert result["summary"]["flash_over_math"] == {"64": None}  # math was not asked for: no ratio


def sdpa_calls(monkeypatch) -> list[tuple]:
    """Record (attn_mask, is_causal) of every scaled_dot_product_attention call from now on."""
    import torch.nn.functional as F

    calls, real = [], F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, is_causal=False, **kw):
        calls.append((attn_mask, is_causal, tuple(q.shape)))
        return real(q, k, v, attn_mask=attn_mask, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return calls


def test_the_kernels_bench_times_the_call_the_model_makes(monkeypatch):
    from conftest import tiny_model
    from playground.bench.kernels import bench_kernels

    T = 24
    calls = sdpa_calls(monkeypatch)
    with torch.no_grad():
        tiny_model(backend="math")(torch.randint(0, 97, (1, T)))
    model_calls = list(calls)
    assert len(model_calls) == 2  # one per layer
    calls.clear()
    result = bench_kernels(lengths=(T,), kernels=("math",), repeats=5, budget_s=0, in_process=True, device="cpu",
                           is_causal=True)
    timed = [c for c in calls if c[2][2] == T]  # the timed cells (the small probes run at L=16)
    assert len(timed) == 12  # math, model's call: warm-up + 5 timed; math, is_causal: warm-up + 5 timed
    for mask, is_causal, _ in timed[:6] + model_calls:
        assert mask is not None and mask.dtype == torch.bool and not is_causal
        assert torch.equal(mask, model_calls[0][0])  # the very mask the model passes: (T, T), causal
    assert torch.equal(model_calls[0][0], torch.ones(T, T, dtype=torch.bool).tril())
    for mask, is_causal, _ in timed[6:]:  # the other call, in rows that say so
        assert mask is None and is_causal
    assert [(r["kernel"], r["call"]) for r in result["rows"]] == [("explicit", "mask"), ("math", "mask"),
                                                                   ("math", "is_causal")]
    assert result["summary"]["kernel_auto_is_causal"] in ("flash", "efficient", "math")


def test_a_kernel_that_differs_from_the_explicit_path_shows_it(monkeypatch):
    from playground.bench import kernels

    real = kernels.explicit_attention
    monkeypatch.setattr(kernels, "explicit_attention", lambda q, k, v, mask: (real(q, k, v, mask)[0] + 0.5, None))
    result = kernels.bench_kernels(lengths=(32,), kernels=("math",), repeats=5, budget_s=0, in_process=True,
                                   device="cpu")
    math_row = next(r for r in result["rows"] if r["kernel"] == "math")
    assert math_row["max_abs_diff"] == pytest.approx(0.5, abs=1e-5)


def test_peak_rss_sees_an_allocation():
    with PeakRSS() as peak:
        x = torch.ones(16 * 2**20)  # 64 MiB, touched
        del x
    assert peak.rise >= 48 * 2**20 and peak.peak > peak.rise


def check_spread(s: dict, median: float, repeats: int = 5) -> None:
    """A headline number is the median of ``repeats`` repeats, reported with its spread."""
    assert set(s) == {"n", "min", "q1", "median", "q3", "max"} and s["n"] == repeats
    assert s["median"] == median
    assert 0 < s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]


def test_spread_of_known_samples():
    from playground.bench.measure import spread

    assert spread([5, 1, 4, 2, 3]) == {"n": 5, "min": 1, "q1": 2, "median": 3, "q3": 4, "max": 5}
    with pytest.raises(ValueError):
        spread([])


def test_decode_report(capsys):
    result = run_json(capsys, "decode", "--tokens", "8", "--device", "cpu")
    assert set(result) == TOP_KEYS and result["benchmark"] == "decode"
    summary = result["summary"]
    assert summary["same_tokens"] is True
    assert positive(summary["cached_over_uncached_8"])
    assert summary["cached_over_uncached"] == summary["cached_over_uncached_8"]
    assert summary["repeats"] >= 5
    check_spread(summary["cached_over_uncached_spread"], summary["cached_over_uncached_8"], summary["repeats"])
    assert "cached_over_uncached_512" not in summary  # the key names the count that really ran
    # 4 layers, 2 (K, V) x 8 heads x 32 dims x 4 bytes per position; 16 prompt + 7 fed-back tokens
    assert summary["cache_positions"] == 23
    assert summary["cache_bytes"] == summary["cache_bytes_formula"] == 4 * 2 * 8 * 32 * 4 * 23
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"cached", "uncached"}
    for row in rows.values():
        assert row["tokens"] == 8 and positive(row["tokens_per_s"]) and positive(row["seconds"])
        assert row["repeats"] == summary["repeats"] and row["seconds_min"] <= row["seconds"] <= row["seconds_max"]
    assert rows["uncached"]["cache_bytes"] == 0


def test_decode_table_encdec_gqa(capsys):
    assert main(["decode", "--tokens", "4", "--family", "encdec", "--n-kv-heads", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "tokens/s" in out and "cached" in out and "uncached" in out
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith("decode"))
    assert lines["same_tokens"] == "True" and lines["variant"] == "GQA"
    # decoder self-attention over BOS + 3 fed-back tokens, plus cross-attention K/V over the 16 source tokens
    assert int(lines["cache_bytes"]) == int(lines["cache_bytes_formula"]) == 4 * 2 * 2 * 32 * 4 * (4 + 16)


@pytest.mark.parametrize("argv", [["kernels", "--lengths", "0"], ["decode", "--family", "nope"], ["decode", "--tokens", "-1"],
                                  ["decode", "--repeats", "4"], ["app", "--repeats", "2"], ["kernels", "--repeats", "4"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


@pytest.mark.parametrize("family", ["rwkv", "mamba"])
def test_decode_positions_for_recurrent_models(family):
    from playground.bench.decode import bench_decode_positions

    result = bench_decode_positions(family, positions=(8, 64), steps=2)
    summary = result["summary"]
    assert summary["per_token_64_over_8"] > 0 and summary["state_bytes_constant"] is True
    assert summary["repeats"] >= 5
    check_spread(summary["per_token_64_over_8_spread"], summary["per_token_64_over_8"], summary["repeats"])
    check_spread(summary["transformer_per_token_64_over_8_spread"], summary["transformer_per_token_64_over_8"],
                 summary["repeats"])
    for row in result["rows"]:
        assert row["repeats"] == summary["repeats"] and row["ms_min"] <= row["ms_per_token"] <= row["ms_max"]
    assert {r["family"] for r in result["rows"]} == {family, "decoder"}
    decoder = [r["cache_bytes"] for r in result["rows"] if r["family"] == "decoder"]
    assert decoder[1] > decoder[0]  # the Transformer's cache grows where the state does not


def test_app_benchmark_reports_its_summary(capsys):
    assert main(["app", "--repeats", "5", "--no-browser", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = result["summary"]
    assert summary["analyze_p50_ms"] > 0 and summary["long_prompt_1024_ok"] is True
    assert 0 < summary["overview_bytes_128"] < 2_000_000
    assert summary["browser_render_ms_128"] is None
    assert summary["browser_render_ms_1024"] is None and summary["browser_storage_bytes"] is None
    rows = {r["measure"]: r for r in result["rows"]}
    assert set(rows) == {"analyze_64_ms", "long_prompt_1024_ms"}
    for name, key in (("analyze_64_ms", "analyze_p50_ms"), ("long_prompt_1024_ms", "long_prompt_1024_ms")):
        spread = summary[f"{key}_spread"]
        check_spread(spread, summary[key], 5)
        assert len(rows[name]["samples"]) == rows[name]["n"] == 5
        assert rows[name]["min"] == min(rows[name]["samples"]) and rows[name]["max"] == max(rows[name]["samples"])


def test_browser_render_is_timed_five_times_and_leaves_nothing_in_local_storage(app_url):
    import shutil

    from playground.bench.app import browser_render_ms, prompt_of

    if shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    times, stored = browser_render_ms(app_url, {16: prompt_of(16), 24: prompt_of(24)}, repeats=5)
    assert set(times) == {16, 24}
    assert all(len(ms) == 5 and all(0 < t < 60_000 for t in ms) for ms in times.values())
    assert stored == 0  # the page keeps no copy of its results in the browser (Gradio's run history is off)
