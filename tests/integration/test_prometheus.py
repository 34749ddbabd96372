"""Every dashboard panel and every alert, evaluated by a real Prometheus scraping real servers.

Debian's prometheus binary (own storage in tmp, a free loopback port, a 1 s
scrape interval, the alert rules loaded) scrapes three servers, one job each:

- kube: watches tests/fakekube.py; after the scrapes begin it relists five
  times and applies a pod whose change dates from a minute ago;
- broken: its API answers 500 to everything, so it never syncs (not ready,
  SERVFAIL to in-zone queries, API errors);
- files: the demo's pod and hosts files (a conflict, static entries); its
  hosts file then breaks, and most queries it gets are for other zones. It
  does zone transfers: one AXFR signed, one refused, a signed SOA query,
  and its NOTIFY of a pod file change is answered REFUSED by a secondary.

Each panel query (Grafana's variables substituted, the job set to one of
the three) must parse, and return series for exactly the jobs the tables
below name; each alert expression must select exactly the jobs in trouble.
A misspelt metric or label returns nothing, and fails here.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.xfr
import pytest
import yaml

from tests.conftest import REPO, ZONE
from tests.fakekube import FakeKubeThread, make_pod
from tests.manifests import alert_rules, dashboard, dashboard_queries, grafana_expr, tool, write_rules_file
from tests.secondaries import axfr_lines, generate_keys, keys_of
from tests.serverproc import ServerProcess

JOBS = ("kube", "broken", "files")
ALL = frozenset(JOBS)
KUBE_SERVERS = frozenset({"kube", "broken"})  # the poddns_kubernetes_* metrics
WAIT = 30.0  # bound on waiting for scrapes and evaluations; in practice a few seconds

# Which jobs each dashboard query returns series for, in this scene.
PANEL_SERIES: dict[str, frozenset[str]] = {
    "Ready replicas A": ALL,
    "Queries/s A": ALL,
    "Identities A": ALL,
    "PTRs A": ALL,
    "Static entries A": ALL,
    "Conflicts A": ALL,
    "Queries by type A": ALL,
    "Responses by rcode A": ALL,
    "Answer latency A": ALL,
    "Answer latency B": ALL,
    "Answer latency C": ALL,
    "Queries by transport A": ALL,
    "Reply size and TCP connections A": ALL,
    "Reply size and TCP connections B": ALL,
    "TCP connections closed, by reason A": ALL,
    "Records by replica A": ALL,
    "Conflicts by replica A": ALL,
    "File reloads A": frozenset({"files"}),
    "Pod file items skipped A": frozenset({"files"}),
    "Zone serials A": ALL,
    "Synced and ready A": KUBE_SERVERS,
    "Synced and ready B": ALL,
    "Watch events A": KUBE_SERVERS,
    "Time since the last watch event A": frozenset({"kube"}),  # the broken one never had an event
    "Relists and watch restarts A": KUBE_SERVERS,
    "Relists and watch restarts B": KUBE_SERVERS,
    "API errors A": frozenset({"broken"}),
    "Kubernetes Events about conflicts A": KUBE_SERVERS,  # every result, at 0 where nothing happened
    "Programming latency A": KUBE_SERVERS,
    "Programming latency B": KUBE_SERVERS,
    "Memory A": ALL,
    "CPU A": ALL,
    # Only the files server does zone transfers.
    "Transfers by result A": frozenset({"files"}),
    "Transfer duration A": frozenset({"files"}),
    "Transfer duration B": frozenset({"files"}),
    "Transfer volume A": frozenset({"files"}),
    "Transfer volume B": frozenset({"files"}),
    "NOTIFY A": frozenset({"files"}),
    "IXFR journal A": frozenset({"files"}),
    "IXFR journal B": frozenset({"files"}),
    "Signed queries A": frozenset({"files"}),
}

# Which jobs each alert's expression selects (its `for` aside).
ALERT_SERIES: dict[str, frozenset[str]] = {
    "PodIdentityDNSNotReady": frozenset({"broken"}),
    "PodIdentityDNSConflicts": frozenset({"files"}),  # the demo's terminating kdc-1 duplicate
    "PodIdentityDNSServfailRatioHigh": frozenset({"broken"}),
    "PodIdentityDNSRefusedRatioHigh": frozenset({"files"}),
    "PodIdentityDNSProgrammingLatencyHigh": frozenset({"kube"}),
    "PodIdentityDNSRelistStorm": frozenset(),  # two relists here; its firing is promtool's test
    "PodIdentityDNSKubernetesAPIErrors": frozenset({"broken"}),
    "PodIdentityDNSWatchSilent": frozenset(),  # needs 15 silent minutes: promtool's unit tests cover it firing
    "PodIdentityDNSFileReloadFailed": frozenset({"files"}),
    "PodIdentityDNSTransfersRefused": frozenset({"files"}),  # an unsigned AXFR
    "PodIdentityDNSTransfersFailing": frozenset(),  # no transfer fails here: promtool's unit tests cover it firing
    "PodIdentityDNSNotifyFailing": frozenset({"files"}),  # a secondary that answers NOTIFY with REFUSED
}


class PrometheusError(AssertionError):
    pass


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body["status"] != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def jobs(self, expr: str) -> frozenset[str]:
        return frozenset(sample["metric"].get("job", "?") for sample in self.query(expr))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prometheus(directory: Path, targets: dict[str, int]) -> Iterator[Prometheus]:
    """A real Prometheus scraping these metrics ports every second, with the alert rules loaded; stopped on exit."""
    rules = write_rules_file(directory)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]} for job, port in targets.items()],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    log_path = directory / "prometheus.log"
    for _attempt in range(3):  # the free port may be taken between the probe and Prometheus binding it
        port = free_port()
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            if _wait_ready(proc, url):
                yield Prometheus(url)
                return
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    raise AssertionError("prometheus did not start:\n" + log_path.read_text())


def _wait_ready(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        time.sleep(0.2)


# -- the scene --------------------------------------------------------------------


def ask(port: int, name: str, qtype: str = "A") -> str:
    reply = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=2)
    return dns.rcode.to_text(reply.rcode())


def answers(port: int, name: str) -> bool:
    return ask(port, name) == "NOERROR"


def identity(name: str, namespace: str, ip: str, changed: datetime | None = None) -> dict:
    pod = make_pod(name, namespace, ip=ip, hostname=name, subdomain="set")
    if changed is not None:  # every timestamp of the pod: its change is that old
        stamp = changed.strftime("%Y-%m-%dT%H:%M:%SZ")
        pod["metadata"]["creationTimestamp"] = stamp
        for condition in pod["status"]["conditions"]:
            condition["lastTransitionTime"] = stamp
    return pod


def metric_value(port: int, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def relist(fake: FakeKubeThread, port: int, number: int) -> None:
    """A 410 Gone on the watch: the server lists again. A pod added after it resets its backoff."""
    lists = fake.call(lambda: len(fake.kube.list_requests()))
    fake.call(fake.kube.send_error, 410)
    eventually(lambda: fake.call(lambda: len(fake.kube.list_requests())) > lists, "a relist after 410 Gone")
    fake.call(fake.kube.add_pod, identity(f"after-relist-{number}", "relists", f"10.244.10.{number + 1}"))
    eventually(lambda: answers(port, f"after-relist-{number}.set.relists.{ZONE}"), "the pod added after the relist")


class RefusingSecondary:
    """A UDP socket that answers every NOTIFY with REFUSED (signed with the key the NOTIFY is signed
    with, or the server would not take it as the answer), as a secondary that does not trust us."""

    def __init__(self, key: dns.tsig.Key) -> None:
        self.keyring = {key.name: key}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            response = dns.message.make_response(dns.message.from_wire(data, keyring=self.keyring))
            response.set_rcode(dns.rcode.REFUSED)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def transfers(port: int, key_file: Path, pods_file: Path) -> None:
    """A pod file change (its NOTIFY is refused), a signed AXFR, an unsigned one (refused), a signed SOA query."""
    pods = yaml.safe_load(pods_file.read_text())
    pods["items"].append(identity("xfr-0", "transfers", "10.244.12.1"))
    pods_file.write_text(yaml.safe_dump(pods))
    eventually(lambda: answers(port, f"xfr-0.set.transfers.{ZONE}"), "the pod file change")
    key = keys_of(key_file)["xfr"]
    assert axfr_lines(port, ZONE, key)
    with pytest.raises(dns.xfr.TransferError):
        axfr_lines(port, ZONE)
    signed = dns.message.make_query(ZONE, "SOA")
    signed.use_tsig(key.key)
    assert dns.query.udp(signed, "127.0.0.1", port=port, timeout=2).had_tsig


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("prometheus")
    shutil.copy(REPO / "configs" / "demo-pods.yaml", tmp / "pods.yaml")
    shutil.copy(REPO / "configs" / "demo-hosts", tmp / "hosts")
    metrics = ["--metrics-listen", "127.0.0.1:0"]
    cluster = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", *metrics]
    key_file = generate_keys(tmp, "xfr")
    refusing = RefusingSecondary(keys_of(key_file)["xfr"].key)
    transfer_args = ["--tsig-key-file", str(key_file), "--transfer-key", "xfr", "--notify", f"127.0.0.1:{refusing.port}"]
    with FakeKubeThread() as fake, FakeKubeThread() as down, contextlib.closing(refusing):
        down.call(down.kube.fail_requests, 500)
        fake.call(fake.kube.add_pod, identity("seed-0", "seed", "10.244.9.1"))
        files_args = ["--config", "configs/demo.yaml", "--pods-file", str(tmp / "pods.yaml"), "--hosts-file", str(tmp / "hosts")]
        with (
            ServerProcess(*cluster, "--kubeconfig", str(fake.kube.write_kubeconfig(tmp / "kubeconfig"))) as kube,
            ServerProcess(*cluster, "--kubeconfig", str(down.kube.write_kubeconfig(tmp / "down-kubeconfig"))) as broken,
            ServerProcess(*files_args, *metrics, *transfer_args, "--reload-interval", "0.2") as files,
        ):
            eventually(lambda: answers(kube.port, f"seed-0.set.seed.{ZONE}"), "the kube server synced")
            servers = {"kube": kube, "broken": broken, "files": files}
            with prometheus(tmp, {job: server.metrics_port for job, server in servers.items()}) as prom:
                # Counters only show change after a first sample: act once every target is scraped.
                eventually(
                    lambda: prom.jobs("count_over_time(up[1m]) >= 2 and up == 1") == ALL,
                    "every target scraped twice",
                )
                # Two relists: the server paces a storm itself (5 s, doubling), so the alert's
                # four in 15 minutes would take the test a minute; promtool's tests fire it.
                for number in range(2):
                    relist(fake, kube.port, number)
                a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
                fake.call(fake.kube.add_pod, identity("late-0", "late", "10.244.11.1", changed=a_minute_ago))
                eventually(lambda: answers(kube.port, f"late-0.set.late.{ZONE}"), "the late pod")

                transfers(files.port, key_file, tmp / "pods.yaml")
                (tmp / "hosts").write_text("10.244.0.9\n")  # an address without a name: the reload fails
                eventually(
                    lambda: metric_value(files.metrics_port, 'poddns_file_reloads_total{file="hosts",result="error"}') == 1,
                    "the failed reload counted",
                )
                for _ in range(5):
                    assert ask(kube.port, f"seed-0.set.seed.{ZONE}") == "NOERROR"
                    assert ask(files.port, f"kafka-0.kafka.default.{ZONE}") == "NOERROR"
                    assert ask(broken.port, f"seed-0.set.seed.{ZONE}") == "SERVFAIL"
                for _ in range(20):
                    assert ask(files.port, "www.example.com") == "REFUSED"
                yield prom


# -- the tests --------------------------------------------------------------------


def test_the_table_names_every_dashboard_query():
    assert sorted(query.key for query in dashboard_queries()) == sorted(PANEL_SERIES)


def test_the_table_names_every_alert():
    assert sorted(rule["alert"] for rule in alert_rules()) == sorted(ALERT_SERIES)


def test_every_dashboard_query_returns_series_for_the_jobs_it_should(prom):
    queries = dashboard_queries()

    def seen() -> dict[str, frozenset[str]]:
        return {query.key: frozenset(job for job in JOBS if prom.query(grafana_expr(query.expr, job=job))) for query in queries}

    with contextlib.suppress(AssertionError):
        eventually(lambda: seen() == PANEL_SERIES, "every panel's series")
    actual = seen()
    assert {key: sorted(jobs) for key, jobs in actual.items() if jobs != PANEL_SERIES[key]} == {}


def test_every_alert_expression_selects_exactly_the_servers_in_trouble(prom):
    rules = alert_rules()

    def seen() -> dict[str, frozenset[str]]:
        return {rule["alert"]: prom.jobs(rule["expr"]) for rule in rules}

    with contextlib.suppress(AssertionError):
        eventually(lambda: seen() == ALERT_SERIES, "every alert's series")
    actual = seen()
    assert {alert: sorted(jobs) for alert, jobs in actual.items() if jobs != ALERT_SERIES[alert]} == {}


def test_prometheus_evaluates_every_alert_rule_without_error(prom):
    def rules() -> list[dict]:
        return [rule for group in prom.api("rules")["groups"] for rule in group["rules"]]

    eventually(lambda: all(rule["health"] != "unknown" for rule in rules()), "every rule evaluated once")
    assert {rule["name"]: rule["health"] for rule in rules()} == dict.fromkeys(ALERT_SERIES, "ok")


def test_dashboard_variables_find_the_jobs_and_instances(prom):
    variables = {variable["name"]: variable for variable in dashboard()["templating"]["list"] if variable["type"] == "query"}
    assert set(variables) == {"job", "instance"}
    for name, variable in variables.items():
        definition = variable["definition"]
        selector, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        series = prom.api("series", **{"match[]": grafana_expr(selector.strip())})
        values = {entry[label.strip()] for entry in series}
        assert len(values) == 3, (name, values)


def test_a_misspelt_metric_would_fail_the_panel_table(prom):
    """The check above can fail: a panel query with one letter wrong returns no series at all."""
    query = next(query for query in dashboard_queries() if query.key == "Queries by type A")
    assert prom.query(grafana_expr(query.expr))
    assert prom.query(grafana_expr(query.expr.replace("poddns_dns_requests_total", "poddns_dns_request_total"))) == []
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query(grafana_expr(query.expr.replace("sum by (type)", "sum by type")))
