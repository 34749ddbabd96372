"""Shared pieces of the benchmark: a generated cluster, the dnsperf query file,
process handling with hard limits, DNS probes, dnsperf runs and /proc readings.

Only the standard library, dnslib and orjson (both runtime dependencies of the
server) are used, so the benchmark runs from the project's own venv.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
ZONE = "pods.example.internal"
CIDR4 = "10.244.0.0/16"
CIDR6 = "fd00:10:244::/48"
PODS_PER_NODE = 100  # a node gets a /24 (IPv4) and a /64 (IPv6), like kube-controller-manager's allocator
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A failure that must make the benchmark exit non-zero (server did not start, wrong answer...)."""


class Deadline(BenchError):
    pass


# -- the cluster -------------------------------------------------------------

# (application, image, port, typical StatefulSet sizes): the clustered software
# that needs per-instance identities (see /work/shared/DOMAIN.md).
APPS = [
    ("kafka", "apache/kafka:3.9.0", 9092, (3, 5, 9, 12, 30)),
    ("zookeeper", "zookeeper:3.9.3", 2181, (3, 5)),
    ("cassandra", "cassandra:5.0", 9042, (3, 6, 12, 24, 60)),
    ("hdfs-datanode", "apache/hadoop:3.4.1", 9866, (10, 20, 50, 100, 200)),
    ("hdfs-namenode", "apache/hadoop:3.4.1", 8020, (2,)),
    ("kdc", "registry.example.internal/krb5-kdc:1.21", 88, (2, 3)),
    ("spark-worker", "apache/spark:3.5.4", 7078, (10, 20, 50, 100)),
    ("flink-taskmanager", "flink:1.20", 6122, (4, 10, 20, 50)),
    ("elasticsearch", "elasticsearch:8.17.0", 9200, (3, 6, 12, 30)),
    ("etcd", "quay.io/coreos/etcd:v3.5.17", 2379, (3, 5)),
    ("xrootd", "registry.example.internal/xrootd:5.7", 1094, (4, 8, 16, 48)),
]
NAMESPACES = ["data", "streaming", "analytics", "storage", "security", "search", "ml-platform", "payments", "ingest", "batch"]


@dataclass
class Pod:
    namespace: str
    name: str  # == hostname (StatefulSet member)
    subdomain: str  # == the StatefulSet's serviceName
    ipv4: str
    ipv6: str | None
    app: str = "kafka"

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.subdomain}.{self.namespace}.{ZONE}."


@dataclass
class Cluster:
    pods: list[Pod]
    cidr4: str
    cidr6: str
    sets: list[tuple[str, str, int, str]]  # (namespace, set/service name, size, application)
    nodes: int
    used_ips: set[str] = field(default_factory=set)

    @property
    def dual_stack(self) -> int:
        return sum(1 for p in self.pods if p.ipv6)


def pod_cidr_for(n: int) -> str:
    """10.244.0.0/16, widened (/15, /14, ...) when N pods at PODS_PER_NODE per /24 do not fit.

    A /16 holds 256 node /24s, about 25,600 pods at 100 per node (65,000 at most
    at 253 per node), so 100,000 pods cannot all have an address in it: real
    clusters that size use a wider pod CIDR, and so does the benchmark.
    """
    net = ipaddress.ip_network(CIDR4)
    nodes = max(3, math.ceil(n / PODS_PER_NODE))
    prefix = net.prefixlen
    while nodes * 256 > 2 ** (32 - prefix):
        prefix -= 1
    return str(ipaddress.ip_network(f"{net.network_address}/{prefix}", strict=False))


