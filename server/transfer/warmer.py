"""The background task that keeps every zone's transfer chunks encoded (server/transfer/chunks.py), and
the first warm-up after a sync, which readiness and NOTIFY wait for.

Commits wake it; once they pause for WARM_QUIET (or WARM_LONGEST after the first) it plans each zone
and encodes the touched chunks, WARM_STEP at a time, stepping aside while a full transfer is being
sent, so that the next full transfer copies them. A zone never planned is planned at once.

Encoding a 100k-pod zone the plain way takes about four times Knot's transfer time, copying kept chunks
half of it. So from the first sync until every zone is kept (WARM_HOLD_LONGEST at most) the server is
not ready, and NOTIFYs wait: the first secondaries, sent by a Service to ready replicas only or invited
by a NOTIFY, get the fast transfer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from ..zone import names
from .chunks import ChunkCache
from .source import ZoneSource

log = logging.getLogger("pod_identity_dns.transfer")

BUSY_POLL = 0.01
WARM_QUIET = 1.0  # seconds without a commit before changed chunks are encoded in the background
WARM_LONGEST = 10.0  # ... or at the latest this long after the first change, however busy the zone
WARM_STEP = 0.002  # seconds of encoding per turn of the event loop
WARM_ASIDE = 0.05  # the warmer waits while a full transfer has made a message this recently (it uses the loop's turns)
WARM_HOLD_LONGEST = 30.0  # seconds after the first sync that readiness and NOTIFY wait for the first warm-up, at most


class ChunkWarmer:
    """Keeps `chunks` encoded from `store`; calls `warmed_up()` once, when the first warm-up ends."""

    def __init__(self, chunks: ChunkCache, store: ZoneSource, warmed_up: Callable[[], None]):
        self.chunks = chunks
        self.store = store
        self.warmed = False
        self._warmed_up = warmed_up
        self._commits = asyncio.Event()
        self._plan_now = False  # a transfer found its zone unplanned: no waiting for commits to pause
        self._last_message = 0.0  # when a full transfer last made a message (monotonic)
        self._task: asyncio.Task | None = None
        self._hold_began: float | None = None  # the first synced commit

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="transfer-chunks")
        if self.store.synced:
            self.committed()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def committed(self) -> None:
        """A commit (or the start, synced): wake the task; the first synced one begins the warm-up."""
        self._commits.set()
        if self.warmed or self._hold_began is not None or not self.store.synced:
            return
        self._hold_began = time.monotonic()
        try:
            asyncio.get_running_loop().call_later(WARM_HOLD_LONGEST + 0.01, self._expire)
        except RuntimeError:  # no loop (a store driven by hand): warming_up checks the deadline itself
            pass

    def plan_soon(self) -> None:
        """A transfer found a zone unplanned: plan it without waiting for commits to pause."""
        self._plan_now = True
        self._commits.set()

    def noted(self, encoded: Iterable[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
        """`encoded`, noting when each message was made: the warmer steps aside while transfers run."""
        for item in encoded:
            self._last_message = time.monotonic()
            yield item

    @property
    def warming_up(self) -> bool:
        """From the first sync until every zone's chunks are first kept, or WARM_HOLD_LONGEST has passed."""
        self._expire()
        return not self.warmed and self._hold_began is not None

    def _expire(self) -> None:
        if not self.warmed and self._hold_began is not None and time.monotonic() - self._hold_began >= WARM_HOLD_LONGEST:
            self._end_hold(f"the first warm-up of the transfer messages took over {WARM_HOLD_LONGEST:g} s: ready without it")

    def _end_hold(self, why: str | None = None) -> None:
        if self.warmed:
            return
        self.warmed = True
        if why is not None:
            log.warning("transfer: %s", why)
        elif self._hold_began is not None:
            log.info(
                "transfer: every zone's transfer messages kept in %.0f ms after the sync", (time.monotonic() - self._hold_began) * 1000
            )
        self._warmed_up()

    async def _run(self) -> None:
        while True:
            await self._commits.wait()
            started = time.monotonic()
            if any(self.chunks.needs_plan(apex) for apex in self.store.zones):
                self._plan_now = True  # a zone never planned (the first load): no waiting for commits to pause
            while not self._plan_now:
                self._commits.clear()
                await asyncio.sleep(WARM_QUIET)
                if not self._commits.is_set() or time.monotonic() - started >= WARM_LONGEST:
                    break
            self._plan_now = False
            self._commits.clear()
            for apex in list(self.store.zones):
                try:
                    await self._warm_zone(apex)
                except Exception:  # a bug here must not stop transfers: they encode what is not kept
                    log.exception("transfer: keeping the chunks of %s failed; its transfers encode them", names.to_text(apex))
                    self.chunks.forget(apex)
            if self.store.synced and self._hold_began is not None:
                self._end_hold()

    async def _warm_zone(self, apex: bytes) -> None:
        chunks, store = self.chunks, self.store
        plans = 3  # a plan is dropped when a change too big to track comes meanwhile: try again, not forever
        while apex in store.zones and store.synced:
            if store.busy or time.monotonic() - self._last_message < WARM_ASIDE:
                await asyncio.sleep(BUSY_POLL)
                continue
            if chunks.needs_plan(apex):
                if not plans:
                    return
                plans -= 1
                for _ in chunks.plan_steps(apex, store.snapshot(apex), WARM_STEP):  # type: ignore[arg-type]
                    await asyncio.sleep(0)
                await asyncio.sleep(0)
                continue
            done = chunks.encode_step(apex, store.live(apex), WARM_STEP)  # type: ignore[attr-defined]
            await asyncio.sleep(0)
            if done and not chunks.needs_plan(apex):  # encoded, the chunks may show the zone outgrew them
                return
