"""Attention Playground: the web page (also the Hugging Face Space's entry point).

On a ZeroGPU Space the `spaces` package is installed, and the functions that run a model or a kernel
on the GPU run inside ``spaces.GPU``, which holds a GPU for the length of the call; elsewhere the
package is absent (or its decorator a no-op) and nothing changes.
"""
import os

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

demo = build_app()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **LAUNCH,
    )
