"""Reading what deploy/ ships: kustomize builds, strict schema validation, the dashboard and the alert rules.

Shared by the deploy, monitoring and example tests; nothing here starts a server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
MONITORING = DEPLOY / "monitoring"
DASHBOARD_DIR = MONITORING / "dashboard"
DASHBOARD_JSON = DASHBOARD_DIR / "pod-identity-dns.json"
ALERTS_DIR = MONITORING / "alerts"
PROMETHEUS_RULE = ALERTS_DIR / "prometheusrule.yaml"
ALERT_TESTS = MONITORING / "alerts.test.yaml"
RULES_FILE_NAME = "pod-identity-dns.rules.yaml"  # what alerts.test.yaml's rule_files names
EXAMPLES = DEPLOY / "examples"
SBIN = ("/usr/sbin", "/sbin")
COMPONENTS = DEPLOY / "components"
HOSTS_COMPONENT = COMPONENTS / "hosts-file"
RECORDS_COMPONENT = COMPONENTS / "records-file"


def tool(name: str) -> str:
    """Path of a command-line tool, preferring the one installed in this venv.

    A missing tool fails the test: a skipped lint is a lint that never runs.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    # Debian puts daemons (prometheus aside) in /usr/sbin, outside a normal user's PATH.
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN]))
    if found is None:
        pytest.fail(f"{name} not found: install the test extra or run scripts/setup-tests.sh")
    return found


def kustomize(directory: Path) -> list[dict]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlay(directory: Path, *components: Path) -> list[dict]:
    """The base with these components, built as a user's overlay in `directory` would build it."""
    directory.mkdir(parents=True, exist_ok=True)
    # kustomize refuses absolute paths, so the overlay names the base relatively.
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(DEPLOY, directory)],
                "components": [os.path.relpath(component, directory) for component in components],
            }
        )
    )
    return kustomize(directory)


def load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(docs: list[dict], kind: str) -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def schema_failures(docs: Iterable[dict], skip_kinds: Iterable[str] = ()) -> list[str]:
    """Strict validation against the newest Kubernetes schema kubernetes-validate bundles; one line per failure."""
    version = kubernetes_validate.latest_version()
    skipped = set(skip_kinds)
    failures = []
    for doc in docs:
        if doc["kind"] in skipped:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {getattr(error, 'message', error)}")
    return failures


def kustomization_files(directory: Path) -> set[str]:
    """Every file a kustomization.yaml names: resources, patches and generator inputs."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", []))
    listed.update(patch["path"] for patch in kustomization.get("patches", []) if "path" in patch)
    for generator in kustomization.get("configMapGenerator", []) + kustomization.get("secretGenerator", []):
        listed.update(entry.split("=", 1)[-1] for entry in generator.get("files", []))
    return listed


# --- the Grafana dashboard ----------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD_JSON.read_text())


def all_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


@dataclass(frozen=True)
class PanelQuery:
    panel: str  # the panel's title
    ref: str  # the target's refId
    expr: str

    @property
    def key(self) -> str:
        return f"{self.panel} {self.ref}"


def dashboard_queries(board: dict | None = None) -> list[PanelQuery]:
    board = board or dashboard()
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"])
        for panel in all_panels(board["panels"])
        for target in panel.get("targets", [])
    ]


def grafana_expr(expr: str, *, job: str = ".+", instance: str = ".+", rate_interval: str = "1m") -> str:
    """The PromQL Grafana would send: the dashboard's variables substituted (as regexes, like its All value)."""
    values = {"__rate_interval": rate_interval, "__interval": rate_interval, "job": job, "instance": instance}

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"unknown dashboard variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, expr)


# --- the alert rules ------------------------------------------------------------------


def prometheus_rule() -> dict:
    (rule,) = load_yaml_docs(PROMETHEUS_RULE)
    return rule


def alert_rules() -> list[dict]:
    return [rule for group in prometheus_rule()["spec"]["groups"] for rule in group["rules"] if "alert" in rule]


def write_rules_file(directory: Path) -> Path:
    """The PrometheusRule's spec as a plain Prometheus rules file, named as alerts.test.yaml expects."""
    path = directory / RULES_FILE_NAME
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    anchors, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors
