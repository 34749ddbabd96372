"""deploy/ for zone transfers: the component that mounts the TSIG key from a Secret, the NetworkPolicy rule for
the secondaries, and the shipped Knot and BIND secondary configurations, which real knotd and named load
(pointed at a real server instead of the Service IP) to transfer every zone."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from server.config import build_config
from server.transfer.keys import KeyFileError, read_key_file
from tests.conftest import ZONE
from tests.helpers import sts_pod
from tests.manifests import COMPONENTS, DEPLOY, one, overlay
from tests.secondaries import Secondary, binary, converged, generate_keys, write_pod_list
from tests.serverproc import ServerProcess

COMPONENT = COMPONENTS / "zone-transfers"
SECONDARIES = DEPLOY / "secondaries"
SERVICE_IP = "10.96.0.53"
DNS_CONTAINER_PORT = 1053
KEY_NAME = "pod-identity-dns-xfr"
SHIPPED_ZONES = [ZONE, "244.10.in-addr.arpa", "4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    return overlay(tmp_path_factory.mktemp("transfers-overlay"), COMPONENT)


def test_the_component_mounts_the_secret_key_where_the_flag_points(rendered):
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    (server,) = spec["containers"]
    (init,) = spec["initContainers"]
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    args = server["args"]
    key_path = Path(args[args.index("--tsig-key-file") + 1])
    assert args[args.index("--transfer-key") + 1] == KEY_NAME

    # The init container copies the Secret's file, 0400, into the memory volume the server reads it from.
    assert init["image"] == server["image"]
    assert init["command"][:3] == ["install", "-m", "0400"]
    source, target = Path(init["command"][3]), Path(init["command"][4])
    assert target == key_path
    mounts = {mount["mountPath"]: mount for mount in init["volumeMounts"]}
    secret = volumes[mounts[str(source.parent)]["name"]]["secret"]
    assert secret == {"secretName": "pod-identity-dns-tsig", "defaultMode": 0o400}
    assert mounts[str(source.parent)]["readOnly"]
    copy = volumes[mounts[str(target.parent)]["name"]]
    assert copy["emptyDir"]["medium"] == "Memory"  # the key never lands on the node's disk
    (server_mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == str(key_path.parent)]
    assert server_mount["name"] == mounts[str(target.parent)]["name"] and server_mount["readOnly"]
    # fsGroup is what lets the (non-root) init container read a Secret's root-owned file.
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    assert init["securityContext"] == server["securityContext"]

    shipped = argparse.Namespace(config=str(DEPLOY / "config.yaml"), tsig_key_files=[str(key_path)], transfer_keys=[KEY_NAME])
    assert build_config(shipped).transfers_configured


def test_the_network_policy_admits_dns_from_the_secondaries(rendered):
    ingress = one(rendered, "NetworkPolicy")["spec"]["ingress"]
    (rule,) = [rule for rule in ingress if any("ipBlock" in peer for peer in rule["from"])]
    assert sorted((p["protocol"], p["port"]) for p in rule["ports"]) == [("TCP", DNS_CONTAINER_PORT), ("UDP", DNS_CONTAINER_PORT)]
    service = one(rendered, "Service")
    assert sorted((p["protocol"], p["port"]) for p in service["spec"]["ports"] if p["port"] == 53) == [("TCP", 53), ("UDP", 53)]


@pytest.fixture
def shared_tmp():
    """A directory other users can enter (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="kubelet-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_the_init_containers_copy_of_a_kubelet_mounted_secret_is_a_key_file_the_server_accepts(shared_tmp):
    """The kubelet writes a Secret's file owned by root; with fsGroup it is 0440 root:fsGroup. The server
    refuses that, and accepts what the init container's `install -m 0400`, run as the server's user, makes."""
    assert os.geteuid() == 0, "this test plays the kubelet: it needs root to give files to another user"
    user = 65532
    tmp_path = shared_tmp
    mounted = tmp_path / "secret" / "tsig.key"
    mounted.parent.mkdir()
    shutil.copy(generate_keys(tmp_path, KEY_NAME), mounted)
    os.chown(mounted, 0, user)
    mounted.chmod(0o440)  # what defaultMode 0400 becomes under fsGroup
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    os.chown(copy_dir, 0, user)
    copy_dir.chmod(0o2777)  # an emptyDir under fsGroup
    with pytest.raises(KeyFileError, match="readable by group or others"):
        read_key_file(str(mounted))
    command = ["install", "-m", "0400", str(mounted), str(copy_dir / "tsig.key")]
    subprocess.run(command, check=True, user=user, group=user, extra_groups=[user])
    copied = (copy_dir / "tsig.key").stat()
    assert (copied.st_uid, stat.S_IMODE(copied.st_mode)) == (user, 0o400)
    assert [key.name for key in read_key_file(str(copy_dir / "tsig.key"))] == [KEY_NAME + "."]


def shipped_zones(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text)


def test_the_secondary_configurations_name_the_served_zones_and_the_service_ip():
    service = yaml.safe_load((DEPLOY / "service.yaml").read_text())
    assert service["spec"]["clusterIP"] == SERVICE_IP
    knot, named = (SECONDARIES / "knot.conf").read_text(), (SECONDARIES / "named.conf").read_text()
    assert shipped_zones(knot, r"- domain: (\S+)") == SHIPPED_ZONES
    assert shipped_zones(named, r'zone "([^"]+)"') == SHIPPED_ZONES
    assert f"address: {SERVICE_IP}@53" in knot and f"primaries {{ {SERVICE_IP} key" in named
    check = subprocess.run([binary("knotc", "knot"), "-c", str(SECONDARIES / "knot.conf"), "conf-check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


class ShippedKnot(Secondary):
    """knotd with deploy/secondaries/knot.conf, pointed at the test's server and given the real secret."""

    name = "knotd (shipped config)"
    secret = ""

    def argv(self) -> list[str]:
        text = (SECONDARIES / "knot.conf").read_text()
        text = text.replace(f"{SERVICE_IP}@53", f"127.0.0.1@{self.primary_port}")
        text = re.sub(r"secret: \S+", f"secret: {self.secret}", text)
        text = text.replace("[10.244.0.0/16, fd00:10:244::/48]", "[127.0.0.1]")
        local = f"""\
server:
    rundir: "{self.dir}"
    listen: 127.0.0.1@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{self.dir}/db"
template:
  - id: default
    storage: "{self.dir}"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
"""
        (self.dir / "knot.conf").write_text(local + text)
        return [binary("knotd", "knot"), "-c", str(self.dir / "knot.conf")]


class ShippedBind(Secondary):
    """named with deploy/secondaries/named.conf, pointed at the test's server and its key file."""

    name = "named (shipped config)"
    key_file = ""

    def argv(self) -> list[str]:
        text = (SECONDARIES / "named.conf").read_text()
        text = text.replace("/etc/bind/pod-identity-dns-xfr.key", self.key_file).replace("/var/cache/bind/", f"{self.dir}/")
        text = text.replace(f"primaries {{ {SERVICE_IP} key", f"primaries {{ 127.0.0.1 port {self.primary_port} key")
        local = f"""\
options {{
    directory "{self.dir}";
    pid-file "{self.dir}/named.pid";
    session-keyfile "{self.dir}/session.key";
    managed-keys-directory "{self.dir}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
"""
        (self.dir / "named.conf").write_text(local + text)
        check = subprocess.run([binary("named-checkconf", "bind9-utils"), str(self.dir / "named.conf")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        return [binary("named", "bind9"), "-g", "-4", "-n", "1", "-c", str(self.dir / "named.conf")]


def test_the_shipped_secondary_configurations_transfer_every_zone_from_the_server(tmp_path):
    key_file = generate_keys(tmp_path, KEY_NAME)
    pods = [sts_pod("kdc", i, f"10.244.3.{i + 1}") for i in range(3)] + [sts_pod("v6", 0, ["10.244.4.1", "fd00:10:244::4:1"])]
    pod_file = write_pod_list(tmp_path / "pods.json", pods)
    args = ("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--reverse-cidr", "fd00:10:244::/48", "--pods-file", str(pod_file))
    with ServerProcess(*args, "--tsig-key-file", str(key_file), "--transfer-key", KEY_NAME) as server:
        knot = ShippedKnot(tmp_path / "knot", server.port, SHIPPED_ZONES)
        knot.secret = re.search(r'secret "([^"]+)"', key_file.read_text())[1]  # type: ignore[index]
        bind = ShippedBind(tmp_path / "bind", server.port, SHIPPED_ZONES)
        bind.key_file = str(key_file)
        for secondary in (knot, bind):
            with secondary:
                secondary.wait_for(lambda s=secondary: converged(s, server.port))
                assert secondary.ask(f"v6-0.v6.default.{ZONE}", "AAAA").answer  # type: ignore[union-attr]
