"""The parts of kubernetes.aio the source uses, imported without the package's eager imports.

`import kubernetes.aio.<anything>` first runs kubernetes/__init__.py, which
imports the whole synchronous client, its dynamic client (jsonschema,
kubernetes_validate), stream, informer and leaderelection, and
kubernetes/aio/__init__.py, which imports the aio ones: ~0.3 s and ~10 MiB
of a server's start, none of it used. Both packages are registered here as
modules whose code has not run, so that only the submodules named below
load. Where `kubernetes` is imported already, this changes nothing.
"""

from __future__ import annotations

import importlib.util
import sys


def _register_without_running(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return  # not a package here: the ordinary import below says what is wrong
    module = importlib.util.module_from_spec(spec)  # its __path__ is set; its __init__ does not run
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


_register_without_running("kubernetes")
_register_without_running("kubernetes.aio")

from kubernetes.aio import client, config  # noqa: E402
from kubernetes.aio.client.api_client import ApiClient  # noqa: E402
from kubernetes.aio.client.configuration import Configuration  # noqa: E402
from kubernetes.aio.config import ConfigException  # noqa: E402

__all__ = ["ApiClient", "ConfigException", "Configuration", "client", "config"]
