"""The benchmarks run end to end in a tiny configuration and report what they claim to.

No speed targets: timings on a shared machine are noise. What is checked is the shape of the
report, that ratios are real positive numbers, and that nothing unavailable is faked.
"""
import json
import math

import pytest
import torch

from playground.bench.__main__ import main
from playground.nn.timing import PeakRSS

TOP_KEYS = {"benchmark", "device", "torch", "summary", "rows"}


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)  # exactly one JSON object: anything else around it fails to parse


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def check_kernel_rows(result: dict, lengths: list[int], cells: list[tuple[str, str]], pattern: str = "prefill") -> None:
    """``cells``: (kernel, call) in row order for each length; explicit first."""
    assert set(result) == TOP_KEYS and result["benchmark"] == "kernels"
    rows = [r for r in result["rows"] if r["pattern"] == pattern]
    assert [(r["L"], r["kernel"], r["call"]) for r in rows] == [(L, *c) for L in lengths for c in cells]
    for row in rows:
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


SDPA_ROWS = [("flash", "is_causal"), ("efficient", "is_causal"), ("cudnn", "is_causal"), ("math", "is_causal")]


def test_kernels_report(capsys):
    result = run_json(capsys, "kernels", "--lengths", "64", "128", "--repeats", "5", "--in-process", "--device", "cpu",
                      "--patterns", "prefill", "--kernels", "flash", "efficient", "cudnn", "math")
    check_kernel_rows(result, [64, 128], [("explicit", "weights"), *SDPA_ROWS])
    summary = result["summary"]
    assert "flash_over_math_L2048" in summary and summary["flash_over_math_L2048"] is None  # 2048 not measured
    assert set(summary["flash_over_math"]) == {"64", "128"}
    assert all(positive(v) for v in summary["flash_over_math"].values())
    assert summary["kernel_auto"]["prefill"] in ("flash", "efficient", "cudnn", "math")
    assert "is_causal=True" in summary["calls"]["prefill"]
    assert summary["device_name"] and result["device"] == summary["device_name"]
    by_kernel = {(r["L"], r["kernel"]): r for r in result["rows"]}
    # PyTorch has no memory-efficient or cuDNN kernel on the CPU: it must say so, with PyTorch's reason
    for kernel in ("efficient", "cudnn"):
        assert not by_kernel[64, kernel]["available"]
        assert kernel in by_kernel[64, kernel]["reason"] and "CPU" in by_kernel[64, kernel]["reason"]
    assert by_kernel[64, "math"]["available"] and by_kernel[64, "flash"]["available"]


def test_kernels_in_fresh_processes(capsys):
    result = run_json(capsys, "kernels", "--lengths", "64", "--repeats", "5", "--kernels", "flash", "--device", "cpu",
                      "--patterns", "prefill")
    check_kernel_rows(result, [64], [("explicit", "weights"), ("flash", "is_causal")])
    assert result["summary"]["memory"].startswith("peak RSS rise, fresh process per cell")
    for row in result["rows"]:
        assert positive(row["peak_rss_mib"]) and row["peak_rss_mib"] >= row["peak_mib"]
    assert result["summary"]["flash_over_math"] == {"64": None}  # math was not asked for: no ratio


