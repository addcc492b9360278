"""The Kernel lab: SDPA flash, memory-efficient and math against the explicit path, on this device."""
from __future__ import annotations

import gradio as gr

from .. import plots, service
from ..bench import bench_kernels

HELP = """Runs causal attention (batch 1) on random Q, K, V with each kernel **on this machine**: PyTorch's
SDPA flash, memory-efficient and math kernels, forced one at a time, and the explicit
softmax(QKᵀ/√d)V. A kernel PyTorch refuses here is listed as unavailable with PyTorch's own reason; nothing
stands in for it. Here the lab measures inside the page's own process, so CPU memory is the rise of the
process's peak resident set and can under-report what a kernel needs; `python -m playground.bench kernels`
measures each kernel in a fresh process. A few seconds per length."""

MAX_LENGTH = 4096


def run_lab(lengths: list, heads: int, head_dim: int, dtype: str, device: str):
    lengths = sorted({int(x) for x in lengths or []})
    if not lengths:
        raise gr.Error("Pick at least one sequence length.")
    if device not in service.devices():
        raise gr.Error(f"Device {device!r} is not available here.")
    try:
        result = bench_kernels(lengths=lengths, heads=int(heads), head_dim=int(head_dim), dtype=dtype, device=device,
                               repeats=5, budget_s=0.5, in_process=True)
    except (ValueError, RuntimeError) as e:
        raise gr.Error(f"The kernels could not run with these settings: {e}") from None
    rows = result["rows"]
    series_t, series_m = {}, {}
    for row in rows:
        if row["available"]:
            series_t.setdefault(row["label"], ([], []))
            series_m.setdefault(row["label"], ([], []))
            series_t[row["label"]][0].append(row["L"])
            series_t[row["label"]][1].append(row["median_ms"])
            series_m[row["label"]][0].append(row["L"])
            series_m[row["label"]][1].append(row["peak_mib"])
    table = [[r["L"], r["label"], "yes" if r["available"] else "no",
              f"{r['median_ms']:.2f}" if r["available"] else "", f"{r['peak_mib']:.1f}" if r["available"] else "",
              f"{r['explicit_over_kernel']:.2f}×" if r["available"] else "",
              f"{r['max_abs_diff']:.1e}" if r["available"] else "", r["reason"] or ""] for r in rows]
    time_fig = plots.lines(series_t, f"Time per call ({result['device']})", x_title="sequence length",
                           y_title="ms (median)", log_y=True)
    mem_fig = plots.lines(series_m, "Peak memory above the inputs", x_title="sequence length", y_title="MiB",
                          log_y=True)
    summary = result["summary"]
    note = (f"A plain SDPA call runs **{summary['kernel_auto']}** here ({summary['device_name']}, {dtype}). "
            f"Largest output difference to the explicit path: "
            f"{max((r['max_abs_diff'] for r in rows if r['available']), default=0):.1e}.")
    return table, time_fig, mem_fig, note


def build_kernel_lab_tab():
    gr.Markdown(HELP)
    with gr.Row():
        lengths = gr.CheckboxGroup([128, 256, 512, 1024, 2048, MAX_LENGTH], value=[256, 512, 1024],
                                   label="Sequence lengths")
        heads = gr.Slider(1, 16, value=8, step=1, label="Heads")
        head_dim = gr.Dropdown([32, 64, 128], value=64, label="Head dim")
        dtype = gr.Dropdown(["float32", "bfloat16", "float16"], value="float32", label="dtype")
        device = gr.Dropdown(service.devices(), value=service.devices()[0], label="Device")
        button = gr.Button("Run the kernels", variant="primary")
    note = gr.Markdown()
    table = gr.Dataframe(headers=["L", "kernel", "runs here", "ms", "peak MiB", "explicit / kernel",
                                  "max |Δ| vs explicit", "why not"], interactive=False, wrap=True)
    with gr.Row():
        time_plot = gr.Plot(label="Time")
        mem_plot = gr.Plot(label="Memory")
    button.click(run_lab, [lengths, heads, head_dim, dtype, device], [table, time_plot, mem_plot, note],
                 api_name="kernels", concurrency_limit=1)
