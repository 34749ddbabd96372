"""A big hosts file against the real server: start, memory, and the longest gap in answers during a reload.

    .venv/bin/python bench/hosts_reload.py [--lines 1000000]

Starts the server on a hosts file of N lines, then rewrites every address
while a client asks a name over UDP every 10 ms; prints the time to the first
answer, the server's RSS, the reload's duration until the new address
answers, and the longest time the server took to answer during it (target:
no gap over 100 ms on top of the client's own round).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ZONE = "pods.example.internal"


def write_hosts(path: Path, lines: int, third_octet_base: int) -> None:
    with open(path, "w") as out:
        for i in range(lines):
            out.write(f"10.{(third_octet_base + i // 65536) % 256}.{i // 256 % 256}.{i % 256} host-{i}.{ZONE}\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ask(port: int, name: str, timeout: float = 2.0) -> tuple[list[str], float]:
    started = time.monotonic()
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout)
    except Exception:
        return [], time.monotonic() - started
    return [r.address for rrset in reply.answer for r in rrset], time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts"
        pods = Path(tmp) / "pods.json"
        pods.write_text('{"kind": "List", "items": []}')
        write_hosts(hosts, args.lines, 0)
        port = free_port()
        argv = [sys.executable, "-m", "server", "serve", "--zone", ZONE, "--reverse-cidr", "10.0.0.0/8", "--listen", f"127.0.0.1:{port}"]
        argv += ["--pods-file", str(pods), "--hosts-file", str(hosts), "--hosts-file-max-size", "1Gi", "--reload-interval", "0.5"]
        argv += ["--metrics-listen", "off", "--lameduck", "0"]
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            probe = f"host-{args.lines - 1}.{ZONE}"
            while not ask(port, probe, 0.5)[0]:
                if proc.poll() is not None or time.monotonic() - started > 600:
                    print("the server did not answer")
                    return 1
                time.sleep(0.1)
            print(f"{args.lines:,} hosts lines: first answer after {time.monotonic() - started:.1f} s, RSS {rss_mib(proc.pid):.0f} MiB")
            old, _ = ask(port, probe)
            write_hosts(hosts, args.lines, 1)
            os.utime(hosts)
            reload_started, worst = time.monotonic(), 0.0
            while True:
                _, took = ask(port, f"host-0.{ZONE}")
                worst = max(worst, took)
                if ask(port, probe)[0] not in ([], old):
                    break
                if time.monotonic() - reload_started > 600:
                    print("the reload did not finish")
                    return 1
                time.sleep(0.01)
            print(
                f"reload: new data answered after {time.monotonic() - reload_started:.1f} s; longest answer meanwhile {worst * 1000:.0f} ms"
            )
            print(f"RSS after the reload: {rss_mib(proc.pid):.0f} MiB")
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
