"""Debian's Unbound as the forwarding resolver in front of the server, as CoreDNS is in a cluster: a stub zone
per served zone, run in the foreground and stopped by the context manager."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.message
import dns.query


def unbound_binary() -> str:
    found = shutil.which("unbound", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin")
    assert found, "Unbound is missing: run scripts/setup-tests.sh (apt-get install unbound)"
    return found


def unbound_config(directory: Path, address: str, port: int, zones: Iterable[str], server_port: int, log_queries: bool = False) -> str:
    stubs = "".join(f'\nstub-zone:\n    name: "{zone}"\n    stub-addr: 127.0.0.1@{server_port}\n' for zone in zones)
    return f"""\
server:
    interface: {address}
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: "{directory}/unbound.pid"
    logfile: "{directory}/unbound.log"
    use-syslog: no
    verbosity: 1
    log-queries: {"yes" if log_queries else "no"}
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    # Our server is on localhost, which Unbound refuses to ask by default.
    do-not-query-localhost: no
    # No validator: the private zones are unsigned.
    module-config: "iterator"
    # 10.in-addr.arpa is one of the RFC 1918 zones Unbound answers itself (empty) by default.
    local-zone: "10.in-addr.arpa." nodefault
    # CoreDNS's forward plugin hands on the whole reply, additional section included (an SRV's
    # targets' addresses); Unbound keeps it only when not minimal.
    minimal-responses: no

remote-control:
    control-enable: no
{stubs}"""


class UnboundProcess:
    """Unbound on `address`:`port` with stub zones for `zones` to the server on 127.0.0.1:`server_port`;
    a context manager that returns once Unbound answers for the first zone."""

    def __init__(self, directory: Path, address: str, port: int, zones: list[str], server_port: int, log_queries: bool = False):
        self.directory, self.address, self.port, self.zones = directory, address, port, zones
        self.config = directory / "unbound.conf"
        self.config.write_text(unbound_config(directory, address, port, zones, server_port, log_queries))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> UnboundProcess:
        binary = unbound_binary()
        check = subprocess.run([binary.replace("unbound", "unbound-checkconf"), str(self.config)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(self.config)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                assert self.proc.poll() is None, f"unbound exited with {self.proc.returncode}: {self.log()}"
                try:
                    dns.query.udp(dns.message.make_query(self.zones[0], "SOA"), self.address, port=self.port, timeout=3)
                    return self
                except (dns.exception.Timeout, ConnectionRefusedError, OSError):
                    assert time.monotonic() < deadline, f"unbound did not answer: {self.log()}"
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        """Unbound's log file so far (and its output, once it has exited)."""
        log = self.directory / "unbound.log"
        text = log.read_text() if log.exists() else ""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stdout:
            text += self.proc.stdout.read().decode(errors="replace")
        return text

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
