"""The SG agent: tunnels to peer SGs, the workgroup filter following the portal, responders.

What ties the parts together is the peer SG's public address: it names the IP-IP tunnel
(outer source), the realm namespace and charon that terminate that peer's initiators,
the interface the workgroup filter keys its rows on, and the identity the responder
demands in the initiator's certificate. One table, `peers`, holds that mapping.

Start-up order is fail-closed: tunnels come up with an empty filter (every peer's traffic
dropped and counted) and rows are installed once the portal has answered.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from ipaddress import IPv4Address
from pathlib import Path

from testbed.sg.config import SgConfig
from testbed.sg import realm_mark
from testbed.sg import revocation
from testbed.sg.portal_follower import PortalFollower, PortalTls
from testbed.sg.realm import Realm
from testbed.common.strongswan import Credentials, StrongswanError, summarize_sas
from testbed.sg.workgroup_filter import FilterRow, WorkgroupFilter
from testbed.tunnel.ipip import IpipEndpoint
from testbed.common.jsonfile import write_json_atomic as write_status
from testbed.common.tun import configure_link

log = logging.getLogger(__name__)

IKE_FROM_PEER = "ip saddr {peer} udp sport {{ 500, 4500 }}"


class SgAgent:
    def __init__(self, cfg: SgConfig) -> None:
        self.cfg = cfg
        self.public = str(cfg.public_address)
        self.endpoint = IpipEndpoint(self.public, mode=cfg.tunnel.mode,
                                     ifname_prefix=cfg.tunnel.ifname_prefix)
        self.filter = WorkgroupFilter(
            table=cfg.filter.table, hooks=tuple(cfg.filter.hooks),
            always_allow=(IKE_FROM_PEER,) if cfg.ipsec.enabled else ())
        self.peers: dict[str, str] = {}       # public address -> peer name
        self.realms: dict[str, Realm] = {}    # peer name -> realm (ipsec mode)
        self.follower: PortalFollower | None = None
        self._next_index = 0
        self._lock = threading.RLock()
        self.errors: list[str] = []
        self.rows: list[FilterRow] = []
        self.crl = {"loaded": 0, "revoked_serials": 0, "sas_terminated": 0, "terminated": []}
        self._revoked: set[int] = set()

    # ---- peers -------------------------------------------------------------------------
    def add_peer(self, name: str, public: str, routes: list[str] | None = None) -> None:
        """Create the tunnel to a peer SG (and its realm namespace + responder)."""
        public = str(IPv4Address(public))
        with self._lock:
            if public in self.peers:
                return
            index = self._next_index
            self._next_index += 1
            ifname = f"{self.cfg.tunnel.ifname_prefix}{name}"
            ipsec = self.cfg.ipsec
            realm = None
            if ipsec.enabled:
                realm = Realm(
                    name, index, public, public_address=self.public,
                    identity=str(ipsec.identity or self.public),
                    realm_prefixes=[str(p) for p in self.cfg.realm],
                    creds=Credentials(cert=ipsec.cert, key=ipsec.key, ca=ipsec.ca),
                    workdir=Path(ipsec.workdir) / name, netns=f"{ipsec.netns_prefix}{name}",
                    tun_ifname=ifname, require_ipsec=ipsec.require_ipsec, debug=ipsec.debug,
                    mtu=self.cfg.tunnel.mtu, proposals=",".join(ipsec.proposals),
                    esp_proposals=",".join(ipsec.esp_proposals), answer_via_sa=ipsec.answer_via_sa)
                realm.create_namespace()
            peer = self.endpoint.add_peer(name, public, ifname=ifname)
            if realm is not None:
                realm.attach_tunnel()
                peer.netns = realm.netns
                realm.build()
                realm.set_targets(next(iter(self.realms.values())).targets if self.realms else ())
                realm.start_charon()
                self.realms[name] = realm
                outer_if = realm.outer_if
                if ipsec.lan_interface:
                    try:
                        realm_mark.apply(ipsec.lan_interface,
                                         {r.outer_if: r.peer_public for r in self.realms.values()})
                    except RuntimeError as exc:  # e.g. kernel < 5.16: no netdev egress hook
                        self.errors.append(f"realm tag on {ipsec.lan_interface}: {exc}")
                        log.error("realm tag on %s not installed (targets cannot tell realms "
                                  "with equal addresses apart): %s", ipsec.lan_interface, exc)
            else:
                configure_link(ifname, mtu=self.cfg.tunnel.mtu, routes=routes or [])
                outer_if = ifname
            self.peers[public] = name
            self.filter.peer_ifaces = {**self.filter.peer_ifaces, public: outer_if}
        log.info("peer %s (%s) up on %s", name, public, outer_if)

    def _auto_name(self, row: FilterRow) -> str:
        name = re.sub(r"[^A-Za-z0-9_]", "", row.initiator_mvpn)[:8]
        if not name or any(n == name for n in self.peers.values()):
            name = "p" + IPv4Address(row.peer_sg_public).packed[1:].hex()
        return name

    # ---- rows --------------------------------------------------------------------------
    def apply_rows(self, version: int | None, rows: list[FilterRow]) -> None:
        """Install a new row set: auto-create peers, replace the filter, sync realm targets."""
        with self._lock:
            if self.cfg.auto_peers:
                for r in rows:
                    if r.peer_sg_public not in self.peers and r.peer_sg_public != self.public:
                        try:
                            self.add_peer(self._auto_name(r), r.peer_sg_public)
                        except Exception as exc:
                            self.errors.append(f"auto peer {r.peer_sg_public}: {exc}")
                            log.error("cannot create tunnel to %s: %s", r.peer_sg_public, exc)
            self.filter.apply(rows, version)
            self.rows = list(rows)
            # Every realm gets every target of any row: the responder can then build a CHILD_SA
            # for any workgroup target (kernel-libipsec needs the address, see realm.py), and
            # the decision who may reach whom stays with the filter, where it is counted.
            targets = {t for r in rows for t in r.targets}
            for realm in self.realms.values():
                realm.set_targets(targets)
                realm.set_answers(r.initiator_private for r in rows if r.peer_sg_public == realm.peer_public)
        log.info("rows version %s applied (%d rows)", version, len(rows))

    # ---- revocation --------------------------------------------------------------------
    def apply_crl(self, pem: str) -> None:
        """Load the MSM's CRL into every realm charon; if it revokes serials the last one did
        not, terminate the IKE_SAs whose initiator has no row in that realm (revocation.py says
        why both). The CRL's number follows every portal change, so a mere member removal
        hands over a new CRL too: it is loaded, but tears nothing down. Raises ValueError for
        a text that is not a CRL (the follower keeps the last one and retries)."""
        serials = revocation.revoked_serials(pem)
        new = serials - self._revoked
        with self._lock:
            for name, realm in self.realms.items():
                if not realm.charon.running():
                    continue
                try:
                    realm.charon.load_crl(pem)
                    if not new:
                        continue
                    sas = summarize_sas(realm.charon.list_sas())
                    allowed = revocation.initiators_with_rows(self.rows, realm.peer_public)
                    for sa in revocation.sas_without_rows(sas, allowed):
                        realm.charon.terminate_ike_id(sa["uniqueid"])
                        self.crl["sas_terminated"] += 1
                        self.crl["terminated"] = (self.crl["terminated"] + [
                            {"realm": name, "remote_host": sa["remote_host"], "remote_id": sa["remote_id"],
                             "time": time.time()}])[-20:]
                        log.info("realm %s: IKE_SA %s of %s (no row) terminated after CRL update",
                                 name, sa["uniqueid"], sa["remote_host"])
                except StrongswanError as exc:
                    self.errors.append(f"CRL into realm {name}: {exc}")
                    log.error("realm %s: CRL: %s", name, exc)
            self.crl["loaded"] += 1
            self.crl["revoked_serials"] = len(serials)
            self._revoked = serials
        log.info("CRL applied: %d revoked serials", len(serials))

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        for name, pc in self.cfg.peers.items():
            self.add_peer(name, str(pc.public), pc.routes)
        self.filter.apply([], None)  # fail closed until rows arrive
        self.endpoint.start()
        if self.cfg.portal:
            pc = self.cfg.portal
            tls = None
            if pc.url.startswith("https://"):
                ipsec = self.cfg.ipsec
                tls = PortalTls(ca=pc.ca or ipsec.ca, cert=pc.cert or ipsec.cert, key=pc.key or ipsec.key)
            self.follower = PortalFollower(pc.url, self.cfg.mvpn, self.apply_rows, poll_timeout=pc.poll_timeout,
                                           tls=tls, on_crl=self.apply_crl if tls else None).start()
        else:
            rows = []
            for i, r in enumerate(self.cfg.static_rows):
                try:
                    rows.append(FilterRow.from_json(r))
                except ValueError as exc:
                    raise ValueError(f"static_rows[{i}]: {exc}") from None
            self.apply_rows(0, rows)

    def status(self) -> dict:
        with self._lock:
            realms = {name: r.status() for name, r in self.realms.items()}
        return {"time": time.time(), "mvpn": self.cfg.mvpn, "public_address": self.public,
                "peers": {pub: name for pub, name in self.peers.items()},
                "tunnel": self.endpoint.status(), "filter": self.filter.status(),
                "portal": self.follower.status() if self.follower else None,
                "realms": realms, "crl": self.crl,
                "realm_tags": ({st["outer_if"]: realm_mark.realm_mac(st["peer_public"]) for st in realms.values()}
                               if self.cfg.ipsec.lan_interface else {}),
                "errors": self.errors[-20:]}

    def run(self, stop: threading.Event) -> None:
        """Write status every interval until `stop` is set."""
        while not stop.is_set():
            try:
                write_status(self.cfg.status_file, self.status())
            except Exception as exc:  # status is best effort; never kill the data plane
                log.warning("status: %s", exc)
            stop.wait(self.cfg.status_interval)

    def close(self) -> None:
        if self.follower:
            self.follower.stop()
        try:
            write_status(self.cfg.status_file, self.status())
        except Exception:
            pass
        self.endpoint.close()  # closing the TUN fds deletes the tunnel interfaces
        for realm in self.realms.values():
            realm.close()
        if self.cfg.ipsec.lan_interface:
            realm_mark.remove()
        self.filter.remove()
