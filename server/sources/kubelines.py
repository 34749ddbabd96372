"""A watch stream read as batches of complete lines, with a bound on the wait for each and on their length.

Lines are bytes, or memoryviews into the chunk read (see LineReader._split).
"""

from __future__ import annotations

import asyncio

import aiohttp

from .kubedecode import ApiError, Gone

Line = bytes | memoryview

# Lines handed out at a time, at most: a longer burst lets queries in between (the caller yields).
BATCH_LINES = 256


def is_blank(line: bytes | memoryview) -> bool:
    """Whether a line holds nothing but whitespace (an event is longer: only short lines are looked at)."""
    return len(line) < 8 and not bytes(line).strip()


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
        self._pending: list[Line] = []
        self._unfinished: list[bytes] = []  # the start of a line still arriving
        self._unfinished_size = 0
        self._ended = False

    async def next_batch(self) -> list[Line] | None:
        """The next complete lines (blank ones included), or None once the stream has ended."""
        if not self._pending:
            await self._fill()
            if not self._pending:
                return None
        batch = self._pending[:BATCH_LINES]
        del self._pending[:BATCH_LINES]
        self.lines += sum(1 for line in batch if not is_blank(line))
        return batch

    def _split(self, chunk: bytes, last: int) -> list[Line]:
        """The complete lines of a chunk (which has one at `last`), the first joined to what came before.

        Views into the chunk, not copies: a streaming list is hundreds of
        megabytes, and the decoder reads a view as well as bytes.
        """
        view = memoryview(chunk)
        find = chunk.find
        end = find(b"\n")
        lines: list[Line] = [b"".join((*self._unfinished, view[:end])) if self._unfinished else view[:end]]
        while end < last:
            start = end + 1
            end = find(b"\n", start)
            lines.append(view[start:end])
        return lines

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
                    last = chunk.rfind(b"\n")
                    if last < 0:  # no line ends here
                        self._unfinished.append(chunk)
                        self._unfinished_size += len(chunk)
                        if self._unfinished_size > self.max_line:
                            raise Gone("watch event longer than the line limit")
                        continue
                    deadline.reschedule(loop.time() + self.stall)
                    self._pending = self._split(chunk, last)
                    rest = chunk[last + 1 :]  # the start of a line still arriving
                    self._unfinished, self._unfinished_size = ([rest], len(rest)) if rest else ([], 0)
        except TimeoutError:
            if not deadline.expired():
                raise  # the client's read timeout
            size = self._unfinished_size
            under_way = f" ({size} bytes of a line under way)" if size else ""
            raise WatchStalled(f"no complete watch event in {self.stall:.0f}s{under_way}", bool(size)) from None
