"""Knot (knotd) and BIND (named) as secondaries of the real server (a pod file source), with TSIG and
NOTIFY: both load every zone and answer like the primary; a change of the pod file reaches both as IXFR;
a journal too short for what they missed falls back to a full transfer; bad keys and times get no zone data."""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request
from types import SimpleNamespace
from unittest import mock

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.xfr
import pytest

from server.transfer.keys import make_key
from tests.conftest import REVERSE_ZONE, ZONE
from tests.helpers import sts_pod
from tests.secondaries import Bind, Knot, answer_of, ask, axfr_lines, converged, generate_keys, keys_of, write_pod_list
from tests.serverproc import ServerProcess, read_tcp_frame

ZONES = [ZONE, REVERSE_ZONE]
SETS = [(f"set{s}", f"ns{s % 4}") for s in range(20)]  # 20 sets of 10 pods in 4 namespaces
CONVERGED_WITHIN = 15.0  # generous: in practice well under a second
ANSWERED_WITHIN = 2.0  # a change travels by NOTIFY and IXFR: both secondaries answer it this soon after the server


def pods(moved: dict[int, str] | None = None) -> list[dict]:
    """200 StatefulSet pods; `moved` gives some of them (by index) another IP."""
    out = []
    for index in range(200):
        name, namespace = SETS[index // 10]
        ip = (moved or {}).get(index, f"10.244.{index // 10}.{index % 10 + 10}")
        out.append(sts_pod(name, index % 10, ip, namespace))
    return out


def identity(index: int) -> str:
    name, namespace = SETS[index // 10]
    return f"{name}-{index % 10}.{name}.{namespace}.{ZONE}"


def reverse(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def addresses(port: int, name: str) -> list[str]:
    return sorted(d.to_text() for r in ask(port, name, "A").answer for d in r)


def sample_questions() -> list[tuple[str, str]]:
    questions = [(ZONE, "SOA"), (ZONE, "NS"), (REVERSE_ZONE, "SOA"), (REVERSE_ZONE, "NS"), (f"ns.{ZONE}", "A")]
    for index in (0, 1, 57, 199):
        ip = f"10.244.{index // 10}.{index % 10 + 10}"
        questions += [(identity(index), "A"), (identity(index), "AAAA"), (reverse(ip), "PTR")]
    questions += [(f"set3.ns3.{ZONE}", "A"), (f"ns2.{ZONE}", "A"), (f"nobody.{ZONE}", "A"), ("9.9.250.10.in-addr.arpa", "PTR")]
    return questions


def metric_value(metrics: str, name: str, **labels: str) -> float:
    """One sample of the /metrics text, by its labels (in any order)."""
    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}")]))
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in /metrics")


def serial(port: int, zone: str) -> int:
    return ask(port, zone, "SOA").answer[0][0].serial


def transfers_logged(server: ServerProcess, kind: str, result: str, key: str, zone: str, serials: str) -> list[str]:
    pattern = re.compile(rf"transfer {kind} {result} zone={re.escape(zone)}\. peer=\S+ key={key}\. serial={serials} ")
    return [line for line in list(server.lines) if pattern.search(line)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The real server from a pod file, NOTIFY to one knotd and one named, each with its own transfer key;
    a journal of one change per zone, so that two missed changes need a full transfer."""
    directory = tmp_path_factory.mktemp("server-secondaries")
    key_file = generate_keys(directory, "knot-xfr", "bind-xfr", "notify-key")
    pod_file = write_pod_list(directory / "pods.json", pods())
    knot = Knot(directory / "knot", 0, ZONES, key_file, "knot-xfr", "notify-key")
    bind = Bind(directory / "bind", 0, ZONES, key_file, "bind-xfr", "notify-key")
    server = ServerProcess(
        *("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pod_file)),
        *("--tsig-key-file", str(key_file), "--transfer-key", "knot-xfr", "--transfer-key", "bind-xfr"),
        *("--notify-key", "notify-key", "--notify", f"127.0.0.1:{knot.port}", "--notify", f"127.0.0.1:{bind.port}"),
        *("--ixfr-journal", "1", "--reload-interval", "60", "--metrics-listen", "127.0.0.1:0"),
    )
    try:
        server.__enter__()
        knot.primary_port = bind.primary_port = server.port
        knot.start()
        bind.start()
        for secondary in (knot, bind):
            secondary.wait_for(lambda s=secondary: converged(s, server.port), CONVERGED_WITHIN)
        yield SimpleNamespace(server=server, knot=knot, bind=bind, key_file=key_file, pod_file=pod_file)
    finally:
        knot.stop()
        bind.stop()
        server.stop()


def change_pods(setup, moved: dict[int, str]) -> float:
    """Rewrite the pod file, SIGHUP the server, wait until it answers the change; the monotonic time it did."""
    write_pod_list(setup.pod_file, pods(moved))
    assert setup.server.proc is not None
    setup.server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    index, ip = max(moved.items())
    while addresses(setup.server.port, identity(index)) != [ip]:
        assert time.monotonic() < deadline, "the server did not answer the change"
        time.sleep(0.01)
    return time.monotonic()


def test_both_secondaries_load_every_zone_and_answer_like_the_server(setup):
    port = setup.server.port
    for secondary in (setup.knot, setup.bind):
        assert converged(secondary, port)
        for name, rdtype in sample_questions():
            assert answer_of(ask(secondary.port, name, rdtype)) == answer_of(ask(port, name, rdtype)), f"{secondary.name}: {name} {rdtype}"
    for key in ("knot-xfr", "bind-xfr"):
        for zone in ZONES:
            assert transfers_logged(setup.server, "(AXFR|IXFR)", "full", key, zone, r"\S+"), (key, zone)


def test_a_pod_file_change_reaches_both_by_notify_as_ixfr(setup):
    port = setup.server.port
    old = {zone: serial(port, zone) for zone in ZONES}
    answered = change_pods(setup, {5: "10.244.99.5"})
    new = {zone: serial(port, zone) for zone in ZONES}
    for secondary in (setup.knot, setup.bind):
        secondary.wait_for(
            lambda s=secondary: (
                addresses(s.port, identity(5)) == ["10.244.99.5"] and bool(ask(s.port, reverse("10.244.99.5"), "PTR").answer)
            ),
            CONVERGED_WITHIN,
        )
        took = time.monotonic() - answered
        print(f"{secondary.name} answered the change {took:.3f} s after the server")
        assert took <= ANSWERED_WITHIN, f"{secondary.name} answered the change {took:.2f} s after the server"
    for key in ("knot-xfr", "bind-xfr"):
        for zone in ZONES:
            assert transfers_logged(setup.server, "IXFR", "incremental", key, zone, f"{old[zone]}->{new[zone]}"), (key, zone)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{setup.server.metrics_port}/metrics", timeout=5).read().decode()
    counted = {
        result: metric_value(metrics, "poddns_notifies_total", result=result) for result in ("sent", "answered", "refused", "failed")
    }
    # Two zones to two secondaries at the start (before they listen: superseded by the change's) and
    # after the change: at least 8 sent, the change's 4 answered, none refused or given up on.
    assert counted["sent"] >= 8 and counted["answered"] >= 4 and counted["refused"] == counted["failed"] == 0, counted
    assert metric_value(metrics, "poddns_transfers_total", result="incremental", type="ixfr") >= 4
    assert re.search(rf"\[{ZONE}\.\] notify, incoming, remote 127\.0\.0\.1@\d+, serial {new[ZONE]}", setup.knot.log_text())
    assert re.search(rf"zone {ZONE}/IN: notify from 127\.0\.0\.1#\d+: serial {new[ZONE]}", setup.bind.log_text())

    # dnspython asks the server for the same difference: the incremental form, the old address out of the
    # pod's name and its set's, the new one in.
    key = keys_of(setup.key_file)["knot-xfr"]
    records = [
        (dns.rdatatype.to_text(rrset.rdtype), rrset.name.to_text(), rdata.to_text())
        for message in dns.query.xfr(
            "127.0.0.1", ZONE, "IXFR", port=port, serial=old[ZONE], keyring=key.key, keyname=key.key.name, relativize=False
        )
        for rrset in message.answer
        for rdata in rrset
    ]
    assert [t for t, _, _ in records] == ["SOA", "SOA", "A", "A", "SOA", "A", "A", "SOA"]
    owners = sorted([identity(5) + ".", f"set0.ns0.{ZONE}."])
    assert sorted(records[2:4]) == [("A", owner, "10.244.0.15") for owner in owners]
    assert sorted(records[5:7]) == [("A", owner, "10.244.99.5") for owner in owners]


def test_two_changes_missed_with_a_journal_of_one_come_as_a_full_transfer(setup):
    port = setup.server.port
    old = serial(port, ZONE)
    for secondary in (setup.knot, setup.bind):
        secondary.pause()
    try:
        change_pods(setup, {5: "10.244.99.5", 6: "10.244.99.6"})
        change_pods(setup, {5: "10.244.99.5", 6: "10.244.99.6", 7: "10.244.99.7"})
    finally:
        for secondary in (setup.knot, setup.bind):
            secondary.resume()
    new = serial(port, ZONE)
    for secondary in (setup.knot, setup.bind):
        secondary.wait_for(lambda s=secondary: converged(s, port), CONVERGED_WITHIN)
        for name, rdtype in [*sample_questions(), (identity(6), "A"), (identity(7), "A"), (reverse("10.244.99.7"), "PTR")]:
            assert answer_of(ask(secondary.port, name, rdtype)) == answer_of(ask(port, name, rdtype)), f"{secondary.name}: {name}"
    for key in ("knot-xfr", "bind-xfr"):
        assert transfers_logged(setup.server, "IXFR", "full", key, ZONE, f"{old}->{new}"), key


def raw_exchange(port: int, *queries: bytes) -> list[dns.message.Message]:
    """Each query over one TCP connection, pipelined; one reply read for each (TSIG not checked)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(len(q).to_bytes(2, "big") + q for q in queries))
        return [dns.message.from_wire(read_tcp_frame(sock), keyring=False) for _ in queries]


def axfr_query(key=None, tsig_time: float | None = None) -> bytes:
    query = dns.message.make_query(ZONE, "AXFR")
    if key is not None:
        query.use_tsig(key.key)
    if tsig_time is None:
        return query.to_wire()
    with mock.patch("dns.message.time", SimpleNamespace(time=lambda: tsig_time)):  # signed with this clock
        return query.to_wire()


def test_wrong_unknown_and_missing_keys_and_a_bad_time_get_no_zone_data(setup):
    port = setup.server.port
    real = keys_of(setup.key_file)["knot-xfr"]
    wrong_secret = make_key("knot-xfr", "hmac-sha256", b"not the secret" * 2)
    unknown = make_key("who-are-you", "hmac-sha256", real.key.secret)
    cases = {
        "wrong secret": (axfr_query(wrong_secret), dns.rcode.NOTAUTH, dns.rcode.BADSIG),
        "unknown key": (axfr_query(unknown), dns.rcode.NOTAUTH, dns.rcode.BADKEY),
        "no key": (axfr_query(), dns.rcode.REFUSED, None),
        "an hour late": (axfr_query(real, time.time() - 3600), dns.rcode.NOTAUTH, dns.rcode.BADTIME),
    }
    soa = dns.message.make_query(ZONE, "SOA").to_wire()
    for what, (query, rcode, tsig_error) in cases.items():
        refusal, after = raw_exchange(port, query, soa)
        assert refusal.rcode() == rcode and not refusal.answer and not refusal.authority, what
        assert refusal.tsig_error == tsig_error if tsig_error is not None else not refusal.had_tsig, what
        assert after.answer[0].rdtype == dns.rdatatype.SOA, what  # the very next message: nothing of the zone came between
    # dnspython, checking the TSIG of each reply, says the same.
    with pytest.raises(dns.tsig.PeerBadSignature):
        axfr_lines(port, ZONE, wrong_secret)
    with pytest.raises(dns.tsig.PeerBadKey):
        axfr_lines(port, ZONE, unknown)
    with pytest.raises(dns.xfr.TransferError):
        axfr_lines(port, ZONE)
    assert any(line.endswith(f"IN A {setup.server.ports[0][0]}") for line in axfr_lines(port, ZONE, real))
    for result in ("badsig", "badkey", "refused", "badtime"):
        assert any(re.search(rf"transfer AXFR {result} .*records=0 ", line) for line in setup.server.lines), result
