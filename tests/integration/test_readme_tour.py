"""README's "A short tour", replayed: each `dig` in it, asked of the demo (configs/demo.yaml) on a free port,
prints what the README shows (whitespace aside, and a `grep status` line's message id)."""

from __future__ import annotations

import re
import shlex
import subprocess

from tests.serverproc import ROOT, ServerProcess


def tour() -> list[tuple[str, list[str]]]:
    """The tour's commands with the output shown under each."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A short tour", 1)[1]
    (block,) = re.findall(r"```console\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("    #", 1)[0].strip(), []))
        else:
            steps[-1][1].append(line)
    return steps


def normal(lines: list[str]) -> list[str]:
    return [re.sub(r"id: \d+", "id: N", " ".join(line.split())) for line in lines if line.strip()]


def test_every_dig_of_the_tour_prints_what_the_readme_shows():
    steps = tour()
    assert len(steps) >= 10 and all(command.startswith("dig @127.0.0.1 -p 1053 ") for command, _ in steps)
    with ServerProcess("--config", "configs/demo.yaml") as server:
        for command, shown in steps:
            dig, _, pipe = command.partition(" | ")
            args = shlex.split(dig.replace("-p 1053", f"-p {server.port}"))
            result = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, f"{command}: {result.stderr}"
            printed = result.stdout.splitlines()
            if pipe:
                assert pipe.startswith("grep "), command
                printed = [line for line in printed if pipe.removeprefix("grep ") in line]
            assert normal(printed) == normal(shown), command
