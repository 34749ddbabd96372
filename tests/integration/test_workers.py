"""--workers: several processes share one DNS port; every signal is passed on, a dead worker stops the
rest with a non-zero exit code, and no worker outlives its parent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import dns.message
import dns.query

from tests.serverproc import ROOT, ServerProcess

KAFKA0 = "kafka-0.kafka.default.pods.example.internal"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bound(server: ServerProcess) -> list[str]:
    return [line for line in server.lines if "answering DNS" in line]


def test_workers_share_the_port_and_stop_together():
    port = _free_port()
    args = ["--config", "configs/demo.yaml", "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off", "--workers", "2"]
    server = ServerProcess(*args)
    with server:
        server.wait_for_log("started 2 workers")
        deadline = time.monotonic() + 20
        while len(_bound(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_bound(server)) == 2 and all(f"port {port}" in line for line in _bound(server))
        for _ in range(20):
            reply = dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=port, timeout=3)
            assert reply.answer[0][0].address == "10.244.1.10"
        assert dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=port, timeout=3).answer
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
    assert len([line for line in server.lines if line.endswith("stopped")]) == 2


def _workers(server: ServerProcess) -> list[int]:
    line = server.wait_for_log("started 2 workers: ")
    return [int(pid) for pid in line.rsplit(": ", 1)[1].split(", ")]


def _gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its new parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait(predicate, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _two_workers() -> ServerProcess:
    args = ["--config", "configs/demo.yaml", "--listen", f"127.0.0.1:{_free_port()}", "--metrics-listen", "off", "--workers", "2"]
    return ServerProcess(*args)


def test_the_parent_passes_every_signal_on_to_each_worker():
    server = _two_workers()
    with server:
        _workers(server)
        _wait(lambda: len(_bound(server)) == 2, "both workers listening")
        for signum, effect in (
            (signal.SIGHUP, "SIGHUP: re-reading the pods file, the hosts file, the records file now"),
            (signal.SIGUSR1, "SIGUSR1: ignored"),
            (signal.SIGUSR2, "SIGUSR2: ignored"),
            (signal.SIGQUIT, "SIGQUIT: the stack of every thread and task follows"),
        ):
            server.proc.send_signal(signum)
            server.wait_for_log(f"{signum.name}: passing it on to 2 workers")
            _wait(
                lambda effect=effect: len([line for line in server.lines if f"pod_identity_dns: {effect}" in line]) == 2,
                f"both workers acting on {signum.name}",
            )
        assert server.proc.poll() is None
        reply = dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.ports[0][1], timeout=3)
        assert reply.answer[0][0].address == "10.244.1.10"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
    assert len([line for line in server.lines if line.endswith("stopped")]) == 2


def test_a_worker_killed_by_a_signal_stops_the_others_and_the_parent_exits_1():
    server = _two_workers()
    with server:
        first, second = _workers(server)
        _wait(lambda: len(_bound(server)) == 2, "both workers listening")
        os.kill(first, signal.SIGKILL)
        assert server.proc.wait(15) == 1
        assert _gone(second)
    server.wait_for_log(rf"worker 0 \(pid {first}\) was killed by SIGKILL: stopping the others")


def test_no_worker_outlives_its_parent():
    server = _two_workers()
    with server:
        workers = _workers(server)
        _wait(lambda: len(_bound(server)) == 2, "both workers listening")
        server.proc.kill()
        server.proc.wait(5)
        _wait(lambda: all(_gone(pid) for pid in workers), "workers left behind by a killed parent")


CHILD = """
import ctypes, os, signal, sys
from server.serve.workers import die_with_parent
die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid())
number = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(number), 0, 0, 0)  # PR_GET_PDEATHSIG
print("alive, death signal", number.value)
"""


def test_a_worker_set_up_after_its_parent_died_exits_at_once():
    alive = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert alive.returncode == 0 and alive.stdout.strip() == f"alive, death signal {int(signal.SIGKILL)}", alive.stderr
    # As if the parent had died between fork and prctl: this process's parent is not the one it was forked by.
    orphan = subprocess.run([sys.executable, "-c", CHILD, str(os.getppid())], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert orphan.returncode == 1 and "alive" not in orphan.stdout
