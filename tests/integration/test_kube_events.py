"""Kubernetes Events about conflicts: the EventPoster with the real kubernetes.aio client against the fake Events API.

The fake validates each Event as the API server does (required fields,
lengths, series) and records every write; these tests read what it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.model import KubeObserver, PodRecord
from server.sources.kube import KubeSettings, load_client_config
from server.sources.kubeevents import EventPoster, EventSettings
from tests.fakeevents import EventWrite
from tests.fakeevents import shipped_event_verbs as kube_verbs
from tests.fakekube import FakeKube
from tests.integration.test_kube_e2e import NX, A, Cluster, cluster, fqdn, ident, look, rev, until
from tests.integration.test_metrics import scrape, value

WAIT_SECONDS = 5.0


class CountingObserver(KubeObserver):
    def __init__(self) -> None:
        self.results: Counter[str] = Counter()

    def event_posted(self, result: str) -> None:
        self.results[result] += 1


def record(name: str, uid: str, created: float, namespace: str = "security", deleting: bool = False) -> PodRecord:
    return PodRecord(uid, namespace, name, "kdc-1", "kdc", ("10.244.3.1",), "Running", True, False, created, deleting)


OLD = record("kdc-1-old", "uid-old", 1_700_000_000.0)
YOUNG = record("kdc-1-young", "uid-young", 1_700_000_100.0)
NAME = "kdc-1.kdc.security.pods.example.internal"


async def eventually(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def posting(kube: FakeKube, tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[EventPoster, CountingObserver]]:
    config = await load_client_config(KubeSettings(kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig"))))
    observer = CountingObserver()
    poster = EventPoster(EventSettings(reporting_instance=overrides.pop("instance", "dns-0"), **overrides), observer)
    task = asyncio.create_task(poster.run(config))
    try:
        yield poster, observer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_event_on_the_losing_pod_naming_the_winner_and_the_rule(tmp_path: Path) -> None:
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        poster.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: observer.results["posted"] == 1, "the Event")
        (write,) = kube.events.writes
        event = write.body
        assert (write.method, write.namespace, write.status) == ("POST", "security", 201)
        assert event["reason"] == "IdentityConflict" and event["type"] == "Warning" and event["action"] == "Publishing"
        assert event["note"] == f"{NAME}: pod security/kdc-1-old keeps the name (older creationTimestamp)"
        assert event["regarding"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "security", "name": "kdc-1-young", "uid": "uid-young"}
        assert event["related"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "security", "name": "kdc-1-old", "uid": "uid-old"}
        assert (event["reportingController"], event["reportingInstance"]) == ("pod-identity-dns", "dns-0")
        assert event["metadata"]["name"].startswith("kdc-1-young.") and "series" not in event


async def test_a_repeat_bumps_the_series_of_the_same_event(tmp_path: Path) -> None:
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        poster.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: observer.results["posted"] == 1, "the Event")
        for count in (2, 3):
            poster.report("name", NAME, YOUNG, OLD)
            await eventually(lambda c=count: observer.results["updated"] == c - 1, f"repeat {count}")
        assert [w.method for w in kube.events.writes] == ["POST", "PATCH", "PATCH"]
        assert all(w.content_type == "application/merge-patch+json" and w.status == 200 for w in kube.events.patched())
        ((_, stored),) = kube.events.stored.items()
        assert stored["series"]["count"] == 3 and stored["series"]["lastObservedTime"].endswith("Z")
        # Another winner, or the address instead of the name, is another Event.
        poster.report("ip", "10.244.3.1", YOUNG, record("kdc-1-other", "uid-other", 1_600_000_000.0))
        await eventually(lambda: observer.results["posted"] == 2, "the second Event")
        assert kube.events.writes[-1].body["note"] == "10.244.3.1: pod security/kdc-1-other keeps the address (older creationTimestamp)"


@pytest.mark.parametrize(
    "winner, rule",
    [
        (record("w", "uid-w", 1_700_000_200.0), "not terminating"),  # younger, but the loser is terminating
        (record("w", "uid-a", 1_700_000_100.0), "same creationTimestamp, lower uid"),
    ],
)
async def test_the_note_names_the_rule_that_decided(tmp_path: Path, winner: PodRecord, rule: str) -> None:
    loser = record("l", "uid-z", 1_700_000_100.0, deleting=rule == "not terminating")
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        poster.report("name", NAME, loser, winner)
        await eventually(lambda: observer.results["posted"] == 1, "the Event")
        assert kube.events.writes[0].body["note"].endswith(f"keeps the name ({rule})")


async def test_sibling_workers_make_one_event(tmp_path: Path) -> None:
    """Workers of one server share its id: the second finds the Event (409), and a repeat reads its count first."""
    async with FakeKube() as kube, posting(kube, tmp_path) as (first, one), posting(kube, tmp_path) as (second, two):
        first.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: one.results["posted"] == 1, "the first worker's Event")
        second.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: two.results["posted"] == 1, "the second worker's attempt")
        assert len(kube.events.stored) == 1 and [w.status for w in kube.events.writes] == [201, 409]
        first.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: one.results["updated"] == 1, "a repeat in the first")
        second.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: two.results["updated"] == 1, "a repeat in the second")
        ((_, stored),) = kube.events.stored.items()
        assert stored["series"]["count"] == 3  # what the Event said (2), plus the second's own repeat


async def test_continuing_a_siblings_event_needs_get_which_the_shipped_role_grants(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The fake refuses the verbs deploy/clusterrole.yaml lacks (the test above runs with exactly those):
    a role without `get` cannot continue an Event another worker made, and the warning says what it needs."""
    assert kube_verbs() >= {"create", "get", "patch"}
    caplog.set_level(logging.WARNING, logger="pod_identity_dns.kube.events")
    async with FakeKube() as kube, posting(kube, tmp_path) as (first, one), posting(kube, tmp_path) as (second, two):
        kube.events.granted = {"create", "patch"}
        first.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: one.results["posted"] == 1, "the first worker's Event")
        second.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: two.results["posted"] == 1, "the second worker's 409")
        second.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: two.results["failed"] == 1, "its repeat, refused")
        assert [(w.method, w.status) for w in kube.events.writes] == [("POST", 201), ("POST", 409)]  # the GET got 403
        logged = [r.getMessage() for r in caplog.records if "could not write the Kubernetes Event" in r.getMessage()]
        assert len(logged) == 1 and "HTTP 403" in logged[0] and "create, get and patch" in logged[0]


