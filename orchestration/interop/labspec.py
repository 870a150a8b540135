"""The interop lab as a topology dict (Lab.from_dict), for any subset of peer suites.

    im-<s> 10.0.0.2i ─lan-a─ sg-a 198.51.100.1 ─┐                 ┌─ sg-b 198.51.100.2 ─lan-b─ b 10.0.0.7, .8
                                                 ├─ inet ──────────┤                      └──── m 10.0.0.9 (our MN agent)
                           rs-<s> 198.51.100.3i ─┘ (realm 10.0.0.3i) └─ msm 198.51.100.10 (portal for m)

- sg-a, sg-b: our SG agents (IP-IP + one responder charon per peer realm, realm-indexed
  workgroup filter from static rows: im-<s> may reach b's 10.0.0.7, not 10.0.0.8).
- im-<s>: stock strongSwan of suite s, the initiating MN of claims 7-11 (identity = SG-A's
  public address, which its certificate carries in subjectAltName).
- rs-<s>: stock strongSwan of suite s as the responder SG of another M-VPN (claim 12), its
  realm address 10.0.0.3i on lo; our MN agent m builds its tunnel to it. rs-<s> is also the
  home agent's IPsec of claim 24 for v, our MN on a co-located care-of address (home
  address 10.0.0.40 on lo), authenticated by the MN-HA key; the Mobile IP tunnel itself is
  replaced by a route (a stock peer has no IP-IP endpoint without our agent).
- Certificates are written by the matrix run (host-side CA); the SG agents wait for them.
`scenarios/interop/topology.yaml` is this function's output for all suites (a unit test
keeps them equal).
"""
from __future__ import annotations

from typing import Iterable

import yaml

from orchestration.images import PEER_SUITES

SG_A, SG_B, MSM = "198.51.100.1", "198.51.100.2", "198.51.100.10"
OTHER_SG = "198.51.100.3"          # named in the wrong-SAN certificate; no such SG runs
TARGET, NOT_TARGET, MN_ADDR = "10.0.0.7", "10.0.0.8", "10.0.0.9"
INITIATORS = "10.0.0.16/28"         # the stock initiating MNs 10.0.0.2i (routed back via SG-A)
REALM = "10.0.0.0/24"               # every M-VPN's private realm here (they overlap)
SG_READY = "/etc/testbed/sg/ready"
MN_PKI, MN_READY = "/etc/testbed/mn/pki", "/etc/testbed/mn/ready"
MN_FQDN, WORKGROUP = "m.mwg.test", "W"
CCOA, HOME_ADDR = "198.51.100.5", "10.0.0.40"   # our MN v on a co-located care-of address
PORTAL = f"https://{MSM}:8443"
# Our MN agent's portal credential (issue 9: mutual TLS, enrolled with a one-time token the lab
# declares; key made on the node). Its IKE certificate stays the matrix CA's in MN_PKI.
MN_PORTAL_PKI = "/var/lib/testbed/mn/portal"
MN_TOKEN = "mnm000.5f0c2b7e9a41d3c86e27b1f0"


def suite_index(suite: str) -> int:
    """1-based position of a suite in PEER_SUITES (fixes its nodes' addresses)."""
    return PEER_SUITES.index(suite) + 1


def tag(suite: str) -> str:
    """The suite's 2-letter tag (its first two letters: "bookworm" -> "bo") used in node
    names; it must differ between PEER_SUITES.
    """
    return suite[:2]


def initiator_node(suite: str) -> str:
    """Node name of suite's stock initiating MN (claims 7-11): ``im-<tag>``."""
    return f"im-{tag(suite)}"


def responder_node(suite: str) -> str:
    """Node name of suite's stock responder SG (claim 12, HA IPsec of claim 24): ``rs-<tag>``."""
    return f"rs-{tag(suite)}"


def initiator_addr(suite: str) -> str:
    """Realm address of suite's initiating MN, 10.0.0.2i (i = suite_index, 1-based; inside
    INITIATORS 10.0.0.16/28). ValueError for a suite not in PEER_SUITES.
    """
    return f"10.0.0.2{suite_index(suite)}"


def responder_public(suite: str) -> str:
    """Public (Internet) address of suite's stock responder SG, 198.51.100.3i (i =
    suite_index). ValueError for a suite not in PEER_SUITES.
    """
    return f"198.51.100.3{suite_index(suite)}"


def responder_realm(suite: str) -> str:
    """Realm address behind suite's stock responder (on its lo; the responder's /32 traffic
    selector), 10.0.0.3i (i = suite_index). ValueError for a suite not in PEER_SUITES.
    """
    return f"10.0.0.3{suite_index(suite)}"


def responder_mvpn(suite: str) -> str:
    """Name of the M-VPN suite's stock responder stands for: "X" + upper-case tag, e.g. "XBO"."""
    return f"X{tag(suite).upper()}"


def responder_fqdn(suite: str) -> str:
    """FQDN of suite's stock responder SG in the lab's zone: ``p-<tag>.mwg.test``."""
    return f"p-{tag(suite)}.mwg.test"


def _msm(suites: list[str]) -> dict:
    """The MSM, only as the portal our MN agent signs on at (certificates come from the
    matrix CA, not from its enrolment)."""
    seed = {
        "mvpns": [{"name": "A", "realm": REALM, "sg_public": SG_A}, {"name": "B", "realm": REALM, "sg_public": SG_B}]
        + [{"name": responder_mvpn(s), "realm": REALM, "sg_public": responder_public(s)} for s in suites],
        "users": [{"fqdn": MN_FQDN, "mvpn": "B", "private_address": MN_ADDR}]
        + [{"fqdn": responder_fqdn(s), "mvpn": responder_mvpn(s), "private_address": responder_realm(s)}
           for s in suites],
        "workgroups": [{"name": WORKGROUP, "members": [MN_FQDN] + [responder_fqdn(s) for s in suites]}],
        "tokens": [{"identity": MN_FQDN, "kind": "mn", "token": MN_TOKEN, "ttl_s": 7200}]}
    cfg = {"db_path": "/var/lib/msm/msm.db", "ca_dir": "/var/lib/msm/ca", "dns_port": 53,
           "zone": "mwg.test.", "msm_address": MSM, "key_type": "ec", "status_file": "/run/testbed/msm.json",
           "seed": seed}
    return {"role": "msm", "description": "portal for our MN agent's sign-on (claims 5, 13)",
            "links": [{"segment": "inet", "address": f"{MSM}/24"}],
            "routes": [{"to": f"{MN_ADDR}/32", "via": SG_B}],
            "volumes": ["/var/lib/msm"],
            "files": {"/etc/testbed/msm.yaml": yaml.safe_dump(cfg, sort_keys=False)},
            "start": ["python3 -m testbed.msm --config /etc/testbed/msm.yaml"]}


def _mn() -> dict:
    """Our MN agent m (M-VPN B): one tunnel per member SG, i.e. to every stock rs-<s>."""
    from .matrix import PROPOSALS
    portal = {"url": PORTAL, "poll_timeout": 2, "ca": f"{MN_PORTAL_PKI}/ca.pem",
              "cert": f"{MN_PORTAL_PKI}/cert.pem", "key": f"{MN_PORTAL_PKI}/key.pem"}
    cfg = {"fqdn": MN_FQDN, "workgroup": WORKGROUP, "portal": portal,
           "interface": "eth0", "credentials": {"dir": MN_PKI, "enroll": False},
           "retry_interval": 1, "initiate_timeout": 5,
           "proposals": [p.ike for p in PROPOSALS.values()],
           "esp_proposals": [p.esp for p in PROPOSALS.values()],
           "status_file": "/run/testbed/mn.json", "log_level": "INFO"}
    return {"role": "mn", "mvpn": "B", "description": "our MN agent (claim 12 towards the stock SGs)",
            "links": [{"segment": "lan-b", "address": f"{MN_ADDR}/24"}],
            "routes": [{"to": "default", "via": "10.0.0.1"}],
            "files": {"/etc/testbed/mn.yaml": yaml.safe_dump(cfg, sort_keys=False)},
            "start": [f"sh -c 'while [ ! -f {MN_READY} ]; do sleep 0.2; done; "
                      f"python3 -m testbed.common.enroll --portal {PORTAL} --token {MN_TOKEN} --kind mn "
                      f"--out {MN_PORTAL_PKI} --wait 120 && "
                      "exec python3 -m testbed.mn --config /etc/testbed/mn.yaml'"]}


