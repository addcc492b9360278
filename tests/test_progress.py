"""The page's progress bars are paced: a job of many steps sends a few updates a second and always its last."""
import threading

from playground.ui import progress as bars


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_bar_moves_at_most_once_per_pace_and_always_ends_full(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bars.time, "monotonic", clock)
    sent = []
    report = bars.paced(lambda done, total: sent.append((done, total)), pace_s=0.25)
    for done in range(1, 761):  # 760 steps, 1 ms apart: 0.76 s in all
        report(done, 760)
        clock.now += 0.001
    assert sent[0] == (1, 760) and sent[-1] == (760, 760)
    assert len(sent) == 5, sent  # the first, one at each 0.25 s passed (251, 501, 751), and the last
    assert [d for d, _ in sent] == sorted(d for d, _ in sent)


def test_a_step_bar_writes_its_text_and_a_download_bar_passes_every_report_from_other_threads(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(bars.time, "monotonic", clock)
    calls = []

    def progress(value, desc=None):
        calls.append((value, desc))

    report = bars.step_bar(progress, lambda done, total: f"layer {done} of {total}")
    report(1, 3)
    report(2, 3)  # within the pace: dropped
    report(3, 3)
    assert calls == [((1, 3), "layer 1 of 3"), ((3, 3), "layer 3 of 3")]

    calls.clear()
    download = bars.download_bar(progress)
    reports = [(0.0, "Asking the Hub"), (0.01, "Downloading config.json"), (0.5, "Downloading 50%"), (1.0, "done")]
    for report in reports:  # all within one pace, each from a thread of its own
        th = threading.Thread(target=download, args=report)
        th.start()
        th.join()
    assert calls == reports
