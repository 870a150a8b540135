"""Shared by the AODV scenarios (handover, ring-search, long-session) and their benches:
start/stop the AODV agents in a lab's nodes with a given config, read their status files,
and run a numbered UDP stream whose receiver log tells loss, gaps and delays per datagram.

Why agents are spawned here and not in the topology's `start:`: each scenario compares the
extension with plain AODV *in the same lab and run*, so the agents are stopped (SIGTERM: they
remove their kernel routes) and started again with the other config. The pid file is how we
stop exactly the agent we started.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
CONF = "/etc/testbed/aodv.json"
STATUS = "/run/testbed/aodv.json"
PIDFILE = "/run/testbed/aodv.pid"
STREAM = "/usr/local/bin/tb_stream.py"

# Node side: a numbered UDP stream. `send DST PORT RATE SECONDS OUT` sends datagrams carrying
# (seq, wall-clock send time) on a fixed schedule; `recv PORT SECONDS OUT` logs every datagram
# as [seq, sent, received]. Containers share the host's clock, so one-way delays are real.
STREAM_PY = r'''
import json, socket, struct, sys, time
mode = sys.argv[1]
if mode == "send":
    dst, port, rate, secs, out = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.time(); n = 0; errors = 0
    while True:
        due = t0 + n / rate
        if due > t0 + secs:
            break
        d = due - time.time()
        if d > 0:
            time.sleep(d)
        try:
            s.sendto(struct.pack("!Id", n, time.time()).ljust(64, b"x"), (dst, port))
        except OSError:
            errors += 1
        n += 1
    json.dump({"t0": t0, "rate": rate, "sent": n, "errors": errors}, open(out, "w"))
else:
    port, secs, out = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port)); s.settimeout(0.2)
    end = time.time() + secs; recs = []
    while time.time() < end:
        try:
            b = s.recv(2048)
        except socket.timeout:
            continue
        if len(b) >= 12:
            seq, sent = struct.unpack("!Id", b[:12])
            recs.append([seq, sent, time.time()])
    json.dump(recs, open(out, "w"))
'''


def wait(pred: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def status(lab, node: str) -> dict:
    r = lab.exec(node, f"cat {STATUS}")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def statuses(lab, nodes: list[str]) -> dict[str, dict]:
    """Every node's status at once (one exec per node, in parallel: a 10-node lab is read
    in the time of one read, which keeps the scenarios within the CI budget)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as ex:
        return dict(zip(nodes, ex.map(lambda n: status(lab, n), nodes)))


def counters(lab, node: str) -> dict:
    return status(lab, node).get("counters", {})


def parallel(fn: Callable[[str], Any], nodes: list[str]) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as ex:
        return list(ex.map(fn, nodes))


def start_agents(lab, configs: dict[str, dict], tag: str) -> None:
    """Write each node's config and start its agent (log: /var/log/testbed/aodv-<tag>.log)."""
    def one(node: str) -> None:
        cfg = {"status_file": STATUS, "log_level": "DEBUG", **configs[node]}
        lab.exec(node, f"mkdir -p /run/testbed && rm -f {STATUS} {PIDFILE}")
        lab.put_file(node, CONF, json.dumps(cfg, indent=1))
        lab.spawn(node, f"sh -c 'echo $$ >{PIDFILE}; exec python3 -m testbed.aodv --config {CONF}'",
                  log=f"aodv-{tag}.log")
    parallel(one, list(configs))


def agents_ready(lab, nodes: list[str], timeout: float = 40) -> bool:
    return bool(wait(lambda: all(s.get("counters") is not None for s in statuses(lab, nodes).values()), timeout, 0.5))


def lab_configs(lab, nodes: list[str], **over: dict) -> dict[str, dict]:
    """Each node's AODV agent config as the lab file's ``aodv:`` mesh derived it
    (orchestration.domain.mesh: address, interfaces, prefixes, options), with ``over``
    (AgentConfig fields, nested dicts merged) changed: one variant of a comparison. The lab
    says ``start: false``, so the agents run only as start_agents starts them."""
    import yaml

    from orchestration.domain.mesh import AGENT_FILE, merge_options

    return {n: merge_options(yaml.safe_load(lab.topology.nodes[n].files[AGENT_FILE]), over) for n in nodes}


