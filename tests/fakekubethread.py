"""A FakeKube (tests/fakekube.py) serving from its own event loop in a daemon thread, for clients in other processes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakekube import FakeKube


class FakeKubeThread:
    """A FakeKube serving from its own event loop in a daemon thread, for clients in other processes.

    Hooks run on the fake's loop: `call(fn, *args)` (e.g. `call(kube.add_pod, pod)`) or `run(coroutine)`.

        with FakeKubeThread() as fake:
            fake.call(fake.kube.add_pod, make_pod("web-0"))
    """

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fakekube", daemon=True)
        self._thread.start()
        try:
            self.kube: FakeKube = self.run(self._start(options))
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _start(options: dict[str, Any]) -> FakeKube:
        from tests.fakekube import FakeKube  # it imports this module

        kube = FakeKube(**options)
        await kube.start()
        return kube

    def run(self, coroutine: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def invoke() -> Any:
            return fn(*args, **kwargs)

        return self.run(invoke())

    def hold_lists(self) -> None:
        """Pod lists wait from now on until release_lists()."""
        self.call(setattr, self.kube, "list_gate", asyncio.Event())

    def release_lists(self) -> None:
        self.call(lambda: self.kube.list_gate.set())

    def close(self) -> None:
        try:
            self.run(self.kube.stop())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> FakeKubeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
