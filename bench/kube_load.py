"""Load benchmark of the Kubernetes source: N realistic pods in the fake API, the real server watching it.

    .venv/bin/python bench/kube_load.py [--pods 100000] [--events 50000] [--samples 200] [--paged]
        [--srv-records all|sets|off] [--server-repo DIR] [--profile FILE]

1. starts the fake API (bench/kube_cluster.py) in a process of its own,
   loaded with N StatefulSet pods of about --pod-bytes each (containers with
   env, probes and mounts, labels, annotations, owner references,
   conditions); with --paged it refuses streaming lists, like an API server
   without them, so the server lists in pages;
2. starts `python -m server serve` against it and times start -> first
   in-zone answer that is not SERVFAIL and start -> /readyz 200, while a
   probe asks /healthz every 20 ms: the longest gap between two answers
   says how long the event loop was held up at a time;
3. fires --events MODIFIED events that move pods to new IPs, as fast as the
   fake streams them, and times the first event -> the last change answered
   in DNS: watch events applied per second (a sample of the moved pods is
   checked forward and reverse afterwards);
4. makes the server list again (the fake ends its watch and forgets the
   history: 410 Gone) and asks DNS for a pod that does not change, every
   few milliseconds, until the relist is applied: every answer must be
   NOERROR (the old state is served until the new one is complete); the
   /healthz probe runs here too. A relist holds the old and the new pods
   at once: its peak RSS is shown apart;
5. moves one pod at a time --samples times and polls DNS until the new IP is
   answered: event-to-answer latency p50/p99 (the event's time is when the
   fake committed it; both sides read CLOCK_MONOTONIC);
6. prints the figures, the server's peak RSS (VmHWM) and the targets, and
   exits 1 if a step failed or missed its target. Every child is stopped on
   exit, error or Ctrl-C, and the whole run is bounded by --timeout.

--server-repo DIR runs the server of another checkout (a `git worktree` of an
older commit) under this same bench and fake API, for before/after figures.
--profile FILE runs the server under cProfile (stats written when it stops)
and prints the top functions; the figures of a profiled run are slower.
The fake is a separate process because a 100k-pod cluster in it would share
the server's core.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.kube_cluster import FIRST_IPS, STORM_IPS, ZONE, fqdn, ip_text  # noqa: E402
from bench.kube_procs import (  # noqa: E402
    BenchError,
    Child,
    Dns,
    HealthProbe,
    OtherLoad,
    control,
    cpu_seconds,
    profiled_server,
    readyz,
    rss_mib,
    wait_until_quiet,
)

REVERSE_CIDR = "10.0.0.0/8"
SAMPLE_IPS = int(ipaddress.IPv4Address("10.192.0.0"))  # latency samples move pods here
TARGETS = {
    "ready_s": 3.0,
    "loop_gap_ms": 100.0,
    "peak_rss_mib": 200.0,
    "events_per_s": 20_000.0,
    "p99_ms": 50.0,
}


def start_fake(args: argparse.Namespace, workdir: Path, children: list[Child]) -> tuple[Child, dict[str, Any]]:
    kubeconfig = workdir / "kubeconfig"
    argv = [sys.executable, str(REPO / "bench" / "kube_cluster.py"), "--pods", str(args.pods), "--pod-bytes", str(args.pod_bytes)]
    fake = Child(
        "fake API", [*argv, "--kubeconfig", str(kubeconfig), *(["--paged"] if args.paged else [])], workdir / "fake.log", stdin=True
    )
    children.append(fake)
    print(f"loading {args.pods:,} pods into the fake API{' (no streaming lists)' if args.paged else ''} ...", flush=True)
    info = json.loads(fake.wait_line('{"api_port"', timeout=max(60.0, args.pods / 1000)))
    info["kubeconfig"] = str(kubeconfig)
    print(f"  {info['build_seconds']} s, {info['pod_bytes']} bytes per pod, fake RSS {info['rss_mib']} MiB", flush=True)
    return fake, info


def run(args: argparse.Namespace, workdir: Path, children: list[Child]) -> dict[str, Any]:
    results: dict[str, Any] = {"pods": args.pods}
    fake, info = start_fake(args, workdir, children)
    results["pod_bytes"] = info["pod_bytes"]
    fake_port = info["control_port"]
    server_args = ["serve", "--zone", ZONE, "--reverse-cidr", REVERSE_CIDR, "--kubeconfig", info["kubeconfig"]]
    server_args += ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--lameduck", "0"]
    if args.srv_records:  # not given: the server's default (a checkout from before SRV has no such flag)
        server_args += ["--srv-records", args.srv_records]
    if args.profile:
        argv = [sys.executable, __file__, "--profiled-server", args.profile, *server_args]
    else:
        argv = [sys.executable, "-m", "server", *server_args]
    if args.wait_quiet > 0:
        waited = wait_until_quiet(args.wait_quiet)
        print(f"  waited {waited:.0f} s for other processes to go quiet", flush=True)
    print("starting the server ...", flush=True)
    fake_cpu_before = cpu_seconds(fake.proc.pid)
    started = time.monotonic()
    server = Child("server", argv, workdir / "server.log", cwd=args.server_repo)
    children.append(server)
    ours = [os.getpid(), fake.proc.pid, server.proc.pid]
    load = OtherLoad(ours)
    metrics_port = int(server.wait_line("metrics and probes on", timeout=30).rsplit(":", 1)[1].strip("/"))
    with HealthProbe(metrics_port) as health:
        line = server.wait_line("answering DNS on", timeout=30)
        dns = Dns(int(line.rsplit(" port ", 1)[1].split()[0]))
        probe = fqdn(args.pods - 1)  # listed last
        ready_dns = ready_probe = None
        while ready_dns is None or ready_probe is None:
            if time.monotonic() - started > args.ready_timeout:
                raise BenchError(f"not ready after {args.ready_timeout:.0f} s:\n" + "\n".join(server.lines[-20:]))
            if ready_dns is None and dns.ask(probe, retry=True)[0] not in ("SERVFAIL", "TIMEOUT"):
                ready_dns = time.monotonic() - started
            if ready_probe is None and readyz(metrics_port) == 200:
                ready_probe = time.monotonic() - started
            time.sleep(0.005)
    start_cpu = {"server": round(cpu_seconds(server.proc.pid), 2), "fake API": round(cpu_seconds(fake.proc.pid) - fake_cpu_before, 2)}
    answer = dns.ask(probe)
    if answer != ("NOERROR", [ip_text(FIRST_IPS + args.pods - 1)]):
        raise BenchError(f"{probe}: {answer} after the list")
    results.update(
        ready_dns_s=round(ready_dns, 2),
        ready_probe_s=round(ready_probe, 2),
        start_health=health.figures(),
        start_cpu_s=start_cpu,
        after_list=rss_mib(server.proc.pid),
        other_load_start=load.percent(),
    )
    print(
        f"  first answer {ready_dns:.2f} s, /readyz 200 at {ready_probe:.2f} s; /healthz meanwhile: {results['start_health']};"
        f" RSS {results['after_list']}; CPU seconds until then {start_cpu}",
        flush=True,
    )

    # Events per second: a storm of IP changes, timed until the last one is answered.
    events = min(args.events, args.pods)
    prepared = control(fake_port, "/storm/prepare", count=events)
    if args.wait_quiet > 0:
        wait_until_quiet(args.wait_quiet / 2)
    print(f"firing {events:,} MODIFIED events ({prepared['bytes'] / 2**20:.0f} MiB of JSON) ...", flush=True)
    last, last_ip = fqdn(events - 1), ip_text(STORM_IPS + events - 1)
    cpu_before = cpu_seconds(server.proc.pid)
    load = OtherLoad(ours)
    fired = control(fake_port, "/storm/fire")
    while dns.ask(last) != ("NOERROR", [last_ip]):
        if time.monotonic() - fired["fired"] > args.storm_timeout:
            raise BenchError(f"the last of {events} events not answered after {args.storm_timeout:.0f} s")
    applied = time.monotonic()
    results.update(
        events=events,
        events_per_s=round(events / (applied - fired["fired"])),
        storm_s=round(applied - fired["fired"], 2),
        fake_recorded_s=round(fired["recorded"] - fired["fired"], 2),
        storm_server_cpu_s=round(cpu_seconds(server.proc.pid) - cpu_before, 2),
        other_load_storm=load.percent(),
        after_storm=rss_mib(server.proc.pid),
    )
    for index in range(0, events, max(1, events // 200)):  # spot checks, forward and reverse
        ip = ip_text(STORM_IPS + index)
        if dns.ask(fqdn(index)) != ("NOERROR", [ip]) or dns.ask(ipaddress.ip_address(ip).reverse_pointer, "PTR") != (
            "NOERROR",
            [fqdn(index) + "."],
        ):
            raise BenchError(f"pod {index} not at {ip} after the storm")
    print(
        f"  {results['events_per_s']:,} events/s ({results['storm_s']} s, server CPU {results['storm_server_cpu_s']} s,"
        f" fake committed them in {results['fake_recorded_s']} s); RSS {results['after_storm']}",
        flush=True,
    )
    control(fake_port, "/compact")

    # The peak so far is what a start and a storm cost, as this benchmark measured before it relisted.
    results["peak_rss_mib"] = rss_mib(server.proc.pid)["VmHWM"]
    relist(args, results, server, dns, fake_port)

    # Event-to-answer latency, one change at a time.
    if args.wait_quiet > 0:
        wait_until_quiet(args.wait_quiet / 2)
    load = OtherLoad(ours)
    latencies = []
    step = max(1, args.pods // args.samples)
    for sample in range(args.samples):
        index = (sample * step + 7) % args.pods
        name, ip = fqdn(index), ip_text(SAMPLE_IPS + sample)
        committed = control(fake_port, "/move", index=index, ip=SAMPLE_IPS + sample)["t"]
        while dns.ask(name) != ("NOERROR", [ip]):
            if time.monotonic() - committed > 5:
                raise BenchError(f"{name} not at {ip} 5 s after the event")
        latencies.append((time.monotonic() - committed) * 1000)
        time.sleep(0.01)
    latencies.sort()
    results.update(
        samples=len(latencies),
        p50_ms=round(statistics.median(latencies), 2),
        p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        max_ms=round(latencies[-1], 2),
    )
    results["other_load_samples"] = load.percent()
    stats = control(fake_port, "/stats")
    results.update(lists=stats["lists"], streaming_lists=stats["streaming_lists"], list_pages=stats["pages"], watches=stats["watches"])
    results["listed"] = [line[line.index("listed ") :] for line in server.lines if "listed " in line and " pods in " in line]
    results["end"] = rss_mib(server.proc.pid)
    results["peak_rss_relist_mib"] = results["end"]["VmHWM"]
    code = server.stop()
    if code != 0:
        raise BenchError(f"the server exited with {code}")
    return results


def relist(args: argparse.Namespace, results: dict[str, Any], server: Child, dns: Dns, fake_port: int) -> None:
    """A relist of every pod (410 Gone), while DNS is asked for a pod that does not change: NOERROR throughout."""
    listed = sum(1 for line in server.lines if "listed " in line)
    index = args.pods - 1  # unchanged since the storm, unless the storm moved every pod
    steady, steady_ip = fqdn(index), ip_text((STORM_IPS if index < results["events"] else FIRST_IPS) + index)
    print("relisting (410 Gone) ...", flush=True)
    metrics_port = int(server.wait_line("metrics and probes on", timeout=1).rsplit(":", 1)[1].strip("/"))
    answers, wrong = 0, []
    with HealthProbe(metrics_port) as health:
        asked = time.monotonic()
        control(fake_port, "/relist")
        while sum(1 for line in server.lines if "listed " in line) == listed:
            if time.monotonic() - asked > args.ready_timeout:
                raise BenchError(f"no relist after {args.ready_timeout:.0f} s:\n" + "\n".join(server.lines[-20:]))
            answer = dns.ask(steady, retry=True)
            answers += 1
            if answer != ("NOERROR", [steady_ip]):
                wrong.append(answer)
            time.sleep(0.005)
        relisted = time.monotonic() - asked
    if wrong:
        raise BenchError(f"{steady} answered {len(wrong)} of {answers} times during the relist otherwise than NOERROR: {wrong[:3]}")
    results.update(relist_s=round(relisted, 2), relist_health=health.figures(), relist_answers=answers)
    print(
        f"  {relisted:.2f} s, {answers} answers for an unchanged pod, all NOERROR; /healthz meanwhile: {results['relist_health']}",
        flush=True,
    )


def report(results: dict[str, Any], args: argparse.Namespace) -> bool:
    rows = [
        (
            "start -> first answer (not SERVFAIL)",
            f"{results['ready_dns_s']:.2f} s",
            f"<= {TARGETS['ready_s']:.0f} s",
            results["ready_dns_s"] <= TARGETS["ready_s"],
        ),
        (
            "start -> /readyz 200",
            f"{results['ready_probe_s']:.2f} s",
            f"<= {TARGETS['ready_s']:.0f} s",
            results["ready_probe_s"] <= TARGETS["ready_s"],
        ),
        (
            "longest /healthz gap during the start",
            f"{results['start_health']['longest_gap_ms']:.0f} ms",
            f"<= {TARGETS['loop_gap_ms']:.0f} ms",
            results["start_health"]["longest_gap_ms"] <= TARGETS["loop_gap_ms"],
        ),
        (
            f"relist of every pod ({results['relist_answers']} answers, all NOERROR)",
            f"{results['relist_s']:.2f} s",
            "",
            True,
        ),
        (
            "longest /healthz gap during the relist",
            f"{results['relist_health']['longest_gap_ms']:.0f} ms",
            f"<= {TARGETS['loop_gap_ms']:.0f} ms",
            results["relist_health"]["longest_gap_ms"] <= TARGETS["loop_gap_ms"],
        ),
        (
            "peak RSS (VmHWM), start and storm",
            f"{results['peak_rss_mib']:.0f} MiB",
            f"<= {TARGETS['peak_rss_mib']:.0f} MiB",
            results["peak_rss_mib"] <= TARGETS["peak_rss_mib"],
        ),
        ("peak RSS with the relist too", f"{results['peak_rss_relist_mib']:.0f} MiB", "", True),
        (
            f"watch events applied ({results['events']:,} MODIFIED)",
            f"{results['events_per_s']:,}/s",
            f">= {TARGETS['events_per_s']:,.0f}/s",
            results["events_per_s"] >= TARGETS["events_per_s"],
        ),
        ("  the same per CPU-second of the server", f"{round(results['events'] / max(results['storm_server_cpu_s'], 0.01)):,}/s", "", True),
        (f"event -> answer p50 ({results['samples']} samples)", f"{results['p50_ms']:.1f} ms", "", True),
        (
            f"event -> answer p99 (max {results['max_ms']:.1f} ms)",
            f"{results['p99_ms']:.1f} ms",
            f"<= {TARGETS['p99_ms']:.0f} ms",
            results["p99_ms"] <= TARGETS["p99_ms"],
        ),
    ]
    print()
    print(
        f"pods: {results['pods']:,} of {results['pod_bytes']:,} bytes; {os.cpu_count()} CPUs; fake API in its own process"
        + ("; no streaming lists (paged)" if args.paged else "; streaming lists")
        + ("; server under cProfile" if args.profile else "")
    )
    width = max(len(r[0]) for r in rows)
    for label, value, target, ok in rows:
        print(f"  {label:<{width}}  {value:>12}  {target:<12} {'' if not target else 'ok' if ok else 'MISSED'}")
    print(f"  RSS after the list {results['after_list']}, after the storm {results['after_storm']}, at the end {results['end']} (MiB)")
    print(
        f"  API requests: {results['lists']} lists ({results['streaming_lists']} streaming, {results['list_pages']} pages),"
        f" {results['watches']} watches (streaming lists included)"
    )
    for line in results["listed"]:
        print(f"  server: {line}")
    print(
        f"  CPU used by other processes on the machine (% of one core): start {results['other_load_start']}%,"
        f" storm {results['other_load_storm']}%, latency samples {results['other_load_samples']}%"
    )
    return all(ok for *_, ok in rows)


def print_profile(path: str, top: int = 30) -> None:
    import pstats

    for key in ("tottime", "cumulative"):
        print(f"\n--- server profile, top {top} by {key} ({path}) ---")
        pstats.Stats(path).sort_stats(key).print_stats(top)


def main() -> int:
    if sys.argv[1:2] == ["--profiled-server"]:  # the server's own arguments follow: no parsing here
        return profiled_server(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--pod-bytes", type=int, default=5000, help="serialized size of each pod (default: 5000)")
    parser.add_argument("--events", type=int, default=50_000, help="MODIFIED events in the storm (at most --pods)")
    parser.add_argument("--samples", type=int, default=200, help="single-event latency samples")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    parser.add_argument("--timeout", type=float, default=600, help="bound on the whole run, seconds")
    parser.add_argument("--ready-timeout", type=float, default=120)
    parser.add_argument("--storm-timeout", type=float, default=120)
    parser.add_argument("--keep", action="store_true", help="keep the logs in the work directory")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120,
        metavar="SECONDS",
        help="before starting the server, wait up to this long for other processes to leave the CPUs idle (default: 120)",
    )
    parser.add_argument(
        "--srv-records",
        choices=("all", "sets", "off"),
        help="the server's --srv-records (the pods declare named ports; default: the server's)",
    )
    parser.add_argument(
        "--server-repo",
        type=Path,
        default=REPO,
        metavar="DIR",
        help="run `python -m server` from this checkout (e.g. a git worktree of an older commit), for before/after figures",
    )
    parser.add_argument("--paged", action="store_true", help="the fake API refuses streaming lists: the server lists in pages")
    args = parser.parse_args()

    def on_alarm(signum, frame):
        raise BenchError(f"the run took longer than --timeout {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    workdir = Path(tempfile.mkdtemp(prefix="kube-load-"))
    children: list[Child] = []
    try:
        results = run(args, workdir, children)
    except (BenchError, KeyboardInterrupt) as error:
        print(f"kube_load: {error or 'interrupted'} (logs in {workdir})", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for child in reversed(children):
            child.stop()
    ok = report(results, args)
    if args.profile:
        print_profile(args.profile)
    if args.keep:
        print(f"logs: {workdir}")
    else:
        for log in workdir.iterdir():
            log.unlink()
        workdir.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
