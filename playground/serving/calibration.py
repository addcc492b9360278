"""How far a device's time estimates fall short of what its calls took: what a GPU call's duration is scaled by.

An analysis's time is estimated before it runs (``ui.service.costs.estimate``: L x T² x the score width, times
seconds per unit measured on a 2-core CPU; a GPU's figure is a prior until that GPU has run something). On a
ZeroGPU Space that estimate sets how long the GPU is asked for, and a call that outlives its duration is
stopped. So each analysis, once back, records its estimate and the time it really took (``Analysis.elapsed_ms``,
measured where it ran), and the next durations are scaled by the worst ratio among the last ``keep`` calls on
that device: ``(measured + s) / (estimated + s)``, where ``s`` (one second) keeps a call of a few milliseconds
from setting the scale. With nothing measured yet the scale is 1: the prior alone.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Calibration:
    """The last ``keep`` (estimated, measured) seconds per device type, and the scale they give."""

    keep: int = 16
    smoothing_s: float = 1.0
    seen: dict = field(default_factory=dict)  # device type -> deque of (estimated s, measured s)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, device: str, estimated_s: float, measured_s: float) -> None:
        """One call on ``device`` ("cuda", "cuda:0", "cpu"): what it was estimated to take and what it took."""
        if not (estimated_s >= 0 and measured_s >= 0):
            raise ValueError(f"seconds must be non-negative numbers, got {estimated_s!r} and {measured_s!r}")
        with self.lock:
            self.seen.setdefault(_kind(device), deque(maxlen=self.keep)).append((float(estimated_s), float(measured_s)))

    def scale(self, device: str) -> float:
        """What an estimate on ``device`` is multiplied by: the largest smoothed ratio of measured to estimated
        time among its last calls, 1.0 before any."""
        with self.lock:
            calls = list(self.seen.get(_kind(device), ()))
        s = self.smoothing_s
        return max(((m + s) / (e + s) for e, m in calls), default=1.0)

    def calls(self, device: str) -> int:
        """How many calls the scale on ``device`` rests on (at most ``keep``)."""
        with self.lock:
            return len(self.seen.get(_kind(device), ()))


def _kind(device: str) -> str:
    return str(device).split(":", 1)[0]


ESTIMATES = Calibration()  # this process's analyses: their estimated and measured seconds per device type
