"""deploy/examples/: the Kafka and Kerberos deployments use exactly the names pod-identity-dns serves.

The manifests are rendered with kustomize (test_deploy.py validates them in
strict mode with the rest of deploy/). Here the names they configure
(advertised listeners, controller voters, the bootstrap, the KDCs in the KDC
pods' krb5.conf, the principals of kprop and kpropd) are worked out the way
Kubernetes expands them, then asked of the real server, fed the pods the
controllers would create and the records file of
deploy/components/records-file: each name must resolve, each pod IP's one
PTR must name it back, and the realm's SRV records must name the KDCs that
run each service at the ports their containers declare. The krb5.conf files
are held to the keys the README promises and parsed by MIT Kerberos itself,
and the primary KDC's realm creation runs with the real MIT tools and a real
KDC that issues tickets for both KDCs (a client finding that KDC through the
SRV records: test_kerberos_srv.py).
"""

from __future__ import annotations

import os
import re
import subprocess

import dns.message
import dns.query
import dns.rcode
import dns.reversename
import pytest

from tests.examples import DEPLOY_CONFIG, KAFKA, KERBEROS, REALM, TEMPLATE, ZONE, controller_pods, identity, krb5_profile, pod_list
from tests.kdc import Realm
from tests.loopback import free_port
from tests.manifests import RECORDS_COMPONENT, kustomize, one, tool
from tests.serverproc import ServerProcess

# Enough addresses for the examples' pods, one /24 each so PTRs are easy to read.
POD_IPS = (f"10.244.{n}.{n + 10}" for n in range(1, 250))


