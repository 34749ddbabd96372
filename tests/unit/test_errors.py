"""RateLimitedWarning: a flood of one warning becomes a few lines and a periodic summary; every one is counted."""

from __future__ import annotations

import logging

import pytest

from server.errors import RateLimitedWarning

SUMMARY = "skipped %d more malformed watch events in the last %.0f s"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_flood_logs_the_first_few_then_one_summary_per_interval(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    warning = RateLimitedWarning(logging.getLogger("t"), SUMMARY, burst=3, interval=60, clock=clock)
    for i in range(70_000):
        clock.now += 0.001  # 70 s of them
        warning.warn("bad line %d", i)
    assert warning.total == 70_000
    assert lines(caplog) == ["bad line 0", "bad line 1", "bad line 2", "skipped 59997 more malformed watch events in the last 60 s"]
    clock.now += 60
    warning.tick()
    assert lines(caplog)[-1] == "skipped 10000 more malformed watch events in the last 70 s"
    assert len(caplog.records) == 5


def test_after_a_quiet_interval_it_is_logged_in_full_again(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    warning = RateLimitedWarning(logging.getLogger("t"), SUMMARY, burst=2, interval=10, clock=clock)
    assert [warning.warn("one %d", i) for i in range(4)] == [True, True, False, False]
    clock.now += 11
    warning.tick()  # the summary of the two held back; nothing was for 11 s
    assert warning.warn("again") is True
    assert warning.warn("and again") is True
    assert warning.warn("held") is False
    assert lines(caplog) == ["one 0", "one 1", "skipped 2 more malformed watch events in the last 0 s", "again", "and again"]


def test_a_late_summary_covers_the_occurrences_not_the_silence_after_them(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    warning = RateLimitedWarning(logging.getLogger("t"), SUMMARY, burst=1, interval=60, clock=clock)
    warning.warn("first")
    clock.now += 5
    warning.warn("held")
    clock.now += 3600  # no tick for an hour
    warning.warn("much later")
    assert lines(caplog) == ["first", "skipped 1 more malformed watch events in the last 5 s", "much later"]


def test_flush_logs_what_is_held_back_at_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    warning = RateLimitedWarning(logging.getLogger("t"), SUMMARY, burst=1, interval=60, level=logging.INFO, clock=clock)
    warning.warn("first")
    warning.warn("second")
    clock.now += 2
    warning.flush()
    warning.flush()  # nothing more to say
    assert lines(caplog) == ["first", "skipped 1 more malformed watch events in the last 2 s"]
    assert {record.levelname for record in caplog.records} == {"INFO"}
