"""Run a parser in a forked child process and stream what it yields back.

A 100k-pod file is ~300 MB of JSON and ~2 s of decoding. In a child, that
runs on another core while the server loads the first batches into the
registry, holds no GIL the event loop needs (reloads), and leaves the file's
buffer and the decoder's garbage out of the server's own heap.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import traceback
from typing import Any, Callable, Iterable, Iterator

from .sourcefile import SourceError


class ChildFailed(Exception):
    """The child process died or broke off without finishing."""


def stream_from_child(produce: Callable[[], Iterable[Any]]) -> Iterator[Any]:
    """Each item `produce()` yields, computed in a forked child, as it arrives.

    A SourceError raised in the child is raised here; ChildFailed if the child
    ends in any other way before it is done. Closing the iterator early kills
    the child. Without os.fork, runs in this process.
    """
    if not hasattr(os, "fork"):
        yield from produce()
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        _run_child(produce, read_fd, write_fd)  # never returns
    os.close(write_fd)
    done = False
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            while True:
                try:
                    kind, payload = pickle.load(pipe)
                except EOFError:
                    raise ChildFailed(f"the parser process ended early ({_exit_status(pid)})") from None
                if kind == "item":
                    yield payload
                elif kind == "error":
                    done = True
                    raise SourceError(*payload)
                else:
                    done = True
                    return
    finally:
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _exit_status(pid)


def _exit_status(pid: int) -> str:
    """Reap the child (once); a description of how it ended."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _run_child(produce: Callable[[], Iterable[Any]], read_fd: int, write_fd: int) -> None:
    code = 1
    try:
        os.close(read_fd)
        # Keep only stdio and the pipe: no listening sockets or API connections
        # stay open in the child, and no signal reaches the server's loop.
        os.closerange(3, write_fd)
        os.closerange(write_fd + 1, _max_fd())
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        gc.disable()  # short-lived, and it only allocates
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                for item in produce():
                    pickle.dump(("item", item), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                    pipe.flush()
            except SourceError as exc:
                pickle.dump(("error", (exc.path, exc.line, exc.reason)), pipe)
            else:
                pickle.dump(("done", None), pipe)
        code = 0
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536
