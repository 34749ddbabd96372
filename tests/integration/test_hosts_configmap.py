"""deploy/components/hosts-file end to end: the rendered ConfigMap and args, run by the real server.

The ConfigMap is laid out as the kubelet mounts one (a timestamped directory,
the `..data` symlink, a symlink per key) and updated as the kubelet does (a
new directory, then `..data` swapped by one rename): the server serves the
new entries without a restart, which is why the component's ConfigMap name
carries no content hash.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import yaml

from tests.conftest import ZONE
from tests.manifests import HOSTS_COMPONENT, one, overlay
from tests.serverproc import ServerProcess

_VERSIONS = itertools.count(1)


def kubelet_write(mount: Path, data: dict[str, str]) -> None:
    """Publish a ConfigMap's data into `mount` the way the kubelet's atomic writer does."""
    version = mount / f"..2026_01_01_00_00_00.{next(_VERSIONS):09d}"
    version.mkdir()
    for key, text in data.items():
        (version / key).write_text(text)
    old = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    (mount / "..data_tmp").symlink_to(version.name)
    os.rename(mount / "..data_tmp", mount / "..data")
    for key in data:
        if not (mount / key).is_symlink():
            (mount / key).symlink_to(f"..data/{key}")
    if old:
        for stale in (mount / old).iterdir():
            stale.unlink()
        (mount / old).rmdir()


def a_records(port: int, name: str) -> tuple[str, list[str]]:
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return dns.rcode.to_text(reply.rcode()), sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def until(port: int, name: str, expected: tuple[str, list[str]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := a_records(port, name)) != expected:
        assert time.monotonic() < deadline, f"{name}: {seen}, expected {expected}"
        time.sleep(0.05)


def test_the_component_s_hosts_configmap_is_served_and_its_updates_reloaded(tmp_path):
    docs = overlay(tmp_path / "overlay", HOSTS_COMPONENT)
    configmaps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ConfigMap"}
    hosts = configmaps.pop("pod-identity-dns-hosts")
    (config,) = configmaps.values()
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]

    # The container's own args, with each mount path moved under tmp_path.
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in container["volumeMounts"] if m["name"] in ("config", "hosts")}
    for directory in mounts.values():
        directory.mkdir()
    kubelet_write(mounts["/etc/pod-identity-dns"], config["data"])
    kubelet_write(mounts["/etc/pod-identity-dns-hosts"], hosts["data"])
    args = list(container["args"])
    for index, arg in enumerate(args):
        for mount_path, directory in mounts.items():
            if arg.startswith(mount_path + "/"):
                args[index] = str(directory / arg.removeprefix(mount_path + "/"))
    assert args[0] == "serve"
    pods = tmp_path / "pods.json"  # no cluster here: an empty pod list stands in for the watch
    pods.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": []}))

    with ServerProcess(*args[1:], "--pods-file", str(pods), "--reload-interval", "0.2") as server:
        listed = yaml.safe_load(config["data"]["config.yaml"])["zones"]
        assert listed == [ZONE]
        until(server.port, f"gateway.{ZONE}", ("NOERROR", ["10.244.0.2"]))

        kubelet_write(mounts["/etc/pod-identity-dns-hosts"], {"hosts": "10.244.0.7 printer.pods.example.internal\n"})
        until(server.port, f"printer.{ZONE}", ("NOERROR", ["10.244.0.7"]))
        assert a_records(server.port, f"gateway.{ZONE}")[0] == "NXDOMAIN"
        assert server.proc.poll() is None