STOP = r"""
pid=$(cat {pf} 2>/dev/null) || {{ echo "no pid file {pf}"; exit 2; }}
kill "$pid"
i=0
while [ -r /proc/$pid/status ] && ! grep -q '^State:.*Z' /proc/$pid/status; do
  i=$((i+1)); [ $i -gt 200 ] && {{ echo "agent $pid did not stop on SIGTERM"; exit 3; }}
  sleep 0.05
done
rm -f {pf}
"""


def stop_agents(lab, nodes: list[str]) -> None:
    """SIGTERM the agents we started (their pid files) and wait until they are gone; they
    remove their own routes on the way out."""
    res = parallel(lambda n: lab.exec(n, STOP.format(pf=PIDFILE), timeout=30), nodes)
    bad = [f"{n}: {r.stdout.strip()}" for n, r in zip(nodes, res) if not r.ok]
    if bad:
        raise RuntimeError("; ".join(bad))


def install_stream(lab, nodes: list[str]) -> None:
    for n in nodes:
        lab.put_file(n, STREAM, STREAM_PY, mode=0o755)


def start_stream(lab, src: str, dst_node: str, dst: str, port: int, rate: float, seconds: float, tag: str) -> None:
    lab.exec(dst_node, f"rm -f /tmp/recv-{tag}.json")
    lab.exec(src, f"rm -f /tmp/send-{tag}.json")
    lab.spawn(dst_node, f"python3 {STREAM} recv {port} {seconds + 3} /tmp/recv-{tag}.json", log=f"stream-{tag}.log")
    time.sleep(0.5)
    lab.spawn(src, f"python3 {STREAM} send {dst} {port} {rate} {seconds} /tmp/send-{tag}.json", log=f"stream-{tag}.log")


def stream_result(lab, src: str, dst_node: str, tag: str, timeout: float = 30) -> tuple[dict, list[list[float]]]:
    def get(node, path):
        r = lab.exec(node, f"cat {path}")
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None
    sent = wait(lambda: get(src, f"/tmp/send-{tag}.json"), timeout, 0.5)
    recs = wait(lambda: get(dst_node, f"/tmp/recv-{tag}.json"), timeout, 0.5)
    if sent is None or recs is None:
        raise RuntimeError(f"stream {tag}: no result (sender {sent is not None}, receiver {recs is not None})")
    return sent, recs


def window(sent: dict, recs: list, start: float, end: float) -> dict:
    """Loss and interruption for the datagrams scheduled in [start, end) (wall clock).

    lost: scheduled there and never received. interruption_ms: the longest time the receiver
    got nothing of this window's datagrams, from the last one before the hole to the first
    after it (covers buffered-and-late datagrams too: delay counts as interruption)."""
    t0, rate = sent["t0"], sent["rate"]
    first = max(0, math.ceil((start - t0) * rate))
    last = min(sent["sent"], math.ceil((end - t0) * rate))  # exclusive
    want = set(range(first, last))
    got = sorted((r for r in recs if r[0] in want), key=lambda r: r[2])
    lost = len(want) - len({r[0] for r in got})
    # the receiver's view: arrival times, plus the window edges' nominal schedule
    times = [t0 + first / rate] + [r[2] for r in got] + [t0 + (last - 1) / rate]
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    late = sum(1 for r in got if r[2] - r[1] > 0.05)
    return {"sent": len(want), "lost": lost, "interruption_ms": round(gap * 1000, 1), "late_over_50ms": late,
            "max_delay_ms": round(max((r[2] - r[1] for r in got), default=0.0) * 1000, 1)}


def gaps(sent: dict, recs: list, threshold: float) -> list[dict]:
    """Every silence at the receiver longer than `threshold` s, from the first datagram's
    arrival (the first discovery, with the datagram buffered, is not a gap in a session)
    to the end of the stream's schedule."""
    t0, n, rate = sent["t0"], sent["sent"], sent["rate"]
    arr = sorted(r[2] for r in recs)
    if not arr:
        return [{"at_s": 0.0, "ms": round((n / rate) * 1000, 1)}]
    times = arr + [max(arr[-1], t0 + (n - 1) / rate)]
    return [{"at_s": round(a - t0, 2), "ms": round((b - a) * 1000, 1)}
            for a, b in zip(times, times[1:]) if b - a > threshold]
