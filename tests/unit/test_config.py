"""The configuration file format: every key documented, documented defaults true."""

from __future__ import annotations

import argparse

import pytest
import yaml

from server.config import OPTIONS, ConfigError, build_config
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


def test_events_are_on_with_the_kubernetes_source_and_off_with_a_pod_file(tmp_path):
    pods = tmp_path / "pods.json"
    pods.write_text('{"items": []}')
    assert build_config(argparse.Namespace(zones=["pods.example.internal"])).events is True
    assert build_config(argparse.Namespace(zones=["pods.example.internal"], events=False)).events is False
    assert build_config(argparse.Namespace(zones=["pods.example.internal"], pods_file=str(pods))).events is False
    with pytest.raises(ConfigError, match=r"events \(--events\): .*no API"):
        build_config(argparse.Namespace(zones=["pods.example.internal"], pods_file=str(pods), events=True))
