"""The records file with the real server: served, re-read on change, a broken file keeps the last good data,
and the demo's export (records included) loads into BIND and Knot."""

from __future__ import annotations

import subprocess
import time

import dns.message
import dns.query
import dns.rcode

from tests.conftest import ZONE
from tests.integration.test_transfer_streams import check_zone
from tests.serverproc import ServerProcess, run_cli


def _ask(port: int, name: str, qtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=3)


def _texts(reply: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)


def _until(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_demo_serves_its_records_and_dig_sees_the_bootstrap_alias():
    with ServerProcess("--config", "configs/demo.yaml", "--listen", "127.0.0.1:0") as server:
        port = server.port
        assert _texts(_ask(port, f"_kerberos._udp.{ZONE}", "SRV")) == [
            f"0 0 88 kdc-1.kdc.security.{ZONE}.",
            f"0 0 88 kdc-2.kdc.security.{ZONE}.",
        ]
        assert _texts(_ask(port, f"_kerberos.{ZONE}", "TXT")) == ['"PODS.EXAMPLE.INTERNAL"']
        out = subprocess.run(
            ["dig", "@127.0.0.1", "-p", str(port), "+short", f"kafka-bootstrap.{ZONE}"], capture_output=True, text=True, timeout=15
        ).stdout.split()
        assert out == [f"kafka.default.{ZONE}.", "10.244.1.10", "10.244.2.11", "10.244.3.12"]
        srv = _ask(port, f"_kafka._tcp.kafka.default.{ZONE}", "SRV")
        assert len(srv.answer[0]) == 3 and len(srv.additional) == 3  # each broker's address comes along


def test_a_records_file_is_reread_and_a_broken_one_keeps_the_last_good_data(tmp_path):
    records = tmp_path / "records.zone"
    records.write_text("_svc._tcp SRV 0 0 443 web\nweb A 10.244.9.1\n")
    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--records-file", str(records), "--reload-interval", "0.1"]
    pods = tmp_path / "pods.json"
    pods.write_text('{"kind": "List", "items": []}')
    with ServerProcess(*args, "--pods-file", str(pods)) as server:
        port = server.port
        assert _texts(_ask(port, f"_svc._tcp.{ZONE}", "SRV")) == [f"0 0 443 web.{ZONE}."]
        assert _texts(_ask(port, "1.9.244.10.in-addr.arpa", "PTR")) == [f"web.{ZONE}."]  # an A record acts as a hosts line
        records.write_text("_svc._tcp SRV 0 0 8443 web\nweb A 10.244.9.2\n")
        _until(lambda: _texts(_ask(port, f"_svc._tcp.{ZONE}", "SRV")) == [f"0 0 8443 web.{ZONE}."], "the new SRV")
        assert _texts(_ask(port, f"web.{ZONE}", "A")) == ["10.244.9.2"]
        assert _ask(port, "1.9.244.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
        records.write_text("_svc._tcp SRV 0 0 8443 web\nweb CNAME other\nweb TXT oops\n")  # CNAME beside other data
        server.wait_for_log(rf"reload of records failed, keeping the last good data: {records}:3: web.{ZONE}.: ")
        assert _texts(_ask(port, f"web.{ZONE}", "A")) == ["10.244.9.2"]


def test_a_broken_records_file_at_start_is_one_line_and_exit_2(tmp_path):
    records = tmp_path / "records.zone"
    records.write_text("ok TXT fine\nbad NS ns.example.com.\n")
    result = run_cli(
        "serve",
        "--zone",
        ZONE,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "off",
        "--records-file",
        str(records),
        "--pods-file",
        "configs/demo-pods.yaml",
    )
    assert result.returncode == 2
    assert f"{records}:2: NS record: the zones' NS records are the server's own" in result.stderr


def test_the_demo_export_with_every_record_type_loads_into_bind_and_knot(tmp_path):
    out = tmp_path / "zones"
    exported = run_cli("export-zone", "--config", "configs/demo.yaml", "--output-dir", str(out))
    assert exported.returncode == 0, exported.stderr
    text = (out / f"{ZONE}.zone").read_text()
    for kind in ("\tSRV\t", "\tTXT\t", "\tCNAME\t", "\tMX\t", "\tCAA\t", f"ns.{ZONE}.\t30\tIN\tA\t127.0.0.1"):
        assert kind in text, kind
    for path in out.iterdir():
        check_zone(path.name.removesuffix(".zone"), str(path))
