"""Re-read a source file when it changes, keeping the last good content when it breaks.

Polling stat() is deliberate: it sees ConfigMap symlink swaps, editors that
replace files, and bind mounts alike, with no platform-specific API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, Generic, TypeVar

from .sourcefile import SourceError

log = logging.getLogger("pod_identity_dns.files")

T = TypeVar("T")


def _signature(path: str) -> tuple | None:
    """What stat() says about the file; None for a file written too recently to trust.

    Two writes inside one timestamp tick look identical to stat(), so a file
    younger than a second is read again on the next poll.
    """
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    if time.time() - st.st_mtime < 1.0:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class WatchedFile(Generic[T]):
    """One file: `parse(path)` builds the content, `apply(content)` hands it to the registry."""

    def __init__(
        self,
        kind: str,
        path: str,
        parse: Callable[[str], T],
        apply: Callable[[T], None],
        on_reload: Callable[[str, str], None] = lambda kind, result: None,
    ):
        self.kind, self.path = kind, path
        self._parse, self._apply, self._on_reload = parse, apply, on_reload
        self._seen: tuple | None = None  # None: not read yet, or must be read again

    def load_now(self) -> None:
        """First load, before serving; raises SourceError so start-up can fail clearly."""
        self._seen = _signature(self.path)
        content = self._parse(self.path)
        self._apply(content)
        self._on_reload(self.kind, "success")

    async def reload_if_changed(self) -> bool:
        """Parse in a worker thread when stat() changed; apply on the loop. True if applied."""
        signature = _signature(self.path)
        if signature is not None and signature == self._seen:
            return False
        self._seen = signature
        try:
            content = await asyncio.to_thread(self._parse, self.path)
        except SourceError as exc:
            log.error("reload of %s failed, keeping the last good data: %s", self.kind, exc)
            self._on_reload(self.kind, "error")
            return False
        except Exception as exc:  # never let a broken file stop the server
            log.exception("reload of %s failed, keeping the last good data: %s: %s", self.kind, self.path, exc)
            self._on_reload(self.kind, "error")
            return False
        self._apply(content)
        self._on_reload(self.kind, "success")
        log.info("reloaded %s from %s", self.kind, self.path)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.reload_if_changed()
