"""Checks of the intruder scenario (issue 9, "Only members get in"); see description.md.

d (M-VPN D, a registered user outside W, with its own MSM certificate) and x (an anonymous
Internet host) try to get into W = {a, b} through the portal. Each attempt is one check: the
portal refuses it (401/403 with the expected reason), the MSM counts it under that reason
(`auth.refused.<reason>` in its status), and b stays unreachable from the intruder (d -> b
ping gets nothing back; SG-B holds no filter row for d). Then: no private key or token
secret in the Internet capture; a removal survives SIGKILL of the MSM; a deleted user's SA
is torn down at SG-B and its next IKE authentication refused (CRL).
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import NamedTuple

import yaml

from orchestration.scenario import load_module
from orchestration.topology import Topology

PORTAL = "https://198.51.100.10:8443"
B_ADDR, A_ADDR, D_ADDR = "10.0.0.7", "10.0.0.5", "10.0.0.9"
PUB = {"A": "198.51.100.1", "B": "198.51.100.2", "D": "198.51.100.4"}
MSM_STATUS = "/run/testbed/msm.json"
OPERATOR = "--cacert /var/lib/msm/ca/ca.pem --cert /var/lib/msm/ca/operator/cert.pem --key /var/lib/msm/ca/operator/key.pem"
D_PKI = "/root/pki"
D_CURL = f"--cacert {D_PKI}/ca.pem --cert {D_PKI}/cert.pem --key {D_PKI}/key.pem"
X_CURL = "--cacert /root/ca.pem"   # x pins the CA it fetched anonymously: TLS works, it has no client cert


# ---- helpers ----------------------------------------------------------------------------
# The workgroup scenario's waiting and status reading serve here unchanged (same lab shape).
_wg = load_module(Path(__file__).resolve().parent.parent / "workgroup" / "scenario.py", "workgroup_scenario")
wait, jstatus = _wg.wait, _wg.status


def refusals(ctx) -> dict[str, int]:
    """The MSM's refusal counters by reason plus `tls_failed`: the operator's live
    GET /api/status (the status file, written every second, if the portal does not answer)."""
    r = ctx.lab.exec("msm", f"curl -s -m 5 {OPERATOR} {PORTAL}/api/status")
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        doc = {}
    if "auth" not in doc:
        doc = jstatus(ctx, "msm", MSM_STATUS)
    auth = doc.get("auth") or {}
    counts = dict(auth.get("refused") or {})
    counts["tls_failed"] = int(auth.get("tls_failed") or 0)
    return {k: int(v) for k, v in counts.items()}


def http(ctx, node: str, curl_opts: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of one portal call made by `node` with curl (0: no answer)."""
    data = ""
    if body is not None:
        ctx.lab.put_file(node, "/root/body.json", json.dumps(body))  # /tmp is a tmpfs: put_file cannot reach it
        data = "-H 'Content-Type: application/json' --data @/root/body.json"
    r = ctx.lab.exec(node, f"rm -f /tmp/answer.json; curl -s -m 10 -o /tmp/answer.json -w '%{{http_code}}' {curl_opts} -X {method} "
                           f"{data} {PORTAL}{path}; echo; cat /tmp/answer.json", timeout=20)
    first, _, rest = r.stdout.partition("\n")
    try:
        code = int(first.strip() or 0)
    except ValueError:
        code = 0
    try:
        doc = json.loads(rest) if rest.strip() else {}
    except ValueError:
        doc = {"raw": rest[:200]}
    return code, doc if isinstance(doc, dict) else {"list": doc}


def csr(ctx, node: str, cn: str) -> str:
    """A fresh key made on `node` (never leaves it) and a CSR for it (PEM)."""
    ctx.lab.exec(node, f"openssl ecparam -name prime256v1 -genkey -noout -out /tmp/k-{cn}.pem && "
                       f"openssl req -new -key /tmp/k-{cn}.pem -subj /CN={cn} -out /tmp/csr-{cn}.pem", check=True)
    return ctx.lab.exec(node, f"cat /tmp/csr-{cn}.pem").stdout


