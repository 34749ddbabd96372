"""The Kubernetes source end to end: the real server process, watching the fake API, asked with dnspython.

The fake runs on its own loop in a thread of the test process; every assertion
is a DNS answer (or a log line, or the fake's request log). Servers are shared
where scenarios cannot disturb each other (each uses its own namespace and
/24), and separate where they break the API or need other flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.reversename
import pytest

from tests.conftest import ZONE
from tests.fakekube import FakeKubeThread, Pod, make_pod, now_rfc3339
from tests.serverproc import ROOT, ServerProcess

POLL_SECONDS = 0.02
VISIBLE_WITHIN = 5.0  # bound on event -> answer; in practice milliseconds

Answer = tuple[str, list[str]]  # (rcode, sorted rdata)
NX: Answer = ("NXDOMAIN", [])
SERVFAIL: Answer = ("SERVFAIL", [])


def A(*ips: str) -> Answer:
    return ("NOERROR", sorted(ips))


def PTR(name: str) -> Answer:
    return ("NOERROR", [name + "."])


def fqdn(hostname: str, subdomain: str, namespace: str) -> str:
    return f"{hostname}.{subdomain}.{namespace}.{ZONE}"


def rev(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text()


# -- DNS -------------------------------------------------------------------


def look(port: int, name: str, qtype: str = "A") -> Answer:
    reply = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=2)
    return dns.rcode.to_text(reply.rcode()), sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def until(
    port: int,
    name: str,
    qtype: str,
    expected: Answer,
    *,
    timeout: float = VISIBLE_WITHIN,
    every: Callable[[Answer], None] | None = None,
) -> float:
    """Ask every 20 ms until the answer is `expected`; returns how long that took.

    `every` is called with each answer seen on the way (an invariant to check).
    """
    started = time.monotonic()
    while True:
        seen = look(port, name, qtype)
        if every is not None:
            every(seen)
        if seen == expected:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{name} {qtype}: still {seen} after {timeout}s, expected {expected}")
        time.sleep(POLL_SECONDS)


def readyz(metrics_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# -- pods and the cluster --------------------------------------------------


def ident(
    name: str,
    namespace: str,
    ip: str,
    hostname: str | None = None,
    subdomain: str | None = "svc",
    created: str | None = None,
    **kwargs: Any,
) -> Pod:
    """A pod with an identity: hostname (default: the pod name) and subdomain."""
    pod = make_pod(name, namespace, ip=ip, hostname=hostname or name, subdomain=subdomain, **kwargs)
    if created:
        pod["metadata"]["creationTimestamp"] = created
    return pod


def plain(name: str, namespace: str, ip: str, **kwargs: Any) -> Pod:
    return make_pod(name, namespace, ip=ip, **kwargs)


def set_ip(ip: str) -> Callable[[Pod], None]:
    def change(pod: Pod) -> None:
        pod["status"]["podIP"] = ip
        pod["status"]["podIPs"] = [{"ip": ip}]

    return change


def terminating(pod: Pod) -> None:
    pod["metadata"]["deletionTimestamp"] = now_rfc3339()
    pod["metadata"]["deletionGracePeriodSeconds"] = 30


@dataclass
class Cluster:
    fake: FakeKubeThread
    server: ServerProcess
    kubeconfig: Path

    @property
    def port(self) -> int:
        return self.server.port

    def add(self, *pods: Pod) -> None:
        for pod in pods:
            self.fake.call(self.fake.kube.add_pod, pod)

    def modify(self, namespace: str, name: str, change: Callable[[Pod], None]) -> None:
        self.fake.call(self.fake.kube.modify_pod, namespace, name, change)

    def delete(self, namespace: str, name: str) -> None:
        self.fake.call(self.fake.kube.delete_pod, namespace, name)

    def barrier(self, namespace: str, ip: str) -> None:
        """Wait until every event sent so far is applied: one watch stream is applied in order."""
        name = f"barrier-{time.monotonic_ns()}"
        self.add(plain(name, namespace, ip, labels={"app": "web"}))
        until(self.port, rev(ip), "PTR", PTR(f"{ip.replace('.', '-')}.{namespace}.pod.cluster.local"))
        self.delete(namespace, name)
        until(self.port, rev(ip), "PTR", NX)

    def lists(self) -> int:
        return self.fake.call(lambda: len(self.fake.kube.list_requests()))

    def log_count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in list(self.server.lines) if regex.search(line))

    def wait_log_count(self, pattern: str, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.log_count(pattern) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {count} log lines match {pattern!r}:\n" + "\n".join(self.server.lines))
            time.sleep(POLL_SECONDS)


def server_args(kubeconfig: Path, *extra: str) -> list[str]:
    return ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--kubeconfig", str(kubeconfig), *extra]


@contextlib.contextmanager
def cluster(tmp: Path, *extra: str, seed: Pod | None = None, **fake_options: Any) -> Iterator[Cluster]:
    """A fake API with one seed pod and a server watching it, synced (seed pod answering)."""
    with FakeKubeThread(**fake_options) as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp / "kubeconfig")
        seed = seed or ident("seed-0", "seed", "10.244.250.1")
        fake.call(fake.kube.add_pod, seed)
        with ServerProcess(*server_args(kubeconfig, *extra)) as server:
            env = Cluster(fake, server, kubeconfig)
            spec = seed["spec"]
            until(server.port, fqdn(spec["hostname"], spec["subdomain"], seed["metadata"]["namespace"]), "A", A(seed["status"]["podIP"]))
            yield env


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Default flags (--publish not-ready, --fallback-ptr), all namespaces; one namespace per test."""
    with cluster(tmp_path_factory.mktemp("shared")) as env:
        yield env


