"""Portal benchmark (issue 9): what mutual TLS and authorisation cost, against plain HTTP in the same run.

`run(say, quick=False) -> dict` (registered in orchestration/bench.py, so `make bench` runs it);
`python3 -m testbed.msm.bench [--quick]` runs it alone. Loopback only, bounded in time.

Three real MSM processes, each on its own free loopback ports, the same seed (4 M-VPNs, 48 users
in workgroup W) and the same client code (`MsmClient`): a sign-on opens a fresh connection (full
TLS handshake with client certificate, as a newly arriving MN); a follower keeps its connection
open across long-polls (as the SG and MN agents do):
  https_mtls     the deployed portal: HTTPS, client certificates, authorisation on;
  https_noauthz  HTTPS and client certificates, `insecure_no_authz` (isolates the TLS cost);
  http_plain     plain HTTP on `insecure_http_port`, `insecure_no_authz`: the baseline of the
                 issue ("the same load over plain HTTP").
Phases:
  1. sign-on latency alone: sign-ons one after another, in interleaved blocks (20 per process per
     round) so that a slow moment of the machine hits all three alike; median and p99;
  2. load, one process at a time, in 3 interleaved rounds per configuration totalling 60 s (12 s
     with --quick), samples pooled over the rounds: 200 concurrent
     long-polls (GET /api/changes, re-issued on return) plus 50 sign-ons/s on an open-loop
     schedule (latency counted from the scheduled start, so a stall is not hidden), and every 2 s
     an operator change that wakes all pollers. Reported: errors of each kind (aim 0), sign-on
     p50/p99, achieved rate, and the wake-up latency of the pollers (operator sends the change ->
     poll answered: includes the change's own commit) p50/p99.
Ratios are https_mtls / http_plain (and https_noauthz / http_plain) of the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from testbed.common.portal_client import MsmClient, MsmError

Say = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
MVPNS = "ABCD"
USERS = 48
LONGPOLLS = 200
SIGNON_RATE = 50.0
CHANGE_EVERY_S = 2.0
CONFIGS = ("https_mtls", "https_noauthz", "http_plain")
ROUNDS = 3  # the load phase of each configuration, in interleaved rounds


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed() -> dict:
    return {
        "mvpns": [{"name": m, "realm": "10.0.0.0/24", "sg_public": f"203.0.113.{i + 1}"} for i, m in enumerate(MVPNS)],
        "users": [{"fqdn": f"u{i}.mwg.test", "mvpn": MVPNS[i % 4], "private_address": f"10.0.0.{10 + i}"}
                  for i in range(USERS)],
        "workgroups": [{"name": "W", "members": [f"u{i}.mwg.test" for i in range(USERS)]}, {"name": "Z"}],
    }


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


class Target:
    """One MSM process of one configuration and the callers that load it."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root / name
        self.root.mkdir(parents=True)
        self.https_port, self.http_port = _free_port(), _free_port()
        cfg = {"db_path": str(self.root / "msm.db"), "ca_dir": str(self.root / "ca"), "http_address": "127.0.0.1",
               "https_port": self.https_port, "dns_enabled": False, "status_file": str(self.root / "msm.json"),
               "log_level": "WARNING", "longpoll_max": 60, "seed": _seed()}
        if name != "https_mtls":
            cfg["insecure_no_authz"] = True
        if name == "http_plain":
            cfg["insecure_http_port"] = self.http_port
        (self.root / "msm.json.cfg").write_text(json.dumps(cfg))
        self.log = open(self.root / "msm.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "testbed.msm", "--config", str(self.root / "msm.json.cfg")],
                                     cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=self.log,
                                     stderr=self.log)
        self.ca_file = str(self.root / "ca" / "ca.pem")
        self.tls_url = f"https://127.0.0.1:{self.https_port}"
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name}: MSM exited: {(self.root / 'msm.log').read_text()[-1500:]}")
            try:
                MsmClient(self.tls_url, ca_file=self.ca_file, timeout=2).ca_pem()
                break
            except (MsmError, OSError, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: MSM did not come up") from None
                time.sleep(0.1)
        op = self.root / "ca" / "operator"
        self.operator = MsmClient(self.tls_url, timeout=30, ca_file=self.ca_file, cert_file=str(op / "cert.pem"),
                                  key_file=str(op / "key.pem"))
        self.mns: list[tuple[str, MsmClient]] = []
        self.followers: list[MsmClient] = []
        self.toggles = 0  # changes made by the load's operator (membership of u<k> in Z)

    def enrol(self) -> None:
        """48 MN and 4 SG credentials (keys made here, EC P-256), then the load's callers: sign-on
        clients open a fresh connection per call (an MN signing on), followers keep theirs (an
        agent's long-poll loop)."""
        from testbed.common.enroll import issue_with_local_key

        def files(identity: str, kind: str) -> tuple[str, str]:
            doc = issue_with_local_key(self.operator, identity, kind, key_type="ec")
            d = self.root / "nodes" / identity
            d.mkdir(parents=True)
            (d / "cert.pem").write_text(doc["cert_pem"])
            (d / "key.pem").touch(mode=0o600)
            (d / "key.pem").write_text(doc["key_pem"])
            return str(d / "cert.pem"), str(d / "key.pem")

        def client(creds: tuple[str, str], keepalive: bool) -> MsmClient:
            if self.name == "http_plain":
                return MsmClient(f"http://127.0.0.1:{self.http_port}", timeout=30, keepalive=keepalive)
            return MsmClient(self.tls_url, timeout=30, ca_file=self.ca_file, cert_file=creds[0], key_file=creds[1],
                             keepalive=keepalive)

        mn = {f"u{i}.mwg.test": files(f"u{i}.mwg.test", "mn") for i in range(USERS)}
        sg = [files(m, "sg") for m in MVPNS]
        self.mns = [(fqdn, client(c, keepalive=False)) for fqdn, c in mn.items()]
        mn_files = list(mn.values())
        self.followers = [client(sg[i % 4] if i % 2 else mn_files[i % USERS], keepalive=True) for i in range(LONGPOLLS)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _signon(target: Target, i: int) -> float:
    fqdn, client = target.mns[i % USERS]
    t = time.perf_counter()
    view = client.signon(fqdn, "W")
    if len(view["members"]) != USERS - 1:
        raise RuntimeError(f"{target.name}: wrong sign-on answer")
    return time.perf_counter() - t


def signon_alone(targets: list[Target], per_target: int, say: Say) -> dict:
    """Phase 1: sequential sign-ons, interleaved in blocks across the targets; ms statistics."""
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    block = 20
    for r in range(0, per_target, block):
        for t in targets:
            samples[t.name] += [_signon(t, r + k) for k in range(min(block, per_target - r))]
    out = {}
    for name, s in samples.items():
        ms = [x * 1e3 for x in s]
        out[name] = {"n": len(ms), "median_ms": round(statistics.median(ms), 2), "p99_ms": round(percentile(ms, 0.99), 2)}
        say(f"portal bench: sign-on alone {name}: median {out[name]['median_ms']} ms p99 {out[name]['p99_ms']} ms")
    return out


def under_load(target: Target, duration_s: float) -> dict:
    """One round of phase 2 for `duration_s` s: LONGPOLLS long-polls + SIGNON_RATE sign-ons/s + a
    change every CHANGE_EVERY_S. Returns raw samples (s) and error counts for `summary`."""
    stop_at = time.monotonic() + duration_s
    lock = threading.Lock()
    errors: dict[str, int] = {}
    wakes: list[float] = []
    changes: list[tuple[int, float]] = []  # (new version, acknowledged at)
    polls = [0]

    def error(kind: str, exc: Exception) -> None:
        key = f"{kind}:{getattr(exc, 'status', type(exc).__name__)}"
        with lock:
            errors[key] = errors.get(key, 0) + 1

    def poller(client: MsmClient) -> None:
        since = target.operator.version()
        while True:
            left = stop_at - time.monotonic()
            if left <= 0.5:
                return
            try:
                version = client.wait_for_change(since, timeout=min(20.0, left - 0.3))
            except Exception as exc:  # counted; the poller goes on
                error("longpoll", exc)
                time.sleep(0.2)
                continue
            now = time.monotonic()
            with lock:
                polls[0] += 1
                if version > since:
                    acked = [at for v, at in changes if since < v <= version]
                    if acked:
                        wakes.append(now - min(acked))
            since = max(since, version)

    def changer() -> None:
        # Only this thread changes the store during the load, one version step per change, so the
        # version a change makes is known before it is sent; its send time is recorded first, so a
        # poller that is answered before the operator sees its own answer still finds it.
        version = target.operator.version()
        while time.monotonic() + CHANGE_EVERY_S < stop_at - 1.0:
            time.sleep(CHANGE_EVERY_S)
            n = target.toggles
            with lock:
                changes.append((version + 1, time.monotonic()))
            try:
                if n % 2 == 0:
                    doc = target.operator.add_member("Z", f"u{(n // 2) % USERS}.mwg.test")
                else:
                    doc = target.operator.remove_member("Z", f"u{(n // 2) % USERS}.mwg.test")
            except (MsmError, OSError) as exc:
                error("change", exc)
                with lock:
                    changes.pop()
                version = target.operator.version()
                continue
            target.toggles += 1
            if doc["version"] != version + 1:
                error("change", RuntimeError(f"version {doc['version']}, expected {version + 1}"))
            version = doc["version"]

    latencies: list[float] = []

    def scheduled_signon(i: int, due: float) -> None:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            _signon(target, i)
        except Exception as exc:  # every failure is counted, none ends the load early
            error("signon", exc)
            return
        with lock:
            latencies.append(time.monotonic() - due)

    threads = [threading.Thread(target=poller, args=(c,), daemon=True) for c in target.followers]
    threads.append(threading.Thread(target=changer, daemon=True))
    for t in threads:
        t.start()
    time.sleep(1.0)  # the pollers are waiting
    start = time.monotonic()
    n_signons = int((stop_at - 1.0 - start) * SIGNON_RATE)
    with ThreadPoolExecutor(max_workers=40) as pool:
        for i in range(n_signons):
            due = start + i / SIGNON_RATE
            while time.monotonic() < due - 0.05:
                time.sleep(0.01)
            pool.submit(scheduled_signon, i, due)
    signon_end = time.monotonic()
    for t in threads:
        t.join(max(0.0, stop_at - time.monotonic()) + 30)
    return {"duration_s": duration_s, "signon_s": signon_end - start, "latencies": latencies, "wakes": wakes,
            "polls": polls[0], "changes": len(changes), "errors": errors}


def summary(rounds: list[dict]) -> dict:
    """Statistics over the rounds of one configuration (samples pooled, errors summed)."""
    ms = [x * 1e3 for r in rounds for x in r["latencies"]]
    wake_ms = [x * 1e3 for r in rounds for x in r["wakes"]]
    errors: dict[str, int] = {}
    for r in rounds:
        for k, n in r["errors"].items():
            errors[k] = errors.get(k, 0) + n
    return {
        "duration_s": round(sum(r["duration_s"] for r in rounds), 1), "rounds": len(rounds), "longpolls": LONGPOLLS,
        "signon_rate_asked": SIGNON_RATE, "signons": len(ms),
        "signon_rate_achieved": round(len(ms) / max(1e-9, sum(r["signon_s"] for r in rounds)), 1),
        "signon_p50_ms": round(percentile(ms, 0.5), 2), "signon_p99_ms": round(percentile(ms, 0.99), 2),
        "longpoll_answers": sum(r["polls"] for r in rounds), "changes": sum(r["changes"] for r in rounds),
        "wake_p50_ms": round(percentile(wake_ms, 0.5), 2), "wake_p99_ms": round(percentile(wake_ms, 0.99), 2),
        "errors": dict(sorted(errors.items())), "errors_total": sum(errors.values()),
    }


def run(say: Say = print, quick: bool = False) -> dict[str, Any]:
    """The whole benchmark (see module doc); returns the JSON-able result."""
    duration = 12.0 if quick else 60.0
    root = Path(tempfile.mkdtemp(prefix="tbt-portal-bench-"))
    targets: list[Target] = []
    try:
        for name in CONFIGS:
            targets.append(Target(name, root))
        for t in targets:
            say(f"portal bench: enrolling {USERS} MNs and {len(MVPNS)} SGs at {t.name}")
            t.enrol()
        alone = signon_alone(targets, 60 if quick else 200, say)
        rounds: dict[str, list[dict]] = {t.name: [] for t in targets}
        for r in range(ROUNDS):  # interleaved: a slow moment of the machine hits every configuration
            for t in targets:
                rounds[t.name].append(under_load(t, duration / ROUNDS))
                say(f"portal bench: load round {r + 1}/{ROUNDS} {t.name}: {len(rounds[t.name][-1]['latencies'])} "
                    f"sign-ons, errors {sum(rounds[t.name][-1]['errors'].values())}")
        load = {name: summary(rs) for name, rs in rounds.items()}
    finally:
        for t in targets:
            t.stop()
    base_alone, base_load = alone["http_plain"], load["http_plain"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("nan")

    return {
        "what": "MSM portal on loopback: HTTPS+mTLS+authz vs HTTPS without authz vs plain HTTP, same run",
        "quick": quick, "users": USERS, "longpolls": LONGPOLLS, "signon_rate": SIGNON_RATE,
        "signon_alone": alone, "load": load,
        "ratios_vs_http_plain": {
            name: {"signon_median": ratio(alone[name]["median_ms"], base_alone["median_ms"]),
                   "signon_p99": ratio(alone[name]["p99_ms"], base_alone["p99_ms"]),
                   "load_signon_p99": ratio(load[name]["signon_p99_ms"], base_load["signon_p99_ms"]),
                   "load_wake_p99": ratio(load[name]["wake_p99_ms"], base_load["wake_p99_ms"])}
            for name in CONFIGS if name != "http_plain"},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.msm.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="12 s of load per configuration instead of 60 s")
    ap.add_argument("-o", "--output", help="also write the JSON here")
    args = ap.parse_args(argv)
    res = run(say=lambda m: print(m, file=sys.stderr, flush=True), quick=args.quick)
    text = json.dumps(res, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