def test_every_call_pattern_on_flex_and_sdpa_matches_the_explicit_path(capsys):
    """Tiny sizes, the window smaller than the length so it bites; flex's block mask skips tiles where it should."""
    result = run_json(capsys, "kernels", "--lengths", "384", "--repeats", "5", "--in-process", "--device", "cpu",
                      "--kernels", "math", "flex", "--window", "64", "--budget", "0")
    calls = {"prefill": "is_causal", "decode": "no mask", "prefix": "mask", "window": "mask", "alibi": "mask"}
    for pattern, call in calls.items():
        check_kernel_rows(result, [384], [("explicit", "weights"), ("math", call), ("flex", "block mask")], pattern)
    rows = {(r["pattern"], r["kernel"]): r for r in result["rows"]}
    assert all(rows[p, "flex"]["available"] for p in calls)  # FlexAttention compiles and runs on this CPU
    summary = result["summary"]
    # 3 x 3 tiles of 128: causal skips the 3 above the diagonal; a window of 64 also skips the bottom-left one
    assert summary["skipped_share"]["prefill"] == {"384": pytest.approx(3 / 9)}
    assert summary["skipped_share"]["window"] == {"384": pytest.approx(4 / 9)}
    # the prefix (192 tokens) is seen by every query: only keys 256.. are hidden from queries before 256
    assert summary["skipped_share"]["prefix"] == {"384": pytest.approx(2 / 9)}
    assert summary["skipped_share"]["decode"] == {"384": 0.0}  # one query sees every cached key
    assert summary["kernel_auto"] == {p: "flash" for p in calls}
    assert "flex_over_dense_mask_window64_L2048" in summary and summary["flex_over_dense_mask_window64_L2048"] is None
    assert set(summary["flex_over_dense_mask"]) == {"prefix", "window", "alibi"}
    assert summary["flex_over_dense_mask"]["window"]["384"] is None  # flash, the kernel auto runs, was not timed
    assert rows["decode", "explicit"]["median_ms"] > 0 and rows["decode", "flex"]["max_abs_diff"] < 1e-5


def test_flex_over_dense_mask_is_the_dense_call_over_flex(monkeypatch):
    from playground.inspect import kernel_timing as kernels

    result = kernels.bench_kernels(lengths=(2048,), patterns=("window",), kernels=("flash", "flex"), repeats=5,
                                   budget_s=0, in_process=True, device="cpu")
    rows = {r["kernel"]: r for r in result["rows"]}
    ratio = result["summary"]["flex_over_dense_mask_window256_L2048"]
    assert ratio == pytest.approx(rows["flash"]["median_ms"] / rows["flex"]["median_ms"])
    assert rows["flex"]["skipped_share"] > 0.8  # a window of 256 at 2,048 tokens: most tiles are never computed
    assert rows["flex"]["max_abs_diff"] < 1e-5


def sdpa_calls(monkeypatch) -> list[tuple]:
    """Record (attn_mask, is_causal, q's shape) of every SDPA kernel call from now on (``nn.kernels.RUNNERS``)."""
    from playground.nn import kernels

    calls = []
    for name, real in list(kernels.RUNNERS.items()):
        def spy(q, k, v, attn_mask, is_causal, scale, _real=real):
            calls.append((attn_mask, is_causal, tuple(q.shape)))
            return _real(q, k, v, attn_mask, is_causal, scale)
        monkeypatch.setitem(kernels.RUNNERS, name, spy)
    return calls


def test_the_kernels_bench_times_the_call_the_model_makes(monkeypatch):
    from conftest import tiny_model
    from playground.inspect.kernel_timing import bench_kernels

    T = 24
    calls = sdpa_calls(monkeypatch)
    with torch.no_grad():
        tiny_model(backend="math")(torch.randint(0, 97, (1, T)))
    model_calls = list(calls)
    assert len(model_calls) == 2  # one per layer
    calls.clear()
    result = bench_kernels(lengths=(T,), kernels=("math",), patterns=("prefill", "window"), window=8, repeats=5,
                           budget_s=0, in_process=True, device="cpu")
    timed = [c for c in calls if c[2][2] == T]  # the timed cells (the small probes run at L=16)
    assert len(timed) == 12  # prefill: warm-up + 5 timed; window: warm-up + 5 timed
    for mask, is_causal, _ in timed[:6] + model_calls:  # causal prefill: is_causal=True and no mask tensor
        assert mask is None and is_causal
    for mask, is_causal, _ in timed[6:]:  # a sliding window: the dense bool mask of the same rule
        assert not is_causal and mask.dtype == torch.bool
        assert torch.equal(mask, torch.ones(T, T, dtype=torch.bool).tril().triu(-7))
    assert [(r["pattern"], r["kernel"], r["call"]) for r in result["rows"]] == [
        ("prefill", "explicit", "weights"), ("prefill", "math", "is_causal"),
        ("window", "explicit", "weights"), ("window", "math", "mask")]