# -- scenarios on the shared server ------------------------------------------


def test_add_modify_delete_are_answered_at_once(shared: Cluster) -> None:
    port, name = shared.port, fqdn("web-0", "web", "crud")
    shared.add(ident("web-0", "crud", "10.244.1.10", subdomain="web"))
    until(port, name, "A", A("10.244.1.10"))
    assert look(port, rev("10.244.1.10"), "PTR") == PTR(name)
    assert look(port, f"web.crud.{ZONE}") == A("10.244.1.10")  # the set

    shared.modify("crud", "web-0", set_ip("10.244.1.11"))
    until(port, name, "A", A("10.244.1.11"))
    assert look(port, rev("10.244.1.11"), "PTR") == PTR(name)
    assert look(port, rev("10.244.1.10"), "PTR") == NX

    shared.delete("crud", "web-0")
    until(port, name, "A", NX)
    assert look(port, rev("10.244.1.11"), "PTR") == NX
    assert look(port, f"web.crud.{ZONE}") == NX


def test_reused_ip_has_exactly_one_ptr_at_every_step(shared: Cluster) -> None:
    """The new pod's ADDED comes before the old pod's DELETED: the PTR stays with the old, then moves.

    Forward-confirmed at every step: while the old pod holds the IP, the new
    pod's name does not answer with it (it has no other address: NXDOMAIN).
    """
    port, ip = shared.port, "10.244.2.7"
    old, new = fqdn("worker-a", "workers", "reuse"), fqdn("worker-b", "workers", "reuse")

    def one_ptr(answer: Answer) -> None:
        assert answer[0] == "NOERROR" and len(answer[1]) == 1, f"PTR of {ip}: {answer}"

    shared.add(ident("worker-a", "reuse", ip, subdomain="workers", created="2026-01-01T00:00:00Z"))
    until(port, rev(ip), "PTR", PTR(old))

    shared.add(ident("worker-b", "reuse", ip, subdomain="workers", created="2026-01-02T00:00:00Z"))
    shared.wait_log_count(rf"conflict on ip {ip}: pod reuse/worker-a .* keeps it, pod reuse/worker-b .* loses it", 1)
    assert look(port, rev(ip), "PTR") == PTR(old)
    assert look(port, old) == A(ip)
    assert look(port, new) == NX  # its only address belongs to the older pod

    shared.delete("reuse", "worker-a")
    until(port, rev(ip), "PTR", PTR(new), every=one_ptr)
    assert look(port, old) == NX
    assert look(port, new) == A(ip)
    assert look(port, f"workers.reuse.{ZONE}") == A(ip)  # the set lists the IP once


