"""Attention Playground: the web page (also the Hugging Face Space's entry point)."""
import os

from playground.ui import LAUNCH, build_app

demo = build_app()

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2, max_size=64).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        **LAUNCH,
    )
