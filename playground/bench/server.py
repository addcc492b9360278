"""The app as its own process (``python app.py``), for benchmarks that measure it from outside.

``AppServer(env)`` starts the app on a free loopback port with extra environment variables (for
example ``PLAYGROUND_LOCAL_MODELS``), waits until it answers, and stops it on leaving the ``with``
block. Its ``pid`` lets a benchmark read the server's own memory (``measure.peak_rss_bytes``); its
output goes to a log file, so the benchmark's stdout stays its result alone.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Self

from playground import paths
from playground.bench.browser import free_port

START_TIMEOUT_S = 240.0  # importing torch and gradio and building the page on a busy 2-core machine


class AppServer:
    """``python app.py`` on 127.0.0.1:<free port>; ``url``, ``pid`` and ``log`` (its output) while running."""

    def __init__(self, env: dict[str, str] | None = None, timeout_s: float = START_TIMEOUT_S):
        self.env, self.timeout_s = dict(env or {}), timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.keep_log = False  # a clean exit removes the log unless this is set

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __enter__(self) -> Self:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(self.port), **self.env}
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="playground-app-", suffix=".log", delete=False)
        self.log = self._log.name
        self.proc = subprocess.Popen([sys.executable, str(paths.ROOT / "app.py")], cwd=paths.ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with status {self.proc.returncode} before answering; "
                                   f"its output is in {self.log}")
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the app did not answer at {self.url} within {self.timeout_s:.0f} s; "
                           f"its output is in {self.log}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        if exc and exc[0] is None and not self.keep_log:  # a clean run: its log is of no further use
            os.unlink(self.log)


@contextlib.contextmanager
def environ(name: str, value: str):
    """``os.environ[name]`` set to ``value`` for the block (for this process and the servers it starts), then
    as it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