def _sg(mvpn: str, public: str, peers: dict[str, str], rows: list[dict], lan: str) -> dict:
    from .matrix import PROPOSALS
    cfg = {
        "mvpn": mvpn, "public_address": public, "realm": ["10.0.0.0/24"],
        "static_rows": rows, "auto_peers": False,
        "peers": {n: {"public": p} for n, p in peers.items()},
        "tunnel": {"mode": "userspace"},
        "ipsec": {"enabled": True, "cert": "/etc/testbed/sg/cert.pem", "key": "/etc/testbed/sg/key.pem",
                  "ca": "/etc/testbed/sg/ca.pem", "debug": 1,
                  "proposals": [p.ike for p in PROPOSALS.values()],
                  "esp_proposals": [p.esp for p in PROPOSALS.values()],
                  "answer_via_sa": True},
        "status_file": "/run/testbed/sg.json", "log_level": "INFO"}
    return {
        "role": "sg", "mvpn": mvpn,
        "links": [{"segment": lan, "address": "10.0.0.1/24"}, {"segment": "inet", "address": f"{public}/24"}],
        "files": {"/etc/testbed/sg.yaml": yaml.safe_dump(cfg, sort_keys=False)},
        "start": [f"sh -c 'while [ ! -f {SG_READY} ]; do sleep 0.2; done; "
                  "exec python3 -m testbed.sg --config /etc/testbed/sg.yaml'"],
    }


def topology(suites: Iterable[str] = PEER_SUITES, name: str = "interop") -> dict:
    """The lab for SUITES (a subset of PEER_SUITES, in any order)."""
    from .peer import PEER_CONF, strongswan_conf
    suites = [s for s in PEER_SUITES if s in set(suites)]
    rows = [{"peer_sg_public": SG_A, "initiator_private": initiator_addr(s), "targets": [TARGET],
             "initiator_mvpn": "A"} for s in suites]
    nodes: dict = {
        "sg-a": _sg("A", SG_A, {"B": SG_B}, [], "lan-a"),
        "sg-b": _sg("B", SG_B, {"A": SG_A}, rows, "lan-b"),
        "msm": _msm(suites),
        "v": {"role": "mn", "description": "our MN on a co-located care-of address (claim 24's IPsec to its HA)",
              "links": [{"segment": "inet", "address": f"{CCOA}/24"}],
              "setup": [f"ip addr add {HOME_ADDR}/32 dev lo"]},
        "m": _mn(),
        "b": {"role": "host", "mvpn": "B", "description": "target: 10.0.0.7 in the workgroup, 10.0.0.8 not",
              "links": [{"segment": "lan-b", "address": f"{TARGET}/24"}],
              "routes": [{"to": "default", "via": "10.0.0.1"}, {"to": INITIATORS, "via": "10.0.0.1"}],
              "setup": [f"ip addr add {NOT_TARGET}/24 dev eth0"]},
    }
    conf = strongswan_conf()
    for s in suites:
        nodes[initiator_node(s)] = {
            "role": "host", "mvpn": "A", "image": f"peer:{s}",
            "description": f"stock strongSwan of Debian {s}: initiating MN behind SG-A",
            "links": [{"segment": "lan-a", "address": f"{initiator_addr(s)}/24"}],
            "routes": [{"to": "default", "via": "10.0.0.1"}],
            "files": {PEER_CONF: conf},
            "start": ["/usr/lib/ipsec/charon"]}
        nodes[responder_node(s)] = {
            "role": "host", "image": f"peer:{s}",
            "description": f"stock strongSwan of Debian {s}: responder SG of M-VPN {responder_mvpn(s)}",
            "links": [{"segment": "inet", "address": f"{responder_public(s)}/24"}],
            "routes": [{"to": INITIATORS, "via": SG_A}, {"to": f"{MN_ADDR}/32", "via": SG_B},
                       # stands for the Mobile IP tunnel HA -> CCoA, which a stock peer cannot end
                       {"to": f"{HOME_ADDR}/32", "via": CCOA}],
            "setup": [f"ip addr add {responder_realm(s)}/32 dev lo"],
            "sysctls": {"net.ipv4.conf.all.rp_filter": 2},
            "files": {PEER_CONF: conf},
            "start": ["/usr/lib/ipsec/charon"]}
    return {
        "name": name,
        "description": "interop matrix: our SG and MN agents against stock strongSwan releases",
        "mvpns": {"A": {"realm": "10.0.0.0/24"}, "B": {"realm": "10.0.0.0/24"}},
        "segments": {"inet": {"subnet": "198.51.100.0/24", "description": "the emulated Internet"},
                     "lan-a": {"mvpn": "A", "subnet": "10.0.0.0/24"},
                     "lan-b": {"mvpn": "B", "subnet": "10.0.0.0/24"}},
        "nodes": nodes,
    }
