"""Who may attach: checks of issue 5 on a real lab (see description.md)."""
from __future__ import annotations

import json
import tempfile
import time

from orchestration.checks.status import read_json, wait_until
from testbed.access.dhcp import udhcpc_args
from testbed.aodv.messages import AODV_PORT
from testbed.common.enroll import sign_local_key
from testbed.msm.ca import CertificateAuthority

SINK_STATUS = "/run/testbed/access-sink.json"
# Hellos on AODV's own port (RFC 3561 section 10), so Wireshark decodes them as AODV: in msr1
# the AODV agent owns 654 and the radio (eth0) is one of its AODV interfaces and an access
# interface of the sink, so every hello there goes to the access plane (the agent's socket
# drops hellos on any other interface, and testbed.access.msr refuses such a config).
# The plain baseline runs before the real sink on the same port, never beside it.
PLAIN_STATUS = "/run/testbed/access-plain-sink.json"
# Stop the baseline sink by the pid in its own status file; fails (exit 3) unless it is gone.
STOP_PLAIN = f"""pid=$(python3 -c 'import json; print(json.load(open("{PLAIN_STATUS}"))["pid"])') || exit 2
kill "$pid" || exit 2
i=0
while [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null; do
  i=$((i+1)); [ $i -gt 100 ] && {{ kill -9 "$pid"; exit 3; }}; sleep 0.05
done"""


def jexec(ctx, node, cmd):
    r = ctx.lab.exec(node, cmd, timeout=30)
    try:
        return json.loads(r.stdout) if r.ok and r.stdout.strip() else None
    except json.JSONDecodeError:
        return None


def wait_json(ctx, node, path, pred, timeout=15.0):
    """The JSON document in ``path`` once ``pred`` holds for it, else the last one read (or None)."""
    last = [None]

    def ready():
        last[0] = read_json(ctx.lab, node, path)
        return last[0] is not None and pred(last[0])
    wait_until(ready, timeout, 0.3)
    return last[0]


def put_pki(ctx, node, prefix, ca, cert, key):
    ctx.lab.put_file(node, f"/etc/testbed/{prefix}-ca.pem", ca)
    ctx.lab.put_file(node, f"/etc/testbed/{prefix}-cert.pem", cert)
    ctx.lab.put_file(node, f"/etc/testbed/{prefix}-key.pem", key, mode=0o600)
    return {"ca_file": f"/etc/testbed/{prefix}-ca.pem", "cert_file": f"/etc/testbed/{prefix}-cert.pem",
            "key_file": f"/etc/testbed/{prefix}-key.pem"}