def generate_cluster(n: int, seed: int = 5) -> Cluster:
    rng = random.Random(seed)
    cidr4 = pod_cidr_for(n)
    net4 = ipaddress.ip_network(cidr4)
    net6 = ipaddress.ip_network(CIDR6)
    nodes = max(3, math.ceil(n / PODS_PER_NODE))
    n_namespaces = max(3, min(len(NAMESPACES) * 5, round(n / 1500)))
    namespaces = [
        NAMESPACES[i % len(NAMESPACES)] + ("" if i < len(NAMESPACES) else f"-{i // len(NAMESPACES)}") for i in range(n_namespaces)
    ]

    # StatefulSets of typical sizes until there are N pods; the last one is cut to fit.
    sets: list[tuple[str, str, int, str]] = []
    taken: set[tuple[str, str]] = set()
    total = 0
    while total < n:
        app, _, _, sizes = rng.choice(APPS)
        ns = rng.choice(namespaces)
        name, k = app, 1
        while (ns, name) in taken:
            k += 1
            name = f"{app}-{k}"
        taken.add((ns, name))
        size = min(rng.choice(sizes), n - total)
        sets.append((ns, name, size, app))
        total += size

    # Node slots: node i owns 10.244.i.0/24 and fd00:10:244:i::/64; pods take .2 upwards.
    per_node = math.ceil(n / nodes)
    slots = [(node, slot) for node in range(nodes) for slot in range(per_node)]
    rng.shuffle(slots)
    pods: list[Pod] = []
    used: set[str] = set()
    for ns, name, size, app in sets:
        for i in range(size):
            node, slot = slots[len(pods)]
            ipv4 = str(net4.network_address + node * 256 + 2 + slot)
            ipv6 = str(net6.network_address + (node << 64) + 2 + slot) if rng.random() < 0.10 else None
            pods.append(Pod(ns, f"{name}-{i}", name, ipv4, ipv6, app))
            used.add(ipv4)
            if ipv6:
                used.add(ipv6)
    return Cluster(pods, cidr4, CIDR6, sets, nodes, used)


def _uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def write_pod_file(cluster: Cluster, path: Path, seed: int = 5) -> int:
    """`kubectl get pods -A -o json`: a v1 List of Pods (managedFields left out, as kubectl does by default)."""
    rng = random.Random(seed + 1)
    apps = {app: (image, port) for app, image, port, _ in APPS}
    base = datetime(2026, 9, 1, tzinfo=UTC)
    net4 = ipaddress.ip_network(cluster.cidr4)
    set_uids = {(ns, name): _uid(rng) for ns, name, _, _ in cluster.sets}
    revision = {key: f"{key[1]}-{rng.getrandbits(40):010x}"[-30:] for key in set_uids}
    items = []
    for index, pod in enumerate(cluster.pods):
        app = pod.app
        image, port = apps[app]
        node = (int(ipaddress.ip_address(pod.ipv4)) - int(net4.network_address)) >> 8
        created = base + timedelta(seconds=rng.randrange(0, 30 * 86400))
        started = created + timedelta(seconds=rng.randrange(2, 40))
        ready = started + timedelta(seconds=rng.randrange(1, 60))
        ts = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        pod_ips = [{"ip": pod.ipv4}] + ([{"ip": pod.ipv6}] if pod.ipv6 else [])
        ordinal = pod.name.rsplit("-", 1)[1]
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "creationTimestamp": ts(created),
                    "generateName": f"{pod.subdomain}-",
                    "labels": {
                        "app.kubernetes.io/name": app,
                        "app.kubernetes.io/instance": pod.subdomain,
                        "apps.kubernetes.io/pod-index": ordinal,
                        "controller-revision-hash": revision[(pod.namespace, pod.subdomain)],
                        "statefulset.kubernetes.io/pod-name": pod.name,
                    },
                    "name": pod.name,
                    "namespace": pod.namespace,
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "blockOwnerDeletion": True,
                            "controller": True,
                            "kind": "StatefulSet",
                            "name": pod.subdomain,
                            "uid": set_uids[(pod.namespace, pod.subdomain)],
                        }
                    ],
                    "resourceVersion": str(100000 + index),
                    "uid": _uid(rng),
                },
                "spec": {
                    "containers": [
                        {
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "name": app,
                            "ports": [{"containerPort": port, "name": "main", "protocol": "TCP"}],
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                        }
                    ],
                    "dnsPolicy": "ClusterFirst",
                    "hostname": pod.name,
                    "nodeName": f"node-{node:05d}",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "serviceAccountName": "default",
                    "subdomain": pod.subdomain,
                    "terminationGracePeriodSeconds": 30,
                },
                "status": {
                    "conditions": [
                        {"lastTransitionTime": ts(started), "status": "True", "type": "Initialized"},
                        {"lastTransitionTime": ts(ready), "status": "True", "type": "Ready"},
                        {"lastTransitionTime": ts(ready), "status": "True", "type": "ContainersReady"},
                        {"lastTransitionTime": ts(created), "status": "True", "type": "PodScheduled"},
                    ],
                    "containerStatuses": [
                        {
                            "containerID": f"containerd://{rng.getrandbits(256):064x}",
                            "image": image,
                            "name": app,
                            "ready": True,
                            "restartCount": 0,
                            "started": True,
                            "state": {"running": {"startedAt": ts(started)}},
                        }
                    ],
                    "hostIP": f"192.168.{node >> 8}.{node & 0xFF}",
                    "phase": "Running",
                    "podIP": pod.ipv4,
                    "podIPs": pod_ips,
                    "qosClass": "Burstable",
                    "startTime": ts(created),
                },
            }
        )
    data = orjson.dumps(
        {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}, option=orjson.OPT_INDENT_2
    )
    path.write_bytes(data)
    return len(data)


