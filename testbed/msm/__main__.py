"""Run the MSM: `python3 -m testbed.msm --config FILE`.

Starts the portal (HTTP) and the DNS server in threads over one store and CA, and
writes a status JSON file every `status_interval` seconds until SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import threading
import time

from .ca import CertificateAuthority
from .config import ConfigError, MsmConfig, load_config, parse_config
from .dns import DnsService, WorkgroupResolver
from .errors import ApiError
from .portal import Portal, make_server
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
        self.store.apply_seed(cfg.seed.model_dump())
        self.portal = Portal(self.store, self.ca, cfg.zone, cfg.longpoll_max)
        self.http = make_server(self.portal, cfg.http_address, cfg.http_port)
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
        self._http_thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.1},
                                             name="portal", daemon=True)

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
    def http_port(self) -> int:
        return self.http.server_address[1]

    def status_doc(self) -> dict:
        return {
            "agent": "msm",
            "pid": os.getpid(),
            "state": self.state,
            "started_at": self.started_at,
            "http": {"address": self.cfg.http_address, "port": self.http_port},
            "dns": {"address": self.cfg.dns_address, "port": self.dns.port if self.dns else None,
                    "zone": self.cfg.zone},
            "portal": self.portal.status(),
            "diameter": self.diameter.status() if self.diameter else None,
        }

    def start(self) -> None:
        self._http_thread.start()
        if self.dns:
            self.dns.start()
        if self.diameter:
            self.diameter.start_in_thread()
        self.state = "running"
        self.status.start()
        log.info("MSM running: portal http://%s:%d/ version %d", self.cfg.http_address, self.http_port,
                 self.store.version)

    def stop(self) -> None:
        self.state = "stopped"
        if self.diameter:
            self.diameter.stop_thread()
        self.http.shutdown()
        self.http.server_close()
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
        log.error("cannot start (db_path=%s, ca_dir=%s, http_port=%d, dns_port=%d): %s: %s",
                  cfg.db_path, cfg.ca_dir, cfg.http_port, cfg.dns_port, type(exc).__name__, exc)
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
