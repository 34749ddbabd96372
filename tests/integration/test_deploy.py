"""Deployment artefacts: the kustomize base and components, the CoreDNS snippets and the Dockerfile.

Manifests are rendered with `kubectl kustomize` and validated offline in strict
mode against the newest Kubernetes schema that kubernetes-validate bundles
(every kustomization under deploy/: the base with its components, the
dashboard, the examples); the Dockerfile must pass hadolint; and the values
that tie them together (ports, probes, config keys, the Service IP CoreDNS
forwards to) must agree.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.manifests import (
    COMPONENTS,
    DEPLOY,
    HOSTS_COMPONENT,
    RECORDS_COMPONENT,
    REPO,
    kustomization_files,
    kustomize,
    load_yaml_docs,
    one,
    overlay,
    schema_failures,
    tool,
)

COMPONENT = COMPONENTS / "servicemonitor"
COREDNS = DEPLOY / "coredns"
DOCKERFILE = REPO / "Dockerfile"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
KUSTOMIZATIONS = sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))

SERVICE_IP = "10.96.0.53"
DNS_CONTAINER_PORT = 1053
METRICS_PORT = 9153
DEFAULT_LAMEDUCK = 5

# Config keys the server accepts: long flag names with "-" -> "_", plural for lists.
CONFIG_KEYS = {
    "listen",
    "zones",
    "reverse_cidrs",
    "name_template",
    "ns_name",
    "ns_addresses",
    "ttl",
    "negative_ttl",
    "pods_file",
    "hosts_file",
    "kubeconfig",
    "context",
    "namespaces",
    "label_selector",
    "publish",
    "fallback_ptr",
    "cluster_domain",
    "metrics_listen",
    "lameduck",
    "log_format",
    "log_queries",
    "workers",
}

# Custom resources have no schema in kubernetes-validate; their shape is checked below
# (the PrometheusRule's in test_monitoring.py).
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

BASE_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ResourceQuota",
    "ConfigMap",
    "Deployment",
    "PodDisruptionBudget",
    "Service",
    "NetworkPolicy",
}


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize(DEPLOY)


@pytest.fixture(scope="module")
def with_component(tmp_path_factory) -> list[dict]:
    return overlay(tmp_path_factory.mktemp("overlay"), COMPONENT)


@pytest.fixture(scope="module")
def config(base) -> dict:
    configmap = one(base, "ConfigMap")
    return yaml.safe_load(configmap["data"]["config.yaml"])


@pytest.fixture(scope="module")
def pod_spec(base) -> dict:
    return one(base, "Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod_spec) -> dict:
    (container,) = pod_spec["containers"]
    return container


def container_port(container: dict, port: int | str, protocol: str = "TCP") -> int:
    """Resolve a numeric or named port against the container's declared ports."""
    for declared in container["ports"]:
        if declared.get("protocol", "TCP") != protocol:
            continue
        if port in (declared["name"], declared["containerPort"]):
            return declared["containerPort"]
    raise AssertionError(f"container declares no {protocol} port {port!r}")


# --- schema -----------------------------------------------------------------


def test_base_renders_every_expected_kind(base):
    assert {doc["kind"] for doc in base} == BASE_KINDS


def test_component_adds_only_the_servicemonitor(base, with_component):
    assert [doc["kind"] for doc in with_component if doc not in base] == ["ServiceMonitor"]


