"""Static host entries in /etc/hosts syntax: `IP name [name...]  # comment`."""

from __future__ import annotations

import ipaddress

from ..errors import SourceError
from ..model import StaticEntry, check_hostname


def parse_hosts_file(path: str) -> list[StaticEntry]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(path, None, getattr(exc, "strerror", None) or str(exc)) from exc
    return parse_hosts_text(path, text)


def parse_hosts_text(path: str, text: str) -> list[StaticEntry]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise SourceError(path, number, f"address {fields[0]!r} has no name")
        try:
            ip = ipaddress.ip_address(fields[0].split("%", 1)[0]).compressed
        except ValueError:
            raise SourceError(path, number, f"{fields[0]!r} is not an IP address") from None
        for name in fields[1:]:
            problem = check_hostname(name)
            if problem:
                raise SourceError(path, number, f"{name!r} is not a valid host name: {problem}")
        entries.append(StaticEntry(ip, tuple(n.lower().rstrip(".") for n in fields[1:]), number))
    return entries
