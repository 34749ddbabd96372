"""One validated Config, built from defaults, then the YAML file, then flags (flags win).

Every option is declared once in OPTIONS; the argument parser, the YAML
loader and the checks all come from that table, so they cannot drift apart.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

import yaml

from .model import TEMPLATE_FIELDS, check_hostname, template_fields
from .options import BY_KEY, OPTIONS, ConfigError, Option, add_options, check_value
from .zone import names

__all__ = ["OPTIONS", "Config", "ConfigError", "Option", "add_arguments", "build_config", "check_value", "config_warnings"]


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
    pods_file_memory_limit: int
    hosts_file: str | None
    hosts_file_max_size: int
    records_file: str | None
    reload_interval: float
    kubeconfig: str | None
    context: str | None
    namespaces: tuple[str, ...]
    label_selector: str | None
    events: bool
    publish: str
    fallback_ptr: bool
    cluster_domain: str
    srv_records: str
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
    udp_frontend: str
    udp_batch: int
    server_id: str
    tsig_key_files: tuple[str, ...]
    transfer_keys: tuple[str, ...]
    transfer_allow_unsigned: tuple[str, ...]
    ixfr_journal: int
    ixfr_journal_bytes: int
    notify: tuple[tuple[str, int], ...]
    notify_key: str | None
    workers: int

    @property
    def transfers_configured(self) -> bool:
        """Whether a zone transfer, TSIG or NOTIFY option is set (without one, AXFR and IXFR are REFUSED)."""
        return bool(self.tsig_key_files or self.transfer_keys or self.transfer_allow_unsigned or self.notify)


def add_arguments(parser: argparse.ArgumentParser, serve: bool = True) -> None:
    """The --config flag and every option's flag; with serve=False (export-zone), not the serve-only ones."""
    parser.add_argument("--config", metavar="FILE", help="YAML file setting any option below (flags win)")
    add_options(parser, [o for o in OPTIONS if serve or not o.serve_only])


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
        raise ConfigError(f"{what}: {text!r}: the port must be between 0 and 65535")
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
    config_file = getattr(args, "config", None)
    if config_file:
        base = os.path.dirname(os.path.abspath(config_file))
        for key, value in load_yaml(config_file).items():
            if key not in BY_KEY:
                raise ConfigError(f"config key {key!r}: unknown (known keys: {', '.join(sorted(BY_KEY))})")
            raw[key] = _relative_to(base, value) if BY_KEY[key].path else value
    for o in OPTIONS:
        value = getattr(args, o.key, None)
        if value is not None:
            raw[o.key] = value
    return _validate(raw)


def _relative_to(base: str, value: Any) -> Any:
    """A path from a config file: ~ expanded, and a relative one taken from the file's directory."""
    if isinstance(value, list):
        return [_relative_to(base, v) for v in value]
    if not isinstance(value, str) or not value:
        return value
    return os.path.join(base, os.path.expanduser(value))


def _validate(raw: dict[str, Any]) -> Config:
    values: dict[str, Any] = {}
    for o in OPTIONS:
        values[o.key] = check_value(o, raw[o.key])

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
    for o in OPTIONS:
        path = values[o.key]
        # Key files (repeatable) are read, and their absence told, by the transfer setup.
        if o.path and not o.repeat and path is not None and not os.path.isfile(path):
            raise ConfigError(f"{o.key} ({o.flag}): {path!r}: no such file")

    _check_transfer_values(values)

    values["listen"] = tuple(parse_hostport(v, "listen (--listen)") for v in values["listen"])
    if not values["listen"]:
        raise ConfigError("listen (--listen): at least one address is required")
    metrics = values["metrics_listen"]
    values["metrics_listen"] = None if metrics in (None, "", "off") else parse_hostport(metrics, "metrics_listen (--metrics-listen)")
    if values["metrics_listen"] and values["metrics_listen"][1] and values["metrics_listen"][1] + values["workers"] - 1 > 65535:
        raise ConfigError(
            f"metrics_listen (--metrics-listen): {metrics!r}: with --workers {values['workers']} the workers' metrics ports"
            f" (port + 0 to {values['workers'] - 1}) go past 65535"
        )
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


def _check_transfer_values(values: dict[str, Any]) -> None:
    """The zone transfer options as values (the engine checks the key files and names when it starts)."""
    for cidr in values["transfer_allow_unsigned"]:
        try:
            ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            raise ConfigError(f"transfer_allow_unsigned (--transfer-allow-unsigned): {cidr!r} is not a CIDR") from None
    targets = []
    for target in values["notify"]:
        host, port = parse_hostport(target, "notify (--notify)")
        if port == 0:
            raise ConfigError(f"notify (--notify): {target!r}: port 0 is not a port a secondary listens on")
        targets.append((ipaddress.ip_address(host).compressed, port))
    values["notify"] = tuple(targets)
    for key in ("tsig_key_files", "transfer_keys"):
        if any(not str(v).strip() for v in values[key]):
            raise ConfigError(f"{key} ({BY_KEY[key].flag}): an empty value")
    if values["notify_key"] is not None and not values["notify"]:
        raise ConfigError("notify_key (--notify-key): set, but no --notify target to send NOTIFY to")


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


def config_warnings(config: Config) -> list[str]:
    """What a valid configuration may still not do as meant: logged once at start."""
    warnings = []
    if not config.reverse_cidrs:
        warnings.append("no --reverse-cidr given: no reverse zone is served, so no pod IP gets a PTR (reverse queries are REFUSED)")
    return warnings


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
