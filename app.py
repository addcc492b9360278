"""Attention Playground: the web page (also the Hugging Face Space's entry point).

On a ZeroGPU Space (the ``spaces`` package installed, ``SPACES_ZERO_GPU`` set) all model work goes
through one function decorated with ``spaces.GPU`` (``playground.ui.gpu``), nothing touches CUDA at
start-up, and FlexAttention, which compiles at run time, is not offered. Elsewhere nothing changes.
"""
import logging
import os

from playground.serving import zerogpu
from playground.serving.runtime import default_device, log_runtime
from playground.ui import build_app, gpu, launch_options, queue_options

if zerogpu.active():
    import spaces

    zerogpu.restrict_kernels()
    gpu.install(spaces, guard=default_device())  # CUDA there (a test's stand-in plays it with the CPU)


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
demo = build_app(warm_up=not zerogpu.active(), landing=not zerogpu.active())  # no CUDA at start-up on ZeroGPU

if __name__ == "__main__":
    demo.queue(**queue_options()).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **launch_options(),
    )