def test_duplicate_identity_oldest_wins_and_the_loser_is_logged_once(shared: Cluster) -> None:
    port, name = shared.port, fqdn("kdc-1", "kdc", "dup")
    conflict = (
        rf"conflict on name {re.escape(name)}\.: pod dup/kdc-1-old \(uid [^)]+\) keeps it, "
        r"pod dup/kdc-1-young \(uid [^)]+\) loses it"
    )
    # The younger pod arrives first and holds the name until the older one shows up.
    shared.add(ident("kdc-1-young", "dup", "10.244.3.2", hostname="kdc-1", subdomain="kdc", created="2026-01-02T00:00:00Z"))
    until(port, name, "A", A("10.244.3.2"))
    shared.add(ident("kdc-1-old", "dup", "10.244.3.1", hostname="kdc-1", subdomain="kdc", created="2026-01-01T00:00:00Z"))
    until(port, name, "A", A("10.244.3.1"))
    assert look(port, rev("10.244.3.1"), "PTR") == PTR(name)
    assert look(port, rev("10.244.3.2"), "PTR") == NX  # the loser gets nothing
    shared.wait_log_count(conflict, 1)

    # More events for the same pair log nothing new.
    shared.modify("dup", "kdc-1-young", lambda p: p["metadata"]["labels"].update(touched="1"))
    shared.modify("dup", "kdc-1-old", lambda p: p["metadata"]["labels"].update(touched="1"))
    shared.barrier("dup", "10.244.3.250")
    assert shared.log_count(conflict) == 1
    assert look(port, name) == A("10.244.3.1")


def test_rolling_replacement_gives_the_name_to_the_new_pod_when_the_old_terminates(shared: Cluster) -> None:
    """One Deployment per instance (zk-1): pods differ in name, share hostname and subdomain."""
    port, name = shared.port, fqdn("zk-1", "zk", "roll")
    shared.add(ident("zk-1-7d9f4", "roll", "10.244.4.1", hostname="zk-1", subdomain="zk", created="2026-01-01T00:00:00Z"))
    until(port, name, "A", A("10.244.4.1"))

    # Surge: the new pod runs next to the old one, which keeps the name while it is not terminating.
    shared.add(ident("zk-1-5c2a8", "roll", "10.244.4.2", hostname="zk-1", subdomain="zk", created="2026-01-02T00:00:00Z"))
    shared.barrier("roll", "10.244.4.250")
    assert look(port, name) == A("10.244.4.1")
    assert look(port, rev("10.244.4.2"), "PTR") == NX

    shared.modify("roll", "zk-1-7d9f4", terminating)
    until(port, name, "A", A("10.244.4.2"))
    assert look(port, rev("10.244.4.2"), "PTR") == PTR(name)
    assert look(port, rev("10.244.4.1"), "PTR") == NX

    shared.delete("roll", "zk-1-7d9f4")
    shared.barrier("roll", "10.244.4.250")
    assert look(port, name) == A("10.244.4.2")


def test_a_terminating_pod_alone_keeps_its_name_until_gone(shared: Cluster) -> None:
    port, name = shared.port, fqdn("solo-0", "solo", "term")
    shared.add(ident("solo-0", "term", "10.244.5.1", subdomain="solo"))
    until(port, name, "A", A("10.244.5.1"))
    shared.modify("term", "solo-0", terminating)
    shared.barrier("term", "10.244.5.250")
    assert look(port, name) == A("10.244.5.1")
    assert look(port, rev("10.244.5.1"), "PTR") == PTR(name)
    shared.delete("term", "solo-0")
    until(port, name, "A", NX)
    assert look(port, rev("10.244.5.1"), "PTR") == NX


def test_phase_failed_removes_the_name(shared: Cluster) -> None:
    port, name = shared.port, fqdn("job-0", "jobs", "failed")
    shared.add(ident("job-0", "failed", "10.244.6.1", subdomain="jobs"))
    until(port, name, "A", A("10.244.6.1"))
    shared.modify("failed", "job-0", lambda p: p["status"].update(phase="Failed"))
    until(port, name, "A", NX)
    assert look(port, rev("10.244.6.1"), "PTR") == NX  # a finished pod gets no fallback PTR either


def test_not_ready_pods_are_published_by_default(shared: Cluster) -> None:
    port, name = shared.port, fqdn("broker-0", "brokers", "notready")
    shared.add(ident("broker-0", "notready", "10.244.7.1", subdomain="brokers", ready=False))
    until(port, name, "A", A("10.244.7.1"))
    assert look(port, rev("10.244.7.1"), "PTR") == PTR(name)


