"""Test harness: a real MSM process (`python -m testbed.msm`) on 127.0.0.1 with free ports and
real TLS (its own CA, the local operator credential), callers of every role, and the issue's
workgroup example."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from testbed.common.enroll import issue_with_local_key
from testbed.common.portal_client import MsmClient

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the DNS server needs both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class MsmProcess:
    """One MSM agent process; restartable on the same volume (db + CA dir).

    `client` is the local operator (ca_dir/operator credential, made by the MSM at first start);
    `caller(identity, kind)` enrols a node of another role and returns its client.
    """

    def __init__(self, root: Path, extra: dict | None = None) -> None:
        self.root = root
        self.https_port = free_port()
        self.dns_port = free_port()
        while self.dns_port == self.https_port:  # both probes closed their sockets: the kernel may hand out one twice
            self.dns_port = free_port()
        self.status_file = root / "run" / "msm.json"
        self.ca_dir = root / "vol" / "ca"
        self.config = {
            "db_path": str(root / "vol" / "msm.db"),
            "ca_dir": str(self.ca_dir),
            "http_address": "127.0.0.1",
            "https_port": self.https_port,
            "dns_address": "127.0.0.1",
            "dns_port": self.dns_port,
            "msm_address": "198.51.100.10",
            "status_file": str(self.status_file),
            "log_level": "DEBUG",
            "key_type": "ec",  # fast start (the CA, server and operator keys); RSA is covered in test_ca
            **(extra or {}),
        }
        self.config_path = root / "msm.json"
        self.config_path.write_text(json.dumps(self.config))
        self.proc: subprocess.Popen | None = None
        self.base_url = f"https://127.0.0.1:{self.https_port}"
        self.ca_file = str(self.ca_dir / "ca.pem")
        self.operator_cert = str(self.ca_dir / "operator" / "cert.pem")
        self.operator_key = str(self.ca_dir / "operator" / "key.pem")
        self._client: MsmClient | None = None

    @property
    def client(self) -> MsmClient:
        """The operator's client (made once the MSM wrote its CA and operator credential)."""
        if self._client is None:
            self._client = MsmClient(self.base_url, timeout=10, ca_file=self.ca_file,
                                     cert_file=self.operator_cert, key_file=self.operator_key)
        return self._client

    def anonymous(self) -> MsmClient:
        """A caller that verifies the server but shows no certificate."""
        return MsmClient(self.base_url, timeout=10, ca_file=self.ca_file)

    def caller(self, identity: str, kind: str) -> MsmClient:
        """Enrol (token + locally made key + CSR, through the operator) and return that node's client."""
        doc = issue_with_local_key(self.client, identity, kind, key_type="ec")
        d = self.root / "nodes" / f"{kind}-{identity}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cert.pem").write_text(doc["cert_pem"])
        (d / "key.pem").touch(mode=0o600)
        (d / "key.pem").write_text(doc["key_pem"])
        return MsmClient(self.base_url, timeout=10, ca_file=self.ca_file, cert_file=str(d / "cert.pem"),
                         key_file=str(d / "key.pem"))

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.log = open(self.root / "msm.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "testbed.msm", "--config", str(self.config_path)],
                                     cwd=REPO, env=env, stderr=self.log, stdout=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"msm exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                self._client = None  # the operator credential may be new
                self.anonymous().ca_pem()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("msm did not come up: " + self.log_text()[-2000:])

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        rc, self.proc = self.proc.returncode, None
        return rc

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the crash of the issue's fault test)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return (self.root / "msm.log").read_text(errors="replace")

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())


WORKGROUP_EXAMPLE = {
    "mvpns": [("A", "203.0.113.1"), ("B", "203.0.113.2"), ("C", "203.0.113.3"), ("D", "203.0.113.4")],
    "users": [("a.mwg.test", "A", "10.0.0.5"), ("b.mwg.test", "B", "10.0.0.7"),
              ("c.mwg.test", "C", "10.0.0.5"), ("d.mwg.test", "D", "10.0.0.9")],
    "W": ["a.mwg.test", "b.mwg.test", "c.mwg.test"],
}


def populate_example(client: MsmClient) -> None:
    """The issue's scenario: M-VPNs A-D all 10.0.0.0/24; a and c share 10.0.0.5; W = {a, b, c}."""
    for name, sg in WORKGROUP_EXAMPLE["mvpns"]:
        client.add_mvpn(name, "10.0.0.0/24", sg)
    for fqdn, mvpn, addr in WORKGROUP_EXAMPLE["users"]:
        client.add_user(fqdn, mvpn, addr)
    client.add_workgroup("W")
    for fqdn in WORKGROUP_EXAMPLE["W"]:
        client.add_member("W", fqdn)
