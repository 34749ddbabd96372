"""--workers N: N server processes sharing the DNS port through SO_REUSEPORT.

Each worker is a whole server: its own sources (so N watches of the API, or N
reads of the pod file), its own zone store and its own metrics port (the
configured port plus the worker's index). That costs N times the memory and
API load, and buys one core per worker for answering. The parent only
forwards signals and waits; if a worker dies, the others are stopped and the
parent exits with the worker's code, so the orchestrator restarts the pod.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable

from ..config import Config

log = logging.getLogger("pod_identity_dns.workers")


def worker_config(config: Config, index: int) -> Config:
    """Worker `index`'s config: metrics on port + index (port 0 stays 0)."""
    metrics = config.metrics_listen
    if metrics is not None and metrics[1] != 0:
        metrics = (metrics[0], metrics[1] + index)
    return dataclasses.replace(config, metrics_listen=metrics)


def run_workers(config: Config, serve: Callable[[Config], int]) -> int:
    """Fork `config.workers` processes running `serve`; return the exit code for the parent."""
    children: dict[int, int] = {}
    for index in range(config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = serve(worker_config(config, index))
            finally:
                os._exit(code)
        children[pid] = index
    log.info("started %d workers: %s", len(children), ", ".join(map(str, children)))

    stopping = False

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and not stopping:
            log.error("worker %s (pid %d) exited with %d: stopping the others", index, pid, code)
            stopping = True
            for other in children:
                _kill(other, signal.SIGTERM)
        exit_code = exit_code or (code if code > 0 else 0)
    return exit_code


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