def test_fallback_ptr_for_pods_without_an_identity(shared: Cluster) -> None:
    port = shared.port
    shared.add(
        plain("api-7f9c", "plain", "10.244.8.1"),
        ident("lonely", "plain", "10.244.8.2", subdomain=None),  # hostname without subdomain: no identity
        plain("node-agent", "plain", "10.244.8.3", host_network=True),
    )
    until(port, rev("10.244.8.1"), "PTR", PTR("10-244-8-1.plain.pod.cluster.local"))
    until(port, rev("10.244.8.2"), "PTR", PTR("10-244-8-2.plain.pod.cluster.local"))
    assert look(port, rev("10.244.8.3"), "PTR") == NX  # hostNetwork: the node's IP, never a PTR
    shared.delete("plain", "api-7f9c")
    until(port, rev("10.244.8.1"), "PTR", NX)


def test_malformed_event_lines_are_skipped(shared: Cluster) -> None:
    port, name = shared.port, fqdn("after-0", "svc", "malformed")
    # Injected lines reach only open watches: after an earlier test's relist the new one may still be opening.
    deadline = time.monotonic() + VISIBLE_WITHIN
    while not shared.fake.call(lambda: shared.fake.kube.open_watches) and time.monotonic() < deadline:
        time.sleep(0.02)
    lists, skipped = shared.lists(), shared.log_count("skipped malformed watch event")
    watches = shared.fake.call(lambda: len(shared.fake.kube.pod_requests(watch=True)))
    for raw in (b"{this is not json", b'{"type": "ADDED"}', b'["not", "an", "event"]'):
        shared.fake.call(shared.fake.kube.inject_line, raw)
    shared.add(ident("after-0", "malformed", "10.244.9.1"))
    until(port, name, "A", A("10.244.9.1"))
    # The log is read from the server's output by a thread of its own: it may trail the answer a moment.
    shared.wait_log_count("skipped malformed watch event", skipped + 3)
    assert shared.log_count("skipped malformed watch event") == skipped + 3
    assert shared.lists() == lists
    assert shared.fake.call(lambda: len(shared.fake.kube.pod_requests(watch=True))) == watches


@pytest.mark.parametrize("abort", [False, True], ids=["clean-close", "connection-cut"])
def test_dropped_stream_resumes_from_the_last_version_without_a_list(shared: Cluster, abort: bool) -> None:
    port, name = shared.port, fqdn(f"late-{int(abort)}", "svc", "drop")
    kube = shared.fake.kube
    lists = shared.lists()
    watches = shared.fake.call(lambda: len(kube.pod_requests(watch=True)))
    seen = shared.fake.call(lambda: kube.version)

    def drop_then_add() -> None:  # one step on the fake's loop: no watch is open when the pod is added
        kube.drop_watches(abort=abort)
        kube.add_pod(ident(f"late-{int(abort)}", "drop", f"10.244.10.{1 + int(abort)}"))

    shared.fake.call(drop_then_add)
    until(port, name, "A", A(f"10.244.10.{1 + int(abort)}"))
    resumed = shared.fake.call(lambda: kube.pod_requests(watch=True)[watches:])
    assert resumed and resumed[0].query["resourceVersion"] == str(seen)
    assert shared.lists() == lists  # no second list


# -- scenarios with a server of their own -------------------------------------


def test_servfail_and_not_ready_until_the_first_complete_list(tmp_path: Path) -> None:
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
        fake.call(fake.kube.add_pod, ident("kafka-0", "default", "10.244.0.10", subdomain="kafka"))
        fake.hold_lists()
        args = server_args(kubeconfig, "--metrics-listen", "127.0.0.1:0")
        with ServerProcess(*args) as server:
            port, name = server.port, fqdn("kafka-0", "kafka", "default")
            deadline = time.monotonic() + 10
            while not fake.call(lambda: fake.kube.list_requests()):
                assert time.monotonic() < deadline, "the server never asked for the list"
                time.sleep(POLL_SECONDS)
            assert look(port, name) == SERVFAIL
            assert look(port, f"nobody.default.{ZONE}") == SERVFAIL  # never a cacheable NXDOMAIN
            assert look(port, rev("10.244.0.10"), "PTR") == SERVFAIL
            assert look(port, "example.com")[0] == "REFUSED"
            assert readyz(server.metrics_port) == 503

            fake.release_lists()
            until(port, name, "A", A("10.244.0.10"))
            assert look(port, rev("10.244.0.10"), "PTR") == PTR(name)
            assert look(port, f"nobody.default.{ZONE}") == NX
            assert readyz(server.metrics_port) == 200


