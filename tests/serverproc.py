"""Run the real server as a subprocess on free ports, and find out which ports it got."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LISTEN = re.compile(r"answering DNS on (\S+) port (\d+)")
_METRICS = re.compile(r"metrics and probes on http://(\S+):(\d+)/")


class ServerProcess:
    """`python -m server serve ARGS`; a context manager that waits until it listens."""

    def __init__(self, *args: str, start_timeout: float = 20.0, env: dict | None = None):
        self.args = ["serve", *args]
        if not any(a.startswith("--listen") for a in args):
            self.args += ["--listen", "127.0.0.1:0"]
        if not any(a.startswith("--metrics-listen") for a in args):
            self.args += ["--metrics-listen", "off"]
        if not any(a.startswith("--lameduck") for a in args):
            self.args += ["--lameduck", "0"]
        self.start_timeout = start_timeout
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.ports: list[tuple[str, int]] = []
        self.metrics_port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.ports[0][1]

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", *self.args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout
        listeners = self.args.count("--listen")
        while time.monotonic() < deadline:
            if len(self.ports) >= listeners and (self.metrics_port or "off" in self.args):
                return self
            if self.proc.poll() is not None:
                time.sleep(0.1)
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n" + "\n".join(self.lines))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("server did not start listening:\n" + "\n".join(self.lines))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _LISTEN.search(line)
            if match:
                self.ports.append((match.group(1), int(match.group(2))))
            match = _METRICS.search(line)
            if match:
                self.metrics_port = int(match.group(2))

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}:\n" + "\n".join(self.lines))

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_tcp_frame(sock: socket.socket) -> bytes:
    """One length-prefixed DNS message from a TCP socket (RFC 7766 framing)."""
    size = int.from_bytes(recv_exactly(sock, 2), "big")
    return recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
