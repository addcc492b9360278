"""Per-route queues (``serving.lanes``): each heavy route has its workers and a bounded waiting room, the next
request is refused at once, a cancelled waiter leaves, and cheap reads never queue behind a full lane."""
import threading
import time

import gradio as gr
import pytest

from playground.errors import InputError
from playground.serving import lanes
from playground.serving.lanes import Lane
from playground.ui import service
from playground.ui.attention import analyze
from playground.ui.head_view import head
from playground.ui.cancels import CANCELS
from playground.zoo import ModelSpec


def _hold(lane: Lane, release: threading.Event, n: int) -> list[threading.Thread]:
    """``n`` jobs in ``lane`` that end when ``release`` is set (those past its workers wait for one)."""
    def job():
        with lane.enter():
            release.wait(30)
    threads = [threading.Thread(target=job, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while sum(lane.counts()) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(lane.counts()) == n
    return threads


def test_a_full_lane_refuses_the_next_at_once_and_runs_the_waiters_in_turn():
    lane, release = Lane("test", workers=2, waiting=1), threading.Event()
    threads = _hold(lane, release, 3)
    assert lane.counts() == (2, 1)
    start = time.monotonic()
    with pytest.raises(InputError) as refused:
        with lane.enter():
            pass
    assert time.monotonic() - start < 0.5
    assert refused.value.code == "error.lane_full" and refused.value.params == dict(lane="test", running=2, waiting=1)
    release.set()
    for t in threads:
        t.join(5)
    assert lane.counts() == (0, 0)
    with lane.enter():  # free again
        assert lane.counts() == (1, 0)


def test_a_job_cancelled_while_waiting_leaves_the_lane_and_a_job_inside_does_not_queue_behind_itself():
    lane, release = Lane("test", workers=1, waiting=2), threading.Event()
    threads = _hold(lane, release, 1)
    pressed = threading.Event()
    threading.Timer(0.3, pressed.set).start()
    with pytest.raises(InputError) as left:
        with lane.enter(pressed.is_set):
            pass
    assert left.value.code == "error.lane_cancelled" and lane.counts() == (1, 0)
    release.set()
    threads[0].join(5)
    with lane.enter():
        with lane.enter():  # a view that computes its analysis on the way: one job, one worker
            assert lane.counts() == (1, 0)


def test_the_page_refuses_an_analysis_when_its_lane_is_full_and_a_zoom_still_answers():
    prompt = "The cat sat on the mat. The cat"
    head("zoo:baseline", prompt, "self", 0, 0)  # an analysis already stored: zooms read it
    release = threading.Event()
    threads = _hold(lanes.ANALYZE, release, lanes.ANALYZE.admitted)
    try:
        start = time.monotonic()
        with pytest.raises(gr.Error) as refused:
            analyze("zoo:baseline", "A prompt nobody analyzed before, so it needs the lane.")
        assert time.monotonic() - start < 2
        assert "analyze" in refused.value.message and "full" in refused.value.message
        start = time.monotonic()
        out = head("zoo:baseline", prompt, "self", 1, 2)
        assert out["head"] and time.monotonic() - start < 2
    finally:
        release.set()
        for t in threads:
            t.join(10)


def test_the_cancel_button_reaches_a_job_waiting_for_its_lane():
    """``CANCELS.job`` hands its ``cancelled()`` to the lane a job waits in: a press while it waits ends it."""
    spec = ModelSpec.parse("zoo:baseline")
    release = threading.Event()
    threads = _hold(lanes.ANALYZE, release, lanes.ANALYZE.workers)
    errors = []

    def job():
        with CANCELS.job("waiting-session", exclusive=True):
            try:
                service.analyze_text(spec, "Words that wait for a worker.")
            except InputError as e:
                errors.append(e.code)
    waiting = threading.Thread(target=job, daemon=True)
    waiting.start()
    try:
        deadline = time.monotonic() + 5
        while lanes.ANALYZE.counts()[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert CANCELS.press("waiting-session")
        waiting.join(5)
        assert errors == ["error.lane_cancelled"]
    finally:
        release.set()
        for t in threads:
            t.join(10)
