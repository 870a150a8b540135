"""A running lab: its nodes, its wires, and the verbs to change and inspect them.

``Lab`` is the Python API behind every command of the CLI (``testbed up`` is
``Lab.from_file(f).up()``) and behind the pytest fixture. Its state (which veth end is
where) is saved under ``/run/testbed/labs/<lab>.json`` so that another process, e.g.
``testbed capture`` or ``testbed down``, can act on a lab it did not start.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

from . import netns as nsmod
from .backend import Backend, BackendError, ExecResult, NodeSpec, repo_root
from .state import labs_up, state_path, write_state
from .links import Port, Wiring, bridge_name, port_name
from testbed.common.ready import unmet

from .topology import (FORWARDING_ROLES, Ready, Role, Topology, Wire, check_lab_name, load_topology, parse_topology,
                       start_levels, wires)

DEFAULT_WORK_ROOT = Path(os.environ.get("TESTBED_WORK_ROOT", "/var/lib/testbed"))

BASE_CAPS = ["NET_ADMIN", "NET_RAW"]
# SYS_ADMIN lets a node make network and mount namespaces of its own (one charon per
# realm in an SG, private /run for each) — named, because --privileged fails here.
ROLE_CAPS: dict[Role, list[str]] = {r: BASE_CAPS + ["SYS_ADMIN"] for r in Role}

Say = Callable[[str], None]
# Engine calls in flight at once when starting nodes and their agents. Each call mostly
# waits on dockerd/containerd, and that wait grows with the containers already running
# (the scale bench: agent start 0.06 s/node at 20 nodes, 0.18 s/node at 100 with 8 in
# flight), so more in flight hide it as the bare script's unbounded '&' does.
ENGINE_CALLS = 32


def _ready_key(cond: Ready) -> tuple:
    """Conditions with the same node, file, key, value and timeout are one wait."""
    return (cond.node, cond.file, cond.key, repr(cond.equals), cond.timeout_s)


class LabError(RuntimeError):
    """Something about a lab's life cycle that the user can fix; the message says how."""


def _quiet(_: str) -> None:
    pass


def default_backend() -> Backend:
    """The backend labs use when none is given: the local Docker engine."""
    from .docker_backend import DockerBackend

    return DockerBackend()