def container_env(pod: dict, container: dict) -> dict[str, str]:
    """A container's environment as the kubelet builds it: downward API values, then $(VAR) expanded in order."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"])
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
            env[entry["name"]] = (
                pod["metadata"]["labels"][label.group(1)]
                if label
                else {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": pod["metadata"]["namespace"],
                }[path]
            )
    return env


@pytest.fixture(scope="module")
def kafka_docs() -> list[dict]:
    return kustomize(KAFKA)


@pytest.fixture(scope="module")
def kerberos_docs() -> list[dict]:
    return kustomize(KERBEROS)


@pytest.fixture(scope="module")
def kafka_pods(kafka_docs) -> list[dict]:
    return controller_pods(kafka_docs, POD_IPS)


@pytest.fixture(scope="module")
def kdc_pods(kerberos_docs) -> dict[str, dict]:
    return {
        pod["spec"]["hostname"]: pod
        for pod in controller_pods(kerberos_docs, POD_IPS)
        if pod["metadata"]["labels"]["app.kubernetes.io/name"] == "kdc"
    }


def kafka_env(pod: dict) -> dict[str, str]:
    (container,) = pod["spec"]["containers"]
    return container_env(pod, container)


def host_of(listener: str) -> str:
    return re.fullmatch(r"(?:\w+://|\d+@)?([^:]+):\d+", listener).group(1)


# -- Kafka ------------------------------------------------------------------------


def test_kafka_subdomain_is_a_headless_service_selecting_the_brokers(kafka_docs):
    statefulset, service = one(kafka_docs, "StatefulSet"), one(kafka_docs, "Service")
    assert service["metadata"]["name"] == statefulset["spec"]["serviceName"]
    assert service["metadata"]["namespace"] == statefulset["metadata"]["namespace"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()


def test_kafka_brokers_advertise_their_own_identity_names(kafka_pods):
    assert len(kafka_pods) == 3
    voters = {f"{index}@{identity(pod)}:9093" for index, pod in enumerate(kafka_pods)}
    for index, pod in enumerate(kafka_pods):
        env = kafka_env(pod)
        assert env["IDENTITY_ZONE"] == ZONE  # deploy/config.yaml's first zone
        assert env["KAFKA_NODE_ID"] == str(index)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{identity(pod)}:9092"
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_kafka_readme_bootstraps_from_the_set_name_and_checks_with_dig(kafka_pods):
    readme = (KAFKA / "README.md").read_text()
    pod = kafka_pods[0]
    set_name = f"{pod['spec']['subdomain']}.{pod['metadata']['namespace']}.{ZONE}"
    assert f"--bootstrap-server {set_name}:9092" in readme
    assert f"dig +short {identity(pod)}" in readme and f"dig +short {set_name}" in readme
    assert "dig +short -x" in readme


def test_the_server_default_publishes_names_before_ready_as_the_kraft_quorum_needs():
    assert DEPLOY_CONFIG.get("publish", "not-ready") == "not-ready"


# -- Kerberos ---------------------------------------------------------------------


def test_each_kdc_is_one_deployment_naming_its_own_pod(kerberos_docs, kdc_pods):
    service = next(doc for doc in kerberos_docs if doc["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "None"
    deployments = {doc["metadata"]["name"]: doc for doc in kerberos_docs if doc["kind"] == "Deployment"}
    for name in ("kdc-0", "kdc-1"):
        spec = deployments[name]["spec"]
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
        pod_spec = spec["template"]["spec"]
        assert (pod_spec["hostname"], pod_spec["subdomain"]) == (name, service["metadata"]["name"])
        assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    primary = kdc_pods["kdc-0"]
    for container in primary["spec"]["initContainers"] + primary["spec"]["containers"]:
        env = container_env(primary, container)
        if "KDC_NAME" in env:
            assert env["KDC_NAME"] == identity(kdc_pods["kdc-0"])
            assert env["REPLICA_NAME"] == identity(kdc_pods["kdc-1"])


def test_client_krb5_conf_has_the_keys_the_readme_promises(kdc_pods):
    profile = krb5_profile(KERBEROS / "krb5.conf")
    libdefaults = profile["libdefaults"]
    assert libdefaults["default_realm"] == [REALM]
    assert libdefaults["rdns"] == ["true"]
    assert libdefaults["dns_canonicalize_hostname"] == ["true"]
    # The KDCs come from the records file's SRV records: a kdc line in [realms] would be used instead.
    assert libdefaults["dns_lookup_kdc"] == ["true"]
    assert REALM not in profile.get("realms", {})
    assert profile["domain_realm"][f".{ZONE}"] == [REALM]
    readme = (KERBEROS / "README.md").read_text()
    for promise in ("`dns_canonicalize_hostname = true`", "`rdns = true`", "`dns_lookup_kdc = true`", "deploy/components/records-file"):
        assert promise in readme
    assert f"kvno host/{identity(kdc_pods['kdc-1'])}" in readme and f"kvno -S host {identity(kdc_pods['kdc-1'])}" in readme
    assert "dig +short -x" in readme and f"dig +short _kerberos._udp.{ZONE} SRV" in readme


def test_the_readme_s_records_are_the_component_s():
    """The SRV and TXT lines the README shows are in deploy/components/records-file's file, as written."""
    readme = (KERBEROS / "README.md").read_text()
    (snippet,) = re.findall(r"```dns\n(.*?)```", readme, re.DOTALL)
    shipped = {" ".join(line.split()) for line in (RECORDS_COMPONENT / "records.zone").read_text().splitlines()}
    lines = [" ".join(line.split()) for line in snippet.splitlines() if line.strip() and not line.startswith(";")]
    assert lines and all(line in shipped for line in lines), lines