def issue(ctx, cn, kind, **extra):
    """A certificate of the lab's MSM CA for a key made here (only the CSR goes to the MSM):
    the operator on the MSM node makes a one-time token and the CSR is enrolled with it;
    with `extra` (e.g. validity="expired") an operator-only test certificate instead."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from testbed.common.enroll import load_or_make_key, make_csr
    key = load_or_make_key(tempfile.mkdtemp(prefix="tbt-key-") + "/key.pem", "ec")
    csr = make_csr(key, cn)
    if extra:
        ctx.lab.put_file("msm", "/root/req.json", json.dumps({"csr_pem": csr, "identity": cn, "kind": kind, **extra}))
        doc = jexec(ctx, "msm", 'python3 -m testbed.msm.admin POST /api/testcerts "$(cat /root/req.json)"')
    else:
        tok = jexec(ctx, "msm", f"python3 -m testbed.msm.admin POST /api/tokens "
                                f"'{json.dumps({'identity': cn, 'kind': kind})}'") or {}
        ctx.lab.put_file("msm", "/root/req.json", json.dumps({"token": tok.get("token"), "csr_pem": csr, "kind": kind}))
        doc = jexec(ctx, "msm", 'python3 -m testbed.msm.admin --anonymous POST /api/enroll "$(cat /root/req.json)"')
    if not doc or "cert_pem" not in doc:
        raise RuntimeError(f"MSM did not issue {cn}: {doc}")
    return {**doc, "key_pem": key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()}


def node_cfg(ctx, node, path, **cfg):
    base = {"role": "node", "interface": "eth0", "port": AODV_PORT, "hello_interval_ms": 500,
            "status_file": f"/run/testbed/access-{path}.json", "log_level": "DEBUG"}
    base.update(cfg)
    ctx.lab.put_file(node, f"/etc/testbed/access-{path}.json", json.dumps(base))
    return f"python3 -m testbed.access --config /etc/testbed/access-{path}.json"


def sink_counter(ctx, key):
    doc = jexec(ctx, "msr1", f"cat {SINK_STATUS}") or {}
    return doc.get("counters", {}).get(key, 0)


def nft_drops(ctx, addr):
    r = ctx.lab.exec("msr1", f"nft list chain ip tb_access in_{addr.replace('.', '_')}")
    import re
    m = re.search(r"counter packets (\d+) bytes \d+ drop", r.stdout)
    return int(m.group(1)) if m else -1


def run(ctx) -> None:
    lab = ctx.lab
    if not wait_json(ctx, "msm", "/run/testbed/msm.json", lambda d: d.get("diameter"), 30):
        ctx.check("MSM with DIAMETER running", False, lab.exec("msm", "cat /var/log/testbed/*.log").stdout[-500:],
                  claims=[41])
        return
    # ---------------------------------------------------------- PKI from the MSM (claim 55)
    ca_pem = lab.exec("msm", "cat /var/lib/msm/ca/ca.pem").stdout
    s = issue(ctx, "msr1.mwg.test", "msr")
    n2 = issue(ctx, "mn2.mwg.test", "mn")
    n3x = issue(ctx, "mn3.mwg.test", "mn", validity="expired")
    rogue = CertificateAuthority(tempfile.mkdtemp(prefix="tbt-rogue-"), "Mobile Workgroup MSM CA", "ec")
    n3f = sign_local_key(rogue, "mn3.mwg.test", "mn", [], ["mn3.mwg.test"])  # key made here
    sink_certs = put_pki(ctx, "msr1", "msr1", ca_pem, s["cert_pem"], s["key_pem"])
    mn2_certs = put_pki(ctx, "mn2", "mn2", ca_pem, n2["cert_pem"], n2["key_pem"])
    exp_certs = put_pki(ctx, "forger", "expired", ca_pem, n3x["cert_pem"], n3x["key_pem"])
    rog_certs = put_pki(ctx, "forger", "rogue", ca_pem, n3f.cert_pem, n3f.key_pem)

    # ---------------------------------------------------------- plain AODV hello baseline
    # first, before the real sink starts: an open sink (no MSM, no filter) on msr1 answers plain
    # hellos with the same routes, on UDP 654 too: the attach time an unauthenticated
    # AODV hello costs in this very lab. Run before, not beside, the real sink, so the two never
    # hold the port at once or hear each other's hellos; then stopped by its pid.
    lab.put_file("msr1", "/etc/testbed/plain-sink.json", json.dumps({
        "role": "sink", "address": "10.10.0.1", "port": AODV_PORT, "shared_secret": False, "nft": False,
        "plain_hellos": "open", "open_routes": ["0.0.0.0/0 10.10.1.1 10", "10.10.0.0/16 0.0.0.0 1"],
        "status_file": PLAIN_STATUS}))
    lab.spawn("msr1", "python3 -m testbed.access --config /etc/testbed/plain-sink.json", log="plain-sink.log")
    wait_json(ctx, "msr1", PLAIN_STATUS, lambda d: bool(d.get("pid")), 15)
    cmd = node_cfg(ctx, "mn1", "mn1-plain", address="10.10.0.5", identity="mn1.mwg.test", method="plain",
                   install_routes=False, max_hellos=5, exit_when_attached=True)
    lab.exec("mn1", f"timeout 20 {cmd} 2>/var/log/testbed/access-plain.log; true", timeout=30)
    st = jexec(ctx, "mn1", "cat /run/testbed/access-mn1-plain.json") or {}
    if st.get("attached"):
        ctx.metric("attach_ms_plain", st["attach_ms"])
    stopped = lab.exec("msr1", STOP_PLAIN)
    gone = "stopped:" in lab.exec("msr1", "cat /var/log/testbed/plain-sink.log").stdout
    ctx.check("the plain-hello baseline sink answered and stopped before the real sink starts",
              bool(st.get("attached")) and stopped.ok and gone,
              f"attached {st.get('attached')}; stop: exit {stopped.exit_code} {stopped.stdout.strip()}; "
              f"logged its stop: {gone}")

    # ---------------------------------------------------------- the MSR: AODV + sink + DHCP
    # one socket on 654 (the agent's) for AODV towards d1 (eth2) and the hellos on the radio
    # (eth0): eth0 is an AODV interface and an access interface, so the access plane judges
    # every hello there, plain ones included, before the agent makes the sender a neighbour
    msr = {
        "aodv": {"address": "10.10.30.1", "interfaces": ["eth2", "eth0"], "managed_prefixes": ["10.10.30.0/23"],
                 "timers": {"hello_interval_ms": 500}, "status_file": "/run/testbed/aodv.json"},
        "access": {"address": "10.10.0.1", "port": AODV_PORT, "interfaces": ["eth0"], "identity": "msr1.mwg.test",
                   "msm": {"address": "10.10.1.2", "port": 3868, "timeout": 3},
                   "certificate": True, "certs": sink_certs,
                   "visitors": {"enabled": True, "fa_address": "10.10.1.20"},
                   "dhcp": {"enabled": True, "interface": "eth0"},
                   "status_file": SINK_STATUS, "log_level": "DEBUG"},
    }
    lab.put_file("msr1", "/etc/testbed/msr.json", json.dumps(msr))
    lab.spawn("msr1", "python3 -m testbed.access.msr --config /etc/testbed/msr.json", log="msr.log")
    up = wait_json(ctx, "msr1", SINK_STATUS,
                   lambda d: (d.get("diameter") or {}).get("peer", {}).get("state") == "open"
                   if isinstance((d.get("diameter") or {}).get("peer"), dict) else bool(d.get("diameter")), 20)
    ctx.check("sink running with a DIAMETER connection to the MSM", bool(up),
              json.dumps((up or {}).get("diameter"))[:300], claims=[41])

    # ---------------------------------------------------------- shared secret (claims 40-45)
    lab.spawn("mn1", node_cfg(ctx, "mn1", "mn1", address="10.10.0.5", identity="mn1.mwg.test",
                                method="secret", secret="secret-one"), log="access-node.log")
    st = wait_json(ctx, "mn1", "/run/testbed/access-mn1.json", lambda d: d.get("attached"))
    routes = (st or {}).get("routes", [])
    ctx.check("mn1 (shared secret) attaches with default + cheaper home route",
              bool(st) and st["verdict"] == "member" and ["0.0.0.0/0", "10.10.1.1", 10] in routes
              and ["10.10.0.0/16", "0.0.0.0", 1] in routes, json.dumps(st)[:400], claims=[40, 43, 44])
    if st:
        ctx.metric("attach_ms_secret", st["attach_ms"])
    r = lab.exec("mn1", "ping -c3 -i0.2 -W1 10.10.1.10")
    ctx.check("mn1 reaches home host h1", "3 received" in r.stdout, r.stdout.strip()[-120:], claims=[45])
    rt = lab.exec("mn1", "ip route").stdout
    ctx.check("mn1 kernel: default metric 10, home range metric 1 via the sink",
              "default via 10.10.0.1 dev eth0 proto static metric 10" in rt
              and "10.10.0.0/16 via 10.10.0.1 dev eth0 proto static metric 1" in rt, rt.strip(), claims=[43, 45])
    log = lab.exec("msm", "grep '\"event\": \"auth\"' /var/log/testbed/msm-diameter.jsonl").stdout
    ctx.check("MSM DIAMETER log shows mn1's AA exchange",
              '"identity": "mn1.mwg.test"' in log and '"result_code": 2001' in log, log.strip()[-300:], claims=[41])

    # ---------------------------------------------------------- certificate (claims 50-54)
    lab.spawn("mn2", node_cfg(ctx, "mn2", "mn2", address="10.10.0.6", identity="mn2.mwg.test",
                                method="certificate", certs=mn2_certs), log="access-node.log")
    st = wait_json(ctx, "mn2", "/run/testbed/access-mn2.json", lambda d: d.get("attached"))
    ctx.check("mn2 (certificate) attaches, after checking the sink's certificate",
              bool(st) and st["verdict"] == "member", json.dumps(st)[:400], claims=[50, 51, 52, 53, 54])
    if st:
        ctx.metric("attach_ms_certificate", st["attach_ms"])
    r = lab.exec("mn2", "ping -c3 -i0.2 -W1 10.10.1.10")
    ctx.check("mn2 reaches home host h1", "3 received" in r.stdout, r.stdout.strip()[-120:], claims=[50])

    # ---------------------------------------------------------- forged hellos
    attempts = [("wrong secret", dict(method="secret", secret="guessed"), "refused_rejected_by_msm"),
                ("expired certificate", dict(method="certificate", certs=exp_certs), "refused_expired"),
                ("foreign CA certificate", dict(method="certificate", certs=rog_certs), "refused_wrong_ca")]
    for i, (what, cfg, counter) in enumerate(attempts):
        time.sleep(1.1)  # the sink's refusal hold-down of the previous attempt
        before = sink_counter(ctx, counter)
        cmd = node_cfg(ctx, "forger", f"forger{i}", address="10.10.0.7", identity="mn3.mwg.test",
                       max_hellos=3, **cfg)
        lab.exec("forger", f"timeout 20 {cmd} 2>/var/log/testbed/forger{i}.log; true", timeout=30)
        st = jexec(ctx, "forger", f"cat /run/testbed/access-forger{i}.json") or {}
        after = sink_counter(ctx, counter)
        ctx.check(f"forged hello ({what}) gets no route; sink counts {counter}",
                  st.get("attached") is False and st.get("hellos_sent", 0) >= 1 and after > before,
                  f"attached={st.get('attached')} hellos={st.get('hellos_sent')} {counter} {before}->{after}",
                  claims=[40, 52])
    rt = lab.exec("forger", "ip route").stdout
    ctx.check("forger has no route from the sink", "via 10.10.0.1" not in rt, rt.strip(), claims=[40])
    lab.exec("forger", "ip route add 10.10.1.0/24 via 10.10.0.1")
    before = nft_drops(ctx, "10.10.0.7")
    r = lab.exec("forger", "ping -c3 -i0.2 -W1 10.10.1.10")
    after = nft_drops(ctx, "10.10.0.7")
    ctx.check("forger's packets (hand-made route) are dropped at the sink",
              " 0 received" in r.stdout and after >= before + 3, f"nft drops {before}->{after}", claims=[41])
    slog = lab.exec("msr1", "grep -c 'refused hello' /var/log/testbed/msr.log").stdout.strip()
    ctx.check("sink logs the refusals", slog.isdigit() and int(slog) >= 3, f"{slog} log lines", claims=[40])
    agent = ((jexec(ctx, "msr1", f"cat {SINK_STATUS}") or {}).get("aodv") or {}).get("counters", {})
    ctx.check("the hellos came in on UDP 654 through msr1's AODV socket and the access plane judged "
              "them (mn1, mn2 and the wrong secret pending on the MSM, forged certificates refused, "
              "none dropped as a foreign interface)",
              agent.get("access_pending", 0) >= 3 and agent.get("access_refuse", 0) >= 1
              and agent.get("foreign_iface_dropped", 0) == 0,
              f"agent counters: access_pending {agent.get('access_pending')}, access_refuse "
              f"{agent.get('access_refuse')}, foreign_iface_dropped {agent.get('foreign_iface_dropped')}",
              claims=[40, 57])

    # ---------------------------------------------------------- visitor (claims 46-49)
    lab.spawn("v1", node_cfg(ctx, "v1", "v1", address="10.10.0.77", identity="guest.other.test",
                              method="secret", secret="anything"), log="access-node.log")
    st = wait_json(ctx, "v1", "/run/testbed/access-v1.json", lambda d: d.get("attached"))
    ctx.check("visitor v1 gets only a default route via the FA",
              bool(st) and st["verdict"] == "visitor" and st["routes"] == [["0.0.0.0/0", "10.10.1.20", 1]],
              json.dumps(st)[:300], claims=[46])
    if st:
        ctx.metric("attach_ms_visitor", st["attach_ms"])
    lab.put_file("v1", "/etc/testbed/tunnel.json", json.dumps({
        "local": "10.10.0.77", "mode": "userspace", "status_file": "/run/testbed/tunnel.json",
        "peers": {"fa": {"addr": "10.10.1.20", "addresses": ["10.20.0.9/32"], "routes": ["10.20.0.0/24"]}}}))
    lab.spawn("v1", "python3 -m testbed.tunnel --config /etc/testbed/tunnel.json", log="tunnel.log")
    time.sleep(1.5)
    r = lab.exec("v1", "ping -c3 -i0.2 -W1 -I 10.20.0.9 10.20.0.1")
    ctx.check("visitor reaches its home host hb through the IP-IP tunnel to the FA (inner 10.20.0.9)",
              "3 received" in r.stdout, r.stdout.strip()[-150:], claims=[47, 48])
    before = nft_drops(ctx, "10.10.0.77")
    r = lab.exec("v1", "ping -c3 -i0.2 -W1 10.10.1.10")
    after = nft_drops(ctx, "10.10.0.77")
    ctx.check("visitor's untunnelled packets are dropped at the sink",
              " 0 received" in r.stdout and after >= before + 3, f"nft drops {before}->{after}", claims=[49])

    # ---------------------------------------------------------- DHCP routing proxy (57-62)
    args = udhcpc_args("p1.mwg.test", "10.10.0.8", "secret-p1", "eth0",
                       "/opt/testbed/testbed/access/udhcpc.script")
    cmd = "env TB_DHCP_STATE=/run/testbed/udhcpc.env " + " ".join(args)
    t0 = time.monotonic()
    r = lab.exec("p1", cmd, timeout=40)
    ctx.metric("udhcpc_run_s", round(time.monotonic() - t0, 3))
    env = lab.exec("p1", "cat /run/testbed/udhcpc.env").stdout
    ctx.check("p1 attaches with udhcpc (options 50/61/43): ACK with option 121 routes",
              r.ok and "event=bound" in env and "ip=10.10.0.8" in env and "0.0.0.0/0 10.10.0.1" in env,
              (env or r.stdout + r.stderr).strip()[-300:], claims=[58, 59, 60])
    # the sink writes its status file periodically: wait for the attach udhcpc just made
    end = time.monotonic() + 5
    while True:
        sink = jexec(ctx, "msr1", f"cat {SINK_STATUS}") or {}
        if (sink.get("dhcp") or {}).get("attach_ms") or time.monotonic() > end:
            break
        time.sleep(0.2)
    if (sink.get("dhcp") or {}).get("attach_ms"):
        ctx.metric("attach_ms_dhcp_sink", round(sink["dhcp"]["attach_ms"][-1], 3))
    before_rreq = (sink.get("aodv") or {}).get("counters", {}).get("rreq_sent", 0)
    had_route = lab.exec("msr1", "ip route show 10.10.31.1").stdout.strip()
    lab.spawn("d1", "python3 -c \"import socket,json,time\n"
                    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',9999));s.settimeout(8)\n"
                    "got=[]\n"
                    "try:\n"
                    "    while True: got.append(s.recv(100).decode())\n"
                    "except OSError: pass\n"
                    "open('/run/testbed/recv.json','w').write(json.dumps(got))\"", log="recv.log")
    time.sleep(0.5)
    lab.exec("p1", "python3 -c \"import socket,time\n"
                   "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('10.10.0.8',0))\n"
                   "[ (s.sendto(f'tbt-{i}'.encode(),('10.10.31.1',9999)), time.sleep(0.01)) for i in range(20)]\"")
    got = wait_json(ctx, "d1", "/run/testbed/recv.json", lambda d: True, 15) or []
    sink = jexec(ctx, "msr1", f"cat {SINK_STATUS}") or {}
    aodv = sink.get("aodv") or {}
    want = [f"tbt-{i}" for i in range(20)]
    ctx.metric("proxy_datagrams_in_order", int(got == want))
    ctx.check("p1's first datagrams to 10.10.31.1 (behind d1) arrive after the proxy's discovery, none lost",
              not had_route and sorted(got) == sorted(want)
              and aodv.get("counters", {}).get("rreq_sent", 0) > before_rreq and aodv.get("buffered", 0) >= 1,
              f"route before: {had_route!r}; received {len(got)}/20 (order {[g[4:] for g in got]}); rreq_sent "
              f"{before_rreq}->{aodv.get('counters', {}).get('rreq_sent')}; buffered {aodv.get('buffered')}",
              claims=[61, 62])
    r = lab.exec("d1", "ping -c3 -i0.2 -W1 10.10.0.8")
    ctx.check("d1 reaches p1: the sink answers route requests for it (proxy)", "3 received" in r.stdout,
              r.stdout.strip()[-120:], claims=[57])
    log = lab.exec("msm", "grep '\"event\": \"auth\"' /var/log/testbed/msm-diameter.jsonl").stdout
    ctx.check("MSM DIAMETER log shows the DHCP hello mapped to an AA-Request",
              '"identity": "p1.mwg.test"' in log, log.strip()[-200:], claims=[60])
    ctx.metric("sink_refused", sink.get("counters", {}).get("refused", 0))
