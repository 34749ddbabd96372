"""The configuration file format: every key documented, documented defaults true."""

from __future__ import annotations

import argparse

import pytest
import yaml

from server.config import OPTIONS, build_config
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


def test_udp_front_end_options_are_range_checked():
    from server.cli import make_parser
    from server.config import ConfigError

    def config(*flags: str):
        return build_config(make_parser().parse_args(["serve", "--zone", "pods.example.internal", *flags]))

    assert (config().udp_frontend, config().udp_batch) == ("auto", 64)
    assert config("--udp-frontend", "uvloop", "--udp-batch", "1024").udp_frontend == "uvloop"
    assert config("--udp-batch", "1").udp_batch == 1
    for value, message in [("0", "0: must be 1-1024"), ("1025", "1025: must be 1-1024"), ("many", "'many'")]:
        with pytest.raises(ConfigError, match=rf"udp_batch \(--udp-batch\): {message}"):
            config("--udp-batch", value)
    with pytest.raises(ConfigError, match=r"udp_frontend .*must be one of auto, batched, uvloop"):
        build_config(argparse.Namespace(zones=["pods.example.internal"], udp_frontend="fast"))
