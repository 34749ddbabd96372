"""The dashboard and the alerts in deploy/monitoring/, checked without a running Prometheus.

promtool (Debian's prometheus package) checks the rules extracted from the
PrometheusRule and runs the unit tests in deploy/monitoring/alerts.test.yaml;
the dashboard's structure, its ConfigMap and every runbook link are held to
the README. tests/integration/test_prometheus.py evaluates the same
expressions in a real Prometheus scraping real servers.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.manifests import (
    ALERT_TESTS,
    ALERTS_DIR,
    DASHBOARD_DIR,
    DASHBOARD_JSON,
    DEPLOY,
    REPO,
    alert_rules,
    all_panels,
    dashboard,
    dashboard_queries,
    kustomization_files,
    kustomize,
    markdown_anchors,
    one,
    overlay,
    prometheus_rule,
    schema_failures,
    tool,
    write_rules_file,
)

README = (REPO / "README.md").read_text()
RUNBOOK_BASE = "https://github.com/example/pod-identity-dns/blob/main/README.md#"
SEVERITIES = {"warning", "critical"}
# The alerts the issue asks for, by what they watch.
EXPECTED_ALERTS = {
    "PodIdentityDNSNotReady",
    "PodIdentityDNSConflicts",
    "PodIdentityDNSServfailRatioHigh",
    "PodIdentityDNSRefusedRatioHigh",
    "PodIdentityDNSProgrammingLatencyHigh",
    "PodIdentityDNSRelistStorm",
    "PodIdentityDNSKubernetesAPIErrors",
    "PodIdentityDNSWatchSilent",
    "PodIdentityDNSFileReloadFailed",
    "PodIdentityDNSTransfersRefused",
    "PodIdentityDNSTransfersFailing",
    "PodIdentityDNSNotifyFailing",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_metrics() -> set[str]:
    """The metric names of README's Metrics table (the first column, labels dropped)."""
    return set(re.findall(r"^\| `(poddns_\w+)", README, re.M))


