"""Stock strongSwan peer configuration for the matrix: strongswan.conf and swanctl.conf as
plain text, rendered with the same settings writer as our agents (testbed.common.strongswan),
and loaded with stock `swanctl --load-all` inside the peer image (no testbed code there).

Settings every peer gets and why:
- kernel-libipsec: this kernel has no ESP (ENVIRONMENT.md); ESP runs inside charon and is
  always UDP-encapsulated (`encap = yes` only makes that explicit).
- mobike = no: kernel-libipsec in these releases cannot update an installed SA's addresses
  (no SA update), so a MOBIKE address change would leave the SA pointing at the old path.
- fwmark: charon's own IKE/ESP sockets carry mark 0x42 and the routes kernel-libipsec
  installs apply only to unmarked packets (strongSwan's testing/tests/libipsec/host2host-cert
  does the same). Without it a CHILD_SA whose remote selector is the IKE peer's own address
  (our MN agent, whose IKE leaves masqueraded as its private address) is refused: "can't
  install route ... conflicts with IKE traffic"; `allow_peer_ts` then lets kernel-libipsec
  install it.
- make_before_break = yes: reauthentication builds the new IKE_SA and CHILD_SAs before
  deleting the old ones, so a running stream sees no gap (the default tears down first).
"""
from __future__ import annotations

from testbed.common.strongswan import render_settings

from .matrix import KEY_TYPES, NO_COMMON_PROPOSAL, PROPOSALS

PEER_LOG = "/var/log/testbed/charon.log"
PEER_CONF = "/etc/strongswan.d/zz-interop.conf"
SWANCTL_DIR = "/etc/swanctl"


def strongswan_conf() -> str:
    """The peer's strongswan.d snippet (Debian's strongswan.conf includes strongswan.d/)."""
    return "# interop peer: stock charon with kernel-libipsec (see orchestration/interop/peer.py)\n" + render_settings({
        "charon": {
            "make_before_break": True,
            "retransmit_tries": 2,
            "retransmit_timeout": 1.0,
            "plugins": {"kernel-libipsec": {"load": True, "allow_peer_ts": True},
                        "kernel-netlink": {"fwmark": "!0x42"},
                        "socket-default": {"fwmark": "0x42"}},
            "filelog": {"interop": {"path": PEER_LOG, "default": 1, "ike": 2, "cfg": 2, "knl": 1,
                                    "flush_line": True, "time_format": "%T"}},
        }}) + "\n"


def cell_name(proposal: str, key_type: str) -> str:
    """Connection name of a cell: c<proposal index>-<key type>."""
    return f"c{list(PROPOSALS).index(proposal)}-{key_type}"


def _conn(remote: str, local_id: str, remote_id: str, cert: str, ike: str, esp: str,
          remote_ts: str) -> dict:
    return {"version": 2, "remote_addrs": remote, "encap": True, "mobike": False,
            "proposals": ike,
            "local": {"auth": "pubkey", "certs": cert, "id": local_id},
            "remote": {"auth": "pubkey", "id": remote_id},
            "children": {"net": {"remote_ts": remote_ts, "esp_proposals": esp,
                                 "start_action": "none"}}}


