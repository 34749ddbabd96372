"""Every option of the configuration, declared once (OPTIONS): its value's kind, its range, its flag and help.

The argument parser, the YAML loader and the checks in config.py all come
from this one table, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class ConfigError(Exception):
    """A one-line, user-facing configuration problem (exit code 2)."""


MAX_TTL = 2**31 - 1  # RFC 2181 section 8: a TTL is 0..2^31-1 seconds


@dataclass(frozen=True)
class Option:
    key: str  # YAML key and Config attribute
    flag: str
    default: Any
    help: str
    kind: Callable[[Any], Any] = str
    repeat: bool = False
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a boolean with --flag / --no-flag
    low: float | None = None  # a number's range, checked and shown in --help
    high: float | None = None
    serve_only: bool = False  # export-zone has no use for it: not among its flags
    path: bool = False  # a file: relative in a config file means relative to that file's directory

    def value(self, raw: Any) -> Any:
        """`raw` (a flag's text or a YAML value) converted by `kind` and range-checked; ValueError says why not."""
        value = self.kind(raw)
        if self.low is not None and self.high is not None and not self.low <= value <= self.high:
            raise ValueError(f"must be between {self.show(self.low)} and {self.show(self.high)}")
        return value

    def show(self, value: Any) -> str:
        return format_size(value) if self.kind is size else f"{value:g}" if isinstance(value, float) else str(value)

    def help_text(self) -> str:
        notes = []
        if self.low is not None and self.high is not None:
            notes.append(f"{self.show(self.low)}..{self.show(self.high)}")
        if self.default not in (None, []):
            notes.append(f"default: {self.default}")
        return f"{self.help} ({'; '.join(notes)})" if notes else self.help


def whole_number(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("must be a whole number") from None


def seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number of seconds")
    return number


_SIZE_UNITS = {"": 1, "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}
_SIZE = re.compile(r"\s*(\d+)\s*([kmgt]i)?\s*", re.IGNORECASE)


def size(value: Any) -> int:
    """Bytes, written as a whole number of bytes or with a binary unit (512Mi, 4Gi), as Kubernetes writes them."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be a size in bytes, or with a unit: Ki, Mi, Gi, Ti (as in 512Mi)")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]


def format_size(value: float) -> str:
    number = int(value)
    for unit in ("Ti", "Gi", "Mi", "Ki"):
        if number and number % _SIZE_UNITS[unit.lower()] == 0:
            return f"{number // _SIZE_UNITS[unit.lower()]}{unit}"
    return str(number)


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """A flag per option; values stay text here and are converted and checked by `check_value`."""
    for o in options:
        if o.switch:
            parser.add_argument(o.flag, dest=o.key, action=argparse.BooleanOptionalAction, default=None, help=o.help_text())
        elif o.repeat:
            parser.add_argument(
                o.flag,
                dest=o.key,
                action="append",
                default=None,
                metavar=o.flag.lstrip("-").upper().replace("-", "_"),
                help=o.help_text(),
            )
        else:
            # Choices are checked with the other values, so a wrong one is one line too (argparse adds its usage).
            metavar = "{" + ",".join(o.choices) + "}" if o.choices else "FILE" if o.path else _METAVARS.get(o.kind)
            parser.add_argument(o.flag, dest=o.key, default=None, metavar=metavar, help=o.help_text())


_METAVARS: dict[Callable[[Any], Any], str] = {whole_number: "N", seconds: "SECONDS", size: "SIZE"}


def check_value(o: Option, raw: Any) -> Any:
    """An option's value converted and checked (None stays None); ConfigError in one line if it is not usable."""
    try:
        if o.repeat:
            items = [raw] if isinstance(raw, (str, int)) else raw
            if not isinstance(items, list):
                raise ValueError("must be a list")
            return tuple(o.value(v) for v in items)
        value = None if raw is None else o.value(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{o.key} ({o.flag}): {raw!r}: {exc}") from None
    if o.choices and value not in o.choices:
        raise ConfigError(f"{o.key} ({o.flag}): {value!r}: must be one of {', '.join(o.choices)}")
    return value


# Every option of the server, declared once: the flags, the config file's keys, their checks and --help.
OPTIONS: tuple[Option, ...] = (
    Option(
        "listen",
        "--listen",
        ["127.0.0.1:1053"],
        "DNS address HOST:PORT for UDP and TCP ([::1]:1053 for IPv6; repeatable)",
        repeat=True,
        serve_only=True,
    ),
    Option("zones", "--zone", [], "forward zone served (repeatable); identities go under the first", repeat=True),
    Option("reverse_cidrs", "--reverse-cidr", [], "serve the reverse zones covering this CIDR (repeatable)", repeat=True),
    Option(
        "name_template",
        "--name-template",
        "{hostname}.{subdomain}.{namespace}",
        "identity name under the zone; fields: {hostname} {subdomain} {namespace} {pod}",
    ),
    Option(
        "ns_name",
        "--ns-name",
        [],
        "NS name of every zone (repeatable; the first is the SOA MNAME; default ns.<zone>, reverse zones ns.<first zone>)",
        repeat=True,
    ),
    Option(
        "ns_addresses",
        "--ns-address",
        [],
        "address of the NS names inside a served zone (repeatable; default: the listen addresses that name one specific IP)",
        repeat=True,
    ),
    Option("ttl", "--ttl", 30, "TTL of answers, seconds", whole_number, low=0, high=MAX_TTL),
    Option(
        "negative_ttl",
        "--negative-ttl",
        5,
        "TTL and MINIMUM of the SOA: how long NXDOMAIN/NODATA is cached",
        whole_number,
        low=0,
        high=MAX_TTL,
    ),
    Option(
        "pods_file",
        "--pods-file",
        None,
        "serve pods from this file (kubectl get pods -A -o json|yaml) instead of the cluster",
        path=True,
    ),
    Option(
        "pods_file_memory_limit",
        "--pods-file-memory-limit",
        "512Mi",
        "memory the decoding of the pod file may take (in its child process); YAML needs 17 to 40 times the file's size",
        size,
        low=16 << 20,
        high=1 << 40,
    ),
    Option("hosts_file", "--hosts-file", None, "static entries in /etc/hosts syntax, served cluster-wide", path=True),
    Option(
        "records_file",
        "--records-file",
        None,
        "static records of any type in RFC 1035 master-file syntax ($ORIGIN defaults to the first --zone, $TTL to --ttl)",
        path=True,
    ),
    Option(
        "hosts_file_max_size",
        "--hosts-file-max-size",
        "16Mi",
        "largest hosts file read; a larger one is an error",
        size,
        low=1 << 10,
        high=1 << 32,
    ),
    Option(
        "reload_interval",
        "--reload-interval",
        2.0,
        "how often files are checked for changes, seconds",
        seconds,
        low=0.1,
        high=86400,
        serve_only=True,
    ),
    Option(
        "kubeconfig",
        "--kubeconfig",
        None,
        "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)",
        path=True,
    ),
    Option("context", "--context", None, "kubeconfig context"),
    Option("namespaces", "--namespace", [], "watch only this namespace (repeatable; default all)", repeat=True),
    Option("label_selector", "--label-selector", None, "watch only pods matching this label selector"),
    Option(
        "events",
        "--events",
        None,
        "post a Kubernetes Event (IdentityConflict) on a pod that loses its name or an address to another pod "
        "(default: on with the Kubernetes source; a pod file has no API to post to)",
        boolean,
        switch=True,
        serve_only=True,
    ),
    Option(
        "publish",
        "--publish",
        "not-ready",
        "publish a pod's name once it has an IP (not-ready) or once Ready (ready)",
        choices=("not-ready", "ready"),
    ),
    Option(
        "fallback_ptr",
        "--fallback-ptr",
        True,
        "PTR a-b-c-d.<namespace>.pod.<cluster-domain> for pods without hostname+subdomain",
        boolean,
        switch=True,
    ),
    Option("cluster_domain", "--cluster-domain", "cluster.local", "cluster domain used by --fallback-ptr names"),
    Option(
        "srv_records",
        "--srv-records",
        "all",
        "SRV per named container port: all (_port._proto.<set> and .<member>), sets (the sets' only: less memory), or off",
        choices=("all", "sets", "off"),
    ),
    Option(
        "metrics_listen",
        "--metrics-listen",
        "127.0.0.1:9153",
        "HTTP address for /metrics, /healthz, /readyz, /debug/identities ('off' disables; 0.0.0.0:9153 for every interface)",
        serve_only=True,
    ),
    Option(
        "metrics_max_connections",
        "--metrics-max-connections",
        100,
        "open HTTP connections at once; when full, the least recently active is closed to make room",
        whole_number,
        low=1,
        high=1_000_000,
        serve_only=True,
    ),
    Option(
        "metrics_idle_timeout",
        "--metrics-idle-timeout",
        30.0,
        "close HTTP connections idle this many seconds (before a first request too)",
        seconds,
        low=0.1,
        high=3600,
        serve_only=True,
    ),
    Option(
        "lameduck",
        "--lameduck",
        5.0,
        "seconds to keep answering after SIGTERM while readiness fails",
        seconds,
        low=0,
        high=3600,
        serve_only=True,
    ),
    Option("log_format", "--log-format", "text", "log format on stderr", choices=("text", "json")),
    Option("log_level", "--log-level", "info", "log level", choices=("debug", "info", "warning", "error")),
    Option("log_queries", "--log-queries", False, "log every query (costly)", boolean, switch=True, serve_only=True),
    Option(
        "tcp_idle_timeout",
        "--tcp-idle-timeout",
        10.0,
        "close idle TCP connections after this many seconds",
        seconds,
        low=0.1,
        high=3600,
        serve_only=True,
    ),
    Option(
        "tcp_max_connections",
        "--tcp-max-connections",
        1000,
        "open DNS TCP connections at once, all listeners together; when full, the longest idle is closed to make room",
        whole_number,
        low=1,
        high=1_000_000,
        serve_only=True,
    ),
    Option(
        "tcp_max_per_client",
        "--tcp-max-per-client",
        64,
        "open DNS TCP connections from one client address; beyond that its own longest idle one is closed",
        whole_number,
        low=1,
        high=1_000_000,
        serve_only=True,
    ),
    Option(
        "tcp_max_lifetime",
        "--tcp-max-lifetime",
        120.0,
        "close a DNS TCP connection this many seconds after it opened, once no query is pending (0: no limit)",
        seconds,
        low=0,
        high=86400,
        serve_only=True,
    ),
    Option(
        "udp_frontend",
        "--udp-frontend",
        "auto",
        "how UDP is read and answered: batched (recvmmsg/sendmmsg, Linux), uvloop (one datagram per call), or auto (batched where available)",
        choices=("auto", "batched", "uvloop"),
        serve_only=True,
    ),
    Option(
        "udp_batch",
        "--udp-batch",
        64,
        "queries read per recvmmsg and replies sent per sendmmsg by the batched front end",
        whole_number,
        low=1,
        high=1024,  # the kernel's cap on messages per recvmmsg/sendmmsg (UIO_MAXIOV)
        serve_only=True,
    ),
    Option("server_id", "--server-id", None, "text of CHAOS id.server / hostname.bind (default: the host name)", serve_only=True),
    Option(
        "tsig_key_files",
        "--tsig-key-file",
        [],
        "TSIG keys in the format tsig-keygen prints (repeatable; readable by its owner only)",
        repeat=True,
        path=True,
        serve_only=True,
    ),
    Option(
        "transfer_keys", "--transfer-key", [], "TSIG key name allowed to transfer every zone (repeatable)", repeat=True, serve_only=True
    ),
    Option(
        "transfer_allow_unsigned",
        "--transfer-allow-unsigned",
        [],
        "CIDR whose clients may transfer without TSIG (repeatable; default: none)",
        repeat=True,
        serve_only=True,
    ),
    Option(
        "ixfr_journal",
        "--ixfr-journal",
        100,
        "changes kept per zone for IXFR (0: every IXFR is answered in full)",
        whole_number,
        low=0,
        high=100_000,
        serve_only=True,
    ),
    Option(
        "ixfr_journal_bytes",
        "--ixfr-journal-bytes",
        16 << 20,
        "bytes of records the IXFR journals keep, all zones together",
        size,
        low=0,
        high=1 << 32,
        serve_only=True,
    ),
    Option(
        "notify", "--notify", [], "send NOTIFY of every zone change to this secondary, IP:PORT (repeatable)", repeat=True, serve_only=True
    ),
    Option("notify_key", "--notify-key", None, "TSIG key that signs NOTIFY messages (default: the first --transfer-key)", serve_only=True),
    Option(
        "workers",
        "--workers",
        1,
        "server processes sharing the DNS port with SO_REUSEPORT, each with its own sources; worker i serves metrics on the metrics port + i",
        whole_number,
        low=1,
        high=64,
        serve_only=True,
    ),
)
BY_KEY = {o.key: o for o in OPTIONS}
