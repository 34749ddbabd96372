"""One validated Config, built from defaults, then the YAML file, then flags (flags win).

Every option is declared once in OPTIONS; the argument parser, the YAML
loader and the checks all come from that table, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from .model import TEMPLATE_FIELDS, check_hostname, template_fields
from .zone import names


class ConfigError(Exception):
    """A one-line, user-facing configuration problem (exit code 2)."""


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


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("must be a whole number")
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds")
    number = float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


OPTIONS: tuple[Option, ...] = (
    Option(
        "listen", "--listen", ["127.0.0.1:1053"], "DNS address HOST:PORT for UDP and TCP ([::1]:1053 for IPv6; repeatable)", repeat=True
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
        "address of the NS names inside a served zone (repeatable; default: the --listen addresses that name one specific IP)",
        repeat=True,
    ),
    Option("ttl", "--ttl", 30, "TTL of answers, seconds", _positive_int),
    Option("negative_ttl", "--negative-ttl", 5, "TTL and MINIMUM of the SOA: how long NXDOMAIN/NODATA is cached", _positive_int),
    Option("pods_file", "--pods-file", None, "serve pods from this file (kubectl get pods -A -o json|yaml) instead of the cluster"),
    Option("hosts_file", "--hosts-file", None, "static entries in /etc/hosts syntax, served cluster-wide"),
    Option("reload_interval", "--reload-interval", 2.0, "how often files are checked for changes, seconds", _seconds),
    Option("kubeconfig", "--kubeconfig", None, "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)"),
    Option("context", "--context", None, "kubeconfig context"),
    Option("namespaces", "--namespace", [], "watch only this namespace (repeatable; default all)", repeat=True),
    Option("label_selector", "--label-selector", None, "watch only pods matching this label selector"),
    Option(
        "events",
        "--events",
        None,
        "post a Kubernetes Event (IdentityConflict) on a pod that loses its name or an address to another pod "
        "(default: on with the Kubernetes source; a pod file has no API to post to)",
        _bool,
        switch=True,
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
        _bool,
        switch=True,
    ),
    Option("cluster_domain", "--cluster-domain", "cluster.local", "cluster domain used by --fallback-ptr names"),
    Option(
        "metrics_listen",
        "--metrics-listen",
        "127.0.0.1:9153",
        "HTTP address for /metrics, /healthz, /readyz, /debug/identities ('off' disables; 0.0.0.0:9153 for every interface)",
    ),
    Option(
        "metrics_max_connections",
        "--metrics-max-connections",
        100,
        "open HTTP connections at once; when full, the least recently active is closed to make room",
        _positive_int,
    ),
    Option(
        "metrics_idle_timeout",
        "--metrics-idle-timeout",
        30.0,
        "close HTTP connections idle this many seconds (before a first request too)",
        _seconds,
    ),
    Option("lameduck", "--lameduck", 5.0, "seconds to keep answering after SIGTERM while readiness fails", _seconds),
    Option("log_format", "--log-format", "text", "log format on stderr", choices=("text", "json")),
    Option("log_level", "--log-level", "info", "log level", choices=("debug", "info", "warning", "error")),
    Option("log_queries", "--log-queries", False, "log every query (costly)", _bool, switch=True),
    Option("tcp_idle_timeout", "--tcp-idle-timeout", 10.0, "close idle TCP connections after this many seconds", _seconds),
    Option(
        "tcp_max_connections",
        "--tcp-max-connections",
        1000,
        "open DNS TCP connections at once, all listeners together; when full, the longest idle is closed to make room",
        _positive_int,
    ),
    Option(
        "tcp_max_per_client",
        "--tcp-max-per-client",
        64,
        "open DNS TCP connections from one client address; beyond that its own longest idle one is closed",
        _positive_int,
    ),
    Option(
        "tcp_max_lifetime",
        "--tcp-max-lifetime",
        120.0,
        "close a DNS TCP connection this many seconds after it opened, once no query is pending (0: no limit)",
        _seconds,
    ),
    Option("server_id", "--server-id", None, "text of CHAOS id.server / hostname.bind (default: the host name)"),
    Option(
        "workers",
        "--workers",
        1,
        "server processes sharing the DNS port with SO_REUSEPORT, each with its own sources; worker i serves metrics on the metrics port + i",
        _positive_int,
    ),
)
BY_KEY = {o.key: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    listen: tuple[tuple[str, int], ...]
    zones: tuple[str, ...]
    reverse_cidrs: tuple[str, ...]
    name_template: str
    ns_name: tuple[str, ...]
    ns_addresses: tuple[str, ...]
    ttl: int
    negative_ttl: int
    pods_file: str | None
    hosts_file: str | None
    reload_interval: float
    kubeconfig: str | None
    context: str | None
    namespaces: tuple[str, ...]
    label_selector: str | None
    events: bool
    publish: str
    fallback_ptr: bool
    cluster_domain: str
    metrics_listen: tuple[str, int] | None
    metrics_max_connections: int
    metrics_idle_timeout: float
    lameduck: float
    log_format: str
    log_level: str
    log_queries: bool
    tcp_idle_timeout: float
    tcp_max_connections: int
    tcp_max_per_client: int
    tcp_max_lifetime: float
    server_id: str
    workers: int
    extra: dict = field(default_factory=dict, compare=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML file setting any option below (flags win)")
    for o in OPTIONS:
        default_text = "" if o.default in (None, []) else f" (default: {o.default})"
        if o.switch:
            parser.add_argument(o.flag, dest=o.key, action=argparse.BooleanOptionalAction, default=None, help=o.help + default_text)
        elif o.repeat:
            parser.add_argument(
                o.flag,
                dest=o.key,
                action="append",
                default=None,
                metavar=o.flag.lstrip("-").upper().replace("-", "_"),
                help=o.help + default_text,
            )
        else:
            parser.add_argument(o.flag, dest=o.key, default=None, choices=o.choices, help=o.help + default_text)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    value = str(text).strip()
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
    if not sep or not host or (":" in host and not value.startswith("[")):
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT (use [ADDR]:PORT for IPv6)")
    try:
        number = int(port)
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} needs an IP address and a numeric port") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{what}: {text!r} port out of range")
    return host, number


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"--config: {where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path}: the top level must be a mapping of option: value")
    return data


def build_config(args: argparse.Namespace) -> Config:
    """Defaults < YAML file < flags, then every value checked. Raises ConfigError."""
    raw: dict[str, Any] = {o.key: o.default for o in OPTIONS}
    if getattr(args, "config", None):
        for key, value in load_yaml(args.config).items():
            if key not in BY_KEY:
                raise ConfigError(f"config key {key!r}: unknown (known keys: {', '.join(sorted(BY_KEY))})")
            raw[key] = value
    for o in OPTIONS:
        value = getattr(args, o.key, None)
        if value is not None:
            raw[o.key] = value
    return _validate(raw)


def _validate(raw: dict[str, Any]) -> Config:
    values: dict[str, Any] = {}
    for o in OPTIONS:
        value = raw[o.key]
        try:
            if o.repeat:
                if isinstance(value, (str, int)):
                    value = [value]
                if not isinstance(value, list):
                    raise ValueError("must be a list")
                value = tuple(o.kind(v) for v in value)
            elif value is not None:
                value = o.kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{o.key} ({o.flag}): {raw[o.key]!r}: {exc}") from None
        if o.choices and value not in o.choices:
            raise ConfigError(f"{o.key} ({o.flag}): {value!r}: must be one of {', '.join(o.choices)}")
        values[o.key] = value

    if not values["zones"]:
        raise ConfigError("zones (--zone): at least one forward zone is required")
    for zone in values["zones"]:
        problem = check_hostname(zone)
        if problem:
            raise ConfigError(f"zones (--zone): {zone!r} is not a valid domain name: {problem}")
    for name in values["ns_name"]:
        if check_hostname(name):
            raise ConfigError(f"ns_name (--ns-name): {name!r} is not a valid domain name: {check_hostname(name)}")
    if values["cluster_domain"] is not None and check_hostname(values["cluster_domain"]):
        raise ConfigError(
            f"cluster_domain (--cluster-domain): {values['cluster_domain']!r} is not a valid domain name: {check_hostname(values['cluster_domain'])}"
        )
    ns_addresses = []
    for address in values["ns_addresses"]:
        try:
            ns_addresses.append(ipaddress.ip_address(str(address).strip()).compressed)
        except ValueError:
            raise ConfigError(f"ns_addresses (--ns-address): {address!r} is not an IP address") from None
    for cidr in values["reverse_cidrs"]:
        try:
            names.reverse_zones(cidr)
        except ValueError as exc:
            raise ConfigError(f"reverse_cidrs (--reverse-cidr): {cidr!r}: {exc}") from None
    _check_template(values["name_template"])
    for key in ("pods_file", "hosts_file", "kubeconfig"):
        path = values[key]
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{key} ({BY_KEY[key].flag}): {path!r}: no such file")
    for key in ("workers", "tcp_max_per_client", "metrics_max_connections"):
        if values[key] < 1:
            raise ConfigError(f"{key} ({BY_KEY[key].flag}): {values[key]!r}: must be at least 1")
    if values["metrics_idle_timeout"] <= 0:
        raise ConfigError(f"metrics_idle_timeout (--metrics-idle-timeout): {values['metrics_idle_timeout']!r}: must be more than 0")

    values["listen"] = tuple(parse_hostport(v, "listen (--listen)") for v in values["listen"])
    if not values["listen"]:
        raise ConfigError("listen (--listen): at least one address is required")
    metrics = values["metrics_listen"]
    values["metrics_listen"] = None if metrics in (None, "", "off") else parse_hostport(metrics, "metrics_listen (--metrics-listen)")
    values["zones"] = tuple(z.lower().rstrip(".") for z in values["zones"])
    values["ns_name"] = tuple(n.lower().rstrip(".") for n in values["ns_name"])
    values["ns_addresses"] = tuple(ns_addresses) or _listen_addresses(values)
    values["server_id"] = values["server_id"] or socket.gethostname()
    if values["events"] and values["pods_file"]:
        raise ConfigError(
            "events (--events): Kubernetes Events need the Kubernetes source; with --pods-file there is no API to post them to"
        )
    if values["events"] is None:
        values["events"] = values["pods_file"] is None
    return Config(**values)


def _listen_addresses(values: dict[str, Any]) -> tuple[str, ...]:
    """The NS address default: the --listen addresses that name one specific IP.

    Only needed when an NS name lies inside a served zone (secondaries reject
    an in-zone NS name without an address); wildcard listens name no address.
    """
    if not _ns_names_in_zone(values):
        return ()
    specific = tuple(
        dict.fromkeys(
            ipaddress.ip_address(host).compressed for host, _ in values["listen"] if not ipaddress.ip_address(host).is_unspecified
        )
    )
    if not specific:
        raise ConfigError(
            "ns_addresses (--ns-address): required when every --listen is a wildcard address (0.0.0.0, [::]): give the address clients and secondaries reach this server on"
        )
    return specific


def _ns_names_in_zone(values: dict[str, Any]) -> bool:
    zones = [names.to_wire(z) for z in values["zones"]]
    zones += [apex for cidr in values["reverse_cidrs"] for apex, _ in names.reverse_zones(cidr)]
    ns_names = [names.to_wire(n) for n in values["ns_name"]] or [b"\x02ns" + zones[0]]
    return any(names.is_subdomain(ns, zone) for ns in ns_names for zone in zones)


def _check_template(template: str) -> None:
    what = "name_template (--name-template)"
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise ConfigError(f"{what}: {template!r}: {exc}") from None
    unknown = sorted(fields - TEMPLATE_FIELDS)
    if unknown:
        raise ConfigError(f"{what}: {template!r}: unknown field {{{unknown[0]}}} (known: hostname, subdomain, namespace, pod)")
    sample = template.format(hostname="h", subdomain="s", namespace="n", pod="p")
    if check_hostname(sample):
        raise ConfigError(f"{what}: {template!r} does not make a valid name: {check_hostname(sample)}")
