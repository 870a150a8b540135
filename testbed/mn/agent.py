"""The MN workgroup agent: sign on, follow the member list, keep one tunnel per target SG.

Loop (one thread; the status writer is a second one):
  sign on at the portal -> {self, members} (claims 5, 13); members of other M-VPNs grouped
  by their SG's public address are the targets; a TargetTunnel per target SG (realms.py) is
  created, given its members as remote traffic selectors, and initiated until its CHILD_SA
  is installed; tunnels of SGs without members any more are closed. Then the long-poll
  (`/api/changes`) waits for the next portal change, or `retry_interval` while a tunnel is
  still down. Not a member (403): no targets, every tunnel closed.
Members of our own M-VPN are reached directly on the LAN, without a tunnel.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

from testbed.mn.config import MnConfig
from testbed.common.enroll import enroll, paths
from testbed.mn.realms import TargetTunnel, apply_main_rules, remove_main_rules
from testbed.common.portal_client import MsmClient, MsmError
from testbed.sg.realm import _sysctl
from testbed.common.jsonfile import write_json_atomic as write_status

log = logging.getLogger(__name__)


class MnAgent:
    def __init__(self, cfg: MnConfig) -> None:
        self.cfg = cfg
        self.creds = paths(cfg.credentials.dir)
        self.msm: MsmClient | None = None   # made in prepare(), once the credentials exist
        self.me: dict | None = None
        self.members: list[dict] = []
        self.version = 0
        self.member = False
        self.tunnels: dict[str, TargetTunnel] = {}   # SG public -> tunnel
        self._next = 0
        self._lock = threading.RLock()
        self.counters = {"signons": 0, "signon_refused": 0, "portal_errors": 0, "changes": 0,
                         "tunnels_opened": 0, "tunnels_closed": 0}
        self.errors: list[str] = []
        self.last_change_applied: float | None = None
        self.unreachable: list[str] = []   # members sharing our own private address

    # ---- start-up ----------------------------------------------------------------------
    def _client(self) -> MsmClient:
        """The portal client: over https:// with the MSM CA pinned and our certificate as the
        TLS client certificate (identity = that certificate, contract of issue 9)."""
        if not self.cfg.portal.url.startswith("https://"):
            return MsmClient(self.cfg.portal.url, timeout=10)
        return MsmClient(self.cfg.portal.url, timeout=10, ca_file=self.cfg.portal.ca or self.creds.ca,
                         cert_file=self.cfg.portal.cert or self.creds.cert,
                         key_file=self.cfg.portal.key or self.creds.key)

    def enroll(self) -> None:
        """Enrol once with the one-time token: the key is made here and only a CSR is sent
        (testbed.common.enroll). Keeps an existing set. Raises RuntimeError if there is no token,
        MsmError if the MSM refuses (reason token_used, token_expired, ...)."""
        c = self.cfg.credentials
        if all(Path(p).exists() for p in (self.creds.cert, self.creds.key, self.creds.ca)):
            return
        token = c.token or (Path(c.token_file).read_text().strip() if c.token_file else None)
        if not token:
            raise RuntimeError(f"no certificate in {c.dir} and no credentials.token/token_file to enrol with")
        self.creds = enroll(self.cfg.portal.url, token, "mn", c.dir, ca_file=c.ca_file, wait=120)

    def prepare(self) -> None:
        if self.cfg.credentials.enroll and self.cfg.portal.url.startswith("https://"):
            self.enroll()
        self.msm = self._client()
        for key, val in (("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                         (f"net.ipv4.conf.{self.cfg.interface}.rp_filter", "0")):
            _sysctl(None, key, val)

    # ---- reconcile ---------------------------------------------------------------------
    def _name(self, member: dict) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "", member.get("mvpn", ""))[:8]
        return name or "p" + bytes(int(x) for x in member["sg_public"].split(".")).hex()

    def apply(self, view: dict | None) -> None:
        """Make the tunnels match a sign-on answer (None: not a member)."""
        with self._lock:
            if view is not None:
                self.me = view["self"]
                self.members = view["members"]
            else:
                self.members = []
            own_sg = self.me["sg_public"] if self.me else None
            want: dict[str, tuple[str, list[str]]] = {}
            own_addr = self.me["private_address"] if self.me else None
            self.unreachable = []
            for m in self.members:
                if m["sg_public"] == own_sg:
                    continue  # same M-VPN: reached on the LAN
                if m["private_address"] == own_addr:
                    # Same private address as ours (a and c are both 10.0.0.5): a packet to it
                    # would be a packet to ourselves. Reported, not tunnelled.
                    self.unreachable.append(m["fqdn"])
                    continue
                name, addrs = want.setdefault(m["sg_public"], (self._name(m), []))
                addrs.append(m["private_address"])
            for sg in sorted(set(self.tunnels) - set(want)):
                log.info("no members behind %s any more: closing its tunnel", sg)
                self.tunnels.pop(sg).close()
                self.counters["tunnels_closed"] += 1
            for sg, (name, addrs) in want.items():
                t = self.tunnels.get(sg)
                if t is None:
                    if any(x.name == name for x in self.tunnels.values()):
                        name = "p" + bytes(int(x) for x in sg.split(".")).hex()
                    t = TargetTunnel(name, self._next, sg, own_address=self.me["private_address"],
                                     own_sg_public=own_sg, creds=self.creds,
                                     workdir=Path(self.cfg.workdir) / name,
                                     netns=f"{self.cfg.netns_prefix}{name}", debug=self.cfg.debug,
                                     proposals=",".join(self.cfg.proposals),
                                     esp_proposals=",".join(self.cfg.esp_proposals))
                    self._next += 1
                    try:
                        t.build()
                        t.start_charon()
                    except Exception:
                        t.close()
                        raise
                    self.tunnels[sg] = t
                    self.counters["tunnels_opened"] += 1
                t.set_targets(addrs)
            if self.me:
                apply_main_rules(self.cfg.interface, self.me["private_address"], self.tunnels)
            self.last_change_applied = time.time()

    def bring_up(self) -> bool:
        """Initiate every tunnel whose CHILD_SA is not installed; True if all are up."""
        all_up = True
        for t in list(self.tunnels.values()):
            if not t.is_up() and not t.up(self.cfg.initiate_timeout):
                all_up = False
        return all_up

    def signon(self) -> dict | None:
        try:
            view = self.msm.signon(self.cfg.fqdn, self.cfg.workgroup)
            self.counters["signons"] += 1
            self.member = True
            self.version = max(self.version, int(view.get("version", 0)))
            return view
        except MsmError as exc:
            if exc.status in (401, 403, 404):  # 401: our certificate was revoked
                self.counters["signon_refused"] += 1
                self.member = False
                log.info("sign-on refused: %s", exc)
                return None
            raise

    # ---- main loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        need_signon = True
        while not stop.is_set():
            try:
                if need_signon:
                    self.apply(self.signon())
                    need_signon = False
                all_up = self.bring_up()
                timeout = self.cfg.portal.poll_timeout if all_up else self.cfg.retry_interval
                version = self.msm.wait_for_change(self.version, timeout=timeout)
                if version > self.version:
                    self.counters["changes"] += 1
                    self.version = version
                    need_signon = True
            except MsmError as exc:
                self.counters["portal_errors"] += 1
                self.errors.append(f"{time.strftime('%T')} portal: {exc}")
                log.warning("portal: %s", exc)
                stop.wait(self.cfg.retry_interval)
            except Exception as exc:
                self.errors.append(f"{time.strftime('%T')} {type(exc).__name__}: {exc}")
                log.exception("agent loop")
                stop.wait(self.cfg.retry_interval)

    def status(self) -> dict:
        with self._lock:
            tunnels = {sg: t.status() for sg, t in self.tunnels.items()}
        return {"time": time.time(), "fqdn": self.cfg.fqdn, "workgroup": self.cfg.workgroup,
                "member": self.member, "version": self.version, "self": self.me,
                "members": self.members, "unreachable_same_address": self.unreachable, "tunnels": tunnels, "counters": self.counters,
                "last_change_applied": self.last_change_applied, "errors": self.errors[-20:]}

    def write_status_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                write_status(self.cfg.status_file, self.status())
            except Exception as exc:
                log.warning("status: %s", exc)
            stop.wait(self.cfg.status_interval)

    def close(self) -> None:
        with self._lock:
            for t in self.tunnels.values():
                t.close()
            self.tunnels.clear()
            remove_main_rules()
        try:
            write_status(self.cfg.status_file, self.status())
        except Exception:
            pass
