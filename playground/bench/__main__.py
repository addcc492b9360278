"""Benchmarks: attention kernels side by side, and decoding with and without the KV cache.

Run ``python -m playground.bench <benchmark> [--json] [options]``; ``--help`` on each lists
its options. Every benchmark is one function returning a plain dict
``{"benchmark", "device", "torch", "summary", "rows"}``; one printer shows it as a table, or
``--json`` prints that dict as exactly one JSON object.

``kernels``: attention kernels side by side on the model's call patterns (``inspect.kernel_timing``); ``gpu``:
attention TFLOP/s and decode tokens/s on a CUDA device (``bench.gpu``); ``decode``: generation with and
without the KV cache, RWKV and Mamba by position (``bench.decode``); ``app``: the page end to end,
through its API and a real chromium (``bench.app``); ``pretrained``: a GPT-2-small-shaped checkpoint written by
``transformers`` (load, analyze, payload, browser render, cache speed-up, the app's memory under 8 visitors) and
Mamba-130m-shaped implicit attention (``bench.pretrained``); ``long``: a SmolLM2-135M-shaped checkpoint
analyzed at 2,048 and 8,192 tokens, time, memory and the store's bytes (``bench.long``); ``kvlab``: the
KV-cache lab's policies on 512 tokens of held-out text, and cache bytes per token by attention variant
(``bench.kvlab``).
"""
from __future__ import annotations

import argparse
import sys

import torch

from playground.bench.decode import bench_decode, bench_decode_positions
from playground.config import FAMILIES, RECURRENT_FAMILIES
from playground.inspect.kernel_timing import KERNELS, PATTERNS, bench_kernels
from playground.nn.kernels import TORCH_DTYPES
from playground.nn.timing import MIN_REPEATS, make_result
from playground.bench.measure import print_result


def _kernels_from_args(args) -> dict:
    return bench_kernels(lengths=args.lengths, heads=args.heads, head_dim=args.head_dim, dtype=args.dtype,
                         device=args.device, kernels=args.kernels, patterns=args.patterns, window=args.window,
                         repeats=args.repeats, budget_s=args.budget, in_process=args.in_process)


def _gpu_from_args(args) -> dict:
    from playground.bench.gpu import bench_gpu

    result = bench_gpu(lengths=args.lengths, head_dims=args.head_dims, heads=args.heads, repeats=args.repeats,
                       decode_tokens=args.tokens)
    if args.readme:
        from playground.bench.gpu import write_readme
        from playground.paths import ROOT

        write_readme(result, ROOT / "README.md")
    return result


def _decode_from_args(args) -> dict:
    if args.family in RECURRENT_FAMILIES:
        return bench_decode_positions(args.family, steps=args.steps, repeats=args.repeats, device=args.device)
    return bench_decode(tokens=args.tokens, family=args.family, n_kv_heads=args.n_kv_heads,
                        prompt_len=args.prompt_len, repeats=args.repeats, device=args.device)


def _app_from_args(args) -> dict:
    from playground.bench.app import bench_app

    summary, rows = bench_app(url=args.url, repeats=args.repeats, browser=not args.no_browser)
    return make_result("app", "cpu", summary, rows)


def _pretrained_from_args(args) -> dict:
    from playground.bench.pretrained import bench_pretrained

    return bench_pretrained(repeats=args.repeats, keep=args.keep, shape=args.shape, browser=not args.no_browser)


def _long_from_args(args) -> dict:
    from playground.bench.long import bench_long

    return bench_long(repeats=args.repeats, keep=args.keep, shape=args.shape, lengths=tuple(args.lengths),
                      browser=not args.no_browser, rule_lengths=tuple(args.rule_lengths))


