"""Every listener is bound before the server says it answers: a busy address is one line naming it, exit code 2."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import ZONE
from tests.serverproc import ROOT, run_cli

PODS = str(ROOT / "configs/demo-pods.yaml")


def _held(kind: int) -> socket.socket:
    """A socket holding a free loopback port (listening, for TCP) without SO_REUSEADDR."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


@pytest.mark.parametrize(
    "held,flag,protocol",
    [
        (socket.SOCK_STREAM, "--listen", "TCP"),
        (socket.SOCK_DGRAM, "--listen", "UDP"),
        (socket.SOCK_STREAM, "--metrics-listen", "HTTP"),
    ],
)
def test_a_busy_address_is_one_line_naming_it_and_exit_2(held, flag, protocol):
    with _held(held) as busy:
        port = busy.getsockname()[1]
        args = [
            "serve",
            "--zone",
            ZONE,
            "--reverse-cidr",
            "10.244.0.0/16",
            "--pods-file",
            PODS,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]
        args[args.index(flag) + 1] = f"127.0.0.1:{port}"
        result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith(f"cannot listen on 127.0.0.1 port {port} ({protocol}): Address already in use")
    assert "answering DNS" not in result.stderr


def test_with_workers_a_busy_metrics_port_stops_every_worker_with_exit_2():
    with _held(socket.SOCK_STREAM) as busy:
        port = busy.getsockname()[1]
        args = [
            "serve",
            "--zone",
            ZONE,
            "--reverse-cidr",
            "10.244.0.0/16",
            "--pods-file",
            PODS,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ]
        result = run_cli(*args, "--workers", "2")
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1 port {port} (HTTP): Address already in use" in result.stderr
    assert "worker 0" in result.stderr and "exited with 2" in result.stderr
