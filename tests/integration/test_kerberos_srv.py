"""MIT Kerberos finds its KDC through SRV records from the records file, asked through a real resolver (issue 13).

The real server serves the pods the example manifests make (deploy/examples:
both KDCs, at loopback addresses where one real krb5kdc listens, and the
Kafka brokers) and the records file of deploy/components/records-file, its
Kerberos ports moved to the KDC's. Unbound stands in front as CoreDNS does
in a cluster, with a stub zone to the server. `kinit` runs with the
example's client krb5.conf as shipped (dns_lookup_kdc = true, no kdc line)
in a mount namespace whose /etc/resolv.conf names only Unbound, on port 53
of a loopback address of its own, and gets a ticket: the KDC's address and
port came from DNS, as Unbound's and the server's query logs show.

Where no mount namespace can be made (no privilege), the same SRV, A and
TXT questions go to Unbound with dnspython and dig, and kinit is pointed at
the address and port they answer.
"""

from __future__ import annotations

import re
import subprocess
from contextlib import ExitStack

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.examples import DEPLOY_CONFIG, KAFKA, KERBEROS, REALM, TEMPLATE, ZONE, controller_pods, identity, krb5_profile, pod_list
from tests.kdc import Realm
from tests.loopback import free_address, free_port, random_address
from tests.manifests import RECORDS_COMPONENT, kustomize, tool
from tests.serverproc import ServerProcess
from tests.unboundproc import UnboundProcess

PASSWORD = "alice-password"


def can_unshare() -> bool:
    """Whether this process may make a mount namespace (root, or CAP_SYS_ADMIN)."""
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def with_ip(pod: dict, ip: str) -> dict:
    pod["status"]["podIP"], pod["status"]["podIPs"] = ip, [{"ip": ip}]
    return pod


def records_with_kdc_port(port: int) -> str:
    """The component's records file, its SRV records for port 88 (the KDCs') moved to `port`."""
    text = (RECORDS_COMPONENT / "records.zone").read_text()
    moved = re.sub(r"(\bSRV\s+\d+\s+\d+\s+)88\b", rf"\g<1>{port}", text)
    assert moved != text, "the component's records file has no Kerberos SRV record for port 88"
    return moved


def ask(unbound: UnboundProcess, name: str, qtype: str) -> list:
    """The answer records of `qtype` a stub resolver (RD set) gets from Unbound."""
    reply = dns.query.udp(dns.message.make_query(name, qtype), unbound.address, port=unbound.port, timeout=5)
    assert reply.rcode() == dns.rcode.NOERROR, f"{name} {qtype}: {dns.rcode.to_text(reply.rcode())}"
    return [rdata for rrset in reply.answer if rrset.rdtype == dns.rdatatype.from_text(qtype) for rdata in rrset]