# -- queries -------------------------------------------------------------------


def name_wire(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\x00"


def query_bytes(name: str, qtype: int, edns: bool, qid: int = 0, rd: bool = True) -> bytes:
    """A plain query; with EDNS an OPT of payload 1232, version 0, no DO, no options (what resolvers send)."""
    header = struct.pack("!HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 1 if edns else 0)
    body = name_wire(name) + struct.pack("!HH", qtype, 1)
    if edns:
        body += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return header + body


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


A, PTR, AAAA, SOA = 1, 12, 28, 6


def build_queries(cluster: Cluster, path: Path, count: int = 200_000, seed: int = 7) -> dict:
    """dnsperf's binary input (-B): a 2-byte length, then the query message, per query.

    Mix: 70% A + 10% AAAA of existing names (80%), 10% PTR of existing pod IPs,
    10% NXDOMAIN (two thirds forward names such as the next ordinal of a set,
    one third reverse names of unused addresses in the pod CIDRs).

    Why binary input: dnsperf's text input takes EDNS from the command line
    (-e), for every query of a run. The binary format carries each query's
    bytes as written (dnsperf only rewrites the ID), so EDNS can be switched
    per query: exactly every other query has an OPT record, in one run,
    interleaved the way a server sees traffic from many resolvers. Two runs
    (with and without -e) would measure the same mix, but the two halves would
    not overlap in time, a slow half would hide in the sum, and every run would
    need twice the setup; one run is the more faithful and the simpler.
    """
    rng = random.Random(seed)
    pods = cluster.pods
    dual = [p for p in pods if p.ipv6] or pods
    net4 = ipaddress.ip_network(cluster.cidr4)
    net6 = ipaddress.ip_network(cluster.cidr6)
    mix = {"A": 0, "AAAA": 0, "PTR": 0, "NX-forward": 0, "NX-reverse": 0}
    out = bytearray()
    for i in range(count):
        edns = i % 2 == 1
        r = rng.random()
        if r < 0.70:
            name, qtype, kind = rng.choice(pods).fqdn, A, "A"
        elif r < 0.80:
            pod = rng.choice(dual)
            name, qtype, kind = pod.fqdn, (AAAA if pod.ipv6 else A), "AAAA"
        elif r < 0.90:
            pod = rng.choice(pods)
            ip = pod.ipv6 if pod.ipv6 and rng.random() < 0.5 else pod.ipv4
            name, qtype, kind = reverse_name(ip), PTR, "PTR"
        elif r < 0.9667:
            ns, sset, size, _ = rng.choice(cluster.sets)
            if rng.random() < 0.5:
                name = f"{sset}-{size + rng.randrange(0, 50)}.{sset}.{ns}.{ZONE}."
            else:
                name = f"{rng.choice(['web', 'db', 'cache', 'api'])}-{rng.randrange(10**6)}.{ns}.{ZONE}."
            qtype, kind = rng.choice((A, A, A, AAAA)), "NX-forward"
        else:
            while True:
                if rng.random() < 0.8:
                    ip = str(net4.network_address + rng.randrange(net4.num_addresses))
                else:
                    ip = str(net6.network_address + (rng.randrange(cluster.nodes) << 64) + rng.randrange(2, 400))
                if ip not in cluster.used_ips:
                    break
            name, qtype, kind = reverse_name(ip), PTR, "NX-reverse"
        mix[kind] += 1
        message = query_bytes(name, qtype, edns)
        out += struct.pack("!H", len(message)) + message
    path.write_bytes(bytes(out))
    return {k: round(100 * v / count, 1) for k, v in mix.items()} | {"EDNS": 50.0, "queries": count}


# -- processes -------------------------------------------------------------------


class Processes:
    """Every process the benchmark starts; stop_all() ends each of them (TERM, then KILL)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, label: str, argv: list[str], log_path: Path, cwd: Path = REPO, env: dict | None = None) -> subprocess.Popen:
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C reaches only us, and we stop the children in order.
                start_new_session=True,
                env=env,
            )
        finally:
            log.close()
        self.procs.append((label, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 5.0) -> int | None:
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            except ProcessLookupError:
                pass
        self.procs = [(label, p) for label, p in self.procs if p is not proc]
        return proc.returncode

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception:  # keep stopping the others
                pass


def install_deadline(seconds: float) -> None:
    """A global deadline: SIGALRM raises Deadline wherever the run is; SIGTERM/SIGHUP act like Ctrl-C."""

    def on_alarm(signum, frame):
        raise Deadline(f"global deadline of {seconds:.0f} s reached")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGALRM, on_alarm)
    # Explicitly: a job started in the background by a script inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def remaining() -> float:
    """Seconds left before the global deadline (inf when none is set)."""
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    return left if left > 0 else float("inf")


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port")


# -- DNS probes --------------------------------------------------------------------


@dataclass
class Reply:
    rcode: int
    aa: bool
    answers: list[tuple[int, str]]  # (type, rdata text)
    authority_types: list[int]


def ask(port: int, name: str, qtype: int, timeout: float = 1.0, edns: bool = False) -> Reply:
    import dnslib

    qid = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.send(query_bytes(name, qtype, edns, qid))
        while True:
            data = sock.recv(65535)
            if data[:2] == qid.to_bytes(2, "big"):
                break
    msg = dnslib.DNSRecord.parse(data)
    answers = sorted((rr.rtype, str(rr.rdata).lower()) for rr in msg.rr)
    return Reply(msg.header.rcode, bool(msg.header.aa), answers, [rr.rtype for rr in msg.auth])


def wait_answering(
    port: int, proc: subprocess.Popen, started: float, timeout: float, log_path: Path, what: str, serial: int | None = None
) -> tuple[float, str]:
    """Poll SOA of the forward zone every 10 ms; seconds from `started` to the first good answer, and the SOA's text.

    With `serial`, only an SOA with that serial counts (Knot loads its zones
    after it starts listening).
    """
    deadline = time.monotonic() + min(timeout, remaining())
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} before answering:\n{tail(log_path)}")
        try:
            reply = ask(port, ZONE + ".", SOA, timeout=0.05)
        except (OSError, TimeoutError):
            time.sleep(0.01)
            continue
        if reply.rcode == 0 and reply.aa and reply.answers:
            soa = reply.answers[0][1]
            if serial is None or int(soa.split()[2]) == serial:
                return time.monotonic() - started, soa
        time.sleep(0.01)
    raise BenchError(f"{what} did not answer the SOA of {ZONE} within {timeout:.0f} s:\n{tail(log_path)}")


def zone_file_serial(path: Path) -> int:
    """The serial of an exported zone file (its SOA record, the first record)."""
    with open(path) as handle:
        for line in handle:
            if not line.startswith((";", "$")) and "\tSOA\t" in line:
                return int(line.split("\t")[4].split()[2])
    raise BenchError(f"{path}: no SOA record")


def soa_without_serial(soa: str) -> list[str]:
    fields = soa.split()
    return fields[:2] + fields[3:]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- dnsperf -------------------------------------------------------------------------

_NUM = r"([0-9.]+)"


@dataclass
class PerfResult:
    label: str
    sent: int
    completed: int
    lost: int
    qps: float
    runtime: float
    avg_latency: float  # seconds
    latency_sd: float
    rcodes: dict[str, float]  # percent
    server_cpu: float  # percent of one core, over the run
    dnsperf_cpu: float
    machine_busy: float  # percent of all cores busy, over the run
    other_cpu: float  # percent of one core used by other processes (neither the server, dnsperf nor softirq)
    softirq_cpu: float  # percent of one core in softirq (packet delivery charged to no process)
    server_us_per_query: float  # server CPU time per completed query, microseconds
    waited: float = 0.0  # seconds spent waiting for the machine to be quiet first
    busy_before: float = 0.0  # % of one core busy (others) just before the run
    attempts: int = 1  # runs made to get one undisturbed by other processes (run_clean)
    raw: str = ""


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_ticks() -> tuple[int, int, int]:
    """(busy, total, softirq) ticks of all CPUs. Softirq time (loopback packet delivery
    deferred out of the system call) is charged to no process."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8]), values[6]


def wait_quiet(max_wait: float, threshold: float = 15.0, sample: float = 0.5) -> tuple[float, float]:
    """Wait (at most max_wait s) until the machine is idle: under `threshold` % of one core busy.

    Between runs our own servers are idle, so what is busy belongs to someone
    else (this machine is shared). Returns (seconds waited, last busy %).
    """
    start = time.monotonic()
    limit = start + max(0.0, min(max_wait, remaining() - 60))
    quiet_samples = 0
    while True:
        busy0, _, _ = _machine_ticks()
        time.sleep(sample)
        busy1, _, _ = _machine_ticks()
        busy = 100 * (busy1 - busy0) / CLK_TCK / sample
        quiet_samples = quiet_samples + 1 if busy < threshold else 0
        if quiet_samples >= 2 or time.monotonic() >= limit:
            return time.monotonic() - start, busy


def run_clean(
    procs: Processes,
    label: str,
    port: int,
    query_file: Path,
    duration: float,
    server_pid: int,
    opts: list[str],
    log_dir: Path,
    retries: int = 2,
    max_other: float = 20.0,
    quiet: float = 30.0,
) -> PerfResult:
    """run_dnsperf, repeated (up to `retries` times) while other processes took more than
    `max_other` % of a core during the run; the least disturbed result is kept and
    its `attempts` tell how many runs it took."""
    best = None
    for attempt in range(1 + retries):
        if best is not None and remaining() < 2 * (duration + 30) + 60:
            break
        result = run_dnsperf(procs, label, port, query_file, duration, server_pid, opts, log_dir, quiet=quiet)
        result.attempts = attempt + 1
        if best is None or result.other_cpu < best.other_cpu:
            best = result
        if result.other_cpu <= max_other:
            break
    best.attempts = attempt + 1
    return best


def run_dnsperf(
    procs: Processes,
    label: str,
    port: int,
    query_file: Path,
    duration: float,
    server_pid: int,
    opts: list[str],
    log_dir: Path,
    quiet: float = 0.0,
) -> PerfResult:
    """One dnsperf run (after waiting up to `quiet` seconds for a quiet machine), with CPU use of each side."""
    waited, busy = wait_quiet(quiet) if quiet > 0 else (0.0, 0.0)
    argv = ["dnsperf", "-B", "-d", str(query_file), "-s", "127.0.0.1", "-p", str(port), "-l", f"{duration:g}", *opts]
    log_path = log_dir / f"dnsperf-{label}.txt"
    timeout = duration + 30
    if remaining() < timeout:
        raise Deadline(f"not enough time left for dnsperf run {label} ({remaining():.0f} s)")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_ticks(server_pid)
    busy_before, total_before, softirq_before = _machine_ticks()
    wall_before = time.monotonic()
    proc = procs.start(f"dnsperf {label}", argv, log_path)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        procs.stop(proc)
        raise BenchError(f"dnsperf {label} did not finish within {timeout:.0f} s") from None
    wall = time.monotonic() - wall_before
    procs.stop(proc)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = (_cpu_ticks(server_pid) - server_before) / CLK_TCK
    busy_after, total_after, softirq_after = _machine_ticks()
    dnsperf_cpu = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    text = log_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"dnsperf {label} failed (exit {proc.returncode}):\n{text[-2000:]}")

    def grab(pattern: str, cast=float, default=None):
        match = re.search(pattern, text)
        if match is None:
            if default is not None:
                return default
            raise BenchError(f"dnsperf {label}: no {pattern!r} in its output:\n{text[-2000:]}")
        return cast(match.group(1))

    rcodes = {code: float(pct) for code, _, pct in re.findall(r"([A-Z]+) (\d+) \(([0-9.]+)%\)", grab(r"Response codes:\s+(.*)", str, ""))}
    completed = grab(r"Queries completed:\s+(\d+)", int)
    machine_cpu = (busy_after - busy_before) / CLK_TCK
    softirq = (softirq_after - softirq_before) / CLK_TCK
    return PerfResult(
        label=label,
        sent=grab(r"Queries sent:\s+(\d+)", int),
        completed=completed,
        lost=grab(r"Queries lost:\s+(\d+)", int),
        qps=grab(r"Queries per second:\s+" + _NUM),
        runtime=grab(r"Run time \(s\):\s+" + _NUM),
        avg_latency=grab(r"Average Latency \(s\):\s+" + _NUM),
        latency_sd=grab(r"Latency StdDev \(s\):\s+" + _NUM, float, 0.0),
        rcodes=rcodes,
        server_cpu=100 * server_cpu / wall,
        dnsperf_cpu=100 * dnsperf_cpu / wall,
        machine_busy=100 * (busy_after - busy_before) / max(1, total_after - total_before),
        other_cpu=100 * max(0.0, machine_cpu - server_cpu - dnsperf_cpu - softirq) / wall,
        softirq_cpu=100 * softirq / wall,
        server_us_per_query=1e6 * server_cpu / max(1, completed),
        waited=waited,
        busy_before=busy,
        raw=text,
    )


# -- /proc ---------------------------------------------------------------------------


def memory(pid: int) -> dict[str, float]:
    """VmHWM (peak resident) and VmRSS (now), MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    return out