def b_unreachable_from(ctx, node: str) -> tuple[bool, str]:
    r = ctx.lab.exec(node, f"ping -c2 -i0.3 -W1 {B_ADDR}", timeout=15)
    rows = jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("filter", {}).get("rows", [])
    d_row = [x for x in rows if x.get("initiator_private") == D_ADDR or x.get("peer_sg_public") == PUB["D"]]
    ok = " 0 received" in r.stdout or (r.exit_code != 0 and " received" not in r.stdout)
    return ok and not d_row, f"ping {node}->b: {_last(r.stdout) or r.stderr.strip()[-80:]}; SG-B rows for D: {len(d_row)}"


def _last(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if "received" in ln]
    return lines[-1] if lines else ""


class Attempt(NamedTuple):
    """One intrusion: who, what call, which refusal reasons count as the right answer."""
    name: str
    node: str
    method: str
    path: str
    body: dict | None
    reasons: tuple[str, ...]


def d_attempts(tokens: dict[str, str], csr_pem: str) -> list[Attempt]:
    """What d (registered user of M-VPN D, its own certificate, not in W) tries. `tokens`:
    identity -> token of the lab (d knows only its own; a's and B's token ids are guessed
    with random secrets); `csr_pem`: a CSR of a key d made."""
    guess = lambda ident: tokens[ident].split(".")[0] + "." + secrets.token_hex(12)  # noqa: E731
    d_token = tokens["d.mwg.test"]
    return [
        Attempt("d adds itself to W", "d", "POST", "/api/workgroups/W/members", {"fqdn": "d.mwg.test"}, ("role",)),
        Attempt("d signs on as itself to W, which it is not in", "d", "POST", "/api/signon", {"workgroup": "W"},
                ("not_member",)),
        Attempt("d signs on as member a", "d", "POST", "/api/signon", {"fqdn": "a.mwg.test", "workgroup": "W"},
                ("not_self",)),
        Attempt("d mints an enrolment token for user a", "d", "POST", "/api/tokens",
                {"identity": "a.mwg.test", "kind": "mn", "ttl_s": 600}, ("role",)),
        Attempt("d enrols as a with a guessed secret for a's token id", "d", "POST", "/api/enroll",
                {"token": guess("a.mwg.test"), "csr_pem": csr_pem}, ("token_unknown",)),
        Attempt("d mints an SG token for M-VPN B (an SG certificate naming SG-B's address)", "d", "POST",
                "/api/tokens", {"identity": "B", "kind": "sg", "ttl_s": 600}, ("role",)),
        Attempt("d reads M-VPN B's filter rows", "d", "GET", "/api/sg/B/filter", None, ("role", "not_self")),
        Attempt("d enrols a second time with its own, used token", "d", "POST", "/api/enroll",
                {"token": d_token, "csr_pem": csr_pem}, ("token_used",)),
    ]


def x_attempts(tokens: dict[str, str], csr_pem: str) -> list[Attempt]:
    """What x (anonymous Internet host, no certificate) tries."""
    return [
        Attempt("x adds itself to W without a certificate", "x", "POST", "/api/workgroups/W/members",
                {"fqdn": "x.example"}, ("no_cert",)),
        Attempt("x signs on as member a without a certificate", "x", "POST", "/api/signon",
                {"fqdn": "a.mwg.test", "workgroup": "W"}, ("no_cert",)),
        Attempt("x enrols for SG-B's address with a guessed SG token", "x", "POST", "/api/enroll",
                {"token": tokens["B"].split(".")[0] + "." + secrets.token_hex(12), "csr_pem": csr_pem},
                ("token_unknown",)),
        Attempt("x enrols with d's used token (seen by nobody: the secret never travels)", "x", "POST",
                "/api/enroll", {"token": tokens["d.mwg.test"], "csr_pem": csr_pem}, ("token_used",)),
        Attempt("x reads M-VPN B's filter rows", "x", "GET", "/api/sg/B/filter", None, ("no_cert",)),
    ]


