"""The records file: static records of any type in RFC 1035 master-file syntax ($ORIGIN, $TTL, relative names).

Parsed with dnspython's zone-file reader, so every type it knows is
accepted; each record keeps the line it came from for the messages. SOA and
NS are the server's own and refused, as are records of another class.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.zonefile

from ..errors import SourceError
from ..model import StaticRecord

DEFAULT_MAX_SIZE = 16 << 20  # the same default as the hosts file's
REFUSED_TYPES = {dns.rdatatype.SOA: "the zones' SOA is the server's own", dns.rdatatype.NS: "the zones' NS records are the server's own"}


def parse_records_file(path: str, origin: str, default_ttl: int, max_size: int = DEFAULT_MAX_SIZE) -> list[StaticRecord]:
    """Every record of the file. SourceError, with the line where known, when it cannot be read or parsed."""
    try:
        size = os.path.getsize(path)
        if size > max_size:
            raise SourceError(path, None, f"the file is {size} bytes, more than the {max_size} a records file may have")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(path, None, getattr(exc, "strerror", None) or str(exc)) from exc
    return parse_records_text(path, text, origin, default_ttl)


def parse_records_text(path: str, text: str, origin: str, default_ttl: int) -> list[StaticRecord]:
    records: list[StaticRecord] = []
    # The reader drops records outside its zone without a word: read as if for the root, with the
    # first --zone as the starting $ORIGIN, and leave reporting out-of-zone names to the registry.
    manager = dns.zonefile.RRSetsReaderManager(dns.name.root, False, dns.rdataclass.IN)
    tokenizer = dns.tokenizer.Tokenizer(text, path)

    def line_of_last_record() -> int:
        # The reader has read the record's end of line by now (a multi-line record: its last line).
        return tokenizer.line_number - 1 if tokenizer.line_number > 1 else 1

    try:
        with manager.writer(True) as txn:
            add = txn.add

            def noting_line(name, ttl, rdata):  # the reader hands each record here: note where it was
                line = line_of_last_record()
                records.append(_record(path, line, name, ttl, rdata))
                try:
                    return add(name, ttl, rdata)
                except dns.exception.DNSException as exc:  # a CNAME beside other data (RFC 1034 §3.6.2), say
                    raise SourceError(path, line, f"{name.to_text()}: {exc}") from None

            txn.add = noting_line
            reader = dns.zonefile.Reader(tokenizer, dns.rdataclass.IN, txn, allow_include=False, default_ttl=default_ttl)
            reader.current_origin = dns.name.from_text(origin)
            reader.read()
    except SourceError:
        raise
    except dns.exception.SyntaxError as exc:  # "<path>:<line>: reason" as the reader words it
        where, _, reason = str(exc).partition(": ")
        line = where.rpartition(":")[2]
        raise SourceError(path, int(line) if line.isdigit() else None, reason or str(exc)) from None
    except dns.exception.DNSException as exc:
        raise SourceError(path, tokenizer.line_number, str(exc)) from None
    return records


def _record(path: str, line: int, name: dns.name.Name, ttl: int, rdata) -> StaticRecord:
    if rdata.rdtype in REFUSED_TYPES:
        raise SourceError(path, line, f"{dns.rdatatype.to_text(rdata.rdtype)} record: {REFUSED_TYPES[rdata.rdtype]}")
    if rdata.rdtype in (dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.DNAME) or dns.rdatatype.is_metatype(rdata.rdtype):
        raise SourceError(path, line, f"{dns.rdatatype.to_text(rdata.rdtype)} records cannot be served from a file")
    if ttl > 2**31 - 1:
        raise SourceError(path, line, f"TTL {ttl} is above 2147483647 (RFC 2181 §8)")
    owner = name.to_text(omit_final_dot=True).lower()
    return StaticRecord(owner, int(rdata.rdtype), ttl, rdata.to_wire(), line)


def names_of(records: Iterable[StaticRecord]) -> set[str]:
    return {record.name for record in records}
