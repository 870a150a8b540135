"""A/B runs of the AODV agent, shared by the AODV scenarios (handover, handover-offpath,
ring-search, long-session) and their benches (moved out of the scenario folders, issue 10):
start/stop the AODV agents in a lab's nodes with a given config, read their status files,
and run a numbered UDP stream whose receiver log tells loss, gaps and delays per datagram
(the stream, status reading and waiting are orchestration.checks', shared with the check kinds).

Why agents are spawned here and not in the topology's `start:`: each scenario compares the
extension with plain AODV *in the same lab and run*, so the agents are stopped (SIGTERM: they
remove their kernel routes) and started again with the other config. The pid file is how we
stop exactly the agent we started.
"""
from __future__ import annotations

import json

from orchestration.checks.status import parallel, read_status, read_statuses, wait_until as wait
from orchestration.checks.stream import STREAM, gaps, install_stream, start_stream, stream_result, window

__all__ = ["STREAM", "CONF", "STATUS", "PIDFILE", "wait", "status", "statuses", "counters", "parallel", "start_agents",
           "agents_ready", "stop_agents", "install_stream", "start_stream", "stream_result", "window", "gaps"]

CONF = "/etc/testbed/aodv.json"
STATUS = "/run/testbed/aodv.json"
PIDFILE = "/run/testbed/aodv.pid"


def status(lab, node: str) -> dict:
    """The node's AODV agent status ({} before it wrote one)."""
    return read_status(lab, node, STATUS)


def statuses(lab, nodes: list[str]) -> dict[str, dict]:
    """Every node's AODV status, read in parallel."""
    return read_statuses(lab, nodes, STATUS)


def counters(lab, node: str) -> dict:
    """The ``counters`` object of the node's AODV status ({} before it wrote one)."""
    return status(lab, node).get("counters", {})


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
    """True once every node's agent wrote a status with counters; False after ``timeout`` s."""
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


