"""TSIG key files in BIND syntax, as `tsig-keygen NAME` prints them, read into a key ring.

    key "transfer" {
        algorithm hmac-sha256;
        secret "base64...";
    };

Several keys per file, `#`, `//` and `/* */` comments. A key file is a secret:
one that its group or others may read is refused. Nothing here ever puts a
secret into a message or a repr.
"""

from __future__ import annotations

import binascii
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.tsig

ALGORITHMS = {
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}

_TOKEN = re.compile(r'\s+|#[^\n]*|//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|[{};]|[^\s{};"#/]+|/', re.S)


class KeyFileError(Exception):
    """A one-line problem with a key file (unreadable, too open, bad syntax), naming file and line."""


@dataclass(frozen=True)
class TsigKey:
    """One key. `key` is dnspython's (whose repr shows the secret: never log it)."""

    name: str  # text, lower case, trailing dot
    algorithm: str
    key: dns.tsig.Key = field(repr=False)
    wire_name: bytes = field(repr=False)
    algorithm_wire: bytes = field(repr=False)

    @property
    def mac_size(self) -> int:
        return dns.tsig.mac_sizes[self.key.algorithm]


class KeyRing:
    """Keys by name. The repr names the keys, never their secrets."""

    def __init__(self, keys: Iterable[TsigKey] = ()):
        self._by_name: dict[str, TsigKey] = {}
        for key in keys:
            self._by_name[key.name] = key

    def get(self, name: str) -> TsigKey | None:
        return self._by_name.get(_canonical(name))

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _canonical(name) in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(self._by_name)})"


def make_key(name: str, algorithm: str, secret: bytes) -> TsigKey:
    """A key from its parts; ValueError for an unknown algorithm or an empty secret."""
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not supported (use one of {', '.join(ALGORITHMS)})")
    if not secret:
        raise ValueError("empty secret")
    text = _canonical(name)
    dns_name = dns.name.from_text(text)
    return TsigKey(
        name=text,
        algorithm=algorithm,
        key=dns.tsig.Key(dns_name, secret, ALGORITHMS[algorithm]),
        wire_name=name_wire(dns_name.canonicalize()),
        algorithm_wire=name_wire(ALGORITHMS[algorithm]),
    )


def name_wire(name: dns.name.Name) -> bytes:
    """Uncompressed wire form of a dnspython name."""
    data = name.to_wire()
    assert data is not None  # None only when writing to a file
    return data


def load_key_files(paths: Iterable[str]) -> KeyRing:
    """Every key of every file; KeyFileError for the first problem, duplicates included."""
    keys: dict[str, TsigKey] = {}
    for path in paths:
        for key in read_key_file(path):
            if key.name in keys:
                raise KeyFileError(f"{path}: key {key.name!r} is defined twice")
            keys[key.name] = key
    return KeyRing(keys.values())


def read_key_file(path: str) -> list[TsigKey]:
    """The keys of one file, after checking that only its owner can read it."""
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                raise KeyFileError(f"{path}: key file is readable by group or others (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
            text = handle.read()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: key file is not UTF-8 text") from None
    return parse_keys(text, path)


def parse_keys(text: str, where: str = "<keys>") -> list[TsigKey]:
    """Parse `key "NAME" { algorithm ALG; secret "BASE64"; };` blocks; KeyFileError with the line."""
    tokens = _Tokens(text, where)
    keys = []
    seen: set[str] = set()
    while not tokens.done():
        line = tokens.line
        word = tokens.take()
        if word != "key":
            raise tokens.error(f"expected 'key', found {_shown(word)}", line)
        name = _unquote(tokens.take("a key name"))
        tokens.expect("{")
        fields: dict[str, tuple[str, int]] = {}
        while tokens.peek() != "}":
            field_line = tokens.line
            field_name = tokens.take("'algorithm', 'secret' or '}'").lower()
            if field_name not in ("algorithm", "secret"):
                raise tokens.error(f"unknown key statement {_shown(field_name)}", field_line)
            if field_name in fields:
                raise tokens.error(f"{field_name} given twice in key {name!r}", field_line)
            fields[field_name] = (_unquote(tokens.take(f"a value for {field_name}")), field_line)
            tokens.expect(";")
        tokens.expect("}")
        tokens.expect(";")
        for required in ("algorithm", "secret"):
            if required not in fields:
                raise tokens.error(f"key {name!r} has no {required}", line)
        secret_text, secret_line = fields["secret"]
        try:
            secret = binascii.a2b_base64(secret_text.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise tokens.error(f"the secret of key {name!r} is not valid base64", secret_line) from None
        try:
            key = make_key(name, fields["algorithm"][0], secret)
        except (ValueError, dns.exception.DNSException) as exc:
            raise tokens.error(f"key {name!r}: {exc}", line) from None
        if key.name in seen:
            raise tokens.error(f"key {name!r} is defined twice", line)
        seen.add(key.name)
        keys.append(key)
    return keys


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _shown(token: str) -> str:
    """A token for an error message: punctuation and short lower-case words as they are; anything else,
    which may be a secret out of place, only by its kind (a key file's errors must not leak it)."""
    if token in ("{", "}", ";") or re.fullmatch(r"[a-z][a-z-]{0,15}", token):
        return repr(token)
    return "a quoted string" if token.startswith('"') else f"a word of {len(token)} characters"


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


class _Tokens:
    """The file's tokens with their line numbers, comments dropped."""

    def __init__(self, text: str, where: str):
        self.where = where
        self.items: list[tuple[str, int]] = list(self._scan(text))
        self.index = 0

    def _scan(self, text: str) -> Iterator[tuple[str, int]]:
        line = 1
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.group() == "/":
                if text[position] == '"':
                    raise KeyFileError(f"{self.where}:{line}: unterminated string")
                if text.startswith("/*", position):
                    raise KeyFileError(f"{self.where}:{line}: unterminated comment")
                raise KeyFileError(f"{self.where}:{line}: unexpected character {text[position]!r}")
            token = match.group()
            if not (token[0].isspace() or token[0] == "#" or token[:2] in ("//", "/*")):
                yield token, line
            line += token.count("\n")
            position = match.end()

    @property
    def line(self) -> int:
        if self.index < len(self.items):
            return self.items[self.index][1]
        return self.items[-1][1] if self.items else 1

    def done(self) -> bool:
        return self.index >= len(self.items)

    def peek(self) -> str | None:
        return self.items[self.index][0] if self.index < len(self.items) else None

    def take(self, what: str = "a statement") -> str:
        if self.done():
            raise self.error(f"unexpected end of file, expected {what}", self.line)
        token = self.items[self.index][0]
        self.index += 1
        return token

    def expect(self, token: str) -> None:
        line = self.line
        found = self.take(repr(token))
        if found != token:
            raise self.error(f"expected {token!r}, found {_shown(found)}", line)

    def error(self, message: str, line: int) -> KeyFileError:
        return KeyFileError(f"{self.where}:{line}: {message}")
