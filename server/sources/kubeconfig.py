"""The Kubernetes source's settings, and the client configuration (in-cluster or a kubeconfig)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import yaml

from ..errors import SourceError
from .kubeimport import ConfigException, Configuration
from .kubeimport import config as kconfig

# How long past the timeoutSeconds it asked for a watch is let run before it counts as stalled.
WATCH_END_GRACE_SECONDS = 2.0
# aiohttp's read buffer. The client sets 2 MiB for readline(), which the source does not use (it puts
# lines together itself); with it a fast stream buffers up to 4 MiB and readany() joins all of it into
# one copy. 256 KiB: 9 MiB less peak memory in a storm of 50k events, at the same speed.
READ_BUFFER_BYTES = 256 * 1024


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str | None = None  # None: in-cluster if KUBERNETES_SERVICE_HOST set, else KUBECONFIG / ~/.kube/config
    context: str | None = None
    namespaces: tuple[str, ...] = ()  # () = all namespaces
    label_selector: str | None = None
    page_size: int = 500
    # Streaming lists (KEP-3157) where the API server has them; one that refuses them gets paged lists.
    streaming_lists: bool = True
    watch_timeout_seconds: int = 240  # server-side timeoutSeconds
    read_timeout_seconds: float = 300  # client timeout per request, longer than the above
    backoff_initial: float = 0.5  # retries after failures and early watch ends: jittered, doubling
    backoff_max: float = 30.0
    # A watch that stayed up this long worked: it resets the backoff (capped at half the watch timeout).
    healthy_watch_seconds: float = 10.0
    # The longest time without a complete event before a watch is opened again from the last
    # version: twice the API server's one-minute bookmark interval (capped at the watch timeout).
    watch_stall_seconds: float = 120.0
    # A relist after a relist, with no watch that stayed up in between, waits this long, doubling.
    relist_backoff_initial: float = 5.0
    relist_backoff_max: float = 60.0
    retry_after_max: float = 60.0  # the most of a Retry-After (or Status retryAfterSeconds) honoured
    # "Too large resource version" errors in a row (the API server is behind our version, as after
    # a restore from backup) before the pods are listed again from scratch.
    too_large_relist_after: int = 3
    # Repeated warnings (malformed events, unusable pods): the first few, then one summary per this many seconds.
    warning_summary_seconds: float = 60.0
    # A pod is at most ~1.5 MiB in etcd; the limit only guards against a runaway stream.
    max_event_bytes: int = 64 * 1024 * 1024

    @property
    def healthy_watch_bound(self) -> float:
        """How long a watch must stay up to count as working."""
        return min(self.healthy_watch_seconds, self.watch_timeout_seconds / 2)

    @property
    def watch_stall_bound(self) -> float:
        """The longest wait for the next complete line of a watch stream."""
        return min(self.watch_stall_seconds, self.watch_timeout_seconds + WATCH_END_GRACE_SECONDS)


class ClientConfigError(SourceError):
    """No usable client configuration (in-cluster or kubeconfig): a start-up error, exit code 2."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


async def load_client_config(settings: KubeSettings) -> Configuration:
    """Client configuration: in-cluster when running in a pod, else a kubeconfig.

    Raises ClientConfigError, naming the file and the reason in one line, when
    no usable configuration is found.
    """
    config = Configuration(client_session_kwargs={"read_bufsize": READ_BUFFER_BYTES})
    in_cluster = settings.kubeconfig is None and settings.context is None
    if in_cluster and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            kconfig.load_incluster_config(client_configuration=config)
        except ConfigException as error:
            raise ClientConfigError("in-cluster configuration", None, _one_line(error)) from None
        return config
    paths = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    shown = os.pathsep.join(os.path.expanduser(p) for p in paths.split(os.pathsep) if p)
    if not any(os.path.isfile(os.path.expanduser(p)) for p in paths.split(os.pathsep) if p):
        raise ClientConfigError(shown, None, "no kubeconfig file there, and not in a cluster (KUBERNETES_SERVICE_HOST unset)")
    try:
        await kconfig.load_kube_config(config_file=paths, context=settings.context, client_configuration=config, persist_config=False)
    # The loader reports a malformed file by whatever its parsing trips over.
    except (ConfigException, yaml.YAMLError, OSError, TypeError, AttributeError, KeyError, ValueError) as error:
        raise ClientConfigError(shown, None, f"unusable kubeconfig: {_one_line(error)}") from None
    return config
