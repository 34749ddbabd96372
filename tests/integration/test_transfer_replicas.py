"""Serials and zones secondaries can trust across replicas and restarts: two real servers watching the same
fake Kubernetes API serve the same serials (the resourceVersion of the last change) and the same AXFR;
knotd and named follow one of them; a restart, with the Kubernetes source or a pod file, lowers no serial."""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import REVERSE_ZONE, ZONE
from tests.fakekube import FakeKubeThread, make_pod
from tests.helpers import sts_pod
from tests.secondaries import Bind, Knot, answer_of, ask, axfr_lines, converged, generate_keys, keys_of, write_pod_list
from tests.serverproc import ServerProcess

ZONES = [ZONE, REVERSE_ZONE]
CONVERGED_WITHIN = 15.0


def kube_pod(index: int, ip: str | None = None) -> dict:
    name, namespace = f"db{index // 10}", ("kafka", "zk")[index // 50]
    return make_pod(
        f"{name}-{index % 10}",
        namespace,
        ip=ip or f"10.244.{index // 10}.{index % 10 + 20}",
        hostname=f"{name}-{index % 10}",
        subdomain=name,
    )


def name_of(index: int) -> str:
    return f"db{index // 10}-{index % 10}.db{index // 10}.{('kafka', 'zk')[index // 50]}.{ZONE}"


def reverse(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def soa_serial(port: int, zone: str) -> int | None:
    reply = ask(port, zone, "SOA")
    return reply.answer[0][0].serial if reply.rcode() == dns.rcode.NOERROR and reply.answer else None


def wait_until(check, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


def addresses(port: int, name: str) -> list[str]:
    return sorted(d.to_text() for r in ask(port, name, "A").answer for d in r)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A fake API with 100 pods, two servers watching it (the first sends NOTIFY to knotd and named)."""
    directory = tmp_path_factory.mktemp("replicas")
    key_file = generate_keys(directory, "knot-xfr", "bind-xfr")
    knot = Knot(directory / "knot", 0, ZONES, key_file, "knot-xfr", "knot-xfr")
    bind = Bind(directory / "bind", 0, ZONES, key_file, "bind-xfr", "bind-xfr")
    fake = FakeKubeThread()
    servers: list[ServerProcess] = []
    try:
        fake.call(fake.kube.add_pods, [kube_pod(i) for i in range(100)])
        kubeconfig = fake.kube.write_kubeconfig(directory / "kubeconfig")
        common = (
            *("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--kubeconfig", str(kubeconfig)),
            *("--tsig-key-file", str(key_file), "--transfer-key", "knot-xfr", "--transfer-key", "bind-xfr"),
        )
        notify = ("--notify", f"127.0.0.1:{knot.port}", "--notify", f"127.0.0.1:{bind.port}")
        servers += [ServerProcess(*common, *notify).__enter__(), ServerProcess(*common).__enter__()]
        for server in servers:
            wait_until(lambda s=server: addresses(s.port, name_of(99)) == ["10.244.9.29"], what="synced")
        knot.primary_port = bind.primary_port = servers[0].port
        knot.start()
        bind.start()
        for secondary in (knot, bind):
            secondary.wait_for(lambda s=secondary: converged(s, servers[0].port), CONVERGED_WITHIN)
        yield SimpleNamespace(fake=fake, servers=servers, common=common, knot=knot, bind=bind, key=keys_of(key_file)["knot-xfr"])
    finally:
        knot.stop()
        bind.stop()
        for server in servers:
            server.stop()
        fake.close()


def questions() -> list[tuple[str, str]]:
    out = [(ZONE, "SOA"), (ZONE, "NS"), (REVERSE_ZONE, "SOA"), (f"ns.{ZONE}", "A"), (f"db3.kafka.{ZONE}", "A"), (f"zk.{ZONE}", "A")]
    for index in (0, 42, 99):
        out += [(name_of(index), "A"), (name_of(index), "AAAA"), (reverse(f"10.244.{index // 10}.{index % 10 + 20}"), "PTR")]
    return out + [(f"gone.{ZONE}", "A"), ("1.1.200.10.in-addr.arpa", "PTR")]


def test_secondaries_of_a_kubernetes_server_hold_every_zone_and_answer_alike(cluster):
    primary = cluster.servers[0].port
    for secondary in (cluster.knot, cluster.bind):
        for name, rdtype in questions():
            assert answer_of(ask(secondary.port, name, rdtype)) == answer_of(ask(primary, name, rdtype)), (
                f"{secondary.name}: {name} {rdtype}"
            )


def test_two_servers_on_the_same_events_serve_the_same_serials_and_zones(cluster):
    first, second = (server.port for server in cluster.servers)
    for zone in ZONES:
        assert soa_serial(first, zone) == soa_serial(second, zone)
        assert axfr_lines(first, zone, cluster.key) == axfr_lines(second, zone, cluster.key)

    moved = cluster.fake.call(
        cluster.fake.kube.modify_pod,
        "kafka",
        "db4-2",
        lambda pod: pod["status"].update(podIP="10.244.77.2", podIPs=[{"ip": "10.244.77.2"}]),
    )
    version = int(moved["metadata"]["resourceVersion"])
    for server in cluster.servers:
        wait_until(lambda s=server: soa_serial(s.port, ZONE) == version, what="the change's resourceVersion as the serial")
    for zone in ZONES:
        assert soa_serial(first, zone) == soa_serial(second, zone) == version  # both zones changed, at that version
        lines = axfr_lines(first, zone, cluster.key)
        assert lines == axfr_lines(second, zone, cluster.key)
        assert any("10.244.77.2" in line or "77.244.10" in line for line in lines), zone
    for secondary in (cluster.knot, cluster.bind):
        secondary.wait_for(lambda s=secondary: converged(s, first), CONVERGED_WITHIN)


def test_a_restart_with_the_kubernetes_source_keeps_the_serial(cluster):
    before = {zone: soa_serial(cluster.servers[1].port, zone) for zone in ZONES}
    cluster.servers[1].stop()
    cluster.servers[1] = ServerProcess(*cluster.common).__enter__()
    port = cluster.servers[1].port
    wait_until(lambda: soa_serial(port, ZONE) is not None, what="synced again")
    for zone in ZONES:
        after = soa_serial(port, zone)
        assert after is not None and before[zone] is not None
        assert after == before[zone] == soa_serial(cluster.servers[0].port, zone)  # the same events: the same serial
        assert axfr_lines(port, zone, cluster.key) == axfr_lines(cluster.servers[0].port, zone, cluster.key)


def test_a_restart_with_a_pod_file_does_not_lower_the_serial(tmp_path):
    pod_file = write_pod_list(tmp_path / "pods.json", [sts_pod("web", i, f"10.244.5.{i + 1}") for i in range(5)])
    args = ("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pod_file), "--transfer-allow-unsigned", "127.0.0.1/32")
    with ServerProcess(*args) as server:
        wait_until(lambda: soa_serial(server.port, ZONE) is not None, what="serving")
        before = {zone: soa_serial(server.port, zone) for zone in ZONES}
        zone_before = axfr_lines(server.port, ZONE)
    with ServerProcess(*args) as server:
        wait_until(lambda: soa_serial(server.port, ZONE) is not None, what="serving again")
        for zone in ZONES:
            after = soa_serial(server.port, zone)
            assert after is not None and before[zone] is not None and after >= before[zone], zone
        # Same content, a serial that moved on (file serials are the time): secondaries transfer it again, harmlessly.
        assert [line for line in axfr_lines(server.port, ZONE) if " SOA " not in line] == [
            line for line in zone_before if " SOA " not in line
        ]


def test_a_burst_of_file_changes_then_a_restart_does_not_lower_the_serial(tmp_path):
    """Three pod-file changes within a second, re-read at once (SIGHUP), then a restart right away: each
    change waits until the clock has passed the serial before it, so no serial runs ahead of the clock and
    the restarted server, whose first serial is the time, is not below the last one served."""
    pod_file = tmp_path / "pods.json"
    args = ("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pod_file), "--reload-interval", "60")
    write_pod_list(pod_file, [sts_pod("web", 0, "10.244.5.1")])
    with ServerProcess(*args) as server:
        wait_until(lambda: soa_serial(server.port, ZONE) is not None, what="serving")
        assert server.proc is not None
        served = [soa_serial(server.port, ZONE)]
        for change in range(2, 5):
            write_pod_list(pod_file, [sts_pod("web", 0, f"10.244.5.{change}")])
            server.proc.send_signal(signal.SIGHUP)
            wanted = [f"10.244.5.{change}"]
            wait_until(lambda wanted=wanted: addresses(server.port, f"web-0.web.default.{ZONE}") == wanted, what="the change")
            wait_until(lambda: soa_serial(server.port, ZONE) != served[-1], what="the serial to move")
            serial = soa_serial(server.port, ZONE)
            assert serial is not None and serial > served[-1] and serial <= int(time.time()), (served, serial, time.time())
            served.append(serial)
    with ServerProcess(*args) as server:
        wait_until(lambda: soa_serial(server.port, ZONE) is not None, what="serving again")
        assert soa_serial(server.port, ZONE) >= served[-1], served  # type: ignore[operator]


def test_transfers_are_refused_without_any_transfer_flag(tmp_path):
    """Without a transfer flag the engine is not there: AXFR and IXFR are REFUSED as by the answer path."""
    pod_file = write_pod_list(tmp_path / "pods.json", [sts_pod("web", 0, "10.244.5.1")])
    with ServerProcess("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pod_file)) as server:
        wait_until(lambda: soa_serial(server.port, ZONE) is not None, what="serving")
        for rdtype in ("AXFR", "IXFR"):
            reply = dns.query.tcp(dns.message.make_query(ZONE, rdtype), "127.0.0.1", port=server.port, timeout=3)
            assert reply.rcode() == dns.rcode.REFUSED and not reply.answer, rdtype