class Lab:
    """A lab built from a topology. Create it, ``up()`` it, use it, ``down()`` it."""

    def __init__(self, topology: Topology, name: str | None = None, backend: Backend | None = None,
                 workdir: str | Path | None = None):
        self.topology = topology
        self.name = name or topology.name
        check_lab_name(self.name)
        self.backend = backend or default_backend()
        self.workdir = Path(workdir) if workdir else DEFAULT_WORK_ROOT / self.name
        self.ports: dict[str, Port] = {}
        self.images: dict[str, str] = {}
        self.seq = 0
        self.timings: dict[str, float] = {}
        #: wall-clock times (s) of the last move's carrier down and up (see move)
        self.last_move: dict[str, float] = {}
        self._captures: list[subprocess.Popen[bytes]] = []

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None, **kw: object) -> "Lab":
        """A lab (not yet up) from a topology or ``kind: lab`` file. Raises TopologyError naming
        the file and each wrong field, DuplicateKeyError, LabError for a bad lab name."""
        return cls(load_topology(path), name=name, **kw)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict, name: str | None = None, **kw: object) -> "Lab":
        """A lab (not yet up) from a topology given as data. Raises TopologyError, LabError."""
        return cls(parse_topology(data), name=name, **kw)  # type: ignore[arg-type]

    @classmethod
    def attach(cls, name: str, backend: Backend | None = None) -> "Lab":
        """The lab of that name that some process brought up."""
        p = state_path(name)
        if not p.is_file():
            running = labs_up()
            raise LabError(f"no lab named {name!r} is up (labs up: {', '.join(running) or 'none'}); "
                           "start one with 'testbed up FILE'")
        st = json.loads(p.read_text())
        lab = cls(parse_topology(st["topology"], f"state of lab {name}"), name=name, backend=backend,
                  workdir=st["workdir"])
        lab.ports = {k: Port(**v) for k, v in st["ports"].items()}
        lab.images = st.get("images", {})
        lab.seq = st.get("seq", 0)
        return lab

    def save(self) -> None:
        """Write the lab's state (topology, ports, images, owner pid) for ``attach`` and cleanup.
        Raises OSError when the state folder cannot be written."""
        st = {"name": self.name, "workdir": str(self.workdir), "topology": self.topology.model_dump(mode="json"),
              "ports": {k: asdict(v) for k, v in self.ports.items()}, "images": self.images, "seq": self.seq,
              "pid": os.getpid(), "time": time.time()}
        write_state(self.name, st)

    # --- life cycle -------------------------------------------------------------------
    @property
    def nodes(self) -> list[str]:
        """Node names in topology order."""
        return list(self.topology.nodes)

    def ns(self, node: str) -> str:
        """Name under /run/netns of the node's network namespace (usable with ``ip -n``)."""
        return nsmod.node_ns(self.name, node)

    def _spec(self, node: str) -> NodeSpec:
        nd = self.topology.nodes[node]
        sysctls: dict[str, str] = {}
        if nd.role in FORWARDING_ROLES:
            sysctls["net.ipv4.ip_forward"] = "1"
        sysctls.update({k: str(v) for k, v in nd.sysctls.items()})
        logs = self.workdir / "logs" / node
        logs.mkdir(parents=True, exist_ok=True)
        mounts = {str(repo_root() / "testbed"): ("/opt/testbed/testbed", True), str(logs): ("/var/log/testbed", False)}
        for v in nd.volumes:
            host = self.workdir / "volumes" / node / v.strip("/").replace("/", "_")
            host.mkdir(parents=True, exist_ok=True)
            mounts[str(host)] = (v, False)
        env = {"TESTBED_LAB": self.name, "TESTBED_NODE": node, "TESTBED_ROLE": nd.role.value}
        if nd.mvpn:
            env["TESTBED_MVPN"] = nd.mvpn
        env.update(nd.env)
        return NodeSpec(lab=self.name, name=node, role=nd.role.value, image=self.images.get(nd.image or nd.role.value, nd.image),
                        sysctls=sysctls, env=env, capabilities=ROLE_CAPS[nd.role], devices=["/dev/net/tun"],
                        mounts=mounts)

    def up(self, say: Say = _quiet, build_images: bool = True) -> "Lab":
        """Start every node, wire every link, run setup. On failure everything is removed again."""
        t0 = time.monotonic()
        if state_path(self.name).exists() or self.backend.list_nodes(self.name):
            raise LabError(f"lab {self.name!r} is already up; take it down with 'testbed down --lab {self.name}' "
                           f"or choose another name with --lab")
        self.backend.ensure_ready()
        roles = {n.role.value for n in self.topology.nodes.values() if not n.image}
        if build_images:
            from .images import ensure_images

            self.images = ensure_images(roles, say)
        else:
            from .images import role_tag

            self.images = {r: role_tag(r) for r in roles}
        # `image: peer:<suite>` names a stock strongSwan peer image (images.py, issue 12)
        peers = {n.image for n in self.topology.nodes.values() if n.image and n.image.startswith("peer:")}
        if peers:
            from .images import ensure_peer, peer_tag

            self.images.update({p: ensure_peer(p[5:], say) if build_images else peer_tag(p[5:]) for p in sorted(peers)})
        self.timings["images"] = time.monotonic() - t0
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.save()  # from here on, 'down' and 'clean' know this lab
        try:
            self._start_nodes(say)
            self._wire(say)
            self._setup(say)
        except BaseException:
            say("bring-up failed: removing what was started")
            self.down()
            raise
        self.save()
        self.timings["up"] = time.monotonic() - t0
        say(f"lab {self.name} is up: {len(self.nodes)} nodes in {self.timings['up']:.1f} s")
        return self

    def _start_nodes(self, say: Say) -> None:
        t = time.monotonic()
        say(f"starting {len(self.nodes)} nodes")
        specs = [self._spec(n) for n in self.nodes]
        with ThreadPoolExecutor(max_workers=min(ENGINE_CALLS, len(specs) or 1)) as pool:
            pids = list(pool.map(self.backend.start_node, specs))
        for node, pid in zip(self.nodes, pids):
            nsmod.attach_node(self.name, node, pid)
        self.timings["start_nodes"] = time.monotonic() - t

    def _next_port(self) -> str:
        self.seq += 1
        return port_name(self.name, self.seq)

    def _wire(self, say: Say, only_node: str | None = None) -> None:
        t = time.monotonic()
        topo = self.topology
        ws = wires(topo)
        say(f"wiring {len(ws)} links and {len(topo.segments)} segments")
        sw = nsmod.create_switch(self.name)
        bridges = {s: bridge_name(self.name, i) for i, s in enumerate(topo.segments)}
        with Wiring(self.name) as wr:
            if only_node is None:
                wr.loopback_up(sw)
                for b in bridges.values():
                    wr.add_bridge(b)
            for w in ws:
                if only_node is not None and only_node not in (w.a.node, w.b.node if w.b else None):
                    continue
                self._wire_one(wr, w, bridges)
            for node, nd in topo.nodes.items():
                if only_node is not None and node != only_node:
                    continue
                wr.loopback_up(self.ns(node))
                for r in nd.routes:
                    wr.route(self.ns(node), r)
        self.timings["wire"] = time.monotonic() - t

    def _wire_one(self, wr: Wiring, w: Wire, bridges: dict[str, str]) -> None:
        a_ns = self.ns(w.a.node)
        if w.segment is not None:
            old = self.ports.get(w.key)
            segment = old.segment if old and old.segment else w.segment  # a moved node stays moved
            sif = self._next_port()
            wr.veth(a_ns, w.a.ifname, nsmod.switch_ns(self.name), sif)
            wr.set_master(sif, bridges[segment])
            wr.set_up(nsmod.switch_ns(self.name), sif)
            if w.impair.rate or w.impair.loss:
                wr.impair(nsmod.switch_ns(self.name), sif, w.impair, bridge_family=True)
            self.ports[w.key] = Port(w.key, w.a.node, w.a.ifname, segment=segment, switch_if=sif)
        else:
            assert w.b is not None
            b_ns = self.ns(w.b.node)
            wr.veth(a_ns, w.a.ifname, b_ns, w.b.ifname)
            for ep, ns in ((w.b, b_ns),):
                if ep.address is not None:
                    wr.address(ns, ep.ifname, ep.address)
                wr.set_up(ns, ep.ifname)
                if w.impair.rate or w.impair.loss:
                    wr.impair(ns, ep.ifname, w.impair)
            self.ports[w.key] = Port(w.key, w.a.node, w.a.ifname, peer_node=w.b.node, peer_if=w.b.ifname)
        if w.a.address is not None:
            wr.address(a_ns, w.a.ifname, w.a.address)
        wr.set_up(a_ns, w.a.ifname)
        if w.impair.rate or w.impair.loss:
            wr.impair(a_ns, w.a.ifname, w.impair)

    def _setup(self, say: Say, nodes: Iterable[str] | None = None) -> None:
        """Write files and run setup on every node (in parallel), then start the nodes'
        agents level by level of their ``start_after`` waits (topology.start_levels)."""
        t = time.monotonic()
        chosen = set(nodes or self.nodes)
        todo = [n for n in self.nodes if n in chosen
                and (self.topology.nodes[n].files or self.topology.nodes[n].setup or self.topology.nodes[n].start)]
        if todo:
            say(f"running setup on {len(todo)} nodes")
        with ThreadPoolExecutor(max_workers=min(ENGINE_CALLS, len(todo) or 1)) as pool:
            for _ in pool.map(self._setup_node, todo):
                pass
        for level in start_levels(self.topology):
            starting = [n for n in level if n in todo and self.topology.nodes[n].start]
            # Each distinct condition is polled once for the level (100 MNs waiting on 2 SGs
            # cost 100 engine calls before); a node starts as soon as its own conditions hold.
            conds = {_ready_key(c): c for n in starting for c in self.topology.nodes[n].start_after}
            with ThreadPoolExecutor(max_workers=len(conds) or 1) as waits, \
                    ThreadPoolExecutor(max_workers=min(ENGINE_CALLS, len(starting) or 1)) as pool:
                met = {k: waits.submit(self.wait_ready, c) for k, c in conds.items()}
                for _ in pool.map(lambda n: self._start_node(n, met), starting):
                    pass
        self.timings["setup"] = time.monotonic() - t

    def _setup_node(self, node: str) -> None:
        nd = self.topology.nodes[node]
        for path, content in nd.files.items():
            self.backend.put_file(self.name, node, path, content.encode())
        for cmd in nd.setup:
            r = self.backend.shell(self.name, node, cmd, timeout=120)
            if not r.ok:
                raise LabError(f"setup of node {node} failed: {cmd!r} exited {r.exit_code}: {(r.stderr or r.stdout).strip()[-500:]}")

    def _start_node(self, node: str, met: dict[tuple, Future[None]]) -> None:
        nd = self.topology.nodes[node]
        for cond in nd.start_after:
            met[_ready_key(cond)].result()  # raises the LabError of a condition that timed out
        for i, cmd in enumerate(nd.start):
            log = f"/var/log/testbed/start-{i}.log"
            self.backend.exec(self.name, node, ["sh", "-c", f"exec {cmd} >>{log} 2>&1"], detach=True)

    def wait_ready(self, cond: Ready, interval_s: float = 0.3) -> None:
        """Poll ``cond.file`` on ``cond.node`` until testbed.common.ready.unmet is None.
        Raises LabError naming the node, the file and the last reason after ``cond.timeout_s``."""
        deadline = time.monotonic() + cond.timeout_s
        while True:
            r = self.backend.exec(self.name, cond.node, ["cat", cond.file], timeout=10)
            why = unmet(r.stdout if r.ok else None, cond.key, cond.equals)
            if why is None:
                return
            if time.monotonic() >= deadline:
                raise LabError(f"not ready after {cond.timeout_s:g} s: {cond.what or cond.node} "
                               f"({cond.node}:{cond.file}: {why})")
            time.sleep(interval_s)

    def down(self, say: Say = _quiet) -> dict[str, list[str]]:
        """Stop capturing, remove every node and namespace of the lab. Logs stay in the workdir."""
        for p in self._captures:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self._captures:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        from .cleanup import clean_lab

        gone = clean_lab(self.name, self.backend)
        say(f"lab {self.name} is down ({len(gone['containers'])} nodes removed)")
        return gone

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- using a lab ------------------------------------------------------------------
    def exec(self, node: str, cmd: list[str] | str, timeout: float | None = None, check: bool = False) -> ExecResult:
        """Run a command in a node (a string is run by sh -c)."""
        self._known(node)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        r = self.backend.exec(self.name, node, argv, timeout=timeout)
        if check and not r.ok:
            raise LabError(f"{node}: {cmd!r} exited {r.exit_code}: {(r.stderr or r.stdout).strip()[-500:]}")
        return r

    def spawn(self, node: str, cmd: str, log: str | None = None) -> None:
        """Start a long-running command in a node; its output goes to /var/log/testbed/<log>."""
        self._known(node)
        log = log or f"spawn-{int(time.time() * 1000)}.log"
        self.backend.exec(self.name, node, ["sh", "-c", f"exec {cmd} >>/var/log/testbed/{log} 2>&1"], detach=True)

    def put_file(self, node: str, path: str, content: str | bytes, mode: int = 0o644) -> None:
        """Write a file into a node (text is UTF-8 encoded). Not under /tmp or /run (tmpfs
        mounts the engine cannot write into). Raises BackendError."""
        self.backend.put_file(self.name, node, path, content.encode() if isinstance(content, str) else content, mode)

    def _known(self, node: str) -> None:
        if node not in self.topology.nodes:
            raise LabError(f"lab {self.name} has no node {node!r} (nodes: {', '.join(self.nodes)})")

    def port(self, key: str) -> Port:
        """A wire by its key ("<segment>:<node>", "<a>--<b>") or by "<node>:<ifname>"."""
        if key in self.ports:
            return self.ports[key]
        node, _, ifname = key.partition(":")
        for p in self.ports.values():
            if (p.node == node and p.ifname == ifname) or (p.peer_node == node and p.peer_if == ifname):
                return p
        raise LabError(f"lab {self.name} has no link {key!r}; links: {', '.join(sorted(self.ports))} "
                       "(or name one as NODE:IFNAME)")

    def set_link(self, key: str, up: bool) -> None:
        """Take a link down (cable pulled: the node sees no carrier) or up again."""
        p = self.port(key)
        with Wiring(self.name) as wr:
            if p.switch_if:
                wr.set_up(nsmod.switch_ns(self.name), p.switch_if, up)
            else:
                wr.set_up(self.ns(p.node), p.ifname, up)
                assert p.peer_node and p.peer_if
                wr.set_up(self.ns(p.peer_node), p.peer_if, up)

    def move(self, key: str, segment: str, flap: bool = False) -> float:
        """Re-attach a node's segment interface to another segment (a radio handover).
        With ``flap`` the port loses carrier for the move. Returns the seconds the whole call
        took; ``last_move`` keeps the wall-clock times (s) the carrier went down and came
        back (or the re-attach, without ``flap``), the window the node is really cut off."""
        if segment not in self.topology.segments:
            raise LabError(f"lab {self.name} has no segment {segment!r} (segments: {', '.join(self.topology.segments)})")
        p = self.port(key)
        if p.switch_if is None:
            raise LabError(f"{key} is a point-to-point link; only segment interfaces can move")
        bridges = {s: bridge_name(self.name, i) for i, s in enumerate(self.topology.segments)}
        t = time.monotonic()
        with Wiring(self.name) as wr:
            sw = nsmod.switch_ns(self.name)
            # socket and indexes first: the carrier is down only for the three changes
            wr.index(sw, p.switch_if), wr.index(sw, bridges[segment])
            down = time.time()
            if flap:
                wr.set_up(sw, p.switch_if, False)
            wr.set_master(p.switch_if, bridges[segment])
            if flap:
                wr.set_up(sw, p.switch_if, True)
            self.last_move = {"down": down, "up": time.time()}
        p.segment = segment
        self.save()
        return time.monotonic() - t

    def restart(self, node: str, say: Say = _quiet) -> None:
        """Restart a node (e.g. to show that its volumes keep their data) and rewire it."""
        self._known(node)
        pid = self.backend.restart_node(self.name, node)
        nsmod.attach_node(self.name, node, pid)
        # Its veths died with the old namespace (both ends of a veth go together), so the
        # node's wires are made again; segment moves are kept.
        self._wire(say, only_node=node)
        self._setup(say, [node])
        self.save()

    def capture(self, key: str, path: str | Path, count: int | None = None,
                filter: str | None = None) -> subprocess.Popen[bytes]:
        """Start tcpdump on a link into a pcap file; stop it with ``stop_capture`` (or ``down``).
        A segment name captures on its bridge (every frame of the segment)."""
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        if key in self.topology.segments:
            bridges = {s: bridge_name(self.name, i) for i, s in enumerate(self.topology.segments)}
            ns, ifname = nsmod.switch_ns(self.name), bridges[key]
        else:
            p = self.port(key)
            node, _, want = key.partition(":")
            if p.switch_if:
                ns, ifname = nsmod.switch_ns(self.name), p.switch_if
            elif want and node == p.peer_node:
                ns, ifname = self.ns(p.peer_node), p.peer_if or ""
            else:
                ns, ifname = self.ns(p.node), p.ifname
        cmd = ["ip", "netns", "exec", ns, "tcpdump", "-n", "-U", "--immediate-mode", "-s", "0", "-i", ifname, "-w", str(path)]
        if count:
            cmd += ["-c", str(count)]
        if filter:
            cmd += shlex.split(filter)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on" once the socket is open; wait for it so no packet is missed.
        assert proc.stderr is not None
        line = proc.stderr.readline().decode(errors="replace")
        if "listening" not in line:
            proc.kill()
            raise LabError(f"tcpdump on {key} did not start: {line.strip()} {proc.stderr.read().decode(errors='replace')}")
        self._captures.append(proc)
        return proc

    @staticmethod
    def stop_capture(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
        """Stop a capture from ``capture()`` with SIGINT (tcpdump flushes the pcap), killing it
        after ``timeout`` seconds."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()

    def status(self) -> dict:
        """``{lab, workdir, nodes: {name: {role, mvpn, running}}, links: {key: {node, ifname,
        segment, peer}}}``; ``running`` asks the backend, the rest comes from the state."""
        running = set(self.backend.list_nodes(self.name).get(self.name, []))
        return {
            "lab": self.name,
            "workdir": str(self.workdir),
            "nodes": {n: {"role": nd.role.value, "mvpn": nd.mvpn, "running": n in running}
                      for n, nd in self.topology.nodes.items()},
            "links": {k: {"node": p.node, "ifname": p.ifname, "segment": p.segment, "peer": p.peer_node}
                      for k, p in self.ports.items()},
        }

    def collect_logs(self) -> Path:
        """Write each node's main output next to its agent logs; return the logs folder."""
        out = self.workdir / "logs"
        for n in self.nodes:
            try:
                (out / n).mkdir(parents=True, exist_ok=True)
                (out / n / "container.log").write_text(self.backend.logs(self.name, n))
            except BackendError:
                pass
        return out
