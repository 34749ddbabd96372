"""The real server against a misbehaving fake API, asked with dnspython: what users see after the watch recovers."""

from __future__ import annotations

import time
from pathlib import Path

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
