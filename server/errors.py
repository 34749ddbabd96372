"""Errors and warnings the sources share: SourceError (which file, which line, why) and RateLimitedWarning."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class SourceError(Exception):
    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")


class RateLimitedWarning:
    """One kind of repeated warning, logged at a bounded rate however often it happens.

    The first `burst` occurrences in an interval of `interval` seconds are logged
    in full; the rest are only counted, and one summary line is logged for them
    (`summary % (count, seconds)`) at the first call after the interval ends.
    Once nothing was held back for a whole interval, occurrences are logged in
    full again. The owner counts every occurrence in its metric itself: this only
    bounds the log. Not thread-safe; one instance per kind of warning and owner.

        malformed = RateLimitedWarning(log, "skipped %d more malformed watch events in the last %.0f s")
        malformed.warn("skipped malformed watch event: %.120r", line)  # per occurrence
        malformed.tick()  # now and then (per chunk read, say): summarise an ended interval
    """

    def __init__(
        self,
        logger: logging.Logger,
        summary: str,
        *,
        burst: int = 5,
        interval: float = 60.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.summary = summary
        self.burst = burst
        self.interval = interval
        self.level = level
        self.clock = clock
        self.total = 0  # every occurrence, logged or not
        self._since = clock()  # start of the current interval
        self._logged = 0  # logged in full in the current streak
        self._held = 0  # held back since the last summary
        self._last_held = self._since

    def warn(self, message: str, *args: object) -> bool:
        """One occurrence: logged in full (True) or counted for the next summary (False)."""
        self.total += 1
        now = self.clock()
        self._roll(now)
        if self._logged < self.burst:
            self._logged += 1
            self.logger.log(self.level, message, *args)
            return True
        self._held += 1
        self._last_held = now
        return False

    def tick(self) -> None:
        """Log the summary of what was held back once its interval is over; cheap, call it often."""
        self._roll(self.clock())

    def _roll(self, now: float) -> None:
        if now - self._since < self.interval:
            return
        if self._held:
            self._summarise(now)
        if now - self._last_held >= self.interval:
            self._logged = 0  # nothing held back for an interval: the next ones are logged in full again
        self._since = now

    def flush(self) -> None:
        """Log the summary of what is held back now, whether or not the interval is over."""
        now = self.clock()
        if self._held:
            self._summarise(now)
        self._since = now

    def _summarise(self, now: float) -> None:
        # Called late (nothing happened for a while), the span ends at the last occurrence, not now.
        end = now if now - self._last_held <= self.interval else self._last_held
        self.logger.log(self.level, self.summary, self._held, end - self._since)
        self._held = 0
