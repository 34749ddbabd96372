"""The cluster of bench/kube_load.py: N StatefulSet pods of realistic size, served by the fake API in a process of its own.

The fake (tests/fakekube.py) keeps each pod as serialized JSON, and the bulky
part is filled in from one template per set, so 100k pods cost it ~0.6 GiB.
Besides the API it serves a control endpoint: prepare and fire an event storm,
move one pod, compact the history, and report its request counts.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.kube_procs import rss_mib  # noqa: E402

ZONE = "pods.example.internal"
FIRST_IPS = int(ipaddress.IPv4Address("10.64.0.0"))  # pod i starts at FIRST_IPS + i
STORM_IPS = int(ipaddress.IPv4Address("10.128.0.0"))  # the event storm moves pod i here
SET_SIZE = 100
SETS_PER_NAMESPACE = 10


def pod_names(index: int) -> tuple[str, str, str]:
    """(namespace, set, pod name) of pod `index`: namespaces of 1000 pods, sets of 100."""
    set_index = index // SET_SIZE
    namespace = f"team-{set_index // SETS_PER_NAMESPACE:03d}"
    set_name = f"app{set_index % SETS_PER_NAMESPACE}"
    return namespace, set_name, f"{set_name}-{index % SET_SIZE}"


def fqdn(index: int) -> str:
    namespace, set_name, name = pod_names(index)
    return f"{name}.{set_name}.{namespace}.{ZONE}"


def ip_text(number: int) -> str:
    return str(ipaddress.IPv4Address(number))


def pod_template(pod_bytes: int) -> bytes:
    """One StatefulSet pod as the API serializes it, with @MARKERS@ for what differs per pod and version."""
    from tests.fakekube import make_pod

    labels = {
        "app.kubernetes.io/name": "@SET@",
        "app.kubernetes.io/instance": "@SET@-@NS@",
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/part-of": "data-platform",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "@SET@-4.2.1",
        "controller-revision-hash": "@SET@-6c9f8d7b5",
        "statefulset.kubernetes.io/pod-name": "@NAME@",
        "apps.kubernetes.io/pod-index": "@INDEX@",
    }
    pod = make_pod("@NAME@", "@NS@", ip="@IP@", hostname="@NAME@", subdomain="@SET@", labels=labels)
    meta = pod["metadata"]
    meta.update(
        uid="@UID@",
        resourceVersion="@RV@",
        creationTimestamp="2026-11-01T10:00:00Z",
        generateName="@SET@-",
        annotations={
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9404",
            "checksum/config": "5f2b0c4e9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c",
            "kubectl.kubernetes.io/default-container": "main",
            "kubectl.kubernetes.io/restartedAt": "2026-11-01T09:58:12Z",
        },
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": "@SET@",
                "uid": "0b9e2a54-7c1d-4f3e-9a8b-6c5d4e3f2a1b",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    )
    container = pod["spec"]["containers"][0]
    container.update(
        image="registry.example.internal/data/@SET@:4.2.1",
        ports=[{"name": "client", "containerPort": 9092, "protocol": "TCP"}, {"name": "metrics", "containerPort": 9404, "protocol": "TCP"}],
        resources={"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
        readinessProbe={
            "tcpSocket": {"port": 9092},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        livenessProbe={
            "tcpSocket": {"port": 9092},
            "initialDelaySeconds": 60,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        volumeMounts=[
            {"name": "data", "mountPath": "/var/lib/data"},
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True},
        ],
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="File",
        imagePullPolicy="IfNotPresent",
    )
    pod["spec"].update(
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "data-@NAME@"}},
            {"name": "config", "configMap": {"name": "@SET@-config", "defaultMode": 420}},
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]
                            }
                        },
                    ],
                },
            },
        ],
        restartPolicy="Always",
        terminationGracePeriodSeconds=30,
        dnsPolicy="ClusterFirst",
        serviceAccountName="@SET@",
        schedulerName="default-scheduler",
        tolerations=[
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        nodeName="node-@NODE@",
        priority=0,
        enableServiceLinks=True,
        preemptionPolicy="PreemptLowerPriority",
    )
    stamp = "2026-11-01T10:00:41Z"
    pod["status"].update(
        hostIP="192.168.@NODE@",
        hostIPs=[{"ip": "192.168.@NODE@"}],
        startTime="2026-11-01T10:00:02Z",
        qosClass="Burstable",
        conditions=[
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
        ],
        containerStatuses=[
            {
                "name": "main",
                "state": {"running": {"startedAt": "2026-11-01T10:00:05Z"}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": "registry.example.internal/data/@SET@:4.2.1",
                "imageID": "registry.example.internal/data/@SET@@sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b",
                "containerID": "containerd://3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e",
                "started": True,
            }
        ],
    )
    import orjson

    base = len(orjson.dumps(pod))
    if pod_bytes > base:  # the rest as env entries: many small objects, like real env and managedFields
        container["env"] = [{"name": f"SETTING_{i:04d}", "value": f"value-{i:06d}-abcdefgh"} for i in range((pod_bytes - base) // 56)]
    return orjson.dumps(pod)


class PodFactory:
    """Pod bodies from the template by byte substitution (a few microseconds each, no JSON encoding)."""

    def __init__(self, pod_bytes: int) -> None:
        self.template = pod_template(pod_bytes)

    def body(self, index: int, ip: int, version: int) -> bytes:
        namespace, set_name, name = pod_names(index)
        node = f"{index // 110 % 250}.{index // 110 // 250 % 250 + 1}"
        uid = f"6f1c2a3b-{index:04x}-4d5e-8f90-{index:012x}"[-36:]
        return (
            self.template.replace(b"@NAME@", name.encode())
            .replace(b"@NS@", namespace.encode())
            .replace(b"@SET@", set_name.encode())
            .replace(b"@IP@", ip_text(ip).encode())
            .replace(b"@UID@", uid.encode())
            .replace(b"@RV@", str(version).encode())
            .replace(b"@INDEX@", str(index % SET_SIZE).encode())
            .replace(b"@NODE@", node.encode())
        )


async def fake_api_main(args: argparse.Namespace) -> None:
    """The fake API's process: load the pods, serve the API and a control endpoint until stdin closes."""
    import asyncio
    import gc

    from aiohttp import web

    from tests.fakekube import FakeKube, StoredPod

    started = time.monotonic()
    factory = PodFactory(args.pod_bytes)
    kube = FakeKube(watch_list=not args.paged)  # --paged: an API server without streaming lists
    gc.disable()  # only long-lived objects are made here
    for index in range(args.pods):
        kube.version += 1
        namespace, _set_name, name = pod_names(index)
        stored = StoredPod(namespace, name, {}, factory.body(index, FIRST_IPS + index, kube.version))
        kube._record_stored("ADDED", None, stored)
    kube.compact()  # no one watches from before the load; the history would only hold memory
    gc.enable()
    gc.freeze()
    await kube.start()
    build_seconds = time.monotonic() - started
    storm: list[StoredPod] = []
    storm_base = [0]  # kube.version the prepared bodies count from

    def move(index: int, ip: int) -> StoredPod:
        kube.version += 1
        namespace, _, name = pod_names(index)
        new = StoredPod(namespace, name, {}, factory.body(index, ip, kube.version))
        kube._record_stored("MODIFIED", kube.pods[(namespace, name)], new)
        return new

    async def prepare_storm(request: web.Request) -> web.Response:
        count = int(request.query["count"])
        storm.clear()
        kube.compact()
        # Bodies are made now, untimed, with the versions they will get when fired.
        storm_base[0] = kube.version
        for i in range(count):
            namespace, _, name = pod_names(i)
            storm.append(StoredPod(namespace, name, {}, factory.body(i, STORM_IPS + i, kube.version + 1 + i)))
        return web.json_response({"count": count, "bytes": sum(len(p.body) for p in storm)})

    async def fire_storm(request: web.Request) -> web.Response:
        if kube.version != storm_base[0]:
            raise web.HTTPConflict(text="the cluster changed since /storm/prepare")
        fired = time.monotonic()
        for i, new in enumerate(storm):
            kube.version += 1
            kube._record_stored("MODIFIED", kube.pods[(new.namespace, new.name)], new)
            if i % 2000 == 1999:
                await asyncio.sleep(0)  # let the watch stream what is queued
        recorded = time.monotonic()
        storm.clear()
        return web.json_response({"fired": fired, "recorded": recorded})

    async def move_one(request: web.Request) -> web.Response:
        index, ip = int(request.query["index"]), int(request.query["ip"])
        move(index, ip)
        return web.json_response({"t": time.monotonic()})

    async def compact(request: web.Request) -> web.Response:
        kube.compact()
        gc.collect()
        return web.json_response({"version": kube.version, "watches": kube.open_watches})

    async def relist(request: web.Request) -> web.Response:
        """Every watch ends and its history is gone: the server's next watch gets 410 Gone and lists again."""
        kube.drop_watches()
        move(0, FIRST_IPS)  # a new version of pod 0, serving the same: the change the watch misses
        kube.compact()
        return web.json_response({"version": kube.version})

    async def stats(request: web.Request) -> web.Response:
        lists = kube.list_requests(first_pages_only=False)
        return web.json_response(
            {
                "lists": len(kube.list_requests()),
                "streaming_lists": len(kube.streaming_list_requests()),
                "pages": len([r for r in lists if not r.is_watch]),
                "watches": len(kube.pod_requests(watch=True)),
                "open_watches": kube.open_watches,
                "version": kube.version,
                "rss_mib": rss_mib(os.getpid())["VmRSS"],
            }
        )

    control = web.Application()
    control.router.add_post("/storm/prepare", prepare_storm)
    control.router.add_post("/storm/fire", fire_storm)
    control.router.add_post("/move", move_one)
    control.router.add_post("/compact", compact)
    control.router.add_post("/relist", relist)
    control.router.add_get("/stats", stats)
    runner = web.AppRunner(control, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    kube.write_kubeconfig(args.kubeconfig)
    print(
        json.dumps(
            {
                "api_port": kube.port,
                "control_port": runner.addresses[0][1],
                "build_seconds": round(build_seconds, 2),
                "pod_bytes": len(factory.body(0, FIRST_IPS, 1)),
                "rss_mib": rss_mib(os.getpid())["VmRSS"],
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    loop.add_signal_handler(signal.SIGTERM, done.set)
    await done.wait()
    await runner.cleanup()
    await kube.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, required=True)
    parser.add_argument("--pod-bytes", type=int, required=True)
    parser.add_argument("--kubeconfig", required=True, help="written once the API listens")
    parser.add_argument("--paged", action="store_true", help="refuse streaming lists, as API servers without them do")
    args = parser.parse_args()
    import uvloop

    uvloop.run(fake_api_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
