"""Run a parser in a forked child process and stream what it yields back.

A 100k-pod file is ~300 MB of JSON and ~2 s of decoding. In a child, that
runs on another core while the server loads the first batches into the
registry, holds no GIL the event loop needs (reloads), and leaves the file's
buffer and the decoder's garbage out of the server's own heap.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import resource
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import SourceError

PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


class ChildFailed(Exception):
    """The child process died or broke off without finishing."""


class ChildStream(Iterator[Any]):
    """The items of a producer; `result` is what it returned, once they are all taken."""

    result: Any = None

    def close(self) -> None:
        """Stop producing (the child, if one is still at work)."""


def stream_from_child(produce: Callable[[], Iterable[Any]], memory_limit: int | None = None) -> ChildStream:
    """Each item `produce()` yields, computed in a child forked now, as it arrives.

    Iterating raises a SourceError raised in the child, and ChildFailed if the
    child ends in any other way before it is done. Closing the iterator early
    kills the child. A generator's return value becomes the stream's `result`.
    `memory_limit`: bytes the child may allocate beyond what it inherits
    (RLIMIT_DATA); past it, allocations fail with MemoryError in the child.
    Without os.fork, `produce` runs in this process, with no limit.
    """
    if not hasattr(os, "fork"):
        return _LocalStream(produce)
    return _ChildStream(produce, memory_limit)


class _LocalStream(ChildStream):
    def __init__(self, produce: Callable[[], Iterable[Any]]):
        self._items = iter(produce())

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None


class _ChildStream(ChildStream):
    def __init__(self, produce: Callable[[], Iterable[Any]], memory_limit: int | None = None):
        self._running = False
        self._failure: ChildFailed | None = None
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:
            self._failure = ChildFailed(f"cannot start the parser process: {exc}")
            return
        with contextlib.suppress(OSError, AttributeError):
            # Room for a whole batch (~250 KB): the child writes it without waiting
            # for us, so it decodes the next while we apply this one.
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self._pid = os.fork()
        except OSError as exc:  # a pids limit, no memory: the file's error, not the server's end
            os.close(read_fd)
            os.close(write_fd)
            self._failure = ChildFailed(f"cannot start the parser process: {exc}")
            return
        if self._pid == 0:
            _run_child(produce, read_fd, write_fd, memory_limit)  # never returns
        os.close(write_fd)
        self._pipe = os.fdopen(read_fd, "rb")
        self._running = True

    def __iter__(self) -> _ChildStream:
        return self

    def __next__(self) -> Any:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        if not self._running:
            raise StopIteration
        try:
            kind, payload = pickle.load(self._pipe)
        except EOFError:  # the child closed the pipe between messages: it is ending
            self._end(kill=False)
            raise ChildFailed(f"the parser process ended early ({self._status})") from None
        except Exception:  # a message cut short (UnpicklingError and the like): it died mid-write
            self._end(kill=True)
            raise ChildFailed(f"the parser process ended mid-message ({self._status})") from None
        if kind == "item":
            return payload
        self._end(kill=False)
        if kind == "error":
            raise SourceError(*payload)
        if kind == "memory":
            raise ChildFailed(f"the parser process ran out of memory (its limit is {payload} bytes beyond the server's own)")
        self.result = payload
        raise StopIteration

    def close(self) -> None:
        """Stop the child if it is still at work."""
        self._end(kill=True)

    def _end(self, kill: bool) -> None:
        if not self._running:
            return
        self._running = False
        self._pipe.close()
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        self._status = _exit_status(self._pid)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _exit_status(pid: int) -> str:
    """Reap the child (once); a description of how it ended."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _run_child(produce: Callable[[], Iterable[Any]], read_fd: int, write_fd: int, memory_limit: int | None) -> None:
    code = 1
    try:
        os.close(read_fd)
        # Keep only stdio and the pipe: no listening sockets or API connections
        # stay open in the child, and no signal reaches the server's loop.
        _close_fds_except(write_fd)
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        gc.disable()  # short-lived, and it only allocates
        if memory_limit is not None:
            _limit_memory(memory_limit)
        with os.fdopen(write_fd, "wb") as pipe:
            items = None
            end: tuple[str, Any]
            try:
                items = iter(produce())
                while True:
                    try:
                        item = next(items)
                    except StopIteration as stop:
                        end = ("done", stop.value)
                        break
                    pickle.dump(("item", item), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                    pipe.flush()
            except SourceError as exc:
                end = ("error", (exc.path, exc.line, exc.reason))
            except MemoryError:
                end = ("memory", memory_limit)
            # Out of the except blocks, the producer and what its frames held are freed: room to say why.
            item = items = None
            pickle.dump(end, pipe, protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    except BaseException:
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        os._exit(code)


def _limit_memory(extra: int) -> None:
    """Let this process allocate at most `extra` bytes beyond its inherited data size (RLIMIT_DATA).

    Data, not address space (RLIMIT_AS): a file mapped read-only does not
    count against it, so a large JSON file costs only what is decoded from it.
    """
    inherited = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmData:"):
                inherited = int(line.split()[1]) * 1024
    if not inherited:
        return  # no /proc: no base to add the limit to
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = inherited + extra if hard == resource.RLIM_INFINITY else min(inherited + extra, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _close_fds_except(keep: int) -> None:
    """Close every fd above stdio but `keep`: those listed in /proc/self/fd, since
    closing up to the fd limit (which may be 2**30) could take seconds."""
    try:
        open_fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(3, keep)
        os.closerange(keep + 1, 65536)
        return
    for fd in open_fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)