async def test_an_expired_event_is_made_again(tmp_path: Path) -> None:
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        poster.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: observer.results["posted"] == 1, "the Event")
        kube.events.stored.clear()  # the API server's event TTL (an hour by default) passed
        poster.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: observer.results["posted"] == 2, "the Event made again")
        assert [(w.method, w.status) for w in kube.events.writes] == [("POST", 201), ("PATCH", 404), ("POST", 201)]


async def test_writes_beyond_the_burst_wait_for_tokens_and_a_full_queue_drops_the_oldest(tmp_path: Path) -> None:
    async with FakeKube() as kube, posting(kube, tmp_path, burst=3, per_second=0.01, queue_limit=4) as (poster, observer):
        losers = [record(f"pod-{i}", f"uid-{i}", 1_700_000_200.0 + i) for i in range(10)]
        for loser in losers[:3]:
            poster.report("name", NAME, loser, OLD)
        await eventually(lambda: observer.results["posted"] == 3, "the burst")
        for loser in losers[3:]:
            poster.report("name", NAME, loser, OLD)
        await asyncio.sleep(0.3)  # the next token comes in 100 s
        assert observer.results["posted"] == 3 and len(kube.events.writes) == 3
        assert [w.body["regarding"]["name"] for w in kube.events.writes] == ["pod-0", "pod-1", "pod-2"]
        assert observer.results["dropped"] == 3 and poster.pending == 4  # pod-3 to pod-5 made room for pod-6 to pod-9


async def test_a_forbidden_write_is_counted_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pod_identity_dns.kube.events")
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        kube.events.forbidden = True
        for i in range(4):
            poster.report("name", NAME, record(f"pod-{i}", f"uid-{i}", 1_700_000_200.0), OLD)
        await eventually(lambda: observer.results["failed"] == 4, "four failures")
        assert len(kube.events.writes) == 4  # one try each: a 403 is not retried
        logged = [r for r in caplog.records if "could not write the Kubernetes Event" in r.getMessage()]
        assert len(logged) == 1 and "HTTP 403" in logged[0].getMessage() and "deploy/clusterrole.yaml" in logged[0].getMessage()


async def test_an_unreachable_api_is_tried_a_few_times(tmp_path: Path) -> None:
    async with FakeKube() as kube, posting(kube, tmp_path) as (poster, observer):
        kube.fail_requests(503)
        poster.report("name", NAME, YOUNG, OLD)
        await eventually(lambda: observer.results["failed"] == 3, "three attempts")
        await asyncio.sleep(0.2)
        assert observer.results["failed"] == 3 and not kube.events.writes  # 503 before the handler: none recorded
        kube.fail_requests(None)
        poster.report("name", NAME, YOUNG, OLD)  # seen again: tried afresh
        await eventually(lambda: observer.results["posted"] == 1, "the Event once the API is back")