def _kvlab_from_args(args) -> dict:
    from playground.bench.kvlab import bench_kvlab

    return bench_kvlab(repeats=args.repeats, tokens=args.tokens)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _repeats(text: str) -> int:
    value = int(text)
    if value < MIN_REPEATS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_REPEATS} (a median of fewer says little), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print exactly one JSON object")
    common.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda if available, else cpu")
    parser = argparse.ArgumentParser(prog="python -m playground.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="{kernels,gpu,decode,app,pretrained,long,kvlab}")

    k = sub.add_parser("kernels", parents=[common],
                       help="explicit attention vs SDPA flash/efficient/cudnn/math and FlexAttention, per call pattern")
    k.add_argument("--lengths", type=_positive_int, nargs="+", default=[512, 1024, 2048],
                   help="key lengths L (decode: a cache of L keys)")
    k.add_argument("--heads", type=_positive_int, default=8)
    k.add_argument("--head-dim", type=_positive_int, default=64)
    k.add_argument("--dtype", choices=tuple(TORCH_DTYPES), default=None, help="default: bfloat16 on cuda, float32 on cpu")
    k.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS),
                   help="kernels to time (explicit always runs: it is the reference)")
    k.add_argument("--patterns", nargs="+", choices=tuple(PATTERNS), default=list(PATTERNS),
                   help="the model's call patterns to time (default: all)")
    k.add_argument("--window", type=_positive_int, default=256, help="sliding window of the window pattern")
    k.add_argument("--repeats", type=_repeats, default=10,
                   help=f"timed calls per cell, at most (default 10, at least {MIN_REPEATS})")
    k.add_argument("--budget", type=float, default=1.0,
                   help=f"seconds of timed calls per cell: long L gets fewer repeats, never below {MIN_REPEATS} "
                        "(0: always --repeats)")
    k.add_argument("--in-process", action="store_true",
                   help="CPU: measure in this process instead of a fresh one per cell (faster; memory less honest)")
    k.set_defaults(run=_kernels_from_args)

    g = sub.add_parser("gpu", parents=[common], help="CUDA only: attention TFLOP/s per kernel, decode tokens/s")
    g.add_argument("--lengths", type=_positive_int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    g.add_argument("--head-dims", type=_positive_int, nargs="+", default=[64, 128])
    g.add_argument("--heads", type=_positive_int, default=16)
    g.add_argument("--repeats", type=_repeats, default=10, help=f"timed calls per cell (at least {MIN_REPEATS})")
    g.add_argument("--tokens", type=_positive_int, default=256, help="decode: new tokens per model (default 256)")
    g.add_argument("--readme", action="store_true", help="write the figures into README.md's bench gpu section")
    g.set_defaults(run=_gpu_from_args)

    d = sub.add_parser("decode", parents=[common], help="greedy generation with and without the KV cache")
    d.add_argument("--tokens", type=_positive_int, default=512, help="new tokens to generate (default 512)")
    d.add_argument("--family", choices=FAMILIES, default="decoder")
    d.add_argument("--n-kv-heads", type=_positive_int, default=8, help="8: MHA, 1: MQA, 2 or 4: GQA")
    d.add_argument("--prompt-len", type=_positive_int, default=16)
    d.add_argument("--repeats", type=_repeats, default=MIN_REPEATS,
                   help=f"rounds, cached and uncached alternating (at least {MIN_REPEATS}, the default)")
    d.add_argument("--steps", type=_positive_int, default=16,
                   help="rwkv/mamba: single-token steps per position per round (default 16)")
    d.set_defaults(run=_decode_from_args)

    a = sub.add_parser("app", parents=[common], help="the page end to end: /analyze latency, payload, browser render")
    a.add_argument("--url", default=None, help="a running app (default: start one on a free loopback port)")
    a.add_argument("--repeats", type=_repeats, default=10,
                   help=f"timed /analyze calls (at least {MIN_REPEATS}); the browser renders each size "
                        f"max({MIN_REPEATS}, repeats // 2) times")
    a.add_argument("--no-browser", action="store_true", help="skip the chromium render timing")
    a.set_defaults(run=_app_from_args)

    p = sub.add_parser("pretrained", parents=[common],
                       help="a GPT-2-small-shaped checkpoint end to end, and Mamba-130m implicit attention "
                            "(needs transformers: pip install -r requirements.txt)",
                       description="Writes a random GPT-2-small-shaped checkpoint with transformers "
                                   "(pip install -r requirements.txt) and measures loading it, the "
                                   "page's analyze path, the overview payload, the browser render, generation with "
                                   "and without the KV cache, the app's peak memory under 8 parallel visitors, and "
                                   "Mamba-130m-shaped implicit attention, each against its target. CPU only.")
    p.add_argument("--repeats", type=_repeats, default=MIN_REPEATS,
                   help=f"timed runs per figure (at least {MIN_REPEATS}, the default)")
    p.add_argument("--keep", metavar="DIR", default=None,
                   help="write the checkpoint into DIR/gpt2-<shape> and keep it (reused when present); "
                        "default: a temporary directory")
    p.add_argument("--shape", choices=("small", "tiny"), default="small",
                   help="small: GPT-2 small and mamba-130m (default); tiny: 2-layer stand-ins that run in seconds")
    p.add_argument("--no-browser", action="store_true", help="skip the chromium render timing")
    p.set_defaults(run=_pretrained_from_args)

    lp = sub.add_parser("long", parents=[common],
                        help="a SmolLM2-135M-shaped checkpoint analyzed at 2,048 and 8,192 tokens: time, memory, "
                             "store bytes, tile latency (needs transformers: pip install -r requirements.txt)")
    lp.add_argument("--repeats", type=_repeats, default=MIN_REPEATS,
                    help=f"analyses per length (at least {MIN_REPEATS}, the default)")
    lp.add_argument("--keep", metavar="DIR", default=None, help="write the checkpoint under DIR and reuse it")
    lp.add_argument("--shape", choices=("smollm2", "tiny"), default="smollm2",
                    help="smollm2: SmolLM2-135M's shape (default); tiny: a 2-layer stand-in for tests")
    lp.add_argument("--lengths", type=_positive_int, nargs=2, default=[2048, 8192], metavar=("SHORT", "LONG"))
    lp.add_argument("--rule-lengths", type=_positive_int, nargs=2, default=[8192, 32768], metavar=("SHORT", "LONG"),
                    help="the lengths of the rule's figures: a 2-layer ALiBi decoder with a window, and ALiBi "
                         "over RoPE at SHORT")
    lp.add_argument("--no-browser", action="store_true",
                    help="skip the app figures (render time of a 4,096-token overview, memory with 8 sessions)")
    lp.set_defaults(run=_long_from_args)

    kv = sub.add_parser("kvlab", parents=[common],
                        help="the KV-cache lab's default comparison on 512 tokens of held-out text, each policy's "
                             "bytes and loss at a quarter of the tokens, cache bytes per token by variant")
    kv.add_argument("--repeats", type=_repeats, default=MIN_REPEATS,
                    help=f"timed comparisons (at least {MIN_REPEATS}, the default)")
    kv.add_argument("--tokens", type=_positive_int, default=512, help="tokens of the held-out text (default 512)")
    kv.set_defaults(run=_kvlab_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.benchmark == "gpu" and not torch.cuda.is_available():
        print("gpu: this benchmark needs a CUDA device and none is available here "
              "(run it on a GPU machine; `kernels` measures this device)", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here; use --device cpu", file=sys.stderr)
        return 2
    try:
        result = args.run(args)
    except ValueError as e:  # a config the library rejects: its message says what would be valid
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result, args.json)
    if result["summary"].get("same_tokens") is False:
        print("error: cached and uncached generation chose different tokens", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
