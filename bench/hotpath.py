"""Where the time goes per query, under dnsperf load.

    .venv/bin/python bench/hotpath.py [--pods N] [--duration S] [--only micro,perf,py-spy,cprofile]

Four views of the same per-query path, cheapest distortion first:

  micro     respond() alone over the benchmark's query mix, no sockets: the cost
            of the DNS work itself (and how many queries leave the fast path).
  perf      `perf record -g` on the real server process (`python -m server serve`)
            while dnsperf loads it: kernel vs user time, which system calls, which
            native symbols. Sampling by timer, the process is not paused.
  py-spy    `py-spy record --native` on the same process: the innermost Python
            function of each sample. py-spy pauses the process for every sample,
            so absolute shares are skewed; the ranking among Python code holds.
            (py-spy is not a project dependency: `.venv/bin/pip install py-spy`.)
  cprofile  the App in-process on uvloop under cProfile, driven by dnsperf; top
            functions by tottime. cProfile adds a fixed cost to every call (and
            counts C-level uvloop work, recvmsg and epoll included, as the self
            time of run_until_complete), so it inflates our Python share.

Views whose tool is missing (perf, py-spy) are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import benchlib as bl
import run

PERF_OPTS = ["-T", "1", "-c", "20", "-q", "100", "-t", "2"]


def quiet(what: str, max_wait: float = 90) -> None:
    """Wait for other processes on this shared machine to go quiet; say so if they do not."""
    _waited, busy = bl.wait_quiet(max_wait)
    if busy >= 15:
        print(f"   (note: the machine stayed busy, {busy:.0f}% of a core used by other processes, before {what})")


class _VisibleSendto:
    """uvloop's UDPTransport.sendto is a Cython method, which cProfile does not see:
    this wrapper gives it a Python frame so its time is listed on its own."""

    def __init__(self, transport):
        self._transport = transport

    def sendto(self, data, addr=None):
        self._transport.sendto(data, addr)

    def __getattr__(self, name):
        return getattr(self._transport, name)


def load_queries(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (size,) = struct.unpack_from("!H", data, i)
        out.append(data[i + 2 : i + 2 + size])
        i += 2 + size
    return out


def build_app(pod_file: Path, cidr4: str, port: int):
    from server.app import App
    from server.cli import make_parser
    from server.config import build_config

    argv = run.server_argv(pod_file, cidr4, port)[3:]  # from "serve" on
    return App(build_config(make_parser().parse_args(argv)))


# -- micro ------------------------------------------------------------------------------


def micro(pod_file: Path, cidr4: str, queries: list[bytes]) -> None:
    from server.zone.fastpath import fast_answer, respond

    app = build_app(pod_file, cidr4, 0)
    asyncio.run(app.load_sources())
    view = app.store
    slow = sum(1 for q in queries if fast_answer(q, view) is None)
    quiet("the micro benchmark")
    best_respond = best_fast = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for q in queries:
            respond(q, view)
        best_respond = min(best_respond, (time.perf_counter() - t) / len(queries))
        t = time.perf_counter()
        for q in queries:
            fast_answer(q, view)
        best_fast = min(best_fast, (time.perf_counter() - t) / len(queries))
    t = time.perf_counter()
    for _q in queries:
        pass
    empty = (time.perf_counter() - t) / len(queries)
    print("== micro: the DNS work alone (no sockets), best of 5 passes over the query mix")
    print(f"   respond():     {best_respond * 1e6:.2f} µs/query  -> at most {1 / best_respond:,.0f} qps on one core if I/O were free")
    print(f"   fast_answer(): {best_fast * 1e6:.2f} µs/query  (loop overhead {empty * 1e6:.2f} µs)")
    print(f"   queries the fast path hands to the full path (dnslib): {slow} of {len(queries)} ({100 * slow / len(queries):.2f}%)")
    print()


# -- perf / py-spy on the real server process -----------------------------------------------


def _load(procs, port: int, query_file: Path, seconds: float, log_dir: Path, name: str):
    argv = ["dnsperf", "-B", "-d", str(query_file), "-s", "127.0.0.1", "-p", str(port), "-l", f"{seconds:g}", *PERF_OPTS]
    return procs.start(name, argv, log_dir / f"{name}.txt")


def _qps(path: Path) -> str:
    match = re.search(r"Queries per second:\s+([0-9.]+)", path.read_text(errors="replace"))
    return f"{float(match.group(1)):,.0f}" if match else "?"


PERF_GROUPS = [
    ("send system calls (sendmsg/sendto, kernel + libc)", ("__libc_sendmsg", "__libc_sendto", "sendmmsg", "__send")),
    ("receive system calls (recvmsg/recvfrom)", ("__libc_recvmsg", "__libc_recvfrom", "recvmmsg", "__libc_recv")),
    ("epoll_wait (idle or woken)", ("epoll_pwait", "epoll_wait")),
]


def perf_view(procs, server_pid: int, port: int, query_file: Path, seconds: float, work: Path) -> None:
    print(f"== perf: the real server process under dnsperf {' '.join(PERF_OPTS)}, {seconds:g} s sampled at 2 kHz")
    if not shutil.which("perf"):
        print("   perf not found: skipped\n")
        return
    quiet("perf")
    load = _load(procs, port, query_file, seconds + 2, work, "dnsperf-perf")
    time.sleep(1)
    data = work / "perf.data"
    rec = subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-p", str(server_pid), "-o", str(data), "--", "sleep", f"{seconds:g}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    load.wait(seconds + 30)
    if rec.returncode != 0 or not data.exists():
        print(f"   perf record failed: {rec.stderr.strip()[-300:]}\n")
        return
    print(f"   dnsperf meanwhile: {_qps(work / 'dnsperf-perf.txt')} qps")

    def report(*extra) -> str:
        return subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "-g", "none", *extra], capture_output=True, text=True, timeout=120
        ).stdout

    rows = re.findall(r"^\s+([0-9.]+)%\s+(?:([0-9.]+)%\s+)?(\S+)\s+\[([.k])\]\s+(.+?)\s*$", report("--children", "--sort", "dso,sym"), re.M)
    children = collections.defaultdict(float)
    for total, _, _, _, sym in rows:
        children[sym] = max(children[sym], float(total))
    dsos = re.findall(r"^\s+([0-9.]+)%\s+(\S+)\s*$", report("--no-children", "--sort", "dso"), re.M)
    print("   where the server's CPU time goes (inclusive, overlapping groups):")
    for label, syms in PERF_GROUPS:
        print(f"     {sum(children.get(s, 0.0) for s in syms):5.1f}%  {label}")
    for share, dso in dsos[:6]:
        print(f"     {float(share):5.1f}%  self time in {dso}")
    sched = children.get("schedule", 0.0)
    print(f"     {sched:5.1f}%  of it in schedule() (preempted or sleeping: dnsperf shares the 2 cores)")
    print("   top 25 symbols by self time:")
    top = re.findall(r"^\s+([0-9.]+)%\s+(\S+)\s+\[([.k])\]\s+(.+?)\s*$", report("--no-children", "--sort", "dso,sym"), re.M)
    for share, dso, kind, sym in top[:25]:
        print(f"     {float(share):5.2f}%  {'kernel' if kind == 'k' else dso:28.28} {sym[:70]}")
    print()


def pyspy_view(procs, server_pid: int, port: int, query_file: Path, seconds: float, work: Path) -> None:
    print(f"== py-spy: innermost Python function per sample (native stacks), {seconds:g} s")
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("   py-spy not installed (`.venv/bin/pip install py-spy`): skipped\n")
        return
    quiet("py-spy")
    load = _load(procs, port, query_file, seconds + 2, work, "dnsperf-pyspy")
    time.sleep(1)
    raw = work / "pyspy.txt"
    rec = subprocess.run(
        [
            exe,
            "record",
            "--pid",
            str(server_pid),
            "--native",
            "--rate",
            "500",
            "--format",
            "raw",
            "--duration",
            f"{seconds:g}",
            "-o",
            str(raw),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    load.wait(seconds + 30)
    if rec.returncode != 0 or not raw.exists():
        print(f"   py-spy failed: {rec.stderr.strip()[-300:]}\n")
        return
    by_func: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf = frames[-1]
        python = [f for f in frames if ".py:" in f]
        inner = re.sub(r" \((.*?):\d+\)", r" (\1)", python[-1]) if python else "?"
        if "epoll" in leaf:
            kind = "idle in epoll_wait"
        elif leaf.startswith(("sendmsg", "sendto", "__send")):
            kind = "sendmsg system call"
        elif leaf.startswith(("recvmsg", "recvfrom", "recvmmsg")):
            kind = "recvmsg system call"
        elif ".py:" in leaf or ("server/" in inner and "datagram_received" not in inner):
            kind = "Python code of the server (answer path)"
        elif "datagram_received" in inner:
            kind = "under datagram_received, native (uvloop sendto glue, C calls)"
        else:
            kind = "uvloop / libuv / interpreter outside our Python code"
        by_kind[kind] += n
        by_func[inner if kind.startswith(("Python", "under")) else kind] += n
    print(f"   dnsperf meanwhile: {_qps(work / 'dnsperf-pyspy.txt')} qps (py-spy pauses the process per sample), {total} samples")
    for kind, n in by_kind.most_common():
        print(f"     {100 * n / total:5.1f}%  {kind}")
    print("   top innermost frames:")
    for name, n in by_func.most_common(15):
        print(f"     {100 * n / total:5.1f}%  {name}")
    print()


# -- cProfile in-process ---------------------------------------------------------------------


def cprofile_view(pod_file: Path, cidr4: str, query_file: Path, seconds: float, work: Path, top: int) -> None:
    import uvloop

    print(f"== cProfile: the App in-process on uvloop, dnsperf {' '.join(PERF_OPTS)}, {seconds:g} s")
    port = bl.free_port()
    app = build_app(pod_file, cidr4, port)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    procs = bl.Processes()
    try:
        loop.run_until_complete(app.start_sources())
        loop.run_until_complete(app.listen())

        async def until_done(proc):
            while proc.poll() is None:
                await asyncio.sleep(0.05)

        warm = _load(procs, port, query_file, 1, work, "dnsperf-warm")
        loop.run_until_complete(until_done(warm))
        for transport in app._udp:
            protocol = transport.get_protocol()
            if getattr(protocol, "transport", None) is transport:
                protocol.transport = _VisibleSendto(transport)
        quiet("cProfile")
        load = _load(procs, port, query_file, seconds, work, "dnsperf-cprofile")
        prof = cProfile.Profile()
        prof.enable()
        loop.run_until_complete(until_done(load))
        prof.disable()
        print(f"   dnsperf meanwhile: {_qps(work / 'dnsperf-cprofile.txt')} qps (with the profiler's overhead)")
        stats = pstats.Stats(prof)
        total = sum(v[2] for v in stats.stats.values())
        print(
            f"   Python-visible time {total:.2f} s of {seconds:g} s; the rest is uvloop's C loop (epoll_wait, recvmsg, "
            "callback dispatch), which cProfile cannot see.\n   _VisibleSendto.sendto = uvloop's UDPTransport.sendto incl. the sendmsg system call."
        )
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        text = out.getvalue()
        print("   " + text[text.index("ncalls") :].rstrip().replace("\n", "\n   "))
        loop.run_until_complete(app.shutdown())
    finally:
        procs.stop_all()
        loop.close()
    print()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load per view (default 5)")
    p.add_argument("--only", type=lambda s: s.split(","), default=["micro", "perf", "py-spy", "cprofile"])
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    bl.install_deadline(120 + 4 * (args.duration + 40 + 90))
    procs = bl.Processes()
    work = Path(tempfile.mkdtemp(prefix="pidns-profile-"))
    try:
        cluster = bl.generate_cluster(args.pods)
        pod_file, query_file = work / "pods.json", work / "queries.bin"
        bl.write_pod_file(cluster, pod_file)
        bl.build_queries(cluster, query_file)
        print(f"{args.pods:,} pods, the benchmark's query mix ({query_file.stat().st_size / 2**20:.1f} MiB of queries)\n")
        if "micro" in args.only:
            micro(pod_file, cluster.cidr4, load_queries(query_file))
        if "perf" in args.only or "py-spy" in args.only:
            port = bl.free_port()
            server = procs.start("server", run.server_argv(pod_file, cluster.cidr4, port), work / "server.log")
            bl.wait_answering(port, server, time.monotonic(), 120, work / "server.log", "pod-identity-dns")
            if "perf" in args.only:
                perf_view(procs, server.pid, port, query_file, args.duration, work)
            if "py-spy" in args.only:
                pyspy_view(procs, server.pid, port, query_file, args.duration, work)
            procs.stop(server)
        if "cprofile" in args.only:
            cprofile_view(pod_file, cluster.cidr4, query_file, args.duration, work, args.top)
        return 0
    except bl.BenchError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
