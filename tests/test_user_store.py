"""Models trained in the page stay within bounds: past their age they go, and the oldest go to make room."""
import os

import pytest

from playground.errors import InputError
from playground.zoo import user_store

DAY = 86400


def _model(folder, name: str, made: float):
    (folder / name).mkdir(parents=True)
    card = folder / name / "card.json"
    card.write_text("{}")
    os.utime(card, (made, made))


def test_expired_models_go_then_the_oldest_until_one_more_fits(tmp_path, monkeypatch):
    monkeypatch.setenv(user_store.MAX_ENV, "3")
    monkeypatch.setenv(user_store.DAYS_ENV, "2")
    now = 1_000 * DAY
    for name, age in (("old", 5), ("a", 1.5), ("b", 1.0), ("c", 0.5)):
        _model(tmp_path, name, now - age * DAY)
    assert user_store.prune(now, tmp_path) == ["old", "a"]  # past 2 days; then room for a third
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]
    assert user_store.prune(now, tmp_path) == []  # two kept, one more fits


def test_a_limit_that_is_not_a_positive_number_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(user_store.MAX_ENV, "many")
    with pytest.raises(InputError, match=user_store.MAX_ENV):
        user_store.prune(0, tmp_path)