def test_every_component_composes_with_the_base(tmp_path):
    components = sorted(path for path in COMPONENTS.iterdir() if path.is_dir())
    assert {path.name for path in components} == {"servicemonitor", "hosts-file", "records-file", "zone-transfers"}
    everything = overlay(tmp_path, *components)
    assert one(everything, "ServiceMonitor") and len([doc for doc in everything if doc["kind"] == "ConfigMap"]) == 3
    (container,) = one(everything, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--hosts-file" in container["args"] and "--records-file" in container["args"]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(DEPLOY)) if path != DEPLOY else "base")
def test_every_kustomization_validates_against_the_newest_bundled_schema_in_strict_mode(directory, tmp_path):
    kind = yaml.safe_load((directory / "kustomization.yaml").read_text())["kind"]
    docs = overlay(tmp_path, directory) if kind == "Component" else kustomize(directory)
    failures = schema_failures(docs, skip_kinds=CRD_KINDS)
    assert not failures, "\n".join(failures)


def test_coredns_configmap_validates_in_strict_mode():
    coredns_docs = [doc for path in sorted(COREDNS.glob("*.yaml")) for doc in load_yaml_docs(path)]
    assert coredns_docs, "deploy/coredns has no ConfigMap example"
    failures = schema_failures(coredns_docs)
    assert not failures, "\n".join(failures)


def test_servicemonitor_selects_the_service_metrics_port(with_component):
    monitor = one(with_component, "ServiceMonitor")
    service = one(with_component, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    service_port_names = {port["name"] for port in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["port"] in service_port_names
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(DEPLOY)) if path != DEPLOY else "base")
def test_kustomization_lists_every_file_in_its_directory(directory):
    present = {path.name for path in directory.iterdir() if path.is_file()} - {"kustomization.yaml", "README.md"}
    listed = kustomization_files(directory)
    assert {path for path in listed if "/" not in path} == present
    assert all((directory / path).is_file() for path in listed)


def parses_as_hosts(text: str) -> bool:
    from server.sources.hostsfile import parse_hosts_text

    return bool(parse_hosts_text("hosts", text))


def parses_as_records(text: str) -> bool:
    from server.sources.recordsfile import parse_records_text

    return bool(parse_records_text("records.zone", text, "pods.example.internal", 30))


@pytest.mark.parametrize(
    ("component", "flag", "configmap", "parses"),
    [
        (HOSTS_COMPONENT, "--hosts-file", "pod-identity-dns-hosts", parses_as_hosts),
        (RECORDS_COMPONENT, "--records-file", "pod-identity-dns-records", parses_as_records),
    ],
    ids=["hosts-file", "records-file"],
)
def test_file_component_mounts_its_configmap_where_its_flag_points(base, tmp_path, component, flag, configmap, parses):
    docs = overlay(tmp_path, component)
    assert [doc["kind"] for doc in docs if doc not in base] == ["ConfigMap", "Deployment"]
    data = next(doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == configmap)
    assert data["metadata"]["namespace"] == one(base, "Deployment")["metadata"]["namespace"]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    path = Path(container["args"][container["args"].index(flag) + 1])
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert "subPath" not in mount  # a subPath mount never sees the ConfigMap change
    assert volumes[mount["name"]]["configMap"]["name"] == configmap
    assert list(data["data"]) == [path.name]
    assert parses(data["data"][path.name])


# --- the values that tie the pieces together -----------------------------------


def test_config_holds_the_zone_cidr_and_listeners(config):
    assert set(config) <= CONFIG_KEYS, f"unknown keys: {set(config) - CONFIG_KEYS}"
    assert config["zones"] == ["pods.example.internal"]
    assert config["reverse_cidrs"] == ["10.244.0.0/16", "fd00:10:244::/48"]
    assert config["listen"] == [f"0.0.0.0:{DNS_CONTAINER_PORT}", f"[::]:{DNS_CONTAINER_PORT}"]
    assert config["metrics_listen"] == f"0.0.0.0:{METRICS_PORT}"


def test_deploy_and_demo_agree_on_the_pod_cidrs(config):
    """The README's tour (the demo) and the cluster config describe the same dual-stack pod network."""
    demo = yaml.safe_load(DEMO_CONFIG.read_text())
    assert [ipaddress.ip_network(cidr) for cidr in config["reverse_cidrs"]] == [
        ipaddress.ip_network(cidr) for cidr in demo["reverse_cidrs"]
    ]
    assert {ipaddress.ip_network(cidr).version for cidr in config["reverse_cidrs"]} == {4, 6}


def test_server_loads_the_shipped_config():
    server_config = pytest.importorskip("server.config")
    loaded = server_config.build_config(argparse.Namespace(config=str(DEPLOY / "config.yaml")))
    assert loaded.zones == ("pods.example.internal",)
    assert loaded.metrics_listen == ("0.0.0.0", METRICS_PORT)


def test_deployment_mounts_the_generated_config_where_the_args_point(base, pod_spec, container):
    configmap_name = one(base, "ConfigMap")["metadata"]["name"]
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if volumes[m["name"]].get("configMap")]
    assert volumes[mount["name"]]["configMap"]["name"] == configmap_name
    config_path = container["args"][container["args"].index("--config") + 1]
    assert config_path == f"{mount['mountPath']}/config.yaml"


