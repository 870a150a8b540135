"""The baseline of the bring-up benchmarks: the same lab written by hand as one bash script.

What a careful person would type without the testbed: ``docker run`` of every node at once
(the same image, capabilities, sysctls, mounts and tmpfs as the testbed's backend), one
switch namespace with a Linux bridge per segment, ``ip link add ... type veth ... netns``
per link, ``ip -batch`` per node for addresses and routes, each node's files copied in as
one tar stream, its setup commands in one ``docker exec``, and its agents started with
``docker exec -d`` as soon as the status files they wait for are ready
(``python3 -m testbed.common.ready`` inside the node they wait on, the agents' own check).
Everything that can run at once runs at once (``&``), so the script is the fastest plain
route to the same running lab, the floor the testbed's bring-up is compared with.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .topology import wires

if TYPE_CHECKING:
    from .lab import Lab


def _docker_run(lab: "Lab", node: str) -> str:
    spec = lab._spec(node)
    args = ["docker", "run", "-d", "-q", "--name", f"{lab.name}.{node}", "--hostname", node, "--init",
            "--network", "none", "--stop-signal", "SIGKILL",
            "--tmpfs", "/run:rw,exec,mode=755", "--tmpfs", "/tmp:rw,exec,mode=1777"]
    for cap in spec.capabilities:
        args += ["--cap-add", cap]
    for dev in spec.devices:
        args += ["--device", dev]
    for k, v in spec.sysctls.items():
        args += ["--sysctl", f"{k}={v}"]
    for k, v in spec.env.items():
        args += ["-e", f"{k}={v}"]
    for host, (inside, ro) in spec.mounts.items():
        args += ["-v", f"{host}:{inside}{':ro' if ro else ''}"]
    args += ["--label", f"testbed.lab={lab.name}", spec.image]
    return " ".join(shlex.quote(a) for a in args)


def write_files(lab: "Lab", root: Path) -> dict[str, Path]:
    """Each node's ``files`` under ``root/<node>/`` as they will sit in the node (the files
    a hand-written lab keeps beside its script). Returns node -> folder for nodes with files."""
    out: dict[str, Path] = {}
    for node, nd in lab.topology.nodes.items():
        if not nd.files:
            continue
        for path, content in nd.files.items():
            f = root / node / path.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(content)
            f.chmod(0o644)
        out[node] = root / node
    return out


def bare_script(lab: "Lab", files: dict[str, Path] | None = None) -> tuple[str, str]:
    """Bash scripts ``(up, down)`` that build ``lab``'s topology without the testbed.

    ``lab`` is a Lab that is not up, with ``images`` filled (role -> image tag); its name is
    the prefix of every container, namespace and switch port. ``files`` (from
    :func:`write_files`) are copied in; without it a topology with files is refused
    (ValueError). The up script exits non-zero when any step fails or an agent's start
    condition times out."""
    topo, name = lab.topology, lab.name
    with_files = [n for n, nd in topo.nodes.items() if nd.files]
    if with_files and not files:
        raise ValueError(f"nodes {', '.join(with_files[:5])} have files: pass write_files(...)")
    nodes = list(topo.nodes)
    sw = f"{name}.switch"
    up = ["set -e", f"ip netns add {sw}", f"ip -n {sw} link set lo up"]
    seg_index = {s: i for i, s in enumerate(topo.segments)}
    for s, i in seg_index.items():
        up.append(f"ip -n {sw} link add {name}.b{i} type bridge && ip -n {sw} link set {name}.b{i} up")
    up += [f"{_docker_run(lab, n)} >/dev/null &" for n in nodes] + ["wait"]
    up.append("declare -A P")
    up.append("while read n p; do P[$n]=$p; done < <(docker inspect -f '{{.Config.Hostname}} {{.State.Pid}}' "
              + " ".join(f"{name}.{n}" for n in nodes) + ")")
    per_node: dict[str, list[str]] = {n: ["link set lo up"] for n in nodes}
    seq = 0
    for w in wires(topo):
        if w.segment:
            seq += 1
            up.append(f"ip link add {w.a.ifname} netns ${{P[{w.a.node}]}} type veth peer name {name}.p{seq:x} netns {sw}")
            up.append(f"ip -n {sw} link set {name}.p{seq:x} master {name}.b{seg_index[w.segment]} up")
        else:
            assert w.b is not None
            up.append(f"ip link add {w.a.ifname} netns ${{P[{w.a.node}]}} type veth peer name {w.b.ifname} netns ${{P[{w.b.node}]}}")
            if w.b.address:
                per_node[w.b.node].append(f"addr add {w.b.address} dev {w.b.ifname}")
            per_node[w.b.node].append(f"link set {w.b.ifname} up")
        if w.a.address:
            per_node[w.a.node].append(f"addr add {w.a.address} dev {w.a.ifname}")
        per_node[w.a.node].append(f"link set {w.a.ifname} up")
    for n, nd in topo.nodes.items():
        for r in nd.routes:
            line = f"route replace {r.to}"
            line += f" via {r.via}" if r.via else ""
            line += f" dev {r.dev}" if r.dev else ""
            line += f" metric {r.metric}" if r.metric is not None else ""
            per_node[n].append(line)
        cmds = "\\n".join(per_node[n])
        up.append(f"printf '{cmds}\\n' | nsenter -t ${{P[{n}]}} -n ip -batch -")
    # files and setup of every node at once; each job's status is collected
    up.append("pids=()")
    for n, nd in topo.nodes.items():
        steps = []
        if nd.files and files:
            steps.append(f"tar -C {shlex.quote(str(files[n]))} -cf - . | docker exec -i {name}.{n} tar -C / -xf -")
        if nd.setup:
            steps.append(f"docker exec {name}.{n} sh -c {shlex.quote(' && '.join(f'({c})' for c in nd.setup))}")
        if steps:
            up.append(f"( {' && '.join(steps)} ) & pids+=($!)")
    up.append('for p in "${pids[@]}"; do wait $p; done')
    # agents: the nodes that wait for the same conditions form one group; each group waits
    # once, then starts its nodes' agents at once (a careful script checks a status file
    # once per group, not once per node)
    groups: dict[tuple[str, ...], list[str]] = {}
    for n, nd in topo.nodes.items():
        if nd.start:
            waits = []
            for c in nd.start_after:
                ready = ["python3", "-m", "testbed.common.ready", "--file", c.file, "--timeout", f"{c.timeout_s:g}"]
                if c.key:
                    ready += ["--key", c.key]
                if c.equals is not None:
                    ready += ["--equals", str(c.equals).lower() if isinstance(c.equals, bool) else str(c.equals)]
                waits.append(f"docker exec {name}.{c.node} " + " ".join(shlex.quote(a) for a in ready))
            groups.setdefault(tuple(waits), []).append(n)
    up.append("pids=()")
    for waits, members in groups.items():
        starts = ["q=();"]
        for n in members:
            for i, cmd in enumerate(topo.nodes[n].start):
                inner = f"exec {cmd} >>/var/log/testbed/start-{i}.log 2>&1"
                starts.append(f"docker exec -d {name}.{n} sh -c {shlex.quote(inner)} & q+=($!);")
        starts.append('for x in "${q[@]}"; do wait $x; done;')
        up.append(f"( {' && '.join([*waits, '{ ' + ' '.join(starts) + ' }'])} ) & pids+=($!)")
    up.append('for p in "${pids[@]}"; do wait $p; done')
    down = ["docker rm -f " + " ".join(f"{name}.{n}" for n in nodes) + " >/dev/null", f"ip netns del {sw}"]
    return "\n".join(up) + "\n", "\n".join(down) + "\n"