def test_kdc_pods_name_themselves_by_their_identity(kdc_pods, kerberos_docs):
    host = krb5_profile(KERBEROS / "krb5-kdc-host.conf")
    client = krb5_profile(KERBEROS / "krb5.conf")
    assert host["libdefaults"]["dns_canonicalize_hostname"] == ["false"]
    assert host["libdefaults"]["dns_lookup_kdc"] == ["false"]  # a KDC pod's tools name the KDCs themselves
    realm = host["realms"][REALM]
    assert realm["kdc"] == [identity(kdc_pods["kdc-0"]), identity(kdc_pods["kdc-1"])]
    assert realm["admin_server"] == realm["primary_kdc"] == [identity(kdc_pods["kdc-0"])]
    # The short host name plus this suffix is the identity name of either KDC.
    suffix = host["libdefaults"]["qualify_shortname"][0]
    assert {f"{name}.{suffix}" for name in kdc_pods} == {identity(pod) for pod in kdc_pods.values()}
    assert host["domain_realm"] == client["domain_realm"]
    acl = [line for line in (KERBEROS / "kpropd.acl").read_text().splitlines() if line and not line.startswith("#")]
    assert acl == [f"host/{identity(kdc_pods['kdc-0'])}@{REALM}"]
    configmap = next(doc for doc in kerberos_docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("kdc-config"))
    assert configmap["data"]["krb5.conf"] == (KERBEROS / "krb5-kdc-host.conf").read_text()


