"""Which signals the server handles, and what it does with each until its event loop takes them over.

SIGTERM, SIGINT: graceful shutdown (lame duck, drain). SIGHUP: re-read the
watched files now. SIGQUIT: log the stack of every thread and task, keep
serving. SIGUSR1, SIGUSR2: logged and ignored. None of them kills the
process at once, not even while it is still starting.
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import threading
import traceback

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class EarlySignals:
    """Records the handled signals that arrive before the event loop installs its own handlers,
    so the server can act on them once it runs (a SIGTERM while a big pod file loads still stops it)."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> EarlySignals:
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, _frame) -> None:
        self.received.append(signum)

    def take(self) -> list[int]:
        received, self.received = self.received, []
        return received


def name(signum: int) -> str:
    return signal.Signals(signum).name


def stacks_text() -> str:
    """The stack of every thread and of every asyncio task, for the SIGQUIT dump."""
    parts = []
    threads = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        parts.append(f"thread {threads.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame)))
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop
        tasks = set()
    for task in sorted(tasks, key=lambda t: t.get_name()):
        text = io.StringIO()
        task.print_stack(file=text)
        parts.append(text.getvalue())
    return "\n".join(parts)
