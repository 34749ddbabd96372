"""When the Kubernetes source asks again: backoff, Retry-After, relist pacing."""

from __future__ import annotations

import email.utils

import pytest

from server.sources.kuberetry import Backoff, RelistPacer, parse_retry_after, retry_delay


def test_backoff_doubles_with_jitter_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0)
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, ceiling in zip(delays, [0.5, 1, 2, 4, 4, 4]):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.5


@pytest.mark.parametrize(
    "header, seconds",
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("-3", None),
        ("soon", None),
        (email.utils.formatdate(1_000_030, usegmt=True), 30.0),  # an HTTP date 30 s after "now"
        (email.utils.formatdate(999_000, usegmt=True), 0.0),  # in the past: at once
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=1_000_000) == seconds


def test_retry_delay_is_the_longer_of_backoff_and_retry_after_bounded() -> None:
    assert retry_delay(0.4, None, 60) == 0.4
    assert retry_delay(0.4, 5, 60) == 5
    assert retry_delay(9, 5, 60) == 9
    assert retry_delay(0.4, 3600, 60) == 60


def test_relists_are_spaced_out_until_a_watch_stays_up() -> None:
    now = [0.0]
    pacer = RelistPacer(5, 60, clock=lambda: now[0])
    assert pacer.wait() == 0  # the first relist: at once
    waits = []
    for _ in range(8):
        pacer.listed()
        waits.append(pacer.wait())
        now[0] += waits[-1]
    for wait, ceiling in zip(waits, [5, 10, 20, 40, 60, 60, 60, 60]):
        assert ceiling / 2 <= wait <= ceiling
    assert sum(waits[4:]) >= 4 * 30  # a storm settles at one or two a minute
    assert pacer.relists == 8
    pacer.reset()
    assert pacer.wait() == 0 and pacer.relists == 0