@pytest.mark.parametrize("name", ["krb5.conf", "krb5-kdc-host.conf", "kdc.conf"])
def test_mit_kerberos_parses_the_profile(name, tmp_path):
    result = subprocess.run(
        [tool("klist")],
        env={**os.environ, "KRB5_CONFIG": str(KERBEROS / name), "KRB5CCNAME": f"FILE:{tmp_path / 'none'}"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    # No credentials here: the error comes after the configuration was read.
    assert "No credentials cache found" in result.stderr, result.stderr


def test_kdc_image_passes_hadolint_and_the_scripts_parse():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(KERBEROS / "image" / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for script in sorted((KERBEROS / "scripts").glob("*.sh")):
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_every_example_pod_meets_the_restricted_pod_security_standard(kafka_docs, kerberos_docs):
    for doc in kafka_docs + kerberos_docs:
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        spec = doc["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, container["name"]
            assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]


# -- the names, asked of the real server -----------------------------------------------


def names_the_examples_use(kafka_pods: list[dict], kdc_pods: dict[str, dict]) -> set[str]:
    names = set()
    for pod in kafka_pods:
        env = kafka_env(pod)
        names.add(host_of(env["KAFKA_ADVERTISED_LISTENERS"]))
        names.update(host_of(voter) for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
    realm = krb5_profile(KERBEROS / "krb5-kdc-host.conf")["realms"][REALM]
    names.update(realm["kdc"] + realm["admin_server"])
    names.update(
        line.split("/", 1)[1].split("@")[0] for line in (KERBEROS / "kpropd.acl").read_text().splitlines() if line.startswith("host/")
    )
    return names


def ask(port: int, name: str, qtype: str) -> list[str]:
    reply = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=2)
    assert dns.rcode.to_text(reply.rcode()) == "NOERROR", f"{name} {qtype}: {dns.rcode.to_text(reply.rcode())}"
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def declared_port(pod: dict, name: str) -> int:
    """The containerPort a pod declares under `name`, in any of its containers."""
    (port,) = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", []) if p.get("name") == name]
    return port


def kerberos_services(kdc_pods: dict[str, dict]) -> dict[str, list[tuple[int, str]]]:
    """The SRV records a client of the realm asks (RFC 4120 §7.2.3, MIT's primary, kadmin and kpasswd), each as the
    (port, target) pairs the KDC Deployments make true: the ports their containers declare, the KDCs that run them."""
    kdc_0 = kdc_pods["kdc-0"]
    both = list(kdc_pods.values())
    services = {
        "_kerberos._udp": (both, "kerberos-udp"),
        "_kerberos._tcp": (both, "kerberos-tcp"),
        "_kerberos-master._udp": ([kdc_0], "kerberos-udp"),
        "_kerberos-master._tcp": ([kdc_0], "kerberos-tcp"),
        "_kerberos-adm._tcp": ([kdc_0], "kadmin"),
        "_kpasswd._udp": ([kdc_0], "kpasswd-udp"),
        "_kpasswd._tcp": ([kdc_0], "kpasswd-tcp"),
    }
    return {f"{name}.{REALM}": sorted((declared_port(pod, port), identity(pod)) for pod in pods) for name, (pods, port) in services.items()}


def test_every_name_the_examples_use_resolves_and_its_ptr_names_it_back(kafka_pods, kdc_pods, tmp_path):
    """The examples' pods and the records file of deploy/components/records-file, served by the real server."""
    pods = kafka_pods + list(kdc_pods.values())
    pods_file = tmp_path / "pods.json"
    pods_file.write_text(pod_list(pods))
    ip_of = {identity(pod): pod["status"]["podIP"] for pod in pods}
    names = names_the_examples_use(kafka_pods, kdc_pods)
    assert names == set(ip_of)  # every name in a config is some pod's identity, and every pod is named
    cidrs = [arg for cidr in DEPLOY_CONFIG["reverse_cidrs"] for arg in ("--reverse-cidr", cidr)]
    records = ["--records-file", str(RECORDS_COMPONENT / "records.zone")]
    with ServerProcess("--zone", ZONE, *cidrs, "--name-template", TEMPLATE, "--pods-file", str(pods_file), *records) as server:
        for name in sorted(names):
            assert ask(server.port, name, "A") == [ip_of[name]], name
            assert ask(server.port, dns.reversename.from_address(ip_of[name]).to_text(), "PTR") == [f"{name}."]
        kafka_set = f"{kafka_pods[0]['spec']['subdomain']}.{kafka_pods[0]['metadata']['namespace']}.{ZONE}"
        brokers = sorted(pod["status"]["podIP"] for pod in kafka_pods)
        assert ask(server.port, kafka_set, "A") == brokers
        # The records file: the realm's KDCs by their identity names and the ports they declare, the Kafka bootstrap.
        for service, expected in kerberos_services(kdc_pods).items():
            assert ask(server.port, service, "SRV") == sorted(f"0 0 {port} {target}." for port, target in expected), service
        assert ask(server.port, f"_kerberos.{REALM}", "TXT") == [f'"{REALM}"']
        assert ask(server.port, f"kafka-bootstrap.{ZONE}", "A") == sorted([*brokers, f"{kafka_set}."])
        assert not [line for line in server.lines if "WARNING" in line], server.lines


# -- the primary KDC, run with the real MIT tools ----------------------------------------


def test_the_primary_s_first_start_makes_a_realm_that_issues_tickets_for_both_kdcs(kdc_pods, tmp_path):
    """scripts/create-realm.sh with kdb5_util and kadmin.local, then krb5kdc, kinit and kvno on loopback."""
    kdc_0, kdc_1 = identity(kdc_pods["kdc-0"]), identity(kdc_pods["kdc-1"])
    realm = Realm(tmp_path, ["127.0.0.1"], free_port(), kdc_0, kdc_1)
    created = realm.create()
    assert created.returncode == 0, created.stdout + created.stderr
    keytab = realm.run(tool("klist"), "-k", str(realm.data / "kprop.keytab"))
    assert set(re.findall(r"\d+ (\S+)", keytab.stdout)) == {f"host/{kdc_0}@{REALM}"}
    again = realm.create()
    assert again.returncode == 0 and "exists" in again.stdout
    realm.add_principal("alice", "alice-password")

    # The KDC pods' krb5.conf, its KDC at loopback instead of its (here unresolvable) name; the clients' own,
    # which finds the KDC through SRV records, runs in test_kerberos_srv.py.
    with realm.kdc():
        kinit = realm.run(tool("kinit"), "alice", stdin="alice-password\n")
        assert kinit.returncode == 0, kinit.stderr + realm.log()
        for principal in (f"host/{kdc_0}", f"host/{kdc_1}"):
            kvno = realm.run(tool("kvno"), principal)
            assert kvno.returncode == 0 and f"{principal}@{REALM}: kvno = " in kvno.stdout, kvno.stderr