# -- the real server ----------------------------------------------------------------------


def events_written(env: Cluster, method: str = "POST") -> list[EventWrite]:
    return env.fake.call(lambda: [w for w in env.fake.kube.events.writes if w.method == method])


def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_pods_claiming_one_name_make_one_event_and_a_repeat_bumps_its_series(tmp_path: Path) -> None:
    with cluster(tmp_path, "--metrics-listen", "127.0.0.1:0", "--server-id", "dns-a") as env:
        port, kube, name = env.port, env.fake.kube, fqdn("kdc-1", "kdc", "security")
        env.add(ident("kdc-1-old", "security", "10.244.3.1", hostname="kdc-1", subdomain="kdc", created="2026-01-01T00:00:00Z"))
        env.add(ident("kdc-1-new", "security", "10.244.3.2", hostname="kdc-1", subdomain="kdc", created="2026-01-02T00:00:00Z"))
        wait_for(lambda: events_written(env), "the Event")
        (write,) = events_written(env)
        loser, winner = (env.fake.call(kube.get_pod, "security", pod)["metadata"]["uid"] for pod in ("kdc-1-new", "kdc-1-old"))
        assert write.status == 201 and write.namespace == "security"
        assert write.body["note"] == f"{name}: pod security/kdc-1-old keeps the name (older creationTimestamp)"
        assert write.body["regarding"]["uid"] == loser and write.body["related"]["uid"] == winner
        assert write.body["reportingInstance"] == "dns-a"
        assert look(port, name) == A("10.244.3.1") and look(port, rev("10.244.3.2"), "PTR") == NX

        # The losing pod leaves the name and comes back: the same pair again, the same Event.
        env.modify("security", "kdc-1-new", lambda p: p["spec"].update(subdomain="elsewhere"))
        until(port, fqdn("kdc-1", "elsewhere", "security"), "A", A("10.244.3.2"))
        env.modify("security", "kdc-1-new", lambda p: p["spec"].update(subdomain="kdc"))
        wait_for(lambda: events_written(env, "PATCH"), "the series bumped")
        (patch,) = events_written(env, "PATCH")
        assert patch.status == 200 and patch.name == write.name and patch.body["series"]["count"] == 2
        assert len(events_written(env)) == 1
        samples = scrape(env.server.metrics_port)
        assert value(samples, "poddns_kubernetes_events_posted_total", result="posted") == 1
        assert value(samples, "poddns_kubernetes_events_posted_total", result="updated") == 1
        assert look(port, name) == A("10.244.3.1")


def test_without_rbac_for_events_the_failure_is_logged_once_and_answers_are_unaffected(tmp_path: Path) -> None:
    with cluster(tmp_path, "--metrics-listen", "127.0.0.1:0") as env:
        port = env.port
        env.fake.call(setattr, env.fake.kube.events, "forbidden", True)
        namespaces = ("one", "two", "three")
        for net, ns in enumerate(namespaces, 41):
            env.add(ident("zk-0-old", ns, f"10.244.{net}.1", hostname="zk-0", subdomain="zk", created="2026-01-01T00:00:00Z"))
            env.add(ident("zk-0-new", ns, f"10.244.{net}.2", hostname="zk-0", subdomain="zk", created="2026-01-02T00:00:00Z"))

        def failed() -> float:
            return value(scrape(env.server.metrics_port), "poddns_kubernetes_events_posted_total", result="failed")

        wait_for(lambda: failed() == 3, "three failures")
        assert env.log_count(r"WARNING .*could not write the Kubernetes Event .*HTTP 403") == 1
        for net, ns in enumerate(namespaces, 41):
            assert look(port, fqdn("zk-0", "zk", ns)) == A(f"10.244.{net}.1")
            assert look(port, rev(f"10.244.{net}.2"), "PTR") == NX
        assert look(port, fqdn("seed-0", "svc", "seed")) == A("10.244.250.1")


def test_no_events_posts_none(tmp_path: Path) -> None:
    with cluster(tmp_path, "--no-events") as env:
        env.add(ident("a-old", "quiet", "10.244.50.1", hostname="a", created="2026-01-01T00:00:00Z"))
        env.add(ident("a-new", "quiet", "10.244.50.2", hostname="a", created="2026-01-02T00:00:00Z"))
        env.wait_log_count(r"conflict on name a\.svc\.quiet", 1)
        env.barrier("quiet", "10.244.50.250")
        assert env.fake.call(lambda: env.fake.kube.events.writes) == []
