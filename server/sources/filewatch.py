"""Re-read a source file when it changes, keeping the last good content when it breaks.

Polling stat() is deliberate: it sees ConfigMap symlink swaps, editors that
replace files, and bind mounts alike, with no platform-specific API.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from ..errors import SourceError
from .problems import WarnOnce

log = logging.getLogger("pod_identity_dns.files")

T = TypeVar("T")


class LoadReport(Protocol):
    """What a load found beyond its content (a pod file's LoadStats): warnings and a summary line."""

    warnings: list[str]

    def summary(self) -> str: ...


def file_signature(path: str) -> tuple:
    """What stat() says about the file; a change here means: read it again."""
    try:
        st = os.stat(path)
    except OSError:
        return ("missing",)
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class WatchedFile(Generic[T]):
    """One file: `parse(path)` builds the content, `apply(content)` hands it to the registry.

    With `report_of`, each load's report (of the content; of the first load,
    what `first_load` returns) is logged, its warnings once each, and handed
    to `on_reload(kind, result, report)` as a third argument. Without it,
    `on_reload(kind, result)` as before.
    """

    def __init__(
        self,
        kind: str,
        path: str,
        parse: Callable[[str], T],
        apply: Callable[[T], Iterator[None] | None],  # may return steps to iterate (a big change)
        on_reload: Callable[..., None] = lambda kind, result, report=None: None,
        first_load: Callable[[str], Any] | None = None,
        first_signature: tuple | None = None,
        report_of: Callable[[T], LoadReport] | None = None,
    ):
        self.kind, self.path = kind, path
        # A reload waits for it before applying (App sets it: the time serials' pace).
        self.before_apply: Callable[[], Awaitable[None]] | None = None
        self._parse, self._apply, self._on_reload = parse, apply, on_reload
        self._report_of = report_of
        self._warn_once = WarnOnce(log)
        self._first_load = first_load or (lambda path: self._apply_content(parse(path)))
        # The file's signature from before `first_load` began reading it, if that was earlier.
        self._first_signature = first_signature
        self._applied: tuple | None = None  # signature of the last content read (good or bad)
        self._pending: tuple | None = None  # a new signature seen once, waiting to settle

    def load_now(self) -> None:
        """First load, before serving; raises SourceError so start-up can fail clearly.

        `first_load(path)` may apply the content piece by piece as it is parsed:
        a broken file then stops the server, so nothing half-applied is served.
        """
        self._applied = self._first_signature or file_signature(self.path)
        report = self._first_load(self.path)
        self._loaded(report)

    async def reload_if_changed(self) -> bool:
        """Re-read a file whose stat() changed and then held still for one poll. True if applied.

        Waiting for it to settle means a file caught half-written (truncated,
        then filled) is not taken for the truth; parsing runs in a worker thread.
        """
        signature = file_signature(self.path)
        if signature == self._applied:
            self._pending = None
            return False
        if signature != self._pending:
            self._pending = signature
            return False
        try:
            content = await asyncio.to_thread(self._parse, self.path)
        except Exception as exc:  # never let a broken file stop the server
            self._applied = signature
            self._on_reload(self.kind, "error")
            if isinstance(exc, SourceError):
                log.error("reload of %s failed, keeping the last good data: %s", self.kind, exc)
            else:
                log.exception("reload of %s failed, keeping the last good data: %s", self.kind, self.path)
            return False
        if file_signature(self.path) != signature:
            return False  # changed while we read it: try again once it settles
        self._applied = signature
        self._pending = None
        if self.before_apply is not None:
            await self.before_apply()
        steps = self._apply(content)
        if isinstance(steps, Iterator):  # a big change, applied a step at a time with queries let in between
            for _ in steps:
                await asyncio.sleep(0)
        report = self._report_of(content) if self._report_of is not None else None
        if report is None:
            log.info("reloaded %s from %s", self.kind, self.path)
        self._loaded(report)
        return True

    async def reload_now(self) -> bool:
        """Re-read the file at once, changed or not, without waiting for it to settle (SIGHUP)."""
        self._applied, self._pending = None, file_signature(self.path)
        return await self.reload_if_changed()

    def _apply_content(self, content: T) -> LoadReport | None:
        steps = self._apply(content)
        if isinstance(steps, Iterator):
            for _ in steps:
                pass
        return self._report_of(content) if self._report_of is not None else None

    def _loaded(self, report: LoadReport | None) -> None:
        if report is None:
            self._on_reload(self.kind, "success")
            return
        for warning in report.warnings:
            self._warn_once(warning)
        log.info("%s", report.summary())
        self._on_reload(self.kind, "success", report)

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.reload_if_changed()
