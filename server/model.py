"""The neutral types every pipeline step shares: stripped pods, static entries, and the sink protocols.

Sources produce these, the registry consumes them; neither side knows the other.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})

MAX_NAME = 255
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")

# Kubernetes' DNS-1123 shapes (k8s.io/apimachinery validation), matched without
# regard to case (DNS compares names so; the sources lower-case what they keep)
# and with every label at most 63 characters, which DNS needs and the
# subdomain check of Kubernetes leaves out.
_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL, re.ASCII | re.IGNORECASE)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII | re.IGNORECASE)
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII | re.IGNORECASE)
LABEL_RULE = "RFC 1123: a-z, 0-9 and '-', a letter or digit at each end"
MAX_LABEL = 63
MAX_SUBDOMAIN = 253  # metadata.name; a host name without its trailing dot
MAX_HOSTNAME_OVERRIDE = 64  # spec.hostnameOverride (Kubernetes 1.34)

# The fields a --name-template may use.
TEMPLATE_FIELDS = frozenset({"hostname", "subdomain", "namespace", "pod"})


def template_fields(template: str) -> set[str]:
    """The {fields} a name template uses; ValueError if it cannot be parsed."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def check_hostname(name: str) -> str | None:
    """Reason why `name` is not a usable domain name (letters, digits, '-', '_'), or None.

    For configured names (zones, --ns-name, --cluster-domain); a hosts file's
    names are host names, checked by `host_name_problem`.
    """
    text = name.lower().rstrip(".")
    if not text:
        return "empty name"
    for label in text.split("."):
        if not _HOST_LABEL.fullmatch(label):
            return f"bad label {label!r}"
    if len(text) + 2 > MAX_NAME:
        return "name too long"
    return None


def shown(value: object, limit: int = 48) -> str:
    """`value` for a log line: its repr (control bytes escaped), cut short if long."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)


def normal_ip(text: str) -> str | None:
    """The address in ipaddress's normal form (.compressed), or None when `text` is not an IP address.

    The socket functions first: ipaddress takes microseconds an address, and
    a large hosts file or a dual-stack watch has many.
    """
    try:
        socket.inet_pton(socket.AF_INET, text)
        return text  # accepted only in canonical dotted-decimal form: already normal
    except OSError:
        pass
    try:
        normal = socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
        if "." not in normal:  # inet_ntop writes an IPv4-mapped tail in dots, ipaddress in hex
            return normal
    except OSError:
        pass  # and what ipaddress accepts beyond (a %zone) it decides
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def dns_label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label (spec.hostname, spec.subdomain, a namespace), or None."""
    if _DNS_LABEL.fullmatch(value):
        return None
    return f"{shown(value)} is not a DNS label ({LABEL_RULE}, 1-{MAX_LABEL} characters)"


def dns_subdomain_problem(value: str, max_length: int = MAX_SUBDOMAIN) -> str | None:
    """Why `value` is not a DNS-1123 subdomain of at most `max_length` characters (metadata.name), or None."""
    if len(value) <= max_length and _DNS_SUBDOMAIN.fullmatch(value):
        return None
    return f"{shown(value)} is not a DNS subdomain (labels joined by '.', {LABEL_RULE}; at most {max_length} characters)"


def hostname_override_problem(value: str) -> str | None:
    """Why `value` cannot be spec.hostnameOverride (a DNS-1123 subdomain of at most 64 characters), or None.

    Each label at most 63 too: one of 64, which Kubernetes takes, cannot be put in DNS.
    """
    return dns_subdomain_problem(value, MAX_HOSTNAME_OVERRIDE)


_SERVICE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?")
PORT_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


def port_name_problem(name: str) -> str | None:
    """Why `name` cannot be a container port's name (an IANA_SVC_NAME, RFC 6335), or None:
    1 to 15 of a-z, 0-9 and '-', a letter among them, no '-' at either end nor twice in a row."""
    if _SERVICE_NAME.fullmatch(name) and "--" not in name and any(c.isalpha() for c in name):
        return None
    return f"port name {shown(name)} is not an IANA service name (1-15 of a-z, 0-9, '-'; a letter among them)"


def host_name_problem(name: str) -> str | None:
    """Why `name` is not a host name (RFC 1123: labels of letters, digits and '-'; a final dot allowed), or None.

    No '_': an underscore label names a service (SRV, TXT), never a host with
    an address, and Kubernetes refuses it in hostAliases too.
    """
    if len(name.rstrip(".")) <= MAX_SUBDOMAIN and _HOST_NAME.fullmatch(name):
        return None
    return f"{shown(name)} is not a host name (labels joined by '.', {LABEL_RULE}; at most {MAX_SUBDOMAIN} characters)"


