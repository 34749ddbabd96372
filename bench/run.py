"""Issue 5's benchmark, one command: this server against Knot DNS (one UDP worker) and a dnslib baseline.

    .venv/bin/python bench/run.py [--pods N] [--duration S] [--out DIR]

1. generates a cluster of N StatefulSet pods (`kubectl get pods -A -o json`
   shape; IPv4 in 10.244.0.0/16, widened when N does not fit; ~10% dual-stack
   in fd00:10:244::/48) into a temp dir;
2. starts `python -m server serve` on it three times, each once the machine is
   quiet, and reports the median of start -> first answer (the last one
   stays up for the runs);
3. exports the same zones (`export-zone --output-dir`) and loads them into
   Knot (`knotd`, udp-workers 1), which must serve the same SOA;
4. checks a few answers (A, AAAA, PTR, NXDOMAIN) agree between the two and
   with the generated cluster;
5. starts a second server of ours on the same pod file with the uvloop UDP
   front end (the first one runs the default, batched: --udp-frontend), and
   runs dnsperf with one query mix (see benchlib.build_queries) in rounds of
   ours (batched), Knot, ours (uvloop), each for the same duration
   (throughput; the ratio ours/Knot is taken per round, from runs back to
   back, and the median of the rounds is reported), then rounds at a fixed
   10,000 qps against each (latency, the median of the rounds), then once
   against a dnslib
   parse-and-build-per-query server (bench/dnslib_baseline.py);
6. prints one table and exits non-zero if anything failed to start or
   answered wrongly. Every child is stopped on exit, Ctrl-C or error, and the
   whole run is bounded by a global deadline.

dnsperf options (-T 1 -c 20 -q 100): dnsperf is one process, and each -T
thread is a sender and a receiver thread. On this 2-core machine the server
(one core for a one-worker server), dnsperf and the kernel's loopback delivery
share two cores. Measured here: -T 2 puts four busy client threads on the two
cores and pulls Knot from ~110k down to ~73k qps (our server stayed ~79k), so
-T 1. Twenty sockets (-c 20) spread the replies over several receive queues;
-q 100 queries in flight keep a server busy at >100k qps with ~1 ms of
queueing, while -q 500 overflows Knot's UDP receive buffer (hundreds of lost
queries per run) and only adds queueing delay. With -T 1, Knot stays below
100% CPU and dnsperf is its limit; so the table also gives each server's CPU
time per query, which compares capacity regardless of who was the bottleneck.

The machine may be shared: before every timed run the benchmark waits (up to
--wait-quiet s) for other processes to go idle, measures the CPU they take
during the run, and repeats a run they disturbed (up to --retries times),
keeping the least disturbed one. Softirq time (loopback delivery, charged to
no process) is shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl
from benchlib import AAAA, PTR, A, BenchError
from runtable import STARTS, render


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000, help="pods in the generated cluster (default 10000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run (default 10)")
    p.add_argument("--out", type=Path, help="also write table.txt, results.json, logs and dnsperf outputs here")
    p.add_argument("--rate", type=int, default=10_000, help="qps of the fixed-rate latency runs (default 10000)")
    p.add_argument("--threads", type=int, default=1, help="dnsperf -T (default 1, see the module docstring)")
    p.add_argument("--clients", type=int, default=20, help="dnsperf -c: UDP sockets (default 20)")
    p.add_argument("--outstanding", type=int, default=100, help="dnsperf -q: queries in flight (default 100)")
    p.add_argument(
        "--wait-quiet", type=float, default=30.0, help="wait up to this long for other processes to go idle before each run (default 30)"
    )
    p.add_argument("--retries", type=int, default=2, help="repeat a run disturbed by other processes up to this many times (default 2)")
    p.add_argument("--queries", type=int, default=200_000, help="distinct queries in the query file (default 200000)")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of load on each server before the timed runs, not counted (default 2)"
    )
    p.add_argument("--rounds", type=int, default=3, help="throughput rounds of ours (batched), Knot, ours (uvloop) (default 3)")
    p.add_argument("--udp-batch", type=int, default=64, help="--udp-batch of our batched server (default 64)")
    p.add_argument("--no-baseline", action="store_true", help="skip the dnslib baseline")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("--deadline", type=float, help="global time limit, seconds (default: 8 runs + N-dependent setup)")
    args = p.parse_args(argv)
    if args.pods < 10 or args.duration <= 0 or args.rounds < 1:
        p.error("--pods must be >= 10, --duration > 0 and --rounds >= 1")
    return args


def server_argv(pod_file: Path, cidr4: str, port: int | None, command: str = "serve", udp: tuple[str, int] | None = None) -> list[str]:
    """The server's command line; `udp`: (--udp-frontend, --udp-batch) of a serve."""
    argv = [
        sys.executable,
        "-m",
        "server",
        command,
        "--pods-file",
        str(pod_file),
        "--zone",
        bl.ZONE,
        "--reverse-cidr",
        cidr4,
        "--reverse-cidr",
        bl.CIDR6,
    ]
    if command == "serve":
        argv += ["--listen", f"127.0.0.1:{port}", "--metrics-listen", "off", "--lameduck", "0"]
        if udp is not None:
            argv += ["--udp-frontend", udp[0], "--udp-batch", str(udp[1])]
    return argv