def test_a_kernel_that_differs_from_the_explicit_path_shows_it(monkeypatch):
    from playground.inspect import kernel_timing as kernels

    real = kernels.explicit_attention
    monkeypatch.setattr(kernels, "explicit_attention", lambda q, k, v, mask: (real(q, k, v, mask)[0] + 0.5, None))
    result = kernels.bench_kernels(lengths=(32,), kernels=("math",), patterns=("prefill",), repeats=5, budget_s=0,
                                   in_process=True, device="cpu")
    math_row = next(r for r in result["rows"] if r["kernel"] == "math")
    assert math_row["max_abs_diff"] == pytest.approx(0.5, abs=1e-5)


def test_gpu_benchmark_refuses_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gpu", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "needs a CUDA device" in captured.err


def test_attention_flops_follow_the_flashattention_convention():
    from playground.bench.gpu import attention_flops

    # two matmuls of 2·L²·d per head; causal computes half: L=8192, d=128, 16 heads, batch 2
    assert attention_flops(8192, 128, heads=16, batch=2, causal=False) == 4 * 2 * 16 * 8192**2 * 128
    assert attention_flops(8192, 128, heads=16, batch=2) == 2 * 2 * 16 * 8192**2 * 128
    assert attention_flops(1024, 64) == 2 * 1024**2 * 64


def test_gpu_benchmark_functions_run_on_any_device():
    from playground.bench.gpu import attention_flops, attention_rows, decode_configs, decode_rows

    rows = attention_rows([64, 128], [16], heads=2, kernels=("flash", "efficient", "math"), dtype=torch.float32,
                          device="cpu", repeats=5, tokens=256)
    assert [(r["head_dim"], r["L"], r["kernel"]) for r in rows] == [
        (16, L, k) for L in (64, 128) for k in ("flash", "efficient", "math")]
    for row in rows:
        assert row["batch"] == 256 // row["L"]
        if row["kernel"] == "efficient":  # no such kernel on a CPU: PyTorch's reason, no number
            assert not row["available"] and "efficient" in row["reason"] and row["tflops"] is None
        else:
            assert row["available"] and positive(row["median_ms"])
            flops = attention_flops(row["L"], 16, 2, row["batch"])
            assert row["flops"] == flops
            assert row["tflops"] == pytest.approx(flops / (row["median_ms"] / 1e3) / 1e12)
    gpt2 = decode_configs(tokens=4)["gpt2"]
    assert (gpt2.n_layer, gpt2.d_model, gpt2.n_heads, gpt2.vocab_size, gpt2.position) == (12, 768, 12, 50257, "learned")
    decode = decode_rows(tokens=4, dtype=torch.float32, device="cpu", shapes=("zoo",))  # GPT-2's 124M: too big here
    assert [r["shape"] for r in decode] == ["zoo"] and decode[0]["n_layer"] == 4
    assert all(positive(r["tokens_per_s"]) and r["tokens_per_s_min"] <= r["tokens_per_s"] <= r["tokens_per_s_max"]
               for r in decode)


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
    from playground.nn.timing import spread

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
                                  ["decode", "--repeats", "4"], ["app", "--repeats", "2"], ["kernels", "--repeats", "4"],
                                  ["pretrained", "--repeats", "4"], ["pretrained", "--shape", "huge"]])
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


PRETRAINED_FIGURES = ["load_s", "analyze_p50_ms_gpt2_128", "overview_bytes_gpt2_128", "browser_render_ms_gpt2_128",
                      "cached_over_uncached_gpt2_256", "peak_rss_mb_gpt2_parallel", "mamba_implicit_130m_256_s",
                      "any_model_analyze_ms_qwen3_shape_128", "any_model_overhead_ratio", "any_model_archs_exact"]


