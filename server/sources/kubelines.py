"""A watch stream read as batches of complete lines, with a bound on the wait for each and on their length."""

from __future__ import annotations

import asyncio

import aiohttp

from .kubedecode import ApiError, Gone

# Lines handed out at a time, at most: a longer burst lets queries in between (the caller yields).
BATCH_LINES = 256


class WatchStalled(ApiError):
    """No complete line arrived on a watch stream for too long (KubeSettings.watch_stall_seconds)."""

    def __init__(self, message: str, partial: bool) -> None:
        super().__init__("watch_stalled", message)
        self.partial = partial  # a line had begun: the stream is broken, not merely quiet


class LineReader:
    """Complete lines of one watch response, BATCH_LINES at a time.

    `stall`: the longest wait for a complete line, counted only while waiting
    for data (not while the caller works on the last batch); `max_line`: the
    longest line (an event that never ends cannot be resynchronised: Gone).
    """

    def __init__(self, resp: aiohttp.ClientResponse, stall: float, max_line: int) -> None:
        self.resp = resp
        self.stall = stall
        self.max_line = max_line
        self.lines = 0  # non-blank lines handed out
        self._pending: list[bytes] = []
        self._unfinished: list[bytes] = []  # the start of a line still arriving
        self._unfinished_size = 0
        self._ended = False

    async def next_batch(self) -> list[bytes] | None:
        """The next complete lines (blank ones included), or None once the stream has ended."""
        if not self._pending:
            await self._fill()
            if not self._pending:
                return None
        batch = self._pending[:BATCH_LINES]
        del self._pending[:BATCH_LINES]
        self.lines += sum(1 for line in batch if line and not line.isspace())  # not strip(): that copies each 5 KB line
        return batch

    async def _fill(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(self.stall)
        try:
            async with deadline:
                while not self._pending and not self._ended:
                    chunk = await self.resp.content.readany()
                    if not chunk:
                        self._ended = True
                        if self._unfinished:  # a last line without its newline
                            self._pending.append(b"".join(self._unfinished))
                        break
                    # Split the chunk itself: copying it whole first (up to megabytes a read) cost as much as the split.
                    lines = chunk.split(b"\n")
                    rest = lines.pop()  # after the last newline: the start of a line still arriving
                    if not lines:
                        self._unfinished.append(rest)
                        self._unfinished_size += len(rest)
                        if self._unfinished_size > self.max_line:
                            raise Gone("watch event longer than the line limit")
                        continue
                    deadline.reschedule(loop.time() + self.stall)
                    if self._unfinished:
                        lines[0] = b"".join((*self._unfinished, lines[0]))
                    self._unfinished, self._unfinished_size = ([rest], len(rest)) if rest else ([], 0)
                    self._pending = lines
        except TimeoutError:
            if not deadline.expired():
                raise  # the client's read timeout
            size = self._unfinished_size
            under_way = f" ({size} bytes of a line under way)" if size else ""
            raise WatchStalled(f"no complete watch event in {self.stall:.0f}s{under_way}", bool(size)) from None
