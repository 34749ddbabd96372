"""Signals to the real server: SIGHUP re-reads the files now, SIGQUIT dumps stacks, SIGUSR1/2 are
ignored with a log line; none of them stops it, and SIGTERM still ends it with exit code 0."""

from __future__ import annotations

import shutil
import signal
import time

import dns.message
import dns.query

from tests.conftest import ZONE
from tests.serverproc import ROOT, ServerProcess

KAFKA0 = f"kafka-0.kafka.default.{ZONE}"


def address(port: int) -> str:
    return dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=port, timeout=3).answer[0][0].address


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_sighup_rereads_the_files_at_once_and_a_broken_one_keeps_the_last_good_data(tmp_path):
    pods, hosts = tmp_path / "pods.yaml", tmp_path / "hosts"
    shutil.copy(ROOT / "configs/demo-pods.yaml", pods)
    hosts.write_text(f"10.244.0.2 gw.{ZONE}\n")
    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pods), "--hosts-file", str(hosts)]
    with ServerProcess(*args, "--reload-interval", "3600") as server:  # no poll would see a change
        assert address(server.port) == "10.244.1.10"
        pods.write_text(pods.read_text().replace("10.244.1.10", "10.244.1.111"))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_log("SIGHUP: re-reading the pods file, the hosts file now")
        wait_until(lambda: address(server.port) == "10.244.1.111", "the SIGHUP reload")

        pods.write_text("items: [this is not closed\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_log("reload of pods failed, keeping the last good data")
        assert address(server.port) == "10.244.1.111"
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0


def test_sigquit_logs_every_stack_and_sigusr1_sigusr2_are_ignored_with_a_line():
    with ServerProcess("--config", "configs/demo.yaml", "--metrics-listen", "off") as server:
        server.proc.send_signal(signal.SIGQUIT)
        server.wait_for_log("SIGQUIT: the stack of every thread and task follows; still serving")
        server.wait_for_log(r"^thread MainThread:")
        for signum in (signal.SIGUSR1, signal.SIGUSR2):
            server.proc.send_signal(signum)
            server.wait_for_log(f"{signum.name}: ignored")
        assert address(server.port) == "10.244.1.10"
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
    server.wait_for_log("stopped")


def test_sighup_with_only_the_kubernetes_source_has_nothing_to_reread(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    with ServerProcess("--zone", ZONE, "--kubeconfig", str(kubeconfig)) as server:
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_log("SIGHUP: no file to re-read")
        assert server.proc.poll() is None
