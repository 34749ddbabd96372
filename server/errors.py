"""Error type shared by the file parsers: which file, which line, why."""

from __future__ import annotations


class SourceError(Exception):
    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")
