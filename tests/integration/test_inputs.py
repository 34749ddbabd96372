"""Every input gets a clear answer, through the real command: one line and exit code 2, or a warning and the rest served."""

from __future__ import annotations

import orjson
import pytest
import yaml

from tests import helpers
from tests.conftest import ZONE
from tests.serverproc import ROOT, ServerProcess, run_cli

SERVE = ["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", "--zone", ZONE]


def _error_line_exit_2(result) -> str:
    """A file refused at start: exit code 2, one error line (the log lines of what loaded before it aside)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "answering DNS" not in result.stdout + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    return line


def _one_line_exit_2(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "answering DNS" not in result.stdout + result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ttl", "4294967296"], "pod-identity-dns: ttl (--ttl): '4294967296': must be between 0 and 2147483647"),
        (["--negative-ttl", "2147483648"], "negative_ttl (--negative-ttl): '2147483648': must be between 0 and 2147483647"),
        (["--reload-interval", "0"], "reload_interval (--reload-interval): '0': must be between 0.1 and 86400"),
        (["--tcp-idle-timeout", "0"], "tcp_idle_timeout (--tcp-idle-timeout): '0': must be between 0.1 and 3600"),
        (["--tcp-max-connections", "0"], "tcp_max_connections (--tcp-max-connections): '0': must be between 1 and 1000000"),
        (["--workers", "0"], "workers (--workers): '0': must be between 1 and 64"),
        (["--lameduck", "inf"], "lameduck (--lameduck): 'inf': must be a finite number of seconds"),
        (["--listen", "127.0.0.1:65536"], "listen (--listen): '127.0.0.1:65536': the port must be between 0 and 65535"),
        (["--metrics-listen", "127.0.0.1:-1"], "metrics_listen (--metrics-listen): '127.0.0.1:-1': the port must be between 0 and 65535"),
        (["--hosts-file-max-size", "0"], "hosts_file_max_size (--hosts-file-max-size): '0': must be between 1Ki and 4Gi"),
        (["--publish", "maybe"], "publish (--publish): 'maybe': must be one of not-ready, ready"),
        (
            ["--workers", "2", "--metrics-listen", "127.0.0.1:65535"],
            "metrics_listen (--metrics-listen): '127.0.0.1:65535': with --workers 2 the workers' metrics ports (port + 0 to 1) go past 65535",
        ),
        (["--ns-address", "10.0.0.300"], "ns_addresses (--ns-address): '10.0.0.300' is not an IP address"),
    ],
)
def test_a_number_out_of_its_range_is_one_line_and_exit_2(args, message):
    assert message in _one_line_exit_2(run_cli(*SERVE, *args))


def test_export_zone_checks_its_own_flags_the_same_way():
    line = _one_line_exit_2(run_cli("export-zone", "--config", "configs/demo.yaml", "--sync-timeout", "0"))
    assert "sync_timeout (--sync-timeout): '0': must be between 0.1 and 86400" in line


def test_a_range_in_a_config_file_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"zones: [{ZONE}]\nttl: 4294967296\n")
    assert "ttl (--ttl): 4294967296: must be between 0 and 2147483647" in _one_line_exit_2(run_cli("serve", "--config", str(config)))


def test_export_zone_help_lists_only_what_it_uses():
    result = run_cli("export-zone", "--help")
    assert result.returncode == 0
    for flag in ("--zone", "--pods-file", "--ttl", "--output-dir", "--sync-timeout", "--hosts-file-max-size"):
        assert flag in result.stdout
    for flag in ("--listen", "--metrics-listen", "--workers", "--tcp-idle-timeout", "--tcp-max-connections", "--lameduck", "--log-queries"):
        assert flag not in result.stdout
    assert "(0..2147483647; default: 30)" in result.stdout  # the TTL's range


def test_relative_paths_in_a_config_file_are_beside_it(tmp_path):
    # run_cli works in the repository; the config and its files are elsewhere.
    (tmp_path / "pods.json").write_bytes(orjson.dumps({"kind": "List", "items": [helpers.sts_pod("kafka", 0, "10.244.0.1")]}))
    (tmp_path / "hosts").write_text(f"10.244.0.2 gw.{ZONE}\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"zones: [{ZONE}]\nreverse_cidrs: [10.244.0.0/16]\npods_file: pods.json\nhosts_file: hosts\n")
    result = run_cli("export-zone", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "kafka-0.kafka.default" in result.stdout and "gw" in result.stdout
    missing = run_cli("export-zone", "--config", str(config), "--pods-file", "pods.json")  # a flag's path: from the working directory
    assert "pods_file (--pods-file): 'pods.json': no such file" in _one_line_exit_2(missing)


def test_a_start_without_reverse_cidr_warns_once(tmp_path):
    with ServerProcess("--zone", ZONE, "--pods-file", str(ROOT / "configs/demo-pods.yaml")) as server:
        server.wait_for_log("answering DNS")
    warnings = [line for line in server.lines if "no --reverse-cidr" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "no pod IP gets a PTR" in warnings[0]


def test_names_that_are_not_names_are_neither_served_nor_exported(tmp_path):
    items = [helpers.sts_pod("kafka", 0, "10.244.0.1")]
    for n, hostname in enumerate(["*", " sp ", "a\x00b", "a/b"], 1):
        bad = helpers.sts_pod("kafka", n, f"10.244.0.{n + 1}")
        bad["spec"]["hostname"] = hostname
        items.append(bad)
    copied = helpers.sts_pod("kafka", 9, "10.244.0.9", uid=items[0]["metadata"]["uid"])
    lost_ip = helpers.sts_pod("kafka", 8, "10.244.5.300")
    items += [copied, lost_ip]
    pods = tmp_path / "pods.json"
    pods.write_bytes(orjson.dumps({"kind": "List", "items": items}))
    result = run_cli("export-zone", "--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pods))
    assert result.returncode == 0, result.stderr
    records = [line.split("\t") for line in result.stdout.splitlines() if line and not line.startswith(("$", ";"))]
    forward = sorted(owner for owner, _, _, kind, _ in records if kind == "A")
    assert forward == [f"kafka-0.kafka.default.{ZONE}.", f"kafka.default.{ZONE}.", f"ns.{ZONE}."]  # and the NS address
    ptrs = {owner: target for owner, _, _, kind, target in records if kind == "PTR"}
    assert ptrs["1.0.244.10.in-addr.arpa."] == f"kafka-0.kafka.default.{ZONE}."
    assert ptrs["2.0.244.10.in-addr.arpa."] == "10-244-0-2.default.pod.cluster.local."  # the pod kept: its fallback PTR
    assert f"loaded 6 pods from {pods}: 1 identities, 5 skipped, 1 duplicates" in result.stderr
    for text in ("item 1 (pod default/kafka-1): spec.hostname '*'", "item 3 (pod default/kafka-3): spec.hostname 'a\\x00b'"):
        assert text in result.stderr
    assert "item 5 (pod default/kafka-9): the same metadata.uid 'uid-default-kafka-0' as item 0 (pod default/kafka-0)" in result.stderr
    assert "item 6 (pod default/kafka-8): status.podIPs: '10.244.5.300': not an IP address" in result.stderr
    from tests.integration.test_metrics import scrape, value

    with ServerProcess(
        "--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pods), "--metrics-listen", "127.0.0.1:0"
    ) as server:
        samples = scrape(server.metrics_port)
    skipped = {
        reason: value(samples, "poddns_file_items_skipped", file="pods", reason=reason)
        for reason in ("invalid_name", "invalid_ip", "duplicate_uid")
    }
    assert skipped == {"invalid_name": 4, "invalid_ip": 1, "duplicate_uid": 1}


def test_yaml_too_large_for_the_memory_limit_is_one_line_and_exit_2(tmp_path):
    items = [helpers.sts_pod("web", n, f"10.244.{n >> 8}.{n & 255}", labels={f"l{i}": "v" * 40 for i in range(20)}) for n in range(1500)]
    pods = tmp_path / "pods.yaml"
    pods.write_text(yaml.safe_dump({"kind": "List", "items": items}))
    result = run_cli(*SERVE, "--pods-file", str(pods), "--pods-file-memory-limit", "16Mi")
    line = _error_line_exit_2(result)
    assert f"cannot start: {pods}: the file is too large for YAML" in line and "kubectl get pods -A -o json" in line


@pytest.mark.parametrize(
    "content,message",
    [
        (f"10.244.0.2 _kerberos._udp.{ZONE}\n", f"hosts:1: '_kerberos._udp.{ZONE}' is not a host name"),
        (f"10.244.0.2 gw.{ZONE}\n" * 100, "hosts: the file is larger than --hosts-file-max-size (1024 bytes)"),
    ],
)
def test_a_hosts_file_refused_at_start_is_one_line_and_exit_2(tmp_path, content, message):
    hosts = tmp_path / "hosts"
    hosts.write_text(content)
    pods = str(ROOT / "configs/demo-pods.yaml")
    result = run_cli(*SERVE, "--pods-file", pods, "--hosts-file", str(hosts), "--hosts-file-max-size", "1Ki")
    assert message in _error_line_exit_2(result)


@pytest.mark.parametrize("wildcard", ["0.0.0.0:0", "[::]:0"])
def test_only_wildcard_listens_and_no_ns_address_is_one_line_naming_the_flag(wildcard):
    result = run_cli("serve", "--listen", wildcard, "--metrics-listen", "off", "--zone", ZONE)
    assert "ns_addresses (--ns-address): required when every --listen is a wildcard address (0.0.0.0, [::])" in _one_line_exit_2(result)


def test_ns_names_and_addresses_are_served_and_the_first_name_is_the_soa_mname():
    import dns.message
    import dns.query

    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--ns-name", f"ns1.{ZONE}", "--ns-name", "ns2.example.net"]
    args += ["--ns-address", "192.0.2.53", "--ns-address", "2001:db8::53", "--pods-file", str(ROOT / "configs" / "demo-pods.yaml")]
    with ServerProcess(*args) as server:

        def ask(name: str, rdtype: str) -> list[str]:
            reply = dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=server.port, timeout=3)
            return sorted(rdata.to_text() for rrset in reply.answer for rdata in rrset)

        assert ask(ZONE, "NS") == sorted([f"ns1.{ZONE}.", "ns2.example.net."])
        assert ask(ZONE, "SOA")[0].startswith(f"ns1.{ZONE}. hostmaster.{ZONE}. ")
        assert ask(f"ns1.{ZONE}", "A") == ["192.0.2.53"] and ask(f"ns1.{ZONE}", "AAAA") == ["2001:db8::53"]
        assert ask("244.10.in-addr.arpa", "NS") == sorted([f"ns1.{ZONE}.", "ns2.example.net."])
