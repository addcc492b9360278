"""The Kernel lab: the model's call patterns on each kernel (SDPA flash, memory-efficient, cuDNN, math,
FlexAttention) against the explicit path, on this device."""
from __future__ import annotations

import gradio as gr

from playground import plots
from playground.ui import service
from playground.inspect.kernel_timing import PATTERNS, bench_kernels
from . import api, gpu
from .lang import Localized, Words, english, t

HEADERS = ["kernels.col_length", "kernels.col_kernel", "kernels.col_runs", "kernels.col_pattern", "kernels.col_call",
           "kernels.col_ms", "kernels.col_mib", "kernels.col_ratio", "kernels.col_diff", "kernels.col_skipped",
           "kernels.col_why"]
MAX_LENGTH = 4096


def _cells(w: Words, row: dict) -> list:
    """One table row: a reference row (explicit) has no ratio or difference to itself."""
    if not row["available"]:
        return ["", "", "", "", "", row["reason"] or ""]
    if row["explicit_over_kernel"] is None:
        ratio = diff = w("kernels.reference")
    else:
        ratio, diff = f"{row['explicit_over_kernel']:.2f}×", f"{row['max_abs_diff']:.1e}"
    skipped = "" if row["skipped_share"] is None else f"{row['skipped_share']:.0%}"
    return [f"{row['median_ms']:.2f}", f"{row['peak_mib']:.1f}", ratio, diff, skipped, ""]


def run_lab(lengths: list, heads: int, head_dim: int, dtype: str, device: str, patterns: list | None = None,
            request: gr.Request = None):
    """Time the chosen call patterns on every kernel, in this process (FlexAttention compiles once per process)."""
    w = Words(request)
    lengths = sorted({int(x) for x in lengths or []})
    if not lengths:
        raise w.error("error.pick_length")
    patterns = [p for p in PATTERNS if p in (patterns or ["prefill", "window"])]
    if device not in service.devices():
        raise w.error("error.device", device=device, devices=", ".join(service.devices()))
    # the explicit path's score matrix and its softmax, float32, at the longest length: host memory on the CPU
    scores = 2 * int(heads) * max(lengths) ** 2 * 4 if device == "cpu" else 0
    with api.admitted(w, scores, w("kernels.what", n=max(lengths), heads=int(heads))):
        try:
            result = gpu.work(w, bench_kernels, lengths=lengths, heads=int(heads), head_dim=int(head_dim), dtype=dtype,
                              device=device, patterns=patterns, repeats=5, budget_s=0.5, in_process=True)
        except (ValueError, RuntimeError) as e:
            raise w.error("error.kernels", reason=str(e)) from None
    rows = result["rows"]

    def series_name(row: dict) -> str:
        kernel, pattern = row["kernel"], row["pattern"]
        return f"{w(f'kernel.{kernel}')} · {w(f'kernels.pattern_{pattern}')}"

    series_t, series_m = {}, {}
    for row in rows:
        if row["available"]:
            for series, key in ((series_t, "median_ms"), (series_m, "peak_mib")):
                xs, ys = series.setdefault(series_name(row), ([], []))
                xs.append(row["L"])
                ys.append(row[key])
    table = [[r["L"], w(f"kernel.{r['kernel']}"), w("common.yes") if r["available"] else w("common.no"),
              w(f"kernels.pattern_{r['pattern']}"), r["call"], *_cells(w, r)] for r in rows]
    time_fig = plots.lines(series_t, w("kernels.time_title", device=result["device"]),
                           x_title=w("kernels.length_axis"), y_title=w("kernels.ms_axis"), log_y=True, words=w)
    mem_fig = plots.lines(series_m, w("kernels.mem_title"), x_title=w("kernels.length_axis"), y_title="MiB",
                          log_y=True, words=w)
    summary = result["summary"]
    auto = ", ".join(f"{w(f'kernels.pattern_{p}')}: {w(f'kernel.{k}')}" for p, k in summary["kernel_auto"].items())
    note = w("kernels.note", auto=auto, device=summary["device_name"], dtype=dtype,
             diff=max((r["max_abs_diff"] for r in rows if r["max_abs_diff"] is not None), default=0))
    return {"headers": [w(k) for k in HEADERS], "data": table}, time_fig, mem_fig, note


def build_kernel_lab_tab(localized: Localized):
    gr.Markdown(t("kernels.help"))
    with gr.Row():
        lengths = gr.CheckboxGroup([128, 256, 512, 1024, 2048, MAX_LENGTH], value=[256, 512, 1024],
                                   label=t("kernels.lengths"))
        heads = gr.Slider(1, 16, value=8, step=1, label=t("kernels.heads"))
        head_dim = gr.Dropdown([32, 64, 128], value=64, label=t("calc.head_dim"))
        dtype = gr.Dropdown(["float32", "bfloat16", "float16"], value="float32", label="dtype")
        device = gr.Dropdown(service.devices(), value=service.devices()[0], label=t("controls.device"))
    with gr.Row():
        patterns = gr.CheckboxGroup([(t(f"kernels.pattern_{p}"), p) for p in PATTERNS], value=["prefill", "window"],
                                    label=t("kernels.patterns"))
        button = gr.Button(t("kernels.run"), variant="primary", scale=0, min_width=180)
    note = gr.Markdown()
    table = gr.Dataframe(headers=english(HEADERS), interactive=False, wrap=True)
    localized.table(table, HEADERS)
    with gr.Row():
        time_plot = gr.Plot(label=t("kernels.time"))
        mem_plot = gr.Plot(label=t("kernels.memory"))
    button.click(run_lab, [lengths, heads, head_dim, dtype, device, patterns], [table, time_plot, mem_plot, note],
                 api_name="kernels", concurrency_limit=1)
