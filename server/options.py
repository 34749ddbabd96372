"""One option of the configuration: its value's kind, its range, its flag and its one-line error.

config.py declares every option in one table of these; the parser, the YAML
loader and the checks come from it.
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
