"""The real server against a misbehaving fake API, asked with dnspython: what users see after the watch recovers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.integration.test_kube_e2e import NX, A, cluster, fqdn, ident, look, rev, until
from tests.integration.test_metrics import scrape, value


def test_pods_lost_in_a_restore_from_backup_lose_their_names(tmp_path: Path) -> None:
    with cluster(tmp_path, too_large_as="status") as env:
        port, kube = env.port, env.fake.kube
        env.add(ident("kept-0", "restore", "10.244.20.1"))
        backup = env.fake.call(kube.backup)
        env.add(*(ident(f"lost-{i}", "restore", f"10.244.21.{i + 1}") for i in range(50)))
        until(port, fqdn("lost-49", "svc", "restore"), "A", A("10.244.21.50"))

        env.fake.call(kube.restore, backup)  # the server now watches from a version the cluster has not reached
        until(port, fqdn("lost-0", "svc", "restore"), "A", NX, timeout=20)
        assert [look(port, fqdn(f"lost-{i}", "svc", "restore")) for i in range(50)] == [NX] * 50
        assert [look(port, rev(f"10.244.21.{i + 1}"), "PTR") for i in range(50)] == [NX] * 50
        assert look(port, fqdn("kept-0", "svc", "restore")) == A("10.244.20.1")
        assert env.log_count(r"WARNING .*as after a restore from backup; listing again from scratch") == 1

        env.add(ident("new-0", "restore", "10.244.20.2"))  # and it watches the restored cluster on
        until(port, fqdn("new-0", "svc", "restore"), "A", A("10.244.20.2"))


def test_a_flood_of_malformed_lines_is_counted_but_writes_a_few_log_lines(tmp_path: Path) -> None:
    with cluster(tmp_path, "--metrics-listen", "127.0.0.1:0") as env:
        kube = env.fake.kube
        deadline = time.monotonic() + 5
        while not env.fake.call(lambda: kube.open_watches):
            assert time.monotonic() < deadline, "no watch opened"
            time.sleep(0.02)
        env.fake.call(kube.inject_bytes, b"{not an event\n" * 70_000)
        env.add(ident("after-0", "flood", "10.244.22.1"))
        until(env.port, fqdn("after-0", "svc", "flood"), "A", A("10.244.22.1"), timeout=20)

        samples = scrape(env.server.metrics_port)
        assert value(samples, "poddns_kubernetes_api_errors_total", error="malformed_event") == 70_000
        assert env.log_count("skipped malformed watch event") == 5  # then a summary a minute, while it lasts
        assert env.lists() == 1


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming-list", "paged-list"])
def test_a_relist_answers_from_the_old_state_until_the_new_one_is_complete(tmp_path: Path, streaming: bool) -> None:
    with cluster(tmp_path, watch_list=streaming) as env:
        port, kube = env.port, env.fake.kube
        pods = [ident(f"web-{i}", "relist", f"10.244.{30 + i // 250}.{i % 250 + 1}") for i in range(1500)]
        env.add(*pods)
        steady, gone, new = fqdn("web-0", "svc", "relist"), fqdn("web-1499", "svc", "relist"), fqdn("new-0", "svc", "relist")
        until(port, gone, "A", A("10.244.35.250"))
        lists, sent = env.lists(), env.fake.call(lambda: kube.initial_events_sent)

        def hold_and_break() -> None:  # one step on the fake's loop: the watch is down for all of it
            if streaming:
                kube.initial_events_gate = asyncio.Event()  # the relist's events go out, its end does not
            else:
                kube.list_gate = asyncio.Event()  # the relist's first page waits
            kube.drop_watches()
            kube.delete_pod("relist", "web-1499")
            kube.add_pod(ident("new-0", "relist", "10.244.36.1"))
            kube.compact()  # a watch from before the change gets 410: the server lists again

        env.fake.call(hold_and_break)
        deadline = time.monotonic() + 10
        while env.lists() == lists or (streaming and env.fake.call(lambda: kube.initial_events_sent) < sent + 1500):
            assert time.monotonic() < deadline, "the relist did not begin"
            time.sleep(0.02)
        for _ in range(25):  # the relist is under way: the old state, whole
            assert look(port, steady) == A("10.244.30.1")
            assert look(port, rev("10.244.30.1"), "PTR") == ("NOERROR", [steady + "."])
            assert look(port, gone) == A("10.244.35.250")
            assert look(port, new) == NX
            time.sleep(0.02)
        env.fake.call(lambda: (kube.initial_events_gate or kube.list_gate).set())  # type: ignore[union-attr]
        while look(port, gone) != NX:  # and while it is applied
            assert look(port, steady) == A("10.244.30.1")
            assert time.monotonic() < deadline + 10, "the relist was not applied"
            time.sleep(0.01)
        until(port, new, "A", A("10.244.36.1"))
        assert look(port, steady) == A("10.244.30.1")
