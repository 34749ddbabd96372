"""What large input files cost the sources: a hosts file's parse, a pod file's decoding (JSON and YAML).

Each measure runs in a fresh process, so its peak memory is its own:

    .venv/bin/python bench/inputs.py [--hosts-lines 1000000] [--pods 100000] [--yaml-pods 2000]

- hosts: CPU seconds of parse_hosts_file, memory kept by the table and the
  peak during the parse (RSS over the process's start), then the CPU of
  reading the table as StaticEntry objects and as plain rows.
- pods JSON / YAML: the decoding child's own peak (RssAnon, sampled) and the
  time until the last batch arrived; for YAML also that peak over the file's
  size, the figure --pods-file-memory-limit is about.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def _status(pid: int | str) -> dict[str, int]:
    """KiB values of /proc/PID/status."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if rest.strip().endswith("kB"):
                    values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values


def write_hosts(path: Path, lines: int) -> None:
    with path.open("w") as out:
        for n in range(lines):
            ip = ipaddress.IPv6Address(0xFD000010024400000000000000000000 + n) if n % 10 == 0 else ipaddress.IPv4Address(0x0A000000 + n)
            out.write(f"{ip} host-{n}.static.pods.example.internal h{n}.static.pods.example.internal  # entry {n}\n")


def measure_hosts(path: str) -> dict:
    from server.sources.hostsfile import parse_hosts_file

    base = _status("self")["VmRSS"]
    cpu = time.process_time()
    table = parse_hosts_file(path, max_size=1 << 40)
    parse_cpu = time.process_time() - cpu
    kept = _status("self")["VmRSS"] - base
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    cpu = time.process_time()
    for _ in table:
        pass
    entries_cpu = time.process_time() - cpu
    cpu = time.process_time()
    for _ in table.rows():
        pass
    rows_cpu = time.process_time() - cpu
    return {
        "entries": len(table),
        "parse_cpu_s": parse_cpu,
        "kept_mib": kept / 1024,
        "peak_mib": peak / 1024,
        "as_entries_cpu_s": entries_cpu,
        "as_rows_cpu_s": rows_cpu,
    }


def measure_pods(path: str) -> dict:
    from server.sources import childproc
    from server.sources.podfile import pod_file_batches

    pids: list[int] = []
    start_child = childproc._ChildStream.__init__

    def noting_pid(stream, *args):
        start_child(stream, *args)
        pids.append(stream._pid)

    childproc._ChildStream.__init__ = noting_pid  # type: ignore[method-assign]
    peak = 0
    done = False

    def sample() -> None:
        nonlocal peak
        while not done:
            if pids:
                peak = max(peak, _status(pids[0]).get("RssAnon", 0))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    load = pod_file_batches(path, memory_limit=1 << 40)
    pods = sum(len(batch) for batch in load)
    elapsed = time.perf_counter() - began
    done = True
    sampler.join()
    size = os.path.getsize(path)
    return {
        "pods": pods,
        "file_mib": size / 2**20,
        "seconds": elapsed,
        "child_anon_peak_mib": peak / 1024,
        "peak_over_file": peak * 1024 / size,
    }


def _in_fresh_process(kind: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts-lines", type=int, default=1_000_000)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--yaml-pods", type=int, default=2000)
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        kind, path = args.measure
        print(json.dumps(measure_hosts(path) if kind == "hosts" else measure_pods(path)))
        return 0

    import benchlib as bl
    import orjson
    import yaml

    with tempfile.TemporaryDirectory(prefix="inputs-bench-") as work:
        hosts = Path(work) / "hosts"
        write_hosts(hosts, args.hosts_lines)
        print(f"hosts file, {args.hosts_lines} lines, {hosts.stat().st_size / 2**20:.0f} MiB:")
        print("  " + json.dumps(_in_fresh_process("hosts", hosts)))
        hosts.unlink()

        pods = Path(work) / "pods.json"
        bl.write_pod_file(bl.generate_cluster(args.pods), pods)
        print(f"pod file, {args.pods} pods as JSON:")
        print("  " + json.dumps(_in_fresh_process("pods", pods)))

        listed = orjson.loads(pods.read_bytes())
        listed["items"] = listed["items"][: args.yaml_pods]
        as_yaml = Path(work) / "pods.yaml"
        as_yaml.write_text(yaml.dump(listed, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)))
        print(f"pod file, {args.yaml_pods} pods as YAML:")
        print("  " + json.dumps(_in_fresh_process("pods", as_yaml)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