def dig(unbound: UnboundProcess, *args: str) -> list[str]:
    result = subprocess.run(
        ["dig", f"@{unbound.address}", "-p", str(unbound.port), "+time=5", "+tries=1", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_kinit_finds_the_kdc_through_srv_records_served_through_unbound(tmp_path):
    isolated = can_unshare()
    resolver_address = free_address(53) if isolated else None
    isolated = resolver_address is not None  # a namespace's resolv.conf names port 53

    kerberos_docs, kafka_docs = kustomize(KERBEROS), kustomize(KAFKA)
    placeholders = (f"10.244.{n}.{n + 10}" for n in range(1, 250))
    kdcs = {pod["spec"]["hostname"]: pod for pod in controller_pods(kerberos_docs, placeholders) if pod["spec"].get("hostname")}
    brokers = controller_pods(kafka_docs, placeholders)
    kdc_addresses = {"kdc-0": "127.0.0.1", "kdc-1": random_address("127.88")}
    port = free_port(*kdc_addresses.values())
    names = {hostname: identity(with_ip(pod, kdc_addresses[hostname])) for hostname, pod in kdcs.items()}
    assert set(names) == {"kdc-0", "kdc-1"}

    client_conf = KERBEROS / "krb5.conf"
    profile = krb5_profile(client_conf)
    assert profile["libdefaults"]["dns_lookup_kdc"] == ["true"]
    assert REALM not in profile.get("realms", {}), "a kdc line in [realms] would be used instead of DNS"

    realm = Realm(tmp_path / "realm", list(kdc_addresses.values()), port, names["kdc-0"], names["kdc-1"])
    created = realm.create()
    assert created.returncode == 0, created.stdout + created.stderr
    realm.add_principal("alice", PASSWORD)
    pods_file, records_file = tmp_path / "pods.yaml", tmp_path / "records.zone"
    pods_file.write_text(pod_list([*kdcs.values(), *brokers]))
    records_file.write_text(records_with_kdc_port(port))
    cidrs = [arg for cidr in DEPLOY_CONFIG["reverse_cidrs"] for arg in ("--reverse-cidr", cidr)]
    server_args = ["--zone", ZONE, *cidrs, "--name-template", TEMPLATE, "--pods-file", str(pods_file)]
    server_args += ["--records-file", str(records_file), "--log-queries"]

    with ExitStack() as running:
        running.enter_context(realm.kdc())
        server = running.enter_context(ServerProcess(*server_args))
        unbound_dir = tmp_path / "unbound"
        unbound_dir.mkdir()
        address, unbound_port = (resolver_address, 53) if isolated else ("127.0.0.1", free_port())
        unbound = running.enter_context(UnboundProcess(unbound_dir, address, unbound_port, [ZONE], server.port, log_queries=True))
        client = {"KRB5_CONFIG": str(client_conf)}

        if isolated:
            resolv = tmp_path / "resolv.conf"
            resolv.write_text(f"nameserver {unbound.address}\noptions timeout:2 attempts:2\n")
            script = 'mount --bind "$1" /etc/resolv.conf && exec "$2" alice'
            kinit = realm.run("unshare", "-m", "sh", "-c", script, "sh", str(resolv), tool("kinit"), stdin=f"{PASSWORD}\n", **client)
            assert kinit.returncode == 0, kinit.stderr + realm.log() + unbound.log() + "\n".join(server.lines)
            # The KDC was found by asking DNS, through Unbound, before anything else asked these names.
            asked = unbound.log()
            assert re.search(rf"_kerberos\._udp\.{re.escape(REALM)}\. SRV IN", asked, re.IGNORECASE), asked
            assert re.search(rf"kdc-[01]\.kdc\.security\.{re.escape(ZONE)}\. A IN", asked, re.IGNORECASE), asked
            server.wait_for_log(rf"(?i)queries: _kerberos\._udp\.{re.escape(REALM)}\. SRV from 127\.0\.0\.1:\d+ over udp: NOERROR")
        else:
            kinit = None  # below: the same questions, then kinit pointed at the answers

        # What kinit asks (and a client with dns_lookup_realm), asked with dnspython.
        for service in ("_kerberos._udp", "_kerberos._tcp"):
            srv = ask(unbound, f"{service}.{REALM}", "SRV")
            assert sorted((r.port, r.target.to_text()) for r in srv) == sorted((port, f"{name}.") for name in names.values()), service
        assert [(r.port, r.target.to_text()) for r in ask(unbound, f"_kerberos-master._udp.{REALM}", "SRV")] == [
            (port, f"{names['kdc-0']}.")
        ]
        for hostname, name in names.items():
            assert [r.address for r in ask(unbound, name, "A")] == [kdc_addresses[hostname]]
        assert [r.strings for r in ask(unbound, f"_kerberos.{REALM}", "TXT")] == [(REALM.encode(),)]
        # The same with dig.
        assert sorted(dig(unbound, "+short", f"_kerberos._udp.{REALM}", "SRV")) == sorted(f"0 0 {port} {name}." for name in names.values())
        assert dig(unbound, "+short", f"_kerberos.{REALM}", "TXT") == [f'"{REALM}"']

        if kinit is None:
            kdc_lines = "".join(
                f"        kdc = {ask(unbound, r.target.to_text(), 'A')[0].address}:{r.port}\n"
                for r in ask(unbound, f"_kerberos._udp.{REALM}", "SRV")
            )
            pointed = tmp_path / "krb5.conf"
            pointed.write_text(
                client_conf.read_text().replace("dns_lookup_kdc = true", "dns_lookup_kdc = false")
                + f"\n[realms]\n    {REALM} = {{\n{kdc_lines}    }}\n"
            )
            client = {"KRB5_CONFIG": str(pointed)}
            kinit = realm.run(tool("kinit"), "alice", stdin=f"{PASSWORD}\n", **client)
            assert kinit.returncode == 0, kinit.stderr + realm.log()

        tickets = realm.run(tool("klist"), **client)
        assert tickets.returncode == 0, tickets.stderr
        assert f"Default principal: alice@{REALM}" in tickets.stdout
        assert f"krbtgt/{REALM}@{REALM}" in tickets.stdout

        # The bootstrap CNAME, answered with the Kafka set's addresses; the set's SRV with its targets' addresses.
        kafka_set = f"{brokers[0]['spec']['subdomain']}.{brokers[0]['metadata']['namespace']}.{ZONE}"
        bootstrap = dig(unbound, "+short", f"kafka-bootstrap.{ZONE}")
        assert bootstrap[0] == f"{kafka_set}." and sorted(bootstrap[1:]) == sorted(pod["status"]["podIP"] for pod in brokers)
        srv_name = f"_broker._tcp.{kafka_set}"
        answer = [line.split() for line in dig(unbound, "+noall", "+answer", srv_name, "SRV")]
        assert sorted((fields[3], fields[-2], fields[-1]) for fields in answer) == sorted(
            ("SRV", "9092", f"{identity(pod)}.") for pod in brokers
        )
        additional = [line.split() for line in dig(unbound, "+noall", "+additional", srv_name, "SRV")]
        assert sorted((fields[0], fields[3], fields[4]) for fields in additional) == sorted(
            (f"{identity(pod)}.", "A", pod["status"]["podIP"]) for pod in brokers
        )
