"""The configuration: every key documented, documented defaults true, every value checked by one table."""

from __future__ import annotations

import argparse
import os
import re

import pytest
import yaml

from server.cli import make_parser
from server.config import OPTIONS, ConfigError, build_config, config_warnings
from server.options import check_value, seconds, size, whole_number
from tests.serverproc import ROOT


def test_example_documents_every_key_with_its_default():
    example = yaml.safe_load((ROOT / "configs/example.yaml").read_text())
    assert sorted(example) == sorted(o.key for o in OPTIONS)
    for option in OPTIONS:
        if option.key in ("zones", "reverse_cidrs"):
            continue  # examples, not defaults
        assert example[option.key] == option.default, option.key
    text = (ROOT / "configs/example.yaml").read_text()
    for option in OPTIONS:
        assert option.flag in text, f"{option.flag} is not named in configs/example.yaml"


def test_example_and_demo_configs_load():
    for name in ("example.yaml", "demo.yaml"):
        config = build_config(argparse.Namespace(config=str(ROOT / "configs" / name)))
        assert config.zones == ("pods.example.internal",)


def test_every_flag_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [o.flag for o in OPTIONS if o.flag not in readme]
    assert not missing, f"README does not document {missing}"


def _config(*flags: str, config: str | None = None):
    args = make_parser().parse_args(["serve", *flags] + (["--config", config] if config else []))
    return build_config(args)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        make_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_every_number_has_its_range_in_the_table_and_in_help(capsys):
    numbers = [o for o in OPTIONS if o.kind in (whole_number, seconds, size)]
    assert {o.key for o in numbers} >= {
        "ttl",
        "negative_ttl",
        "reload_interval",
        "lameduck",
        "tcp_idle_timeout",
        "tcp_max_connections",
        "workers",
    }
    help_text = _help("serve", capsys)
    for option in numbers:
        assert option.low is not None and option.high is not None, option.key
        assert f"{option.show(option.low)}..{option.show(option.high)}" in help_text, option.key
        assert option.low <= check_value(option, option.default) <= option.high, option.key


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--ttl", "4294967296"], "ttl (--ttl): '4294967296': must be between 0 and 2147483647"),
        (["--ttl", "2147483648"], "ttl (--ttl): '2147483648': must be between 0 and 2147483647"),
        (["--negative-ttl", "-1"], "negative_ttl (--negative-ttl): '-1': must be between 0 and 2147483647"),
        (["--ttl", "1.5"], "ttl (--ttl): '1.5': must be a whole number"),
        (["--reload-interval", "0"], "reload_interval (--reload-interval): '0': must be between 0.1 and 86400"),
        (["--reload-interval", "nan"], "reload_interval (--reload-interval): 'nan': must be a finite number of seconds"),
        (["--tcp-idle-timeout", "0"], "tcp_idle_timeout (--tcp-idle-timeout): '0': must be between 0.1 and 3600"),
        (["--tcp-max-connections", "0"], "tcp_max_connections (--tcp-max-connections): '0': must be between 1 and 1000000"),
        (["--workers", "65"], "workers (--workers): '65': must be between 1 and 64"),
        (["--lameduck", "-1"], "lameduck (--lameduck): '-1': must be between 0 and 3600"),
        (
            ["--hosts-file-max-size", "12Mb"],
            "hosts_file_max_size (--hosts-file-max-size): '12Mb': must be a size in bytes, or with a unit: Ki, Mi, Gi, Ti (as in 512Mi)",
        ),
        (["--pods-file-memory-limit", "1Mi"], "pods_file_memory_limit (--pods-file-memory-limit): '1Mi': must be between 16Mi and 1Ti"),
        (["--listen", "127.0.0.1:65536"], "listen (--listen): '127.0.0.1:65536': the port must be between 0 and 65535"),
        (["--publish", "maybe"], "publish (--publish): 'maybe': must be one of not-ready, ready"),
    ],
)
def test_a_value_out_of_range_is_one_clear_error(flags, message):
    with pytest.raises(ConfigError) as caught:
        _config("--zone", "pods.example.internal", *flags)
    assert str(caught.value) == message