def test_pretrained_benchmark_reports_every_figure_with_its_target(capsys, tmp_path):
    result = run_json(capsys, "pretrained", "--shape", "tiny", "--no-browser", "--keep", str(tmp_path))
    assert set(result) == TOP_KEYS and result["benchmark"] == "pretrained"
    summary = result["summary"]
    assert summary["shape"] == "tiny" and summary["repeats"] == 5 and summary["same_tokens"] is True
    for key in PRETRAINED_FIGURES:
        if key == "browser_render_ms_gpt2_128":
            assert summary[key] is None and summary["browser_error"] is None  # --no-browser: not measured, no error
        else:
            assert positive(summary[key]), (key, summary[key])
    assert isinstance(summary["overview_bytes_gpt2_128"], int) and summary["overview_bytes_gpt2_128"] < 2_000_000
    check_spread(summary["load_s_spread"], summary["load_s"])
    check_spread(summary["analyze_ms_gpt2_128_spread"], summary["analyze_p50_ms_gpt2_128"])
    check_spread(summary["cached_over_uncached_gpt2_256_spread"], summary["cached_over_uncached_gpt2_256"])
    # the app's own memory: read from its process, the peak at least what it held before the 8 calls
    assert summary["peak_rss_mb_gpt2_parallel"] >= summary["rss_mb_before_parallel"] > 50
    assert sorted(summary["parallel_calls"]) == sorted(
        f"/{api}(backend={b}, window={w}{', max_new_tokens=32' if api == 'generate' else ''})"
        for api in ("analyze", "generate") for b in ("math", "explicit") for w in (0, 64))
    assert len(summary["parallel_call_s"]) == 8 and all(positive(s) for s in summary["parallel_call_s"])
    assert 0 <= summary["mamba_max_abs_diff"] < 1e-3
    assert summary["any_model_archs_exact"] == summary["any_model_archs"] >= 20  # every architecture, exactly
    assert summary["any_model_archs_not_exact"] == []
    assert summary["tokenizer_vocab"] <= 512 and summary["n_params"] > 100_000
    # a row per figure, its target and whether the value meets it
    rows = result["rows"]
    assert [r["measure"] for r in rows] == PRETRAINED_FIGURES
    for row in rows:
        assert row["value"] == summary[row["measure"]]
        if row["measure"] in ("load_s", "any_model_analyze_ms_qwen3_shape_128"):  # reported; the ratio has the target
            assert row["target"] is None and row["pass"] is None
        elif row["value"] is None:
            assert row["pass"] is None and row["target"].startswith("<=")
        else:
            comparison, target = row["target"].split(" ")
            target = float(target.replace(",", ""))
            assert row["pass"] is (row["value"] <= target if comparison == "<=" else row["value"] >= target)
    folder = tmp_path / "gpt2-tiny"
    assert summary["folder"] == str(folder.resolve())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}


def test_the_benchmark_checkpoint_is_reused_and_needs_transformers(tmp_path, monkeypatch):
    import sys

    from playground.bench.hf_folder import write_gpt2
    from playground.models.pretrained import load_folder

    folder = write_gpt2(tmp_path / "a", "tiny")
    model, tok = load_folder(folder)
    assert model.cfg.n_layer == 2 and model.cfg.vocab_size == 512 and 256 < tok.vocab_size <= 512
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    assert write_gpt2(folder, "tiny") == folder  # already there: nothing to write, transformers not needed
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="requirements.txt"):
        write_gpt2(tmp_path / "b", "tiny")
    with pytest.raises(ValueError, match="unknown shape"):
        write_gpt2(tmp_path / "c", "huge")


def test_long_benchmark_on_a_tiny_shape_reports_every_figure_against_its_target():
    """``bench long`` on a 2-layer stand-in: the analysis keeps q, k and lse (bytes linear in T), its tiles are exact."""
    from playground.bench.long import bench_long

    result = bench_long(repeats=5, shape="tiny", lengths=(128, 512), browser=False, rule_lengths=(512, 2048))
    summary = result["summary"]
    assert summary["analyze_s_128"] > 0 and summary["analyze_s_512"] > 0
    assert summary["lse_source"] == "kernel" and summary["kernels"] == ["flash"] and summary["max_abs_diff"] < 1e-5
    per_layer = (4 + 2) * 512 * 16 * 4 + 4 * 512 * 4  # q, k (2 K/V heads), lse: float32, hs 16
    assert per_layer * 2 < summary["analysis_bytes_512"] < per_layer * 2 + 2 * 4 * 128 * 128 * 2 * 4 + 1
    assert summary["tile_p50_ms_512"] > 0 and summary["overview_bytes_512"] > 0
    measures = {row["measure"] for row in result["rows"]}
    assert {"analyze_s_128", "analyze_s_512", "analysis_bytes_512", "rss_rise_512_over_128", "tile_p50_ms_512",
            "overview_bytes_512", "rss_rise_2048_over_512_tiny", "alibi_over_rope_peak_rss_512"} == measures
    assert summary["rss_rise_2048_over_512_tiny"] > 0 and summary["alibi_over_rope_peak_rss_512"] > 0