def attempt(ctx, a: Attempt, creds: str) -> bool:
    """Run `a`; check refused (401/403, expected reason), counted, b unreachable. Returns passed."""
    before = refusals(ctx)
    code, doc = http(ctx, a.node, creds, a.method, a.path, a.body)
    reason = doc.get("reason")
    after = wait(lambda: (lambda c: c if reason and c.get(reason, 0) > before.get(reason, 0) else None)(refusals(ctx)),
                 3) or refusals(ctx)
    counted = bool(reason) and after.get(reason, 0) > before.get(reason, 0)
    unreach, why = b_unreachable_from(ctx, a.node)
    return ctx.check(f"{a.name}: refused ({'/'.join(a.reasons)}), counted at the MSM, b unreachable from {a.node}",
                     code in (401, 403) and reason in a.reasons and counted and unreach,
                     f"HTTP {code} reason {reason}; auth.refused.{reason}: {before.get(reason, 0)} -> "
                     f"{after.get(reason, 0)}; {why}")


def msm_config(topology: Topology) -> dict:
    """The MSM's config as the lab runs it: node msm, /etc/testbed/msm.yaml of the (compiled)
    topology, whose tokens are made anew at each compilation of the lab file."""
    return yaml.safe_load(topology.nodes["msm"].files["/etc/testbed/msm.yaml"])


def lab_tokens(topology: Topology) -> dict[str, str]:
    """identity -> token of every token the lab declares in the MSM seed."""
    return {t["identity"]: t["token"] for t in msm_config(topology)["seed"].get("tokens", [])}


# ---- the scenario ----------------------------------------------------------------------
def run(ctx) -> None:
    lab = ctx.lab
    tokens = lab_tokens(ctx.lab.topology)
    d_token = tokens["d.mwg.test"]

    # ---- d enrols as itself, x fetches the CA; a signs on: all inside one capture -------
    pcap = ctx.pcap("inet-enrol.pcap")
    cap = lab.capture("inet", pcap)
    time.sleep(0.5)
    r = lab.exec("d", f"python3 -m testbed.common.enroll --portal {PORTAL} --token {d_token} --kind mn --out {D_PKI} "
                      "--wait 60", timeout=90)
    ctx.check("d enrols as itself with its one-time token (key made on d, CSR sent)", r.ok,
              (r.stdout + r.stderr).strip()[-200:], claims=[55])
    # x takes the CA certificate anonymously (GET /api/ca, public) without checking it, so its
    # TLS connections work: what it lacks is a client certificate
    r = lab.exec("x", f"curl -sk -m 10 {PORTAL}/api/ca -o /root/ca.pem && grep -c 'BEGIN CERTIFICATE' /root/ca.pem")
    ctx.check("control: x (anonymous) gets the public CA certificate and can speak TLS to the portal",
              r.ok, (r.stdout + r.stderr).strip()[-120:])
    # a's own sign-on, on the wire for the replay below
    a_curl = ("--cacert /var/lib/testbed/mn/pki/ca.pem --cert /var/lib/testbed/mn/pki/cert.pem "
              "--key /var/lib/testbed/mn/pki/key.pem")
    t_a = time.time()
    code_a, view_a = http(ctx, "a", a_curl, "POST", "/api/signon", {"workgroup": "W"})
    t_a_end = time.time()
    ctx.check("control: a (member) signs on as itself over mutual TLS and gets W's members",
              code_a == 200 and any(m.get("fqdn") == "b.mwg.test" for m in view_a.get("members", [])),
              f"HTTP {code_a}, members {[m.get('fqdn') for m in view_a.get('members', [])]}", claims=[5])
    # control for the capture search: a token-shaped secret sent in clear IS found
    canary = "ctl000." + secrets.token_hex(12)
    lab.exec("x", f"echo {canary} | socat -u - UDP:198.51.100.10:9")
    time.sleep(1.0)
    lab.stop_capture(cap)
    key_and_token_search(ctx, pcap, tokens, canary)
    replay(ctx, pcap, t_a, t_a_end)

    # ---- d with its own certificate -------------------------------------------------------
    d_tunnel(ctx)
    d_csr = csr(ctx, "d", "d.mwg.test")
    for a in d_attempts(tokens, d_csr):
        attempt(ctx, a, D_CURL)

    # ---- x, anonymous on the Internet ------------------------------------------------------
    x_csr = csr(ctx, "x", "x.example")
    for a in x_attempts(tokens, x_csr):
        attempt(ctx, a, X_CURL)

    removal_across_sigkill(ctx)
    revocation(ctx)


