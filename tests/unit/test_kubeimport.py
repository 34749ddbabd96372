"""The Kubernetes source loads only the parts of kubernetes.aio it uses, and works beside a full `import kubernetes`."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_source_does_not_load_the_synchronous_client_or_the_dynamic_one() -> None:
    loaded = run(
        "import sys, server.sources.kubesource, server.sources.kube as k;"
        "print(sorted({m.split('.')[1] if m.startswith('kubernetes.') else m for m in sys.modules if m.startswith('kubernetes')}))"
    )
    assert loaded == "['aio', 'kubernetes']"  # not client, config, dynamic, watch, stream, informer, kubernetes_validate


def test_a_configuration_loads_when_the_whole_package_was_imported_first(tmp_path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        '{"apiVersion": "v1", "kind": "Config", "current-context": "c", "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:1"}}],'
        ' "users": [{"name": "u", "user": {"token": "t"}}], "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}'
    )
    host = run(
        "import asyncio, kubernetes, kubernetes.dynamic;"
        "from server.sources.kube import KubeSettings, load_client_config;"
        f"print(asyncio.run(load_client_config(KubeSettings(kubeconfig={str(kubeconfig)!r}))).host)"
    )
    assert host == "http://127.0.0.1:1"