def knot_conf(work: Path, port: int, zone_files: list[Path]) -> Path:
    (work / "knot-run").mkdir()
    (work / "knot-db").mkdir()
    zones = "".join(f"  - domain: {f.name[:-5]}.\n    file: {f.name}\n" for f in zone_files)
    text = f"""# generated by bench/run.py: one UDP worker, no DNSSEC, nothing written back
server:
    rundir: "{work / "knot-run"}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{work / "knot-db"}"
template:
  - id: default
    storage: "{zone_files[0].parent}"
    semantic-checks: off
    zonefile-load: whole
    zonefile-sync: -1
    journal-content: none
zone:
{zones}"""
    path = work / "knot.conf"
    path.write_text(text)
    return path


def sanity_check(cluster: bl.Cluster, servers: dict[str, int]) -> list[str]:
    """The same answers from every server, and the answers the generated cluster implies."""
    import random

    rng = random.Random(11)
    pods = rng.sample(cluster.pods, 5) + rng.sample([p for p in cluster.pods if p.ipv6], 2)
    checks: list[tuple[str, int, int, list]] = []
    for pod in pods:
        checks.append((pod.fqdn, A, 0, [(A, pod.ipv4)]))
        checks.append((bl.reverse_name(pod.ipv4), PTR, 0, [(PTR, pod.fqdn)]))
        if pod.ipv6:
            checks.append((pod.fqdn, AAAA, 0, [(AAAA, pod.ipv6)]))
            checks.append((bl.reverse_name(pod.ipv6), PTR, 0, [(PTR, pod.fqdn)]))
    _, sset, size, _ = cluster.sets[0]
    ns = cluster.sets[0][0]
    checks.append((f"{sset}-{size}.{sset}.{ns}.{bl.ZONE}.", A, 3, []))  # next ordinal: NXDOMAIN
    problems = []
    for name, qtype, rcode, expected in checks:
        for label, port in servers.items():
            for edns in (False, True):
                try:
                    reply = bl.ask(port, name, qtype, timeout=2.0, edns=edns)
                except (OSError, TimeoutError) as exc:
                    problems.append(f"{label}: {name} type {qtype}: no answer ({exc})")
                    continue
                got = [(t, v) for t, v in reply.answers if t == qtype]
                if reply.rcode != rcode or not reply.aa or sorted(got) != sorted(expected):
                    problems.append(
                        f"{label}: {name} type {qtype} edns={edns}: rcode {reply.rcode} aa {reply.aa} {got}, expected rcode {rcode} {expected}"
                    )
                if rcode == 3 and 6 not in reply.authority_types:
                    problems.append(f"{label}: {name}: NXDOMAIN without the SOA")
    return problems


