"""--workers N: N server processes sharing the DNS port through SO_REUSEPORT.

Each worker is a whole server: its own sources (so N watches of the API, or N
reads of the pod file), its own zone store and its own metrics port (the
configured port plus the worker's index). That costs N times the memory and
API load, and buys one core per worker for answering.

The parent passes every signal the server handles on to each worker and waits.
When a worker ends while the parent is not stopping, the others are stopped
and the parent exits non-zero (2 if that worker could not start, else 1), so
the orchestrator restarts the pod. A worker dies with its parent
(PR_SET_PDEATHSIG), and runs in a process group of its own so that a terminal's
Ctrl-C reaches it once, through the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

from ..config import Config
from .signals import HANDLED_SIGNALS, STOP_SIGNALS, EarlySignals, name

log = logging.getLogger("pod_identity_dns.workers")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def worker_config(config: Config, index: int) -> Config:
    """Worker `index`'s config: metrics on port + index (port 0 stays 0)."""
    metrics = config.metrics_listen
    if metrics is not None and metrics[1] != 0:
        metrics = (metrics[0], metrics[1] + index)
    return dataclasses.replace(config, metrics_listen=metrics)


def run_workers(config: Config, serve: Callable[[Config, EarlySignals], int]) -> int:
    """Fork `config.workers` processes running `serve`; return the exit code for the parent."""
    parent = os.getpid()
    children: dict[int, int] = {}
    stopping = False

    def forward(signum: int, _frame) -> None:
        nonlocal stopping
        if signum in STOP_SIGNALS:
            stopping = True
        log.info("%s: passing it on to %d workers", name(signum), len(children))
        for pid in list(children):
            _kill(pid, signum)

    # Blocked while forking, so that no child runs the parent's handler before it has its own.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, forward)
        for index in range(config.workers):
            pid = os.fork()
            if pid == 0:
                _run_worker(serve, worker_config(config, index), parent, mask)
            children[pid] = index
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    log.info("started %d workers: %s", len(children), ", ".join(map(str, children)))

    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        if index < 0:
            continue
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by {name(-code)}" if code < 0 else f"exited with {code}"
        if not stopping:
            log.error("worker %d (pid %d) %s: stopping the others", index, pid, how)
            stopping = True
            exit_code = 2 if code == 2 else 1
            for other in children:
                _kill(other, signal.SIGTERM)
        elif code != 0:
            log.error("worker %d (pid %d) %s while stopping", index, pid, how)
            exit_code = exit_code or (2 if code == 2 else 1)
    return exit_code


def _run_worker(serve: Callable[[Config, EarlySignals], int], config: Config, parent: int, mask) -> None:
    """The child side of the fork: never returns."""
    code = 1
    try:
        early = EarlySignals().install()  # replaces the parent's forwarding before any signal is let in
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        die_with_parent(parent)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        code = serve(config, early)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when `parent` dies; exit now if it has died already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError):  # not Linux: watch for the parent's end instead
        threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect: the signal will never come
        os._exit(1)


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