def key_and_token_search(ctx, pcap: Path, tokens: dict[str, str], canary: str) -> None:
    """No private key (d's, made during the capture) and no token secret in the Internet pcap."""
    raw = pcap.read_bytes()
    key_pem = ctx.lab.exec("d", f"cat {D_PKI}/key.pem").stdout
    body = "".join(ln for ln in key_pem.splitlines() if ln and not ln.startswith("-----"))
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_pem_private_key
    try:
        key = load_pem_private_key(key_pem.encode(), None)
        der = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        nums = key.private_numbers()
        secret = nums.private_value if hasattr(nums, "private_value") else nums.p  # EC scalar / RSA prime
        scalar = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
    except (ValueError, TypeError, AttributeError):
        der, scalar = b"", b""
    needles = {"PEM key text": body[16:80].encode(), "PKCS#8 DER": der, "private scalar/prime": scalar,
               "'PRIVATE KEY' marker": b"PRIVATE KEY"}
    needles.update({f"token secret of {ident}": tok.split(".", 1)[1].encode() for ident, tok in tokens.items()})
    found = [n for n, v in needles.items() if v and v in raw]
    ctx.check("control: a token-shaped secret sent in clear on the Internet is found by the same search",
              canary.split(".", 1)[1].encode() in raw, f"{len(raw)} bytes captured")
    ctx.check("no private key and no enrolment token secret in the Internet capture (enrolment, sign-on, CA)",
              bool(scalar) and len(raw) > 2000 and not found,
              f"{len(raw)} bytes, {len(needles)} needles; found: {', '.join(found) or 'none'}")
    ctx.metric("inet_enrol_capture_bytes", len(raw))


def replay(ctx, pcap: Path, t_start: float, t_end: float) -> None:
    """x replays the client side of a's captured sign-on, byte for byte, to the portal."""
    from scapy.all import IP, TCP, rdpcap
    pkts = [p for p in rdpcap(str(pcap)) if IP in p and TCP in p and p[TCP].dport == 8443]
    flows: dict[tuple, list[bytes]] = {}
    first: dict[tuple, float] = {}
    for p in pkts:
        key = (p[IP].src, p[TCP].sport)
        first.setdefault(key, float(p.time))
        if bytes(p[TCP].payload):
            flows.setdefault(key, []).append(bytes(p[TCP].payload))
    # a's sign-on: a flow through the NAPT (source bb's public side) that opened while a's curl
    # ran and starts with a TLS handshake record (0x16)
    candidates = [f for f in flows if f[0] == "198.51.100.254" and t_start - 0.5 <= first[f] <= t_end + 0.5
                  and flows[f][0][:1] == b"\x16"]
    if not candidates:
        ctx.check("replay of a captured sign-on is refused", False, f"no NAPT'd portal flow in {len(pkts)} packets")
        return
    data = b"".join(flows[candidates[-1]])
    ctx.lab.put_file("x", "/root/replay.bin", data)
    before = refusals(ctx)
    r = ctx.lab.exec("x", "timeout 8 socat -t 3 - TCP:198.51.100.10:8443 < /root/replay.bin | od -An -c | head -c 400",
                     timeout=15)
    after = wait(lambda: (lambda c: c if c["tls_failed"] > before["tls_failed"] else None)(refusals(ctx)), 3) \
        or refusals(ctx)
    unreach, why = b_unreachable_from(ctx, "x")
    ctx.check("x replays a's captured sign-on byte for byte: no answer, TLS failure counted, b unreachable",
              "members" not in r.stdout and "2 0 0" not in r.stdout and after["tls_failed"] > before["tls_failed"]
              and unreach,
              f"{len(data)} bytes replayed; tls_failed {before['tls_failed']} -> {after['tls_failed']}; {why}")
    # the same sign-on replayed as a request (what an attacker who had the plaintext would send)
    attempt(ctx, Attempt("x replays a's sign-on request over its own TLS connection", "x", "POST", "/api/signon",
                         {"workgroup": "W"}, ("no_cert",)), X_CURL)