def progress(r: bl.PerfResult) -> None:
    print(
        f"  {r.label}: {r.qps:>9,.0f} qps, avg latency {r.avg_latency * 1000:.3f} ms, lost {r.lost}, server CPU {r.server_cpu:.0f}% "
        f"({r.server_us_per_query:.2f} µs/query), dnsperf {r.dnsperf_cpu:.0f}%, softirq {r.softirq_cpu:.0f}%, "
        f"other processes {r.other_cpu:.0f}%, attempts {r.attempts}",
        flush=True,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    n_runs = 6 * args.rounds + (0 if args.no_baseline else 1)
    budget = args.deadline or (
        180 + 2 * (args.warmup + 30) + args.pods / 1000 * 3 + n_runs * (1 + args.retries) * (args.duration + 10 + args.wait_quiet)
    )
    bl.install_deadline(budget)
    procs = bl.Processes()
    work = Path(tempfile.mkdtemp(prefix="pidns-bench-"))
    logs = work / "logs"
    logs.mkdir()
    perf_opts = ["-T", str(args.threads), "-c", str(args.clients), "-q", str(args.outstanding), "-t", "2"]
    results: dict = {"pods": args.pods, "duration": args.duration, "dnsperf": perf_opts, "runs": {}}
    failures: list[str] = []
    table = ""
    try:
        # 1. the cluster, the pod file and the queries
        t = time.monotonic()
        cluster = bl.generate_cluster(args.pods)
        pod_file = work / "pods.json"
        size = bl.write_pod_file(cluster, pod_file)
        query_file = work / "queries.bin"
        mix = bl.build_queries(cluster, query_file, args.queries)
        results["cluster"] = {
            "pods": len(cluster.pods),
            "dual_stack": cluster.dual_stack,
            "sets": len(cluster.sets),
            "namespaces": len({s[0] for s in cluster.sets}),
            "cidr4": cluster.cidr4,
            "pod_file_mib": size / 2**20,
            "mix": mix,
        }
        print(
            f"generated {len(cluster.pods)} pods ({cluster.dual_stack} dual-stack) in {len(cluster.sets)} StatefulSets, "
            f"IPv4 {cluster.cidr4}, pod file {size / 2**20:.1f} MiB, {mix['queries']} queries, in {time.monotonic() - t:.1f} s",
            flush=True,
        )
        if cluster.cidr4 != bl.CIDR4:
            print(
                f"note: {args.pods} pods do not fit in {bl.CIDR4} at {bl.PODS_PER_NODE} pods per node /24: using {cluster.cidr4}",
                flush=True,
            )

        # 2. our server: start -> first answer, once the generator's writes have reached
        # the disk and nothing else runs (writeback of a 300 MB file competes for the CPUs)
        # Started STARTS times (the last one stays up for the runs); the median counts,
        # as this shared machine's speed drifts by tens of percent between seconds.
        os.sync()
        starts = []
        for attempt in range(STARTS):
            waited, busy = bl.wait_quiet(args.wait_quiet)
            port = bl.free_port()
            started = time.monotonic()
            ours = procs.start(
                "pod-identity-dns", server_argv(pod_file, cluster.cidr4, port, udp=("batched", args.udp_batch)), logs / "server.log"
            )
            took, soa = bl.wait_answering(port, ours, started, 120, logs / "server.log", "pod-identity-dns")
            starts.append(took)
            ours_mem_start = bl.memory(ours.pid)
            print(
                f"pod-identity-dns answers on port {port} after {took:.2f} s (SOA {soa}, VmHWM {ours_mem_start['VmHWM']:.0f} MiB;"
                f" waited {waited:.1f} s for the machine to go quiet, {busy:.0f}% of a core busy)",
                flush=True,
            )
            if attempt < STARTS - 1:
                procs.stop(ours)
        ours_start = sorted(starts)[len(starts) // 2]
        results["starts_s"] = starts

        # 3. the same zones, exported, into Knot
        zone_dir = work / "zones"
        t = time.monotonic()
        export = procs.start(
            "export-zone", server_argv(pod_file, cluster.cidr4, None, "export-zone") + ["--output-dir", str(zone_dir)], logs / "export.log"
        )
        try:
            code = export.wait(min(300, bl.remaining()))
        except subprocess.TimeoutExpired:
            raise BenchError("export-zone did not finish in time") from None
        if code != 0:
            raise BenchError(f"export-zone failed with code {code}:\n{bl.tail(logs / 'export.log')}")
        zone_files = sorted(zone_dir.glob("*.zone"))
        print(f"exported {len(zone_files)} zones in {time.monotonic() - t:.1f} s: {', '.join(f.name for f in zone_files)}", flush=True)
        knot_port = bl.free_port()
        conf = knot_conf(work, knot_port, zone_files)
        started = time.monotonic()
        knot = procs.start("knotd", ["knotd", "-c", str(conf)], logs / "knot.log")
        # The serial is the load time (seconds), so export-zone's may be a second
        # later than the running server's: Knot must serve the exported one, and
        # the rest of the SOA must be ours.
        serial = bl.zone_file_serial(zone_dir / f"{bl.ZONE}.zone")
        knot_start, knot_soa = bl.wait_answering(knot_port, knot, started, 120, logs / "knot.log", "knotd", serial=serial)
        if bl.soa_without_serial(knot_soa) != bl.soa_without_serial(soa):
            raise BenchError(f"Knot's SOA differs from ours: {knot_soa!r} vs {soa!r}")
        print(f"knotd answers the same SOA on port {knot_port} after {knot_start:.2f} s (serial {serial})", flush=True)

        # 4. our second server, the uvloop UDP front end, for reference; then the same answers from all three
        uvloop_port = bl.free_port()
        started = time.monotonic()
        ours_uvloop = procs.start(
            "pod-identity-dns-uvloop",
            server_argv(pod_file, cluster.cidr4, uvloop_port, udp=("uvloop", args.udp_batch)),
            logs / "server-uvloop.log",
        )
        took, _ = bl.wait_answering(uvloop_port, ours_uvloop, started, 120, logs / "server-uvloop.log", "pod-identity-dns (uvloop)")
        print(f"pod-identity-dns with --udp-frontend uvloop answers on port {uvloop_port} after {took:.2f} s", flush=True)
        problems = sanity_check(cluster, {"pod-identity-dns": port, "pod-identity-dns (uvloop)": uvloop_port, "knot": knot_port})
        if problems:
            raise BenchError("answers differ before the timed runs:\n  " + "\n  ".join(problems))
        print("sanity check: A, AAAA, PTR and NXDOMAIN answers agree (with and without EDNS)", flush=True)

        # 5. timed runs: rounds of ours (batched), Knot, ours (uvloop), then fixed rate; first a short warm-up of each
        servers = {"A": (port, ours.pid), "B": (knot_port, knot.pid), "U": (uvloop_port, ours_uvloop.pid)}
        if args.warmup > 0:
            for key, (p, pid) in servers.items():
                bl.run_dnsperf(procs, f"warmup-{key}", p, query_file, args.warmup, pid, perf_opts, logs)
        runs: dict[str, bl.PerfResult] = {}
        plan = [(f"{key}{i}", *servers[key], []) for i in range(1, args.rounds + 1) for key in ("A", "B", "U")]
        plan += [(f"L{key}{i}", *servers[key], ["-Q", str(args.rate)]) for i in range(1, args.rounds + 1) for key in ("A", "B", "U")]
        for label, p, pid, extra in plan:
            opts = perf_opts + extra
            if extra:  # the fixed-rate runs: fewer sockets and queries in flight are plenty at 10k qps
                opts = ["-T", "1", "-c", "10", "-q", "100", "-t", "2"] + extra
            result = bl.run_clean(procs, label, p, query_file, args.duration, pid, opts, logs, retries=args.retries, quiet=args.wait_quiet)
            runs[label] = result
            progress(result)
        ours_mem = bl.memory(ours.pid)
        knot_mem = bl.memory(knot.pid)

        # 6. the dnslib baseline, alone on the machine with dnsperf
        procs.stop(knot)
        procs.stop(ours_uvloop)
        baseline = None
        if not args.no_baseline:
            base_port = bl.free_port()
            started = time.monotonic()
            base = procs.start(
                "dnslib-baseline",
                [
                    sys.executable,
                    str(Path(__file__).with_name("dnslib_baseline.py")),
                    "--zone-dir",
                    str(zone_dir),
                    "--listen",
                    f"127.0.0.1:{base_port}",
                ],
                logs / "baseline.log",
            )
            bl.wait_answering(base_port, base, started, 300, logs / "baseline.log", "dnslib baseline", serial=serial)
            problems = sanity_check(cluster, {"dnslib-baseline": base_port})
            if problems:
                raise BenchError("the dnslib baseline answers wrongly:\n  " + "\n  ".join(problems))
            baseline = bl.run_clean(
                procs, "C", base_port, query_file, args.duration, base.pid, perf_opts, logs, retries=args.retries, quiet=args.wait_quiet
            )
            runs["C"] = baseline
            progress(baseline)
            procs.stop(base)

        # 7. what every run must have answered: the mix's rcodes, nothing lost to errors
        nx_expected = mix["NX-forward"] + mix["NX-reverse"]
        for label, r in runs.items():
            other = {k: v for k, v in r.rcodes.items() if k not in ("NOERROR", "NXDOMAIN")}
            if other or abs(r.rcodes.get("NXDOMAIN", 0) - nx_expected) > 1.5:
                failures.append(
                    f"{label}: response codes {r.rcodes}, expected NOERROR ~{100 - nx_expected:.1f}% and NXDOMAIN ~{nx_expected:.1f}%"
                )
            if r.completed == 0:
                failures.append(f"{label}: no query completed")

        table = render(args, cluster, mix, size, perf_opts, runs, ours_start, knot_start, ours_mem_start, ours_mem, knot_mem)
        results["runs"] = {k: {f: getattr(v, f) for f in v.__dataclass_fields__ if f != "raw"} for k, v in runs.items()}
        results.update(
            start_s=ours_start, knot_start_s=knot_start, memory_after_start=ours_mem_start, memory_end=ours_mem, knot_memory=knot_mem
        )
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        failures.append(str(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)  # no alarm during cleanup
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        procs.stop_all()
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            if table:
                (args.out / "table.txt").write_text(table + "\n")
            results["failures"] = failures
            (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
            if logs.exists():
                shutil.copytree(logs, args.out / "logs", dirs_exist_ok=True)
            if work.exists() and (work / "knot.conf").exists():
                shutil.copy(work / "knot.conf", args.out / "knot.conf")
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if table:
        print()
        print(table)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
