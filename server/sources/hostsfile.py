"""Static host entries in /etc/hosts syntax: `IP name [name...]  # comment`.

Parsed into a compact table (one string per line) rather than a list of
StaticEntry objects: a million-line file is then ~150 MB less and parses in a
fraction of the time; StaticEntry objects are made as the table is read.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from ..errors import SourceError
from ..model import MAX_LABEL, MAX_SUBDOMAIN, StaticEntry, host_name_problem, normal_ip, shown

DEFAULT_MAX_SIZE = 16 << 20  # --hosts-file-max-size
MAX_LINE = 4096  # characters of one line, comment included
CHUNK = 1 << 20  # read, decoded and split a megabyte at a time: never the whole file as lines at once


class HostsTable(Sequence[StaticEntry]):
    """The entries of a hosts file: per line its address and names, joined by spaces, and its number."""

    __slots__ = ("_lines", "_numbers")

    def __init__(self, lines: list[str], numbers: array):
        self._lines, self._numbers = lines, numbers

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> StaticEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[StaticEntry]: ...

    def __getitem__(self, index: int | slice) -> StaticEntry | list[StaticEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        ip, *names = self._lines[index].split(" ")
        return StaticEntry(ip, tuple(names), self._numbers[index])

    def __iter__(self) -> Iterator[StaticEntry]:
        for ip, names, number in self.rows():
            yield StaticEntry(ip, names, number)

    def rows(self) -> Iterator[tuple[str, tuple[str, ...], int]]:
        """(address, names, line number) of each entry, without making StaticEntry objects."""
        for text, number in zip(self._lines, self._numbers):
            fields = text.split(" ")
            yield fields[0], tuple(fields[1:]), number


def parse_hosts_file(path: str, max_size: int = DEFAULT_MAX_SIZE) -> HostsTable:
    """The file's entries. SourceError naming the file (and line) when it cannot be read, is too large or is not valid."""
    data = bytearray()
    try:
        with open(path, "rb") as handle:
            # A megabyte at a time: read(max_size) would allocate the whole limit at once.
            while chunk := handle.read(CHUNK):
                data += chunk
                if len(data) > max_size:
                    raise SourceError(path, None, f"the file is larger than --hosts-file-max-size ({_size(max_size)})")
    except OSError as exc:
        raise SourceError(path, None, exc.strerror or str(exc)) from exc
    return parse_hosts_bytes(path, data)


def parse_hosts_text(path: str, text: str) -> HostsTable:
    return parse_hosts_bytes(path, text.encode("utf-8", "surrogatepass"))


def _lines(path: str, data: bytes | bytearray) -> Iterator[tuple[int, str, bool]]:
    """(number, text, lowered) of each line; `lowered`: the text is ASCII and in lower case already."""
    number = 0
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + CHUNK)
        end = len(data) if end < 0 else end + 1
        try:
            text = data[start:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SourceError(path, number + data.count(b"\n", start, start + exc.start) + 1, "not UTF-8 text") from None
        # Names are compared in lower case. Text all ASCII (the rule) is lowered at once; otherwise each
        # line's names must be ASCII before lower() could turn a look-alike (K, the Kelvin sign) into a letter.
        lowered = text.isascii()
        lines = (text.lower() if lowered else text).split("\n")
        if lines[-1] == "":
            lines.pop()  # the chunk's final newline ends its last line
        first = number + 1  # the numbering goes on from the last chunk
        for number, line in enumerate(lines, first):
            yield number, line, lowered
        start = end


def parse_hosts_bytes(path: str, data: bytes | bytearray) -> HostsTable:
    lines: list[str] = []
    numbers = array("I")
    for number, line, lowered in _lines(path, data):
        if len(line) > MAX_LINE:
            raise SourceError(path, number, f"the line is longer than {MAX_LINE} characters")
        hash_at = line.find("#")
        if hash_at >= 0:
            line = line[:hash_at]
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise SourceError(path, number, f"address {shown(fields[0])} has no name")
        # An IPv6 zone (fe80::1%eth0) means nothing to a DNS client.
        ip = normal_ip(fields[0].split("%", 1)[0] if "%" in fields[0] else fields[0])
        if ip is None:
            raise SourceError(path, number, f"{shown(fields[0])} is not an IP address")
        names = " ".join(fields[1:])
        if not lowered:
            names = names.lower() if names.isascii() else "\0"  # "\0" fails the checks, as such a name must
        # All the names of the line checked at once, each between spaces, a final dot dropped.
        spaced = f" {names} ".replace(". ", " ")
        if (
            not _NAME_CHARACTERS.fullmatch(names)
            or " -" in spaced
            or "- " in spaced
            or " ." in spaced
            or ". " in spaced
            or "  " in spaced  # a name that was only a dot
            or ".." in spaced
            or ".-" in spaced
            or "-." in spaced
            or (len(names) > MAX_LABEL and _LONG_LABEL.search(spaced))
            or (len(names) > MAX_SUBDOMAIN and _LONG_NAME.search(spaced))
        ):
            raise SourceError(path, number, _name_problem(fields[1:]))
        lines.append(ip + spaced[:-1])
        numbers.append(number)
    return HostsTable(lines, numbers)


_NAME_CHARACTERS = re.compile(r"[a-z0-9. -]+")
_LONG_LABEL = re.compile(rf"[. ][^. ]{{{MAX_LABEL + 1}}}")  # from a separator: a search tries every position
_LONG_NAME = re.compile(rf" [^ ]{{{MAX_SUBDOMAIN + 1}}}")


def _name_problem(names: list[str]) -> str:
    """What is wrong with the first bad name of a line (the slow check, once, for the message)."""
    for name in names:
        problem = host_name_problem(name)
        if problem:
            return problem
    return f"{' '.join(names)!r}: not host names"


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 and not count % (1 << 20) else f"{count} bytes"
