"""A Kerberos realm made as deploy/examples/kerberos makes it, on loopback: the example's kdc.conf and
kadm5.acl, its scripts/create-realm.sh (MIT's kdb5_util and kadmin.local), and a real krb5kdc."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.examples import KERBEROS
from tests.manifests import SBIN, tool


class Realm:
    """The example's realm under `root`, its KDC listening on each of `addresses` at `port` (UDP and TCP).

    `env` is the environment of the KDC pods' tools: the KDC pods' own krb5.conf
    (krb5-kdc-host.conf) with the KDC at the first address instead of its name.
    """

    def __init__(self, root: Path, addresses: Sequence[str], port: int, kdc_name: str, replica_name: str):
        self.root, self.addresses, self.port = root, tuple(addresses), port
        self.data, etc = root / "data", root / "etc"
        self.data.mkdir(parents=True)
        etc.mkdir()
        listen = ", ".join(f"{address}:{port}" for address in addresses)
        kdc_conf = (KERBEROS / "kdc.conf").read_text().replace("/var/lib/krb5kdc", str(self.data)).replace("/etc/krb5kdc", str(etc))
        kdc_conf = re.sub(r"kdc(_tcp)?_listen = 88", rf"kdc\1_listen = {listen}", kdc_conf)
        (etc / "kdc.conf").write_text(kdc_conf)
        (etc / "kadm5.acl").write_text((KERBEROS / "kadm5.acl").read_text())
        host_conf = (KERBEROS / "krb5-kdc-host.conf").read_text()
        host_conf = host_conf.replace(f"kdc = {kdc_name}", f"kdc = {addresses[0]}:{port}").replace(f"kdc = {replica_name}\n", "")
        self.host_conf = etc / "krb5-kdc-host.conf"
        self.host_conf.write_text(host_conf)
        self.log_path = root / "krb5kdc.log"
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([os.environ["PATH"], *SBIN]),
            "KRB5_CONFIG": str(self.host_conf),
            "KRB5_KDC_PROFILE": str(etc / "kdc.conf"),
            "KRB5RCACHEDIR": str(root),
            "KRB5CCNAME": f"FILE:{root / 'ccache'}",
            "KDC_DATA": str(self.data),
            "KDC_NAME": kdc_name,
            "REPLICA_NAME": replica_name,
            "MASTER_PASSWORD": "a master password",
        }

    def run(self, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, env={**self.env, **extra}, input=stdin, capture_output=True, text=True, timeout=30)

    def create(self) -> subprocess.CompletedProcess:
        """The primary's first start: scripts/create-realm.sh."""
        return self.run("sh", str(KERBEROS / "scripts" / "create-realm.sh"))

    def add_principal(self, name: str, password: str) -> None:
        added = self.run(tool("kadmin.local"), "-q", f"addprinc -pw {password} {name}")
        assert added.returncode == 0, added.stdout + added.stderr

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @contextmanager
    def kdc(self) -> Iterator[subprocess.Popen]:
        """krb5kdc in the foreground, once it accepts TCP on every address; stopped on leaving."""
        with self.log_path.open("w") as log:
            proc = subprocess.Popen([tool("krb5kdc"), "-n"], env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 20
                waiting = list(self.addresses)
                while waiting:
                    assert proc.poll() is None, f"krb5kdc exited with {proc.returncode}: {self.log()}"
                    assert time.monotonic() < deadline, f"krb5kdc does not listen on {waiting}: {self.log()}"
                    try:
                        socket.create_connection((waiting[0], self.port), timeout=1).close()
                        waiting.pop(0)
                    except OSError:
                        time.sleep(0.05)
                yield proc
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
