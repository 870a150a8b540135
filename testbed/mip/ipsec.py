"""Claim 24: an extra IPsec tunnel between MN and HA inside the Mobile IP tunnel (CCoA case).

With a co-located care-of address no FA vouches for the MN on the visited network, so
the MN adds an IKEv2/ESP tunnel from its home address H to its HA, carried inside the
IP-IP tunnel CCoA <-> HA (and, in the full system, outside the realm-indexed workgroup
IPsec tunnel). Traffic selectors: H/32 <-> the home prefix, or with `protect: all`
H/32 <-> 0.0.0.0/0, so that everything H sends rides in this SA - also the MN's workgroup
ESP towards another M-VPN's SG (claim 24: this tunnel inside the Mobile IP tunnel and
outside the workgroup tunnel). The PSK is the MN-HA key of the Mobile IP security
association (one secret per MN, looked up by its home address).

With `protect: all` charon routes 0.0.0.0/0 into ipsec0 in table 220, which would also
swallow the MN's more specific routes (a workgroup target 10.0.0.7 of an overlapping realm
routed into its own tunnel namespace, the visited subnet). A rule before 220, `lookup main
suppress_prefixlength 0`, keeps every specific main route and hands only what would take
the default route to the SA.

Layers on the wire from the MN: IP-IP(CCoA -> HA) [ UDP 4500 (H -> HA) [ ESP [ H -> host ] ] ].

strongSwan runs as one charon per (virtual) HA namespace and one per MN, with
kernel-libipsec (no kernel ESP here), started and driven with testbed.common.strongswan's
Charon (used as is). Its sockets carry fwmark 0x42 and its routes live in table 220,
consulted only for unmarked packets, so IKE/ESP never loop into ipsec0. On the HA the
packets that leave an IP-IP tunnel (`mip*`) are marked 0x42 too and
`src_valid_mark` is on: the strict reverse-path check of the tunnel (home address bound
to that care-of address) then looks at the main table, not at table 220 where charon
routes the same home address into ipsec0.
"""
from __future__ import annotations

import logging
import subprocess
import threading
from pathlib import Path

from testbed.common.strongswan import (
    EMPTY_SWANCTL_DIRS,
    ESP_PROPOSALS,
    IKE_PROPOSALS,
    SOCKET_FWMARK,
    Charon,
    StrongswanError,
    render_settings,
    summarize_sas,
)
from testbed.mip.sysctl import set_sysctl

log = logging.getLogger(__name__)

IKE_NAME, CHILD_NAME = "mip-ha", "home"

MARK_TUNNELS_NFT = f"""
table ip mip_ipsec {{
    chain prerouting {{
        type filter hook prerouting priority mangle; policy accept;
        iifname "mip*" meta mark set {SOCKET_FWMARK}
    }}
}}
"""


