"""Process handling and readings for bench/kube_load.py: children with their output, /proc figures, probes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class BenchError(Exception):
    """A step failed: exit non-zero."""


def profiled_server(out: str, argv: list[str]) -> int:
    import cProfile
    import sys

    sys.path.insert(0, os.getcwd())  # the server of --server-repo (the child runs there), not this checkout's
    for module in [name for name in sys.modules if name == "server" or name.startswith("server.")]:
        del sys.modules[module]
    from server.cli import main

    profile = cProfile.Profile()
    profile.enable()
    try:
        return main(argv)
    finally:
        profile.disable()
        profile.dump_stats(out)


def rss_mib(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How much of the machine processes other than the benchmark's used between two readings."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = self._read()

    def _read(self) -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        idle = ticks[3] + ticks[4]
        tick = os.sysconf("SC_CLK_TCK")
        ours = sum(cpu_seconds(pid) for pid in self.pids)
        return (sum(ticks) - idle) / tick, sum(ticks) / tick, ours

    def percent(self) -> float:
        """Other processes' CPU since the start, in % of one core."""
        busy, total, ours = self._read()
        wall = (total - self.start[1]) / (os.cpu_count() or 1)
        return round(100 * max(0.0, (busy - self.start[0]) - (ours - self.start[2])) / max(wall, 1e-9))


class Child:
    """A child process whose output lines are collected; stopped with TERM, then KILL."""

    def __init__(self, label: str, argv: list[str], log_path: Path, stdin: bool = False, cwd: Path = REPO) -> None:
        self.label = label
        self.lines: list[str] = []
        self.log = open(log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.log.write(line)
            self.log.flush()

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix) or prefix in line:
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise BenchError(f"{self.label} exited with {self.proc.returncode}:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.005)
        raise BenchError(f"{self.label}: no line with {prefix!r} within {timeout:.0f} s:\n" + "\n".join(self.lines[-20:]))

    def stop(self, grace: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.terminate()
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(grace)
        self._reader.join(2)
        self.log.close()
        return self.proc.returncode


class Dns:
    """A UDP client for one A or PTR question at a time (dnslib, a runtime dependency of the server)."""

    def __init__(self, port: int) -> None:
        import dnslib

        self.dnslib = dnslib
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(2.0)
        self.next_id = 1

    def ask(self, name: str, qtype: str = "A", retry: bool = False) -> tuple[str, list[str]]:
        """(rcode, sorted rdata); `retry`: a timeout is ("TIMEOUT", []) instead of an error."""
        self.next_id = self.next_id % 65535 + 1
        query = self.dnslib.DNSRecord.question(name, qtype)
        query.header.id = self.next_id
        self.sock.send(query.pack())
        while True:
            try:
                reply = self.dnslib.DNSRecord.parse(self.sock.recv(4096))
            except TimeoutError:
                if retry:
                    return "TIMEOUT", []
                raise BenchError(f"no answer for {name} {qtype} within 2 s") from None
            if reply.header.id == self.next_id:
                break
        rcode = self.dnslib.RCODE.get(reply.header.rcode)
        return rcode, sorted(str(rr.rdata) for rr in reply.rr)


def control(port: int, path: str, timeout: float = 120.0, **params: Any) -> dict:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    method = "GET" if path == "/stats" else "POST"
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}?{query}", method=method, data=None if method == "GET" else b"")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_until_quiet(limit: float, busy_percent: float = 25.0, quiet_seconds: int = 3) -> float:
    """Wait (at most `limit` s) until other processes use under `busy_percent` of a core for a few seconds.

    The machine may be shared; figures taken while it is busy mean little. Returns the seconds waited.
    """
    started = time.monotonic()
    quiet = 0
    while quiet < quiet_seconds and time.monotonic() - started < limit:
        load = OtherLoad([os.getpid()])
        time.sleep(1)
        quiet = quiet + 1 if load.percent() < busy_percent else 0
    return time.monotonic() - started


class HealthProbe:
    """GET /healthz every `every` seconds from a thread, as a kubelet would: the longest gap between two answers.

    A server whose event loop is held up answers late, and the gap shows it;
    connection failures count as no answer. Each request has its own connection.
    """

    def __init__(self, port: int, every: float = 0.02) -> None:
        self.port = port
        self.every = every
        self.answers = 0
        self.failures = 0
        self.longest_gap = 0.0  # between two answers
        self.longest_wait = 0.0  # for one answer
        self.longest_gap_at = 0.0  # seconds after the probe began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        began = last = time.monotonic()
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
                    response.read()
                ok = response.status == 200
            except OSError:
                ok = False
            now = time.monotonic()
            if ok:
                self.answers += 1
                if now - last > self.longest_gap:
                    self.longest_gap, self.longest_gap_at = now - last, now - began
                self.longest_wait = max(self.longest_wait, now - asked)
                last = now
            else:
                self.failures += 1
            self._stop.wait(max(0.0, self.every - (time.monotonic() - asked)))

    def figures(self) -> dict[str, float]:
        return {
            "longest_gap_ms": round(self.longest_gap * 1000, 1),
            "at_s": round(self.longest_gap_at, 2),
            "longest_wait_ms": round(self.longest_wait * 1000, 1),
            "answers": self.answers,
            "failures": self.failures,
        }
