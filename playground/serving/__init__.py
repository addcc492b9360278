"""Deployment: what running the playground as a public service needs above the models (the GPU door of a ZeroGPU
Space, ``gpu_call``)."""
