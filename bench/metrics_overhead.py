"""What the metrics cost per query: the handler called directly, with and without the metrics wrap.

Same queries, same zone view (the demo), runs interleaved A/B/A/B so drift in
CPU speed hits both sides alike. Prints per-query times and the ratio.

    .venv/bin/python bench/metrics_overhead.py [--rounds 10] [--queries 200000]

With --end-to-end SECONDS it also runs the real server (demo config) under
dnsperf, metrics off and on, interleaved, and compares the server's CPU time
per query (from /proc; steadier than qps on a shared machine) and the qps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import dns.message

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from server.app import App
from server.config import build_config
from server.ops.metrics import Observer

ZONE = "pods.example.internal"
# What a resolver in front mostly asks: hits (A, PTR), some misses, a few NODATA.
QUESTIONS = [
    (f"kafka-0.kafka.default.{ZONE}", "A"),
    (f"kafka-1.kafka.default.{ZONE}", "A"),
    (f"zk-2.zk.default.{ZONE}", "A"),
    ("10.1.244.10.in-addr.arpa", "PTR"),
    ("21.2.244.10.in-addr.arpa", "PTR"),
    (f"app-0.app.default.{ZONE}", "AAAA"),
    (f"missing-0.kafka.default.{ZONE}", "A"),
    (f"kafka-0.kafka.default.{ZONE}", "TXT"),
]


def run(handler, queries: list[bytes], count: int) -> float:
    """Seconds per query over `count` calls."""
    peer = ("127.0.0.1", 53000)
    n = len(queries)
    start = time.perf_counter()
    for i in range(count):
        handler(queries[i % n], False, peer)
    return (time.perf_counter() - start) / count


def end_to_end(metrics: bool, seconds: float, query_file: str) -> tuple[float, float]:
    """(qps, server CPU microseconds per query) of one dnsperf run against a fresh server."""
    argv = [
        sys.executable,
        "-m",
        "server",
        "serve",
        "--config",
        "configs/demo.yaml",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0" if metrics else "off",
        "--lameduck",
        "0",
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in server.stderr:
            match = re.search(r"answering DNS on \S+ port (\d+)", line)
            if match:
                port = int(match.group(1))
            if port and ("metrics and probes on" in line or not metrics):
                break
        if port is None:
            raise SystemExit(f"the server did not start (exit code {server.poll()})")
        ticks = os.sysconf("SC_CLK_TCK")
        cpu_before = _cpu_seconds(server.pid, ticks)
        out = subprocess.run(
            ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", query_file, "-l", str(seconds), "-c", "4", "-q", "300"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        cpu = _cpu_seconds(server.pid, ticks) - cpu_before
    finally:
        server.terminate()
        server.wait(10)
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    return qps, cpu / completed * 1e6


def _cpu_seconds(pid: int, ticks: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200_000)
    parser.add_argument("--end-to-end", type=float, metavar="SECONDS", help="also run the real server under dnsperf")
    args = parser.parse_args()

    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    config = build_config(argparse.Namespace(config="configs/demo.yaml"))
    app = App(config)
    asyncio.run(app.load_sources())
    plain = app.handler(socket.AF_INET)
    observer = Observer()
    app.observer = observer
    counted = app.handler(socket.AF_INET)
    queries = [dns.message.make_query(name, qtype, use_edns=0).to_wire() for name, qtype in QUESTIONS]
    for query in queries:
        assert plain(query, False, ("127.0.0.1", 1)) == counted(query, False, ("127.0.0.1", 1))

    run(plain, queries, args.queries // 4)  # warm up
    run(counted, queries, args.queries // 4)
    without, with_metrics = [], []
    for _ in range(args.rounds):
        without.append(run(plain, queries, args.queries))
        with_metrics.append(run(counted, queries, args.queries))
    a, b = statistics.median(without), statistics.median(with_metrics)
    print(f"without metrics: {a * 1e6:.3f} us/query  (median of {args.rounds} runs of {args.queries})")
    print(f"with metrics:    {b * 1e6:.3f} us/query")
    print(f"metrics cost:    {(b - a) * 1e6:.3f} us/query; handler time ratio with/without = {b / a:.3f}")
    assert sum(observer.dns.requests) > 0

    if args.end_to_end:
        if not shutil.which("dnsperf"):
            raise SystemExit("--end-to-end needs dnsperf (scripts/setup-tests.sh installs it)")
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as query_file:
            query_file.write("".join(f"{name} {qtype}\n" for name, qtype in QUESTIONS))
            query_file.flush()
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(max(1, args.rounds // 2)):
                for metrics in (False, True):
                    runs[metrics].append(end_to_end(metrics, args.end_to_end, query_file.name))
        for metrics in (False, True):
            qps = statistics.median(r[0] for r in runs[metrics])
            cpu = statistics.median(r[1] for r in runs[metrics])
            print(f"server, metrics {'on ' if metrics else 'off'}: {qps:8.0f} qps, {cpu:.2f} us CPU/query (medians)")
        cpu_ratio = statistics.median(r[1] for r in runs[True]) / statistics.median(r[1] for r in runs[False])
        qps_ratio = statistics.median(r[0] for r in runs[True]) / statistics.median(r[0] for r in runs[False])
        print(f"end to end: CPU per query ratio on/off = {cpu_ratio:.3f}; qps ratio on/off = {qps_ratio:.3f}")


if __name__ == "__main__":
    main()