def test_yaml_values_are_checked_by_the_same_table(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("zones: [pods.example.internal]\nttl: 4294967296\n")
    with pytest.raises(ConfigError, match=r"^ttl \(--ttl\): 4294967296: must be between 0 and 2147483647$"):
        _config(config=str(config))
    config.write_text("zones: [pods.example.internal]\nhosts_file_max_size: 2Gi\npods_file_memory_limit: 1073741824\n")
    loaded = _config(config=str(config))
    assert (loaded.hosts_file_max_size, loaded.pods_file_memory_limit) == (2 << 30, 1 << 30)


def test_relative_paths_in_a_config_file_are_taken_from_its_directory(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "pods.json").write_text("{}")
    (tmp_path / "etc" / "hosts").write_text("")
    (tmp_path / "hosts").write_text("")
    config = tmp_path / "etc" / "c.yaml"
    config.write_text("zones: [pods.example.internal]\npods_file: pods.json\nhosts_file: ./hosts\n")
    monkeypatch.chdir(tmp_path)  # where a flag's relative path is taken from
    loaded = _config(config="etc/c.yaml")
    assert loaded.pods_file == str(tmp_path / "etc" / "pods.json")
    assert os.path.samefile(loaded.hosts_file, tmp_path / "etc" / "hosts")
    assert _config("--hosts-file", "hosts", config="etc/c.yaml").hosts_file == "hosts"  # a flag: from the working directory


def test_export_zone_offers_only_the_flags_it_uses(capsys):
    flags = set(re.findall(r"--[a-z-]+", _help("export-zone", capsys)))
    serve_only = {o.flag for o in OPTIONS if o.serve_only}
    assert serve_only >= {"--listen", "--metrics-listen", "--workers", "--tcp-idle-timeout", "--tcp-max-connections", "--lameduck"}
    assert not flags & serve_only
    assert flags >= {o.flag for o in OPTIONS if not o.serve_only} | {"--config", "--output-dir", "--sync-timeout"}
    assert serve_only <= set(re.findall(r"--[a-z-]+", _help("serve", capsys)))


def test_no_reverse_cidr_is_warned_about():
    assert config_warnings(_config("--zone", "pods.example.internal")) == [
        "no --reverse-cidr given: no reverse zone is served, so no pod IP gets a PTR (reverse queries are REFUSED)"
    ]
    assert config_warnings(_config("--zone", "pods.example.internal", "--reverse-cidr", "10.244.0.0/16")) == []


@pytest.mark.parametrize("text,value", [("512Mi", 512 << 20), ("1Gi", 1 << 30), ("4096", 4096), (" 3 ki ", 3072), (65536, 65536)])
def test_sizes_are_bytes_or_binary_units(text, value):
    assert size(text) == value


def test_udp_front_end_options_are_range_checked():
    from server.cli import make_parser
    from server.config import ConfigError

    def config(*flags: str):
        return build_config(make_parser().parse_args(["serve", "--zone", "pods.example.internal", *flags]))

    assert (config().udp_frontend, config().udp_batch) == ("auto", 64)
    assert config("--udp-frontend", "uvloop", "--udp-batch", "1024").udp_frontend == "uvloop"
    assert config("--udp-batch", "1").udp_batch == 1
    for value, message in [("0", "'0': must be between 1 and 1024"), ("1025", "'1025': must be between 1 and 1024"), ("many", "'many'")]:
        with pytest.raises(ConfigError, match=rf"udp_batch \(--udp-batch\): {message}"):
            config("--udp-batch", value)
    with pytest.raises(ConfigError, match=r"udp_frontend .*must be one of auto, batched, uvloop"):
        build_config(argparse.Namespace(zones=["pods.example.internal"], udp_frontend="fast"))


def test_events_are_on_with_the_kubernetes_source_and_off_with_a_pod_file(tmp_path):
    pods = tmp_path / "pods.json"
    pods.write_text('{"items": []}')
    assert build_config(argparse.Namespace(zones=["pods.example.internal"])).events is True
    assert build_config(argparse.Namespace(zones=["pods.example.internal"], events=False)).events is False
    assert build_config(argparse.Namespace(zones=["pods.example.internal"], pods_file=str(pods))).events is False
    with pytest.raises(ConfigError, match=r"events \(--events\): .*no API"):
        build_config(argparse.Namespace(zones=["pods.example.internal"], pods_file=str(pods), events=True))
