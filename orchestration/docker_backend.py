"""Nodes as Docker containers.

Each node is a container started with ``--network none`` (so no route can lead out of the
testbed), the capabilities it needs by name (``--privileged`` fails on this kind of VM),
``/dev/net/tun`` for userspace tunnels and ESP, and the labels ``testbed.lab`` and
``testbed.node`` by which ``clean`` finds exactly what the testbed made and nothing else.
"""
from __future__ import annotations

import io
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time

import docker
import docker.errors
from docker.models.containers import Container

from .backend import Backend, BackendError, ExecResult, NodeSpec

LABEL_LAB = "testbed.lab"
LABEL_NODE = "testbed.node"
LABEL_ROLE = "testbed.role"


def container_name(lab: str, node: str) -> str:
    """The container of ``node`` in ``lab``: ``<lab>.<node>``."""
    # Lab names have no dots and node names have none either, so "<lab>.<node>" is unique.
    return f"{lab}.{node}"


class DockerBackend(Backend):
    """The Backend on a local Docker engine: one container per node (``--network none``,
    capabilities instead of ``--privileged``, /run and /tmp on tmpfs), labelled with the lab,
    node and role names; every method raises BackendError with what to check when the engine
    refuses, never a docker SDK exception."""

    name = "docker"

    def __init__(self) -> None:
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        """The engine connection (made and pinged once; 32 pooled HTTP connections).
        Raises BackendError naming the socket when no engine answers."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = docker.from_env(timeout=120, max_pool_size=32)  # lab.ENGINE_CALLS in flight
                    self._client.ping()
                except docker.errors.DockerException as e:
                    self._client = None
                    raise BackendError(
                        f"no Docker engine answers ({e}); start one with 'make setup' (it starts dockerd) "
                        "or check /var/run/docker.sock") from None
            return self._client

    def ensure_ready(self) -> None:
        """Raise BackendError now if no Docker engine answers (before anything is built)."""
        _ = self.client

    def _get(self, lab: str, node: str) -> Container | None:
        try:
            return self.client.containers.get(container_name(lab, node))
        except docker.errors.NotFound:
            return None

    def start_node(self, spec: NodeSpec) -> int:
        """Run the node's container (replacing a leftover of the same name) and return the pid
        of its init, whose network namespace the wiring uses. Raises BackendError."""
        name = container_name(spec.lab, spec.name)
        volumes = {host: {"bind": inside, "mode": "ro" if ro else "rw"} for host, (inside, ro) in spec.mounts.items()}
        try:
            return self._pid_of(self._run(spec, name, volumes))
        except docker.errors.APIError as e:
            if e.status_code != 409:  # a leftover of that name (Conflict): remove it and start again
                raise BackendError(f"docker could not start node {spec.name}: {e.explanation or e}") from None
        self.remove_node(spec.lab, spec.name)
        try:
            return self._pid_of(self._run(spec, name, volumes))
        except docker.errors.APIError as e:
            raise BackendError(f"docker could not start node {spec.name}: {e.explanation or e}") from None

    def _run(self, spec: NodeSpec, name: str, volumes: dict) -> Container:
        # No look-up before the create: a lab's names are new on every 'up' (it refuses to
        # start over a running lab), so asking first was one more engine round trip per node.
        try:
            return self.client.containers.run(
                spec.image,
                name=name,
                hostname=spec.name,
                detach=True,
                init=True,
                network_mode="none",
                cap_add=spec.capabilities,
                devices=[f"{d}:{d}:rwm" for d in spec.devices],
                sysctls=spec.sysctls or None,
                environment=spec.env,
                volumes=volumes,
                labels={LABEL_LAB: spec.lab, LABEL_NODE: spec.name, LABEL_ROLE: spec.role},
                tmpfs={"/run": "rw,exec,mode=755", "/tmp": "rw,exec,mode=1777"},
                stop_signal="SIGKILL",
            )
        except docker.errors.ImageNotFound:
            raise BackendError(f"image {spec.image} is missing; build it with 'make images'") from None

    def _pid_of(self, c: Container) -> int:
        for _ in range(50):
            c.reload()
            pid = c.attrs["State"].get("Pid") or 0
            if pid:
                return pid
            if c.status in ("exited", "dead"):
                raise BackendError(f"node {c.name} exited at once: {c.logs(tail=20).decode(errors='replace')}")
            time.sleep(0.05)
        raise BackendError(f"node {c.name} did not start")

    def node_pid(self, lab: str, node: str) -> int | None:
        """Pid of the node's init while its container runs, else None."""
        c = self._get(lab, node)
        if c is None or c.status != "running":
            return None
        return c.attrs["State"].get("Pid") or None

    def exec(self, lab: str, node: str, cmd: list[str], detach: bool = False,
             env: dict[str, str] | None = None, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run ``cmd`` (argv) in the node; ``timeout`` in seconds kills it (exit 137), ``detach``
        returns at once with exit 0, ``stdin`` bytes are fed from a temporary file.
        Raises BackendError when the lab has no such node."""
        if timeout is not None:
            cmd = ["timeout", "-s", "KILL", str(timeout)] + cmd
        if stdin is not None:
            c = self._get(lab, node)
            if c is None:
                raise BackendError(f"lab {lab!r} has no node {node!r}; 'testbed status' lists what runs")
            return self._exec_stdin(c, cmd, env, stdin)
        # The engine API by container name, as Container.exec_run does it, minus the
        # container inspect that getting a Container object costs first.
        api = self.client.api
        try:
            ex = api.exec_create(container_name(lab, node), cmd, stdout=not detach, stderr=not detach,
                                 environment=env)
            if detach:
                api.exec_start(ex["Id"], detach=True)
                return ExecResult(0, "", "")
            out, err = api.exec_start(ex["Id"], demux=True) or (b"", b"")
            code = api.exec_inspect(ex["Id"]).get("ExitCode")
        except docker.errors.NotFound:
            raise BackendError(f"lab {lab!r} has no node {node!r}; 'testbed status' lists what runs") from None
        return ExecResult(code if code is not None else -1,
                          (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"))

    def _exec_stdin(self, c: Container, cmd: list[str], env: dict[str, str] | None, data: bytes) -> ExecResult:
        # The SDK's exec_run cannot feed stdin; write it to a file and redirect.
        path = f"/tmp/.stdin.{time.monotonic_ns()}"
        self._put(c, path, data, 0o600)
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in cmd)
        r = c.exec_run(["sh", "-c", f"{quoted} < {path}; rc=$?; rm -f {path}; exit $rc"], environment=env, demux=True)
        out, err = r.output if r.output else (b"", b"")
        return ExecResult(r.exit_code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace"))

    def _put(self, c: Container, path: str, content: bytes, mode: int) -> None:
        d, _, base = path.rpartition("/")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(base)
            info.size = len(content)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
        c.exec_run(["mkdir", "-p", d or "/"])
        if not c.put_archive(d or "/", buf.getvalue()):
            raise BackendError(f"could not write {path} in {c.name}")

    def put_file(self, lab: str, node: str, path: str, content: bytes, mode: int = 0o644) -> None:
        """Write ``content`` to absolute ``path`` in the node (parent folders made) with ``mode``.
        Raises BackendError for an unknown node or a refused write (e.g. a tmpfs mount point)."""
        c = self._get(lab, node)
        if c is None:
            raise BackendError(f"lab {lab!r} has no node {node!r}")
        self._put(c, path, content, mode)

    def logs(self, lab: str, node: str) -> str:
        """The container's console output as text; empty when the node does not exist."""
        c = self._get(lab, node)
        return c.logs().decode(errors="replace") if c is not None else ""

    def restart_node(self, lab: str, node: str) -> int:
        """Restart the container (1 s stop grace) and return the new init pid. Raises BackendError."""
        c = self._get(lab, node)
        if c is None:
            raise BackendError(f"lab {lab!r} has no node {node!r}")
        c.restart(timeout=1)
        return self._pid_of(c)

    def remove_node(self, lab: str, node: str) -> None:
        """Force-remove the node's container; nothing happens when it is already gone."""
        c = self._get(lab, node)
        if c is not None:
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass

    def _lab_containers(self, lab: str | None) -> list[dict]:
        # The low-level list returns labels without inspecting each container, so a
        # container removed meanwhile (e.g. by a concurrent 'down') cannot fail the listing.
        label = f"{LABEL_LAB}={lab}" if lab else LABEL_LAB
        return self.client.api.containers(all=True, filters={"label": label})

    def list_nodes(self, lab: str | None = None) -> dict[str, list[str]]:
        """``{lab: [node, ...]}`` of testbed-labelled containers, running or not; one lab when given."""
        out: dict[str, list[str]] = {}
        for c in self._lab_containers(lab):
            labels = c.get("Labels") or {}
            out.setdefault(labels[LABEL_LAB], []).append(labels.get(LABEL_NODE, c["Names"][0].lstrip("/")))
        return out

    def remove_lab(self, lab: str) -> list[str]:
        """Force-remove every container labelled with exactly this lab (8 at a time) and return
        the node names removed; other labs' containers are never touched."""
        # Only exactly this lab's label: another lab's containers never match.
        mine = [c for c in self._lab_containers(lab) if (c.get("Labels") or {}).get(LABEL_LAB) == lab]

        def remove(c: dict) -> str | None:
            try:
                self.client.api.remove_container(c["Id"], force=True)
                return (c.get("Labels") or {}).get(LABEL_NODE, c["Id"][:12])
            except docker.errors.NotFound:
                return None

        # The engine removes containers in parallel well; one at a time is most of 'down'.
        with ThreadPoolExecutor(max_workers=8) as pool:
            return [n for n in pool.map(remove, mine) if n]