def initiator_swanctl(sg: str, own_sg: str, other_sg: str, targets: str,
                      baseline: tuple[str, str] | None = None) -> str:
    """swanctl.conf of a stock initiating MN (claims 7-10) behind SG `own_sg` towards SG `sg`:
    one connection per (proposal, key type) cell, the negative cells, and with
    `baseline` = (responder SG, its realm address) the same cells towards a stock responder
    of the same release (``b`` + name) for the bench's baseline. Certificate files: <key type>.pem, wrong-san.pem,
    expired.pem, other-ca.pem in x509/."""
    conns = {}
    for prop, p in PROPOSALS.items():
        for kt in KEY_TYPES:
            conns[cell_name(prop, kt)] = _conn(sg, own_sg, sg, f"{kt}.pem", p.ike, p.esp, targets)
            if baseline:
                conns["b" + cell_name(prop, kt)] = _conn(baseline[0], own_sg, baseline[0], f"{kt}.pem",
                                                         p.ike, p.esp, baseline[1])
    first = next(iter(PROPOSALS.values()))
    # The same certificate (SAN = another SG) twice: with the right identity (our SG must
    # refuse it because the certificate does not confirm the identity, claims 7-11's SAN
    # selection) and with the other SG's identity (refused earlier: no peer config for it).
    conns["n-wrong-san"] = _conn(sg, own_sg, sg, "wrong-san.pem", first.ike, first.esp, targets)
    conns["n-wrong-id"] = _conn(sg, other_sg, sg, "wrong-san.pem", first.ike, first.esp, targets)
    conns["n-expired"] = _conn(sg, own_sg, sg, "expired.pem", first.ike, first.esp, targets)
    conns["n-other-ca"] = _conn(sg, own_sg, sg, "other-ca.pem", first.ike, first.esp, targets)
    conns["n-no-proposal"] = _conn(sg, own_sg, sg, "p256.pem", NO_COMMON_PROPOSAL.ike,
                                   NO_COMMON_PROPOSAL.esp, targets)
    return "# interop: stock initiating MN (rendered by orchestration/interop/peer.py)\n" + \
        render_settings({"connections": conns}) + "\n"


def responder_swanctl(own: str, realm_ts: str, mn_sg: str, proposal: str | None, key_type: str,
                      baseline_from: str | None = None, *, mn_addrs: str = "%any",
                      baseline_addrs: str = "%any", ha: tuple[str, str, bytes] | None = None) -> str:
    """swanctl.conf of a stock responder SG at public address `own` (claim 12's target SG):
    connection `from-mn` accepts MNs whose identity (and certificate SAN) is their SG
    `mn_sg`, with only `proposal` and our certificate of `key_type`; `base` accepts the
    stock MN of the same release behind `baseline_from` with every matrix proposal.
    charon picks the IKE config (and so the IKE proposals) by address before it knows the
    identity, so the two connections must differ in remote_addrs (`mn_addrs`,
    `baseline_addrs`), or the baseline's proposals would answer the MN's IKE_SA_INIT.
    ha = (proposal, MN home address, MN-HA key): connection `ha`, the home agent's IPsec of
    claim 24, authenticating the MN by the pre-shared MN-HA key (as testbed.mip.ipsec's HA)."""
    conns = {}
    if proposal:
        p = PROPOSALS[proposal]
        conns["from-mn"] = {"version": 2, "local_addrs": own, "remote_addrs": mn_addrs, "encap": True,
                            "mobike": False,
                            "proposals": p.ike,
                            "local": {"auth": "pubkey", "certs": f"{key_type}.pem", "id": own},
                            "remote": {"auth": "pubkey", "id": mn_sg},
                            "children": {"mn": {"local_ts": realm_ts, "esp_proposals": p.esp}}}
    if baseline_from:
        conns["base"] = {"version": 2, "local_addrs": own, "remote_addrs": baseline_addrs, "encap": True,
                         "mobike": False,
                         "proposals": ",".join(p.ike for p in PROPOSALS.values()),
                         "local": {"auth": "pubkey", "certs": "p256.pem", "id": own},
                         "remote": {"auth": "pubkey", "id": baseline_from},
                         "children": {"net": {"local_ts": realm_ts,
                                              "esp_proposals": ",".join(p.esp for p in PROPOSALS.values())}}}
    tree: dict = {"connections": conns}
    if ha:
        hp, home, key = PROPOSALS[ha[0]], ha[1], ha[2]
        conns["ha"] = {"version": 2, "local_addrs": own, "remote_addrs": home, "encap": True, "mobike": False,
                       "proposals": hp.ike,
                       "local": {"auth": "psk", "id": own}, "remote": {"auth": "psk", "id": home},
                       "children": {"ha": {"local_ts": realm_ts, "esp_proposals": hp.esp}}}
        tree["secrets"] = {"ike-ha": {"id-ha": own, "id-mn": home, "secret": "0x" + key.hex()}}
    return "# interop: stock responder SG (rendered by orchestration/interop/peer.py)\n" + \
        render_settings(tree) + "\n"