def operator(ctx, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    return http(ctx, "msm", OPERATOR, method, path, body)


def msm_version(ctx) -> int:
    """The store version as the operator's GET /api/status reports it (0: no answer)."""
    code, doc = operator(ctx, "GET", "/api/status")
    return int(doc.get("version") or 0) if code == 200 else 0


def msm_pid(ctx) -> str:
    return ctx.lab.exec("msm", "pgrep -f '^python3 -m testbed.msm --config' | head -1").stdout.strip()


def removal_across_sigkill(ctx) -> None:
    """Remove a from W, SIGKILL the MSM at once, restart it: a stays removed, a -> b stops."""
    lab = ctx.lab
    v0 = msm_version(ctx)
    code, doc = operator(ctx, "DELETE", "/api/workgroups/W/members/a.mwg.test")
    pid = msm_pid(ctx)
    lab.exec("msm", f"kill -9 {pid}")
    dead = wait(lambda: not lab.exec("msm", f"kill -0 {pid}").ok, 5)
    ctx.check("the operator removed a from W and the MSM was SIGKILLed right after the acknowledgement",
              code == 200 and bool(pid) and bool(dead), f"HTTP {code}, pid {pid}, dead {bool(dead)}", claims=[5, 13])
    lab.spawn("msm", "python3 -m testbed.msm --config /etc/testbed/msm.yaml", log="msm-restart.log")
    back = wait(lambda: operator(ctx, "GET", "/api/workgroups/W")[0] == 200, 30, 0.5)
    code, wg = operator(ctx, "GET", "/api/workgroups/W")
    members = [m if isinstance(m, str) else m.get("fqdn") for m in wg.get("members", [])]
    v1 = wait(lambda: msm_version(ctx), 10) or 0
    ctx.metric("msm_version_before_removal", v0)
    ctx.metric("msm_version_after_restart", v1)
    ctx.check("after SIGKILL and restart a is still removed from W (the seed is not re-applied), version monotonic",
              bool(back) and "a.mwg.test" not in members and "b.mwg.test" in members and v1 > v0,
              f"members {members}; version {v0} -> {v1}", claims=[5, 13])
    row_gone = wait(lambda: not any(r.get("initiator_private") == A_ADDR for r in
                                    jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("filter", {}).get("rows", [{}])), 15)
    a_out = wait(lambda: jstatus(ctx, "a", "/run/testbed/mn.json").get("member") is False, 20)
    r = lab.exec("a", f"ping -c3 -i0.3 -W1 {B_ADDR}", timeout=15)
    ctx.check("the removed a can no longer reach b (no row at SG-B, sign-on refused, ping fails)",
              bool(row_gone) and bool(a_out) and " 0 received" in r.stdout,
              f"row gone {bool(row_gone)}, a member={jstatus(ctx, 'a', '/run/testbed/mn.json').get('member')}, "
              f"{_last(r.stdout)}", claims=[2, 6])
    before = refusals(ctx)
    code, doc = http(ctx, "a", "--cacert /var/lib/testbed/mn/pki/ca.pem --cert /var/lib/testbed/mn/pki/cert.pem "
                               "--key /var/lib/testbed/mn/pki/key.pem", "POST", "/api/signon", {"workgroup": "W"})
    after = refusals(ctx)
    ctx.check("a's next sign-on is refused as not_member and counted",
              code == 403 and doc.get("reason") == "not_member"
              and after.get("not_member", 0) > before.get("not_member", 0),
              f"HTTP {code} {doc.get('reason')}; not_member {before.get('not_member', 0)} -> {after.get('not_member', 0)}",
              claims=[5])


def d_sas_at_sgb(ctx) -> list[dict]:
    realms = jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("realms", {})
    return [sa for sa in realms.get("D", {}).get("sas", []) if sa.get("remote_host") == D_ADDR
            and sa.get("state") == "ESTABLISHED"]


def d_initiate(ctx, tries: int = 4) -> list[dict]:
    """Initiate d's hand-made SA until SG-B's status shows it (swanctl's exit status is not
    enough: a retry of an installed child fails). Returns SG-B's view of d's SAs."""
    for _ in range(tries):
        if d_sas_at_sgb(ctx):
            break
        ctx.lab.exec("d", "swanctl --initiate --child net --ike handmade --timeout 8", timeout=20)
        wait(lambda: d_sas_at_sgb(ctx), 5)
    return d_sas_at_sgb(ctx)


def d_tunnel(ctx) -> None:
    """d, configured by hand like the workgroup's d: stock charon, its MSM certificate, an SA to
    SG-B for 10.0.0.7. It is a valid user of M-VPN D, so the SA comes up; only SG-B's filter
    (no row for D) keeps b unreachable, and that row is what the attempts try to obtain."""
    lab = ctx.lab
    lab.exec("d", f"cp {D_PKI}/cert.pem /etc/swanctl/x509/d.pem && cp {D_PKI}/ca.pem /etc/swanctl/x509ca/mwg-ca.pem"
                  f" && install -m 600 {D_PKI}/key.pem /etc/swanctl/private/d.key", check=True)
    lab.spawn("d", "/usr/lib/ipsec/charon --use-syslog", log="charon-d.log")
    lab.exec("d", "for i in $(seq 40); do swanctl --load-all --noprompt && exit 0; sleep 0.25; done; exit 1", timeout=30)
    up = d_initiate(ctx)
    ctx.check("control: d (valid certificate, M-VPN D) establishes an SA with SG-B", bool(up),
              lab.exec("d", "swanctl --list-sas").stdout.strip()[-200:], claims=[8, 9])
    drops = lambda: jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("filter", {}).get("drops", {}).get(  # noqa: E731
        PUB["D"], {}).get("packets", 0)
    d0 = drops()
    r = lab.exec("d", f"ping -c3 -i0.3 -W1 {B_ADDR}", timeout=15)
    d1 = wait(lambda: (lambda v: v if v >= d0 + 3 else None)(drops()), 5) or drops()
    ctx.check("control: d's packets to b enter SG-B over that SA and die at the workgroup filter (counted)",
              " 0 received" in r.stdout and d1 - d0 >= 3, f"{_last(r.stdout)}; SG-B drops for D {d0} -> {d1}",
              claims=[2, 6])


def revocation(ctx) -> None:
    """d (stock charon, its MSM certificate) holds an SA with SG-B; the operator deletes user d:
    SG-B tears the SA down and refuses d's next IKE authentication (CRL in charon)."""
    lab = ctx.lab
    up = d_sas_at_sgb(ctx) or d_initiate(ctx)
    ctx.check("control: d still holds its SA with SG-B before the deletion", bool(up))
    st0 = jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("crl", {})
    code, _ = operator(ctx, "DELETE", "/api/users/d.mwg.test")
    t0 = time.monotonic()
    gone = wait(lambda: not d_sas_at_sgb(ctx), 15, 0.3)
    t_gone = time.monotonic() - t0
    st1 = jstatus(ctx, "sg-b", "/run/testbed/sg.json").get("crl", {})
    ctx.metric("revocation_sa_torn_down_s", round(t_gone, 2))
    ctx.check("the operator deleted user d; SG-B loaded the new CRL and tore down d's SA",
              code == 200 and bool(gone) and st1.get("loaded", 0) > st0.get("loaded", 0)
              and st1.get("sas_terminated", 0) > st0.get("sas_terminated", 0),
              f"HTTP {code}; SA gone after {t_gone:.1f} s; CRL loads {st0.get('loaded')} -> {st1.get('loaded')}, "
              f"revoked serials {st1.get('revoked_serials')}, SAs terminated {st1.get('sas_terminated')}", claims=[9])
    r = lab.exec("d", "swanctl --initiate --child net --ike handmade --timeout 8", timeout=20)
    log = lab.exec("sg-b", "grep -iE 'revoked|AUTHENTICATION_FAILED|constraint' /var/lib/testbed/sg/D/charon.log | tail -3").stdout
    ctx.check("d's next IKE authentication at SG-B is refused: its certificate is revoked (CRL in charon)",
              not r.ok and not d_sas_at_sgb(ctx) and "revoked" in log.lower(),
              f"initiate exit {r.exit_code}; SG-B realm-D log: {log.strip()[-200:]}", claims=[9, 10])
    before = refusals(ctx)
    code, doc = http(ctx, "d", D_CURL, "GET", "/api/changes")
    after = refusals(ctx)
    ctx.check("the portal refuses d's revoked client certificate (401 revoked, counted)",
              code == 401 and doc.get("reason") == "revoked" and after.get("revoked", 0) > before.get("revoked", 0),
              f"HTTP {code} {doc.get('reason')}")