def _write_dir(workdir: Path, conf: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("x509", "x509ca", "private", *EMPTY_SWANCTL_DIRS):
        (workdir / "swanctl" / sub).mkdir(parents=True, exist_ok=True)
    path = workdir / "swanctl" / "swanctl.conf"
    path.write_text(conf + "\n")
    return path


ALL = "0.0.0.0/0"
SPECIFIC_FIRST_PREF = "210"   # before charon's table 220 rule


def ha_swanctl(ha: str, home_prefix: str, keys: dict[str, bytes]) -> str:
    """Responder: any MN of this HA, authenticated by the PSK of its home address.

    `home_prefix` is the responder's local_ts: the home prefix, or 0.0.0.0/0 (protect: all).
    """
    return render_settings({
        "connections": {"mn": {
            "version": 2, "local_addrs": ha, "proposals": IKE_PROPOSALS, "mobike": False,
            "encap": True,
            "local": {"auth": "psk", "id": ha},
            "remote": {"auth": "psk", "id": "%any"},
            "children": {CHILD_NAME: {"local_ts": home_prefix, "remote_ts": "dynamic",
                                      "esp_proposals": ESP_PROPOSALS, "mode": "tunnel"}},
        }},
        "secrets": {f"ike-{h.replace('.', '-')}": {"id-ha": ha, "id-mn": h, "secret": "0x" + k.hex()}
                    for h, k in keys.items()},
    })


def mn_swanctl(home: str, ha: str, home_prefix: str, key: bytes, *, proposals: str = IKE_PROPOSALS,
               esp_proposals: str = ESP_PROPOSALS) -> str:
    """Initiator: from the home address to the HA, for traffic to the home prefix.
    proposals / esp_proposals: comma-separated strongSwan proposals (IKE, ESP)."""
    return render_settings({
        "connections": {IKE_NAME: {
            "version": 2, "local_addrs": home, "remote_addrs": ha, "proposals": proposals,
            "mobike": False, "encap": True,
            "local": {"auth": "psk", "id": home},
            "remote": {"auth": "psk", "id": ha},
            "children": {CHILD_NAME: {"local_ts": "dynamic", "remote_ts": home_prefix,
                                      "esp_proposals": esp_proposals, "mode": "tunnel",
                                      "start_action": "none"}},
        }},
        "secrets": {"ike-ha": {"id-mn": home, "id-ha": ha, "secret": "0x" + key.hex()}},
    })


class HaIpsec:
    """The responder of one (virtual) HA; start() from a thread inside the HA's namespace."""

    def __init__(self, name: str, workdir: str, ha: str, home_prefix: str, keys: dict[str, bytes],
                 protect: str = "home_prefix") -> None:
        self.charon = Charon(name=f"ha-{name}", workdir=Path(workdir))
        self.conf = ha_swanctl(ha, ALL if protect == "all" else home_prefix, keys)
        self.error: str | None = None

    def start(self) -> None:
        set_sysctl("net.ipv4.conf.all.src_valid_mark", "1")
        proc = subprocess.run(["nft", "-f", "-"], input=MARK_TUNNELS_NFT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise StrongswanError(f"nft (mark tunnel traffic): {proc.stderr.strip()}")
        self.charon.start()
        self.charon.load_swanctl(_write_dir(self.charon.workdir, self.conf))

    def stop(self) -> None:
        self.charon.stop()

    def status(self) -> dict:
        try:
            return {"sas": summarize_sas(self.charon.list_sas()), "error": self.error}
        except Exception as exc:
            return {"sas": [], "error": f"{type(exc).__name__}: {exc}"}


class MnIpsec:
    """The MN's initiator: up() when registered with a CCoA, down() when leaving it.

    Both run in a background thread: IKE takes a few round trips and must not hold up the
    MN's movement detection.
    """

    def __init__(self, workdir: str, home: str, ha: str, home_prefix: str, key: bytes,
                 protect: str = "home_prefix") -> None:
        self.charon = Charon(name="mn", workdir=Path(workdir))
        self.protect = protect
        self.conf = mn_swanctl(home, ha, ALL if protect == "all" else home_prefix, key)
        self.state = "down"
        self.error: str | None = None
        self.ups = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.protect == "all":
            subprocess.run(["ip", "rule", "del", "pref", SPECIFIC_FIRST_PREF], capture_output=True)
            proc = subprocess.run(["ip", "rule", "add", "pref", SPECIFIC_FIRST_PREF, "lookup", "main",
                                   "suppress_prefixlength", "0"], capture_output=True, text=True)
            if proc.returncode != 0:
                raise StrongswanError(f"ip rule (specific routes before table 220): {proc.stderr.strip()}")
        self.charon.start()
        self.charon.load_swanctl(_write_dir(self.charon.workdir, self.conf))

    def up(self) -> None:
        threading.Thread(target=self._up, name="ipsec-up", daemon=True).start()

    def down(self) -> None:
        if self.state != "down":
            threading.Thread(target=self._down, name="ipsec-down", daemon=True).start()

    def _up(self) -> None:
        with self._lock:
            self.state = "connecting"
            try:
                self.charon.initiate(CHILD_NAME, IKE_NAME, timeout_ms=8000)
                self.state, self.error = "up", None
                self.ups += 1
                log.info("IPsec tunnel to the HA is up (inside the CCoA tunnel)")
            except StrongswanError as exc:
                self.state, self.error = "failed", str(exc)
                log.warning("IPsec to the HA: %s", exc)

    def _down(self) -> None:
        with self._lock:
            try:
                self.charon.terminate(IKE_NAME, timeout_ms=3000)
            except StrongswanError as exc:
                log.debug("IPsec terminate: %s", exc)
            self.state = "down"

    def stop(self) -> None:
        self.charon.stop()
        if self.protect == "all":
            subprocess.run(["ip", "rule", "del", "pref", SPECIFIC_FIRST_PREF], capture_output=True)

    def status(self) -> dict:
        try:
            sas = summarize_sas(self.charon.list_sas())
        except Exception:
            sas = []
        return {"state": self.state, "error": self.error, "ups": self.ups, "sas": sas}