def test_api_down_at_start_servfail_until_it_is_up(tmp_path: Path) -> None:
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
        fake.call(fake.kube.add_pod, ident("kafka-0", "default", "10.244.0.10", subdomain="kafka"))
        fake.run(fake.kube.go_down())
        with ServerProcess(*server_args(kubeconfig)) as server:
            env = Cluster(fake, server, kubeconfig)
            env.wait_log_count(r"WARNING .*connection.*retrying in", 2)
            assert look(server.port, fqdn("kafka-0", "kafka", "default")) == SERVFAIL
            fake.run(fake.kube.come_up())
            until(server.port, fqdn("kafka-0", "kafka", "default"), "A", A("10.244.0.10"))


@pytest.fixture(scope="module")
def disturbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server whose API breaks on purpose; each test leaves it watching again."""
    with cluster(tmp_path_factory.mktemp("disturbed")) as env:
        yield env


def test_api_down_mid_run_keeps_answering_and_recovers(disturbed: Cluster) -> None:
    port, name = disturbed.port, fqdn("zk-0", "zk", "outage")
    disturbed.add(ident("zk-0", "outage", "10.244.11.1", subdomain="zk"))
    until(port, name, "A", A("10.244.11.1"))
    lists, failures = disturbed.lists(), disturbed.log_count(r"connection.*retrying in")

    disturbed.fake.run(disturbed.fake.kube.go_down())
    disturbed.wait_log_count(r"connection.*retrying in", failures + 1)
    assert look(port, name) == A("10.244.11.1")  # the last state, not SERVFAIL
    disturbed.add(ident("zk-1", "outage", "10.244.11.2", subdomain="zk"))  # while the server cannot see it
    assert look(port, fqdn("zk-1", "zk", "outage")) == NX

    disturbed.fake.run(disturbed.fake.kube.come_up())
    until(port, fqdn("zk-1", "zk", "outage"), "A", A("10.244.11.2"))
    assert disturbed.lists() == lists  # resumed from the last version


def test_410_after_deletions_in_the_gap_relists_and_forgets_them(disturbed: Cluster) -> None:
    port, kube = disturbed.port, disturbed.fake.kube
    gone, stays, new = (fqdn(h, "svc", "gap") for h in ("gone-0", "stays-0", "new-0"))
    disturbed.add(ident("gone-0", "gap", "10.244.12.1"), ident("stays-0", "gap", "10.244.12.2"))
    until(port, gone, "A", A("10.244.12.1"))
    until(port, stays, "A", A("10.244.12.2"))
    lists = disturbed.lists()

    def gap() -> None:  # one step on the fake's loop: the watch is down for all of it
        kube.drop_watches()
        kube.delete_pod("gap", "gone-0")
        kube.add_pod(ident("new-0", "gap", "10.244.12.3"))
        kube.compact()  # the deletion is no longer in the history: only a list can tell

    disturbed.fake.call(gap)
    until(port, gone, "A", NX)
    assert look(port, rev("10.244.12.1"), "PTR") == NX
    assert look(port, stays) == A("10.244.12.2")
    until(port, new, "A", A("10.244.12.3"))
    assert disturbed.lists() == lists + 1
    assert disturbed.log_count(r"\(410\); listing again") >= 1


def test_namespace_and_label_selector_filters(tmp_path: Path) -> None:
    seed = ident("seed-0", "one", "10.244.250.1", labels={"app": "web"})
    with cluster(tmp_path, "--namespace", "one", "--namespace", "two", "--label-selector", "app=web", seed=seed) as env:
        port = env.port
        env.add(
            ident("a", "one", "10.244.13.1", labels={"app": "web"}),
            ident("b", "one", "10.244.13.2", labels={"app": "db"}),
            ident("c", "three", "10.244.13.3", labels={"app": "web"}),
            ident("d", "two", "10.244.13.4", labels={"app": "web"}),
        )
        until(port, fqdn("d", "svc", "two"), "A", A("10.244.13.4"))
        until(port, fqdn("a", "svc", "one"), "A", A("10.244.13.1"))
        assert look(port, fqdn("b", "svc", "one")) == NX  # label not selected
        assert look(port, fqdn("c", "svc", "three")) == NX  # namespace not watched
        assert look(port, rev("10.244.13.3"), "PTR") == NX

        env.modify("one", "b", lambda p: p["metadata"]["labels"].update(app="web"))  # now selected: ADDED
        until(port, fqdn("b", "svc", "one"), "A", A("10.244.13.2"))
        env.modify("one", "a", lambda p: p["metadata"]["labels"].update(app="other"))  # no longer: DELETED
        until(port, fqdn("a", "svc", "one"), "A", NX)

        paths = {r.path for r in env.fake.call(lambda: env.fake.kube.pod_requests())}
        assert paths == {"/api/v1/namespaces/one/pods", "/api/v1/namespaces/two/pods"}
        selectors = {r.query.get("labelSelector") for r in env.fake.call(lambda: env.fake.kube.pod_requests())}
        assert selectors == {"app=web"}


def test_publish_ready_and_no_fallback_ptr(tmp_path: Path) -> None:
    with cluster(tmp_path, "--publish", "ready", "--no-fallback-ptr") as env:
        port, name = env.port, fqdn("kafka-0", "kafka", "ready")
        env.add(ident("kafka-0", "ready", "10.244.14.1", subdomain="kafka", ready=False), plain("api", "ready", "10.244.14.2"))
        env.add(ident("marker", "ready", "10.244.14.3"))
        until(port, fqdn("marker", "svc", "ready"), "A", A("10.244.14.3"))
        assert look(port, name) == NX  # not Ready yet
        assert look(port, rev("10.244.14.1"), "PTR") == NX
        assert look(port, rev("10.244.14.2"), "PTR") == NX  # no fallback PTR

        def ready(value: str) -> Callable[[Pod], None]:
            return lambda p: p["status"]["conditions"][0].update(status=value)

        env.modify("ready", "kafka-0", ready("True"))
        until(port, name, "A", A("10.244.14.1"))
        assert look(port, rev("10.244.14.1"), "PTR") == PTR(name)
        env.modify("ready", "kafka-0", ready("False"))
        until(port, name, "A", NX)


# -- the command line ------------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_export_zone_reads_the_cluster(tmp_path: Path) -> None:
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
        fake.call(fake.kube.add_pod, ident("kafka-0", "default", "10.244.0.10", subdomain="kafka"))
        fake.call(fake.kube.add_pod, plain("web-5d8", "default", "10.244.0.11"))
        done = cli("export-zone", *server_args(kubeconfig), "--sync-timeout", "20")
        assert done.returncode == 0, done.stderr
        lines = {" ".join(line.split()) for line in done.stdout.splitlines()}
        assert f"{fqdn('kafka-0', 'kafka', 'default')}. 30 IN A 10.244.0.10" in lines
        assert f"10.0.244.10.in-addr.arpa. 30 IN PTR {fqdn('kafka-0', 'kafka', 'default')}." in lines
        assert "11.0.244.10.in-addr.arpa. 30 IN PTR 10-244-0-11.default.pod.cluster.local." in lines


def test_export_zone_fails_when_the_cluster_does_not_answer(tmp_path: Path) -> None:
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
        fake.call(fake.kube.fail_requests, 500)
        done = cli("export-zone", *server_args(kubeconfig), "--sync-timeout", "1")
        assert done.returncode == 1
        assert "did not sync within 1 s" in done.stderr


@pytest.mark.parametrize("case", ["no-kubeconfig", "unparsable", "unknown-context"])
def test_a_broken_kubeconfig_stops_the_start_with_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG")}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config either
    args = ["serve", "--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--listen", "127.0.0.1:0", "--metrics-listen", "off"]
    path = tmp_path / "kubeconfig"
    if case == "no-kubeconfig":
        env["KUBECONFIG"] = str(path)
    elif case == "unparsable":
        path.write_text("clusters: [unclosed\n")
        args += ["--kubeconfig", str(path)]
    else:
        path.write_text('{"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [], "current-context": ""}')
        args += ["--kubeconfig", str(path), "--context", "production"]
    done = cli(*args, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "cannot start:" in lines[0] and str(path) in lines[0], done.stderr
    assert "answering DNS" not in done.stderr


def test_a_watch_that_dies_is_logged_and_stops_the_server_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from server import cli as server_cli
    from server.config import build_config
    from server.sources import kube

    async def broken_run(self: kube.PodWatcher, client_config: Any = None) -> None:
        raise RuntimeError("bug outside the retry loop")

    monkeypatch.setattr(kube.PodWatcher, "run", broken_run)
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
    args = server_cli.make_parser().parse_args(
        ["serve", *server_args(kubeconfig), "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--lameduck", "0"]
    )
    code = asyncio.run(asyncio.wait_for(server_cli._serve(build_config(args)), 20))
    assert code == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "Kubernetes watch stopped" in r.getMessage()]
    assert len(errors) == 1 and "bug outside the retry loop" in errors[0].getMessage()
