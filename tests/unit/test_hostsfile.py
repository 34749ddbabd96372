"""The hosts file: what it serves, what it refuses (naming the line), and its fast checks equal the plain ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.errors import SourceError
from server.model import StaticEntry, host_name_problem
from server.sources import hostsfile
from server.sources.hostsfile import parse_hosts_file, parse_hosts_text


def test_entries_in_hosts_syntax():
    table = parse_hosts_text(
        "hosts",
        "# static entries\n"
        "10.244.0.2   GW.pods.example.internal  gateway.pods.example.internal.  # the router\n"
        "\n"
        "fd00:10:244:0:0:0:0:3\tldap.pods.example.internal\r\n"
        "fe80::1%eth0 link.pods.example.internal\n"
        "   # indented comment\n"
        "10.244.0.4 legacy",  # no final newline
    )
    assert list(table) == [
        StaticEntry("10.244.0.2", ("gw.pods.example.internal", "gateway.pods.example.internal"), 2),
        StaticEntry("fd00:10:244::3", ("ldap.pods.example.internal",), 4),
        StaticEntry("fe80::1", ("link.pods.example.internal",), 5),
        StaticEntry("10.244.0.4", ("legacy",), 7),
    ]
    assert len(table) == 4 and table[1] == list(table)[1] and table[-1].line == 7
    assert next(table.rows()) == ("10.244.0.2", ("gw.pods.example.internal", "gateway.pods.example.internal"), 2)


@pytest.mark.parametrize(
    "line,message",
    [
        ("10.244.0.2", "hosts:2: address '10.244.0.2' has no name"),
        ("10.244.0.300 gw.example", "hosts:2: '10.244.0.300' is not an IP address"),
        ("10.244.0.2 _ldap._tcp.example", "hosts:2: '_ldap._tcp.example' is not a host name"),
        ("10.244.0.2 ok.example bad_name.example", "hosts:2: 'bad_name.example' is not a host name"),
        ("10.244.0.2 *.example", "hosts:2: '*.example' is not a host name"),
        ("10.244.0.2 a..example", "hosts:2: 'a..example' is not a host name"),
        ("10.244.0.2 -a.example", "hosts:2: '-a.example' is not a host name"),
        ("10.244.0.2 a-.example", "hosts:2: 'a-.example' is not a host name"),
        ("10.244.0.2 example..", "hosts:2: 'example..' is not a host name"),
        (f"10.244.0.2 {'a' * 64}.example", "is not a host name"),
        (f"10.244.0.2 {'a.' * 127}a", "is not a host name"),  # 255 characters
        ("10.244.0.2 \u212aafka.example", "hosts:2: '\u212aafka.example' is not a host name"),  # lower() would make it kafka
        ("10.244.0.2 caf\u00e9.example  # café", "hosts:2: 'caf\u00e9.example' is not a host name"),
        ("10.244.0.2 " + "a" * 5000, f"hosts:2: the line is longer than {hostsfile.MAX_LINE} characters"),
    ],
)
def test_a_bad_line_is_refused_naming_the_line(line, message):
    with pytest.raises(SourceError) as caught:
        parse_hosts_text("hosts", f"10.244.0.1 fine.example\n{line}\n")
    assert message in str(caught.value)


def test_a_name_of_253_characters_is_a_host_name():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert parse_hosts_text("hosts", f"10.0.0.1 {name}.\n")[0].names == (name,)


def test_non_ascii_comments_are_fine():
    assert parse_hosts_text("hosts", "# Büro\n10.0.0.1 drucker.example  # im Büro\n")[0].names == ("drucker.example",)


def test_a_file_too_large_is_refused(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("10.0.0.1 a.example\n" * 100)
    assert len(parse_hosts_file(str(path), max_size=1900)) == 100
    with pytest.raises(SourceError, match=r"hosts: the file is larger than --hosts-file-max-size \(1899 bytes\)"):
        parse_hosts_file(str(path), max_size=1899)


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "hosts"
    path.write_bytes(b"10.0.0.1 a.example\n10.0.0.2 b.example # \xff\n")
    with pytest.raises(SourceError, match=r"hosts:2: not UTF-8 text"):
        parse_hosts_file(str(path))


def test_line_numbers_go_on_across_chunks_for_entries_and_errors(monkeypatch):
    monkeypatch.setattr(hostsfile, "CHUNK", 50)
    lines = []
    for n in range(200):
        lines.append(f"10.0.{n // 256}.{n % 256} h{n}.example")
        if n % 3 == 0:
            lines.append("")
    text = "\n".join(lines) + "\n"
    table = parse_hosts_text("hosts", text)
    assert [entry.line for entry in table] == [number for number, line in enumerate(lines, 1) if line]
    with pytest.raises(SourceError, match=rf"hosts:{len(lines) + 1}: 'bad_name' is not a host name"):
        parse_hosts_text("hosts", text + "10.0.9.9 bad_name\n")


_NAME_TEXT = st.text(alphabet="ab09-._*Z \u212a", max_size=70) | st.builds(
    lambda labels, dot: ".".join(labels) + dot,
    st.lists(st.text(alphabet="ab-", min_size=0, max_size=66), min_size=1, max_size=5),
    st.sampled_from(["", ".", ".."]),
)


@settings(max_examples=1500, deadline=None)
@given(names=st.lists(_NAME_TEXT.filter(lambda n: n.strip() == n and n and "#" not in n and " " not in n), min_size=1, max_size=3))
def test_the_line_at_once_check_means_what_host_name_problem_says(names):
    # The parser checks all of a line's names at once, without a regex per name: the same verdict.
    valid = all(host_name_problem(name) is None for name in names)
    try:
        table = parse_hosts_text("hosts", f"10.0.0.1 {' '.join(names)}\n")
    except SourceError as error:
        assert not valid, error
        assert str(error).startswith("hosts:1: ")
    else:
        assert valid
        assert table[0].names == tuple(name.lower().removesuffix(".") for name in names)
