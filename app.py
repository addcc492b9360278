"""Attention Playground: the web page (also the Hugging Face Space's entry point).

On a ZeroGPU Space the `spaces` package is installed, and the functions that run a model or a kernel
on the GPU run inside ``spaces.GPU``, which holds a GPU for the length of the call; elsewhere the
package is absent (or its decorator a no-op) and nothing changes.
"""
import logging
import os

from playground.nn.runtime import log_runtime
from playground.ui import LAUNCH, attention, build_app, kernel_lab, service

try:
    import spaces
except ImportError:  # not a Hugging Face Space: no GPU to borrow
    spaces = None

# (module, function) pairs whose calls do the GPU work: the handlers look them up on the module at call time
GPU_WORK = ((service, "analyze_text"), (service, "generate_text"), (attention, "fused_vs_dense"),
            (kernel_lab, "bench_kernels"))

if spaces is not None:
    for module, name in GPU_WORK:
        setattr(module, name, spaces.GPU(getattr(module, name)))


def log_start_up() -> None:
    """Say once, in the server's log, what this process runs on: torch and CUDA, the device, what auto means."""
    log = logging.getLogger("playground")
    if not log.handlers and not logging.getLogger().handlers:  # the host has not set up logging: print ours
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    log_runtime()


log_start_up()
demo = build_app()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **LAUNCH,
    )