class PodRecord(NamedTuple):
    """Immutable; a NamedTuple because 100k of them are built at start and it is the cheapest to build."""

    uid: str
    namespace: str
    name: str
    hostname: str
    subdomain: str
    ips: tuple[str, ...]
    phase: str
    ready: bool
    host_network: bool
    created: float  # creationTimestamp as Unix seconds; unknown sorts last
    deleting: bool
    ports: tuple[tuple[str, str, int], ...] = ()  # named container ports: (name, "tcp"|"udp"|"sctp", number)
    hostname_override: str = ""  # spec.hostnameOverride, lower case, when valid
    # Newest timestamp found in the object (creation, deletion, condition
    # transitions), as Unix seconds: when the API last changed what we serve.
    changed_at: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ownership_rank(self) -> tuple[bool, float, str]:
        """Sort key for who owns a contested name or IP: lowest wins."""
        return (self.deleting, self.created, self.uid)

    def serves_the_same(self, other: PodRecord) -> bool:
        """Whether both records serve the same records (they differ at most in changed_at)."""
        return self[:-1] == other[:-1]

    def same_naming(self, other: PodRecord) -> bool:
        """Whether both records make the same name (namespace, pod name, hostname, subdomain, override)."""
        return self[1:5] == other[1:5] and self.hostname_override == other.hostname_override


def serves_identity(pod: PodRecord, publish_not_ready: bool = True) -> bool:
    """Whether the pod may get a name: hostname+subdomain or a hostnameOverride, an IP, not hostNetwork, not finished."""
    return bool(
        ((pod.hostname and pod.subdomain) or pod.hostname_override)
        and pod.ips
        and not pod.host_network
        and pod.phase not in FINISHED_PHASES
        and (publish_not_ready or pod.ready)
    )


@dataclass(frozen=True)
class StaticEntry:
    """One hosts-file line: an address and its names."""

    ip: str
    names: tuple[str, ...]  # fully qualified, lower case, first one gets the PTR
    line: int


class StaticRecord(NamedTuple):
    """One record of the records file (RFC 1035 master-file syntax), any type."""

    name: str  # the owner, absolute, lower case, no trailing dot
    rtype: int
    ttl: int
    rdata: bytes  # uncompressed wire form
    line: int


class PodSink(Protocol):
    """What a pod source feeds; implemented by the registry."""

    def replace_all(self, pods: Iterable[PodRecord], version: str | None = None) -> None:
        """The complete current set of this source's pods (list, relist, file load).

        `version`, here and in update(): the source's resourceVersion after the change, if it has one.
        """

    def replace_all_steps(self, pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
        """replace_all in steps: the caller iterates, letting the event loop run between steps."""
        ...

    def upsert(self, pod: PodRecord) -> None:
        """A pod was added or changed."""

    def delete(self, uid: str) -> None:
        """A pod is gone."""

    def update(self, upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None) -> None:
        """Several pods added, changed or gone at once (distinct uids), applied as one change."""

    def set_synced(self, synced: bool) -> None:
        """Whether this source has delivered one complete state yet."""


class StaticSink(Protocol):
    """What the hosts file feeds; implemented by the registry."""

    def replace_static(self, entries: Iterable[StaticEntry]) -> None:
        """The complete set of static entries."""


class RecordsSink(Protocol):
    """What the records file feeds; implemented by the registry."""

    def replace_records(self, records: Iterable[StaticRecord]) -> None:
        """The complete set of static records."""


class Source(Protocol):
    """A producer of identities the server runs: started once, then run until cancelled.

    `name` tells sources apart in logs and claims ("pods-file", "hosts-file",
    "kubernetes"); `synced` turns true once it delivered one complete state.
    """

    name: str

    @property
    def synced(self) -> bool: ...

    async def start(self) -> None:
        """Load what is needed to begin (a first file load, the client configuration); SourceError: exit code 2."""

    async def run(self) -> None:
        """Keep the state current (watch a file, watch the API) until cancelled."""


class KubeObserver:
    """Hooks for what the Kubernetes source does; a no-op here, the metrics subclass it."""

    def event(self, kind: str, count: int = 1) -> None:
        """`count` watch events of one kind arrived: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    def relist(self) -> None:
        """A namespace is listed again after its first complete list."""

    def watch_restart(self) -> None:
        """A watch stream ended normally and is resumed from the last version."""

    def synced(self, value: bool) -> None:
        """Whether every watched namespace has been listed completely once."""

    def api_error(self, error: str) -> None:
        """A failed request; `error` is a short category (http_500, connection, ...)."""

    def applied(self, pods: list[PodRecord]) -> None:
        """Watch events' pods were handed to the sink (upserts and deletes), one call per batch."""

    def event_posted(self, result: str) -> None:
        """A Kubernetes Event about a conflict: "posted" (created), "updated" (its series bumped),
        "dropped" (the queue was full), or "failed" (the API refused it or could not be reached)."""
