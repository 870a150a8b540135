"""Run the MSM: `python3 -m testbed.msm --config FILE`.

Starts the portal (HTTPS, mutual TLS; optionally a plain-HTTP copy for the bench baseline)
and the DNS server in threads over one store and CA, and writes a status JSON file every
`status_interval` seconds until SIGTERM/SIGINT.

At every start the CA issues the portal's TLS server certificate (SAN: msm_fqdn, msm_address,
127.0.0.1, localhost, the listening address and server_san_*). At first start it also makes
the local operator credential `ca_dir/operator/{cert,key}.pem` (issue 9).
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sqlite3
import sys
import threading
import time

from cryptography import x509

from .ca import CertificateAuthority
from .config import ConfigError, MsmConfig, load_config, parse_config
from .dns import DnsService, WorkgroupResolver
from .errors import ApiError
from .portal import Portal, make_server, server_context
from .status import StatusWriter
from .store import Store

log = logging.getLogger("msm")


class Msm:
    """The assembled agent; also usable in-process (tests, other agents' fixtures)."""

    def __init__(self, cfg: MsmConfig) -> None:
        self.cfg = cfg
        self.started_at = time.time()
        self.store = Store(cfg.db_path)
        self.ca = CertificateAuthority(cfg.ca_dir, cfg.ca_common_name, cfg.key_type, cfg.cert_days)
        self.portal = Portal(self.store, self.ca, cfg.zone, cfg.longpoll_max, authz=not cfg.insecure_no_authz,
                             allow_test_certs=cfg.allow_test_certs)
        self.store.apply_seed(cfg.seed.model_dump(), self.portal.enrolment.add_seed_token)
        self.operator_cert, self.operator_key = self._operator_credential()
        server_cert, server_key = self._server_credential()
        self.https = make_server(self.portal, cfg.http_address, cfg.https_port,
                                 server_context(server_cert, server_key, self.ca.cert_path),
                                 max_connections=cfg.max_connections, head_timeout=cfg.head_timeout)
        self.http = None
        if cfg.insecure_http_port is not None:
            self.http = make_server(self.portal, cfg.http_address, cfg.insecure_http_port,
                                    max_connections=cfg.max_connections, head_timeout=cfg.head_timeout)
        self.dns: DnsService | None = None
        if cfg.dns_enabled:
            resolver = WorkgroupResolver(self.store, cfg.zone, cfg.msm_name, cfg.msm_address)
            self.dns = DnsService(resolver, cfg.dns_address, cfg.dns_port)
        self.portal.status_extra = lambda: {"dns": self.dns.counters() if self.dns else {}}
        self.diameter = None
        if cfg.diameter.enabled:
            self.diameter = self._make_diameter(cfg)
        self.status = StatusWriter(cfg.status_file, self.status_doc, cfg.status_interval)
        self.state = "starting"
        self._threads = [threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                          name=name, daemon=True)
                         for name, srv in (("portal-https", self.https), ("portal-http", self.http)) if srv]

    def _server_credential(self) -> tuple[str, str]:
        """The portal's TLS certificate, issued by our CA at every start (files in ca_dir/server)."""
        cfg = self.cfg
        ips = ["127.0.0.1", *([cfg.msm_address] if cfg.msm_address else []), *cfg.server_san_ips]
        if not ipaddress.ip_address(cfg.http_address).is_unspecified:
            ips.append(cfg.http_address)
        dns = [cfg.msm_name, "localhost", *cfg.server_san_dns]
        _issued, cert, key = self.ca.issue_local("server", cfg.msm_name, "server", ips, dns)
        return cert, key

    def _operator_credential(self) -> tuple[str, str]:
        """`ca_dir/operator/{cert,key}.pem`: made here at first start (key never leaves this
        host), re-made if the store does not know it (e.g. a new database). Returns the paths."""
        d = os.path.join(self.cfg.ca_dir, "operator")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        if os.path.exists(cert) and os.path.exists(key):
            with open(cert, "rb") as f:
                serial = x509.load_pem_x509_certificate(f.read()).serial_number
            if self.store.cert(serial) is not None:
                return cert, key
        issued, cert, key = self.ca.issue_local("operator", "operator", "operator", [], ["operator"])
        self.store.record_cert(issued.serial, "operator", "operator", issued.not_before.isoformat(),
                               issued.not_after.isoformat(), issued.san)
        log.info("operator credential created in %s (serial %s)", d, issued.serial_hex)
        return cert, key

    def _make_diameter(self, cfg: MsmConfig):
        """Embedded DIAMETER server over the same store (imported only when enabled)."""
        from testbed.diameter import DiameterServer, LocalIdentity

        from .diameter_backend import StoreBackend

        d = cfg.diameter
        backend = StoreBackend(self.store, d.secrets, d.gateways, default_metric=d.default_metric,
                               home_metric=d.home_metric)
        ident = LocalIdentity(d.origin_host or cfg.msm_name, d.origin_realm or cfg.zone.rstrip("."))
        return DiameterServer(ident, backend, host=d.address, port=d.port, tw=d.tw,
                              exchange_log_path=d.exchange_log)

    @property
    def https_port(self) -> int:
        return self.https.server_address[1]

    @property
    def http_port(self) -> int | None:
        """The plain-HTTP (test/bench) port, None when not configured."""
        return self.http.server_address[1] if self.http else None

    def status_doc(self) -> dict:
        return {
            "agent": "msm",
            "pid": os.getpid(),
            "state": self.state,
            "started_at": self.started_at,
            "https": {"address": self.cfg.http_address, "port": self.https_port},
            "http": {"address": self.cfg.http_address, "port": self.http_port},
            "auth": self.portal.auth_status(),
            "dns": {"address": self.cfg.dns_address, "port": self.dns.port if self.dns else None,
                    "zone": self.cfg.zone},
            "portal": self.portal.status(),
            "diameter": self.diameter.status() if self.diameter else None,
        }

    def start(self) -> None:
        if self.cfg.insecure_no_authz:
            for _ in range(3):
                log.warning("!!! insecure_no_authz: AUTHORISATION IS OFF - every portal route is open to "
                            "everyone (test-only flag, never in a real deployment) !!!")
        if self.http is not None:
            log.warning("insecure_http_port %d: plain-HTTP portal (bench baseline / tests only)", self.http_port)
        for t in self._threads:
            t.start()
        if self.dns:
            self.dns.start()
        if self.diameter:
            self.diameter.start_in_thread()
        self.state = "running"
        self.status.start()
        log.info("MSM running: portal https://%s:%d/ version %d", self.cfg.http_address, self.https_port,
                 self.store.version)

    def stop(self) -> None:
        self.state = "stopped"
        if self.diameter:
            self.diameter.stop_thread()
        for srv in (self.https, self.http):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        if self.dns:
            self.dns.stop()
        self.status.stop()
        self.store.close()
        log.info("MSM stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.msm", description=__doc__)
    ap.add_argument("--config", help="JSON or YAML config file (defaults apply without it)")
    ap.add_argument("--log-level", help="override the config's log_level")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config) if args.config else parse_config({})
    except ConfigError as exc:
        print(f"msm: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=(args.log_level or cfg.log_level).upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        msm = Msm(cfg)
    except ApiError as exc:  # a bad seed entry
        print(f"msm: invalid config: {exc.to_json()['error']}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, ValueError) as exc:
        # Port taken, volume not writable, database or CA key corrupt: say which file/port.
        log.error("cannot start (db_path=%s, ca_dir=%s, https_port=%d, insecure_http_port=%s, dns_port=%d): %s: %s",
                  cfg.db_path, cfg.ca_dir, cfg.https_port, cfg.insecure_http_port, cfg.dns_port,
                  type(exc).__name__, exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    msm.start()
    stop.wait()
    msm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
