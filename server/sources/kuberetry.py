"""When the Kubernetes source asks the API again: jittered backoff, Retry-After, and paced relists."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable


class Backoff:
    """Exponential backoff with jitter (each delay between half and all of its ceiling); reset after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** min(self.failures, 32))
        self.failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a Retry-After header asks for (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as such
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(backoff_delay: float, retry_after: float | None, cap: float) -> float:
    """The wait before a retry: the backoff's, or what the server asked for (at most `cap`) if that is longer."""
    if retry_after is None:
        return backoff_delay
    return max(backoff_delay, min(retry_after, cap))


class RelistPacer:
    """Spaces out relists that follow one another with no watch that stayed up in between.

    The first relist may start at once; each one after it waits a jittered
    delay that doubles from `initial` to `maximum`, so a server that fails every
    watch with 410 costs a few full lists a minute, not one per round trip.
    """

    def __init__(self, initial: float, maximum: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = Backoff(initial, maximum)
        self.clock = clock
        self.relists = 0  # since a watch last stayed up
        self._not_before = 0.0

    def wait(self) -> float:
        """Seconds until the next relist may start."""
        return max(0.0, self._not_before - self.clock())

    def listed(self) -> None:
        """A relist completed: the next one waits."""
        self.relists += 1
        self._not_before = self.clock() + self.backoff.next_delay()

    def reset(self) -> None:
        """A watch stayed up: the next relist may start at once."""
        self.relists = 0
        self.backoff.reset()
        self._not_before = 0.0
