"""deploy/examples as the tests read them: the pods their controllers would create, the names
pod-identity-dns gives those pods (deploy/config.yaml's zone and template), and MIT profile files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.manifests import DEPLOY, EXAMPLES

KAFKA = EXAMPLES / "kafka"
KERBEROS = EXAMPLES / "kerberos"
DEPLOY_CONFIG = yaml.safe_load((DEPLOY / "config.yaml").read_text())
ZONE = DEPLOY_CONFIG["zones"][0]
TEMPLATE = DEPLOY_CONFIG["name_template"]
REALM = ZONE.upper()


def identity(pod: dict) -> str:
    """The name pod-identity-dns gives this pod, from deploy/config.yaml's zone and template."""
    spec, meta = pod["spec"], pod["metadata"]
    fields = {"hostname": spec["hostname"], "subdomain": spec["subdomain"], "namespace": meta["namespace"], "pod": meta["name"]}
    return f"{TEMPLATE.format(**fields)}.{ZONE}"


def controller_pods(docs: list[dict], ips: Iterator[str]) -> list[dict]:
    """The pods the StatefulSet and Deployment controllers would create from these manifests, each with the next of `ips`."""
    pods = []
    for doc in docs:
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        for index in range(doc["spec"].get("replicas", 1)):
            name = (
                f"{doc['metadata']['name']}-{index}" if doc["kind"] == "StatefulSet" else f"{doc['metadata']['name']}-6d4cf56db6-x{index}"
            )
            template = doc["spec"]["template"]
            labels = dict(template["metadata"]["labels"])
            spec = dict(template["spec"])
            if doc["kind"] == "StatefulSet":  # what the StatefulSet controller sets on each member
                labels["apps.kubernetes.io/pod-index"] = str(index)
                spec["hostname"], spec["subdomain"] = name, doc["spec"]["serviceName"]
            ip = next(ips)
            meta = {"name": name, "namespace": doc["metadata"]["namespace"], "uid": f"uid-{name}", "labels": labels}
            meta["creationTimestamp"] = "2026-11-01T10:00:00Z"
            status = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [{"type": "Ready", "status": "True"}]}
            pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
    return pods


def pod_list(pods: list[dict]) -> str:
    """A pod file (`kubectl get pods -o yaml`'s v1 List) holding `pods`."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": pods})


def krb5_profile(path: Path) -> dict[str, dict]:
    """An MIT profile file (krb5.conf, kdc.conf): {section: {relation: [values] or {subsection}}}."""
    sections: dict[str, dict] = {}
    stack: list[dict] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if header := re.fullmatch(r"\[(\w+)\]", line):
            stack = [sections.setdefault(header.group(1), {})]
        elif line == "}":
            stack.pop()
        elif opening := re.fullmatch(r"(\S+)\s*=\s*\{", line):
            stack.append(stack[-1].setdefault(opening.group(1), {}))
        else:
            key, value = (part.strip() for part in line.split("=", 1))
            stack[-1].setdefault(key, []).append(value)
    return sections
