"""Log a recurring condition once, not once per occurrence: an attack of a thousand connections is one line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ConditionLog:
    """Logs at the first occurrence; later ones stay quiet until the condition has not recurred for `quiet` seconds.

    Each occurrence extends the quiet period, so a condition that lasts an hour is one line; when it
    comes back after a pause, the new line says how many occurrences went unlogged before it.
    """

    def __init__(
        self, logger: logging.Logger, level: int = logging.WARNING, quiet: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.logger, self.level, self.quiet, self.clock = logger, level, quiet, clock
        self._last: float | None = None
        self.unlogged = 0  # occurrences since the last line

    def __call__(self, message: str, *args: object) -> bool:
        """Note one occurrence; True if it was logged."""
        now = self.clock()
        last, self._last = self._last, now
        if last is not None and now - last < self.quiet:
            self.unlogged += 1
            return False
        if self.unlogged:
            message += " (%d more occurrences went unlogged before this)"
            args = (*args, self.unlogged)
            self.unlogged = 0
        self.logger.log(self.level, message, *args)
        return True