def metrics_in(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"\b(poddns_\w+)", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in documented_metrics():
                name = name.removesuffix(suffix)
        names.add(name)
    return names


# --- the alert rules -----------------------------------------------------------------


def test_promtool_checks_the_rules(tmp_path):
    rules = write_rules_file(tmp_path)
    result = subprocess.run([tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path):
    write_rules_file(tmp_path)
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(tmp_path / ALERT_TESTS.name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_cover_every_alert_firing_and_silent():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing, silent = set(), set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == silent == {rule["alert"] for rule in alert_rules()}


def test_promtool_fails_a_unit_test_when_an_alert_changes(tmp_path):
    """The unit tests can fail: the same tests against a rule with another threshold."""
    rules = write_rules_file(tmp_path)
    rules.write_text(rules.read_text().replace("poddns_ready == 0", "poddns_ready == 1"))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(tmp_path / ALERT_TESTS.name)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "PodIdentityDNSNotReady" in result.stdout + result.stderr


def test_the_issue_alerts_are_all_there():
    assert {rule["alert"] for rule in alert_rules()} == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_each_alert_has_a_severity_a_summary_a_description_and_a_runbook_in_the_readme(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip() and annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_BASE), url
    anchor = url.removeprefix(RUNBOOK_BASE)
    assert anchor == rule["alert"].lower()
    assert anchor in markdown_anchors(README), f"README has no heading for {rule['alert']}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alerts_use_only_documented_metrics(rule):
    assert metrics_in(rule["expr"]) <= documented_metrics()


def test_readme_runbooks_are_exactly_the_alerts():
    runbooks = README.split("### Runbooks", 1)[1].split("\n## ", 1)[0]
    headings = set(re.findall(r"^#### (\w+)$", runbooks, re.M))
    assert headings == EXPECTED_ALERTS


def test_prometheusrule_has_the_operator_s_shape_and_is_a_component():
    """Shape checks for the CRD, which kubernetes-validate has no schema for."""
    rule = prometheus_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        for entry in group["rules"]:
            assert set(entry) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(entry["expr"], str)
            if "for" in entry:
                assert re.fullmatch(r"\d+[smh]", entry["for"])
    component = yaml.safe_load((ALERTS_DIR / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    assert kustomization_files(ALERTS_DIR) == {p.name for p in ALERTS_DIR.glob("*.yaml")} - {"kustomization.yaml"}


def test_prometheusrule_sits_beside_the_deployment_it_watches(tmp_path):
    docs = overlay(tmp_path, ALERTS_DIR)
    assert [doc["kind"] for doc in docs if doc not in kustomize(DEPLOY)] == ["PrometheusRule"]
    rule, deployment = one(docs, "PrometheusRule"), one(docs, "Deployment")
    assert rule["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == deployment["metadata"]["labels"]["app.kubernetes.io/name"]
    assert not schema_failures(docs, skip_kinds={"PrometheusRule"})


# --- the dashboard -------------------------------------------------------------------


def test_dashboard_configmap_carries_the_json_for_the_grafana_sidecar():
    docs = kustomize(DASHBOARD_DIR)
    configmap = one(docs, "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["name"] == "pod-identity-dns-dashboard"  # no hash suffix: edits replace it
    assert configmap["data"] == {DASHBOARD_JSON.name: DASHBOARD_JSON.read_text()}
    assert not schema_failures(docs)
    assert kustomization_files(DASHBOARD_DIR) == {DASHBOARD_JSON.name}


def test_dashboard_panels_have_unique_ids_and_fit_the_grid_without_overlap():
    board = dashboard()
    assert board["uid"] == "pod-identity-dns"
    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:  # panels inside collapsed rows take no space until opened
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_dashboard_queries_go_to_the_chosen_data_source_and_filter_by_job_and_instance():
    board = dashboard()
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            for selector in re.findall(r"\b(?:poddns|process)_\w+\{([^}]*)\}", target["expr"]):
                assert 'job=~"$job"' in selector and 'instance=~"$instance"' in selector, (panel["title"], target["expr"])
            assert re.search(r"\b(?:poddns|process)_\w+(?!\w|\{)", target["expr"]) is None, f"unfiltered metric: {target['expr']}"


def test_dashboard_uses_only_documented_metrics_and_shows_each_of_them():
    used = set().union(*(metrics_in(query.expr) for query in dashboard_queries()))
    assert used <= documented_metrics(), used - documented_metrics()
    # Labels-only or constant metrics have nothing to plot.
    assert documented_metrics() - used == {"poddns_build_info", "poddns_dns_request_size_bytes"}


def test_dashboard_covers_what_the_issue_asks_for():
    titles = {panel["title"] for panel in all_panels(dashboard()["panels"])}
    assert {
        "Queries by type",
        "Responses by rcode",
        "Answer latency",
        "Identities",
        "PTRs",
        "Conflicts",
        "Synced and ready",
        "Watch events",
        "Relists and watch restarts",
        "API errors",
        "Programming latency",
        "File reloads",
    } <= titles


def test_dashboard_shows_the_kubernetes_events():
    rows = {panel["title"]: panel for panel in dashboard()["panels"] if panel["type"] == "row"}
    assert [panel["title"] for panel in rows["Kubernetes Events"]["panels"]] == ["Kubernetes Events about conflicts"]


def test_dashboard_shows_zone_transfers_and_notify():
    panels = dashboard()["panels"]
    start = next(i for i, panel in enumerate(panels) if panel["title"] == "Zone transfers and NOTIFY")
    assert panels[start]["type"] == "row" and panels[start]["collapsed"] is False
    titles = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        titles.append(panel["title"])
    assert titles == ["Transfers by result", "Transfer duration", "Transfer volume", "NOTIFY", "IXFR journal", "Signed queries"]
