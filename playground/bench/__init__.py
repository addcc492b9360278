"""Benchmarks: attention kernels, decoding with and without a cache, the page end to end.

Each benchmark is a function returning a plain dict (``measure.make_result``); ``python -m
playground.bench <benchmark>`` runs one from the command line. ``bench.app`` is a client of the
page, like a browser: it is the one module here that imports the UI.
"""