@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_service_maps_port_53_to_the_dns_listener(base, container, protocol):
    service = one(base, "Service")
    (port,) = [p for p in service["spec"]["ports"] if p["protocol"] == protocol and p["port"] == 53]
    assert container_port(container, port["targetPort"], protocol) == DNS_CONTAINER_PORT


def test_service_has_the_fixed_ip_coredns_forwards_to_and_the_metrics_port(base, container):
    service = one(base, "Service")
    assert service["spec"]["clusterIP"] == SERVICE_IP
    pod_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (metrics,) = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
    assert metrics["port"] == METRICS_PORT
    assert container_port(container, metrics["targetPort"]) == METRICS_PORT


@pytest.mark.parametrize("probe, path", [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")])
def test_probes_ask_the_metrics_listener(container, config, probe, path):
    http_get = container[probe]["httpGet"]
    assert http_get["path"] == path
    metrics_port = int(config["metrics_listen"].rsplit(":", 1)[1])
    assert container_port(container, http_get["port"]) == metrics_port


def test_grace_period_outlasts_the_lameduck(pod_spec, config):
    assert pod_spec["terminationGracePeriodSeconds"] > config.get("lameduck", DEFAULT_LAMEDUCK)


def test_pod_runs_unprivileged(pod_spec, container):
    pod_security = pod_spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == pod_security["runAsGroup"] == 65532
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_deployment_spreads_and_survives_disruption(base, pod_spec):
    deployment = one(base, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    assert pod_spec["priorityClassName"] == "system-cluster-critical"
    (term,) = pod_spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert one(base, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_rbac_grants_reading_pods_and_writing_events_about_them(base):
    pods, events = one(base, "ClusterRole")["rules"]
    assert pods == {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    assert events == {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "get", "patch"]}
    binding = one(base, "ClusterRoleBinding")
    account = one(base, "ServiceAccount")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]


def test_network_policy_opens_dns_to_the_cluster_and_metrics_to_monitoring(base):
    ingress = one(base, "NetworkPolicy")["spec"]["ingress"]
    by_ports = {tuple(sorted((p["protocol"], p["port"]) for p in rule["ports"])): rule["from"] for rule in ingress}
    assert by_ports[(("TCP", DNS_CONTAINER_PORT), ("UDP", DNS_CONTAINER_PORT))] == [{"namespaceSelector": {}}]
    assert by_ports[(("TCP", METRICS_PORT),)] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


# --- CoreDNS ---------------------------------------------------------------------


def corefile_blocks(text: str) -> dict[str, str]:
    """Map each top-level server block's zone (without :53) to its body."""
    text = re.sub(r"#.*", "", text)
    blocks, depth, zone, body = {}, 0, None, []
    for line in text.splitlines():
        stripped = line.strip()
        if depth == 0 and stripped.endswith("{"):
            zone = stripped[:-1].strip().removesuffix(":53")
        elif depth > 0:
            body.append(stripped)
        depth += stripped.count("{") - stripped.count("}")
        if depth == 0 and zone is not None:
            blocks[zone] = "\n".join(body)
            zone, body = None, []
    assert depth == 0, "unbalanced braces"
    return blocks


def reverse_zone(cidr: str) -> str:
    network = ipaddress.ip_network(cidr)
    unit = 8 if network.version == 4 else 4
    assert network.prefixlen % unit == 0, "example CIDRs sit on a label boundary"
    labels = network.network_address.reverse_pointer.split(".")
    suffix_labels = 2  # in-addr.arpa / ip6.arpa
    kept = network.prefixlen // unit
    host_labels = len(labels) - suffix_labels - kept
    return ".".join(labels[host_labels:])


def coredns_corefiles() -> dict[str, str]:
    corefiles = {path.name: path.read_text() for path in sorted(COREDNS.glob("*.Corefile"))}
    for path in sorted(COREDNS.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            corefiles[f"{path.name}:{doc['metadata']['name']}"] = doc["data"]["Corefile"]
    return corefiles


def test_coredns_examples_forward_the_zone_and_reverse_zones_to_the_service(config):
    wanted = set(config["zones"]) | {reverse_zone(cidr) for cidr in config["reverse_cidrs"]}
    corefiles = coredns_corefiles()
    assert {"stub-zones.Corefile", "coredns-configmap.yaml:coredns", "nodelocaldns-stub-zone.Corefile"} <= set(corefiles)
    for name, text in corefiles.items():
        blocks = corefile_blocks(text)
        if name.startswith("nodelocaldns"):
            assert set(blocks) == set(config["zones"]), name  # reverse zones already reach CoreDNS
            assert "bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__" in blocks[config["zones"][0]]
        else:
            assert wanted <= set(blocks), f"{name}: missing {wanted - set(blocks)}"
        for zone, body in blocks.items():
            if zone == ".":
                continue
            assert re.search(rf"^forward \. {re.escape(SERVICE_IP)}\b", body, re.M), f"{name}: {zone}"


def test_coredns_blocks_export_their_query_metrics():
    """Without the prometheus plugin in a server block, CoreDNS does not count that block's queries."""
    for name, text in coredns_corefiles().items():
        # node-local-dns serves its own metrics on 9253; CoreDNS on 9153.
        port = 9253 if name.startswith("nodelocaldns") else 9153
        for zone, body in corefile_blocks(text).items():
            assert re.search(rf"^prometheus :{port}$", body, re.M), f"{name}: {zone} has no prometheus :{port}"


def test_reverse_zone_names():
    assert reverse_zone("10.244.0.0/16") == "244.10.in-addr.arpa"
    assert reverse_zone("fd00:10:244::/56") == "0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa"
    assert reverse_zone("fd00:10:244::/48") == "4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa"


# --- image -----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_agrees_with_the_deployment(container, pod_spec):
    instructions = dockerfile_instructions()
    last_stage = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM") :]
    values = {keyword: rest for keyword, rest in last_stage}
    assert values["USER"] == f"{pod_spec['securityContext']['runAsUser']}:{pod_spec['securityContext']['runAsGroup']}"
    exposed = set(values["EXPOSE"].split())
    declared = {f"{p['containerPort']}/{p['protocol'].lower()}" for p in container["ports"]}
    assert {port if "/" in port else f"{port}/tcp" for port in exposed} == declared
    assert yaml.safe_load(values["ENTRYPOINT"]) == ["pod-identity-dns"]
    assert yaml.safe_load(values["CMD"]) == container["args"]


def test_constraints_pin_every_runtime_dependency():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            pins[canonicalize_name(name)] = version
    for dependency in pyproject["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{requirement.name}=={pins[name]} violates {requirement}"


def test_readme_first_command_installs_what_the_image_ships():
    """The README's demo command installs with the pins the image ships."""
    section = (REPO / "README.md").read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    first = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)
    install = next(part for part in first.split("&&") if "pip install" in part).split()
    assert install[install.index("-c") + 1] == "constraints.txt"
    assert install[-2:] == ["-e", "."]


def test_the_test_setup_installs_the_runtime_pins_too():
    """The README's second command (scripts/setup-tests.sh, which CI runs) tests the versions the image ships."""
    script = (REPO / "scripts" / "setup-tests.sh").read_text()
    (install,) = [line.split() for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert install[install.index("-c") + 1] == "constraints.txt" and install[-2:] == ["-e", "'.[test]'"]