def test_gpu_benchmark_masks_the_page_and_the_readme_on_any_device(tmp_path):
    """The whole ``bench gpu`` on tiny sizes on the CPU: FlexAttention against SDPA on the masked calls, the page's
    own analysis at growing lengths until one passes the budget, and the README section it writes."""
    from playground.bench import gpu

    result = gpu.bench_gpu(lengths=[64], head_dims=[16], heads=2, repeats=5, decode_tokens=4, device="cpu",
                           masked_lengths=[256], page_lengths=[32, 64], decode_shapes=("zoo",), dtype=torch.float32)
    s = result["summary"]
    assert {r["pattern"] for r in s["masked"]} == set(gpu.MASKED_PATTERNS)
    assert any(r["kernel"] == "flex" and r["available"] for r in s["masked"])
    tokens = [r["tokens"] for r in s["page"]]
    assert len(tokens) == 2 and 24 <= tokens[0] < tokens[1] <= 72 and all(r["overview_bytes"] > 0 for r in s["page"])
    assert s["page_largest_tokens_2s"] in (0, *tokens) and all(r["max_abs_diff"] < 1e-4 for r in s["page"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{gpu.README_START}\nold\n{gpu.README_END}\nafter\n")
    gpu.write_readme(result, readme)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{gpu.README_END}\nafter\n") and "old" not in text
    assert "`flash_tflops_L8192_d128`" in text and "| window | 256 | flex |" in text and f"| {tokens[1]} |" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        gpu.write_readme(result, readme)


def test_the_kv_cache_lab_benchmark_reports_its_figures():
    """``bench kvlab`` on 64 tokens: the comparison's time, every policy at a quarter of the tokens beside the GQA, MQA
    and MLA models, and their cache bytes per token over MHA's, measured from the caches allocated (here on untrained
    models of the baseline's shape: the lab's own are benchmarked in the README)."""
    from playground.bench.kvlab import bench_kvlab

    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 8
    models = {v: f"untrained:decoder/{v}/rope" for v in ("MHA", "GQA", "MQA", "MLA")}
    result = bench_kvlab(repeats=5, tokens=64, text=text, models=models)
    summary = result["summary"]
    assert summary["kvlab_s_64"] > 0 and summary["tokens"] == 64
    assert summary["gqa_cache_ratio_vs_mha"] == 0.5 and summary["mqa_cache_ratio_vs_mha"] == 0.25  # 2 and 1 of 4
    assert summary["mla_cache_ratio_vs_mha"] == (64 + 16) / 256 < summary["gqa_cache_ratio_vs_mha"]  # d_c + d_r
    quarter = summary["at_a_quarter"]
    assert list(quarter) == ["window 16", "sinks 4 + window 12", "H2O 16 (8 recent)", "SnapKV 16 (window 8)", "int8",
                             "int4", "GQA", "MQA", "MLA"]
    assert all(0 < row["bytes_share"] < 1 and 0 <= row["top1_agreement"] <= 1 for row in quarter.values())
    assert {row["measure"] for row in result["rows"]} == {"kvlab_s_64", "gqa_cache_ratio_vs_mha",
                                                          "mqa_cache_ratio_vs_mha", "mla_cache_ratio_vs_mha"}

def test_the_session_figure_reads_where_the_memory_goes_from_the_apps_last_request_line(tmp_path):
    from playground.bench.long import last_memory_line

    log = tmp_path / "app.log"
    log.write_text('2026 playground.requests INFO {"route": "analyze_text", "held_mb": {"weights": 500.0}}\n'
                   "a line that is not JSON\n"
                   '2026 playground.requests INFO {"route": "analyze_text", "held_mb": {"weights": 500.0, '
                   '"analyses": 616.1}, "rss_mb": 2355.0}\n', encoding="utf-8")
    assert last_memory_line(str(log)) == {"weights": 500.0, "analyses": 616.1}
    log.write_text("nothing yet\n", encoding="utf-8")
    assert last_memory_line(str(log)) is None
