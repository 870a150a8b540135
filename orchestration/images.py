"""Node images: a base (from a registry, or from debootstrap where none is reachable) and
role images built ``FROM`` it.

Each image's tag is a hash of its inputs (the files of its folder under ``images/`` and
the tag of what it is built from), so an image is rebuilt exactly when its inputs change
and a second run finds everything done. Agent code is not part of any image: it is
bind-mounted from the working tree.
"""
from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

import docker
import docker.errors

from .backend import BackendError, repo_root

IMAGES_DIR = repo_root() / "images"
REGISTRY_BASE = "debian:bookworm-slim"

Say = Callable[[str], None]


def _digest(folder: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def base_tag() -> str:
    """Tag of the base image: ``testbed-base:<12 hex digits of the hash of images/base>``."""
    return f"testbed-base:{_digest(IMAGES_DIR / 'base')}"


def role_dir(role: str) -> Path:
    """The image folder of a role: ``images/<role>`` when it has a Dockerfile, else ``images/node``."""
    d = IMAGES_DIR / role
    return d if (d / "Dockerfile").is_file() else IMAGES_DIR / "node"


# Sources compiled inside a role image's build (multi-stage), added to its context as bpf/.
BPF_SOURCES = repo_root() / "testbed" / "tunnel" / "bpf"


def role_tag(role: str) -> str:
    """Tag of a role's image: its folder's hash over the base tag and the BPF sources it compiles."""
    d = role_dir(role)
    return f"testbed-{d.name}:{_digest(d, base_tag() + _digest(BPF_SOURCES))}"


def _context(folder: Path) -> io.BytesIO:
    """The build context: the role folder plus the BPF sources under bpf/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(folder).as_posix())
        for p in sorted(BPF_SOURCES.glob("*.c")):
            tar.add(p, arcname=f"bpf/{p.name}")
    buf.seek(0)
    return buf


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _prune(client: docker.DockerClient, keep: str) -> None:
    """Remove older builds of the same image (other input hashes) so stale images do not pile up.
    An image still used by a container is left alone (the engine refuses, and that is fine)."""
    repo = keep.split(":")[0]
    for img in client.images.list(name=repo):
        if keep not in img.tags:
            try:
                client.images.remove(img.id, noprune=False)
            except docker.errors.APIError:
                pass


def ensure_base(client: docker.DockerClient, say: Say = print) -> str:
    """The base image's tag, built first if missing: from the registry's Debian image where one
    answers, else by debootstrap + docker import (about a minute); older base images pruned.

    Raises BackendError with the build's last output when both ways fail."""
    tag = base_tag()
    if _exists(client, tag):
        return tag
    say(f"building base image {tag} (once; about a minute)")
    try:
        client.images.pull(REGISTRY_BASE)
        say(f"  from registry image {REGISTRY_BASE}")
        client.images.build(path=str(IMAGES_DIR / "base"), dockerfile="Dockerfile.registry", tag=tag, rm=True)
        _prune(client, tag)
        return tag
    except docker.errors.APIError:
        say("  no registry reachable: debootstrap + docker import")
    except docker.errors.BuildError as e:
        raise BackendError(f"building {tag} from {REGISTRY_BASE} failed: {e}") from None
    r = subprocess.run([str(IMAGES_DIR / "base" / "debootstrap.sh"), tag], capture_output=True, text=True)
    if r.returncode != 0:
        raise BackendError(f"debootstrap build of {tag} failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    _prune(client, tag)
    return tag


def ensure_role(client: docker.DockerClient, role: str, say: Say = print) -> str:
    """A role's image tag, built from its folder ``FROM`` the base (made first if needed) when
    missing; the build compiles the tc-BPF IP-IP object from source. Raises BackendError."""
    tag = role_tag(role)
    if _exists(client, tag):
        return tag
    base = ensure_base(client, say)
    d = role_dir(role)
    say(f"building image {tag} from {d.relative_to(repo_root())}")
    try:
        # network: the `bpf` stage installs clang from the Debian mirror; nodes get none.
        client.images.build(fileobj=_context(d), custom_context=True, tag=tag, buildargs={"BASE": base},
                            rm=True, forcerm=True, labels={"testbed.image": d.name})
    except docker.errors.BuildError as e:
        log = "".join(str(x.get("stream", "")) for x in e.build_log)[-2000:]
        raise BackendError(f"building {tag} failed: {e}\n{log}") from None
    _prune(client, tag)
    return tag


def ensure_images(roles: set[str], say: Say = print) -> dict[str, str]:
    """Role -> image tag, building what is missing."""
    client = docker.from_env(timeout=600)
    return {role: ensure_role(client, role, say) for role in sorted(roles)}


# --- stock strongSwan peer images (issue 12): one per Debian suite -------------------------

PEER_DIR = IMAGES_DIR / "peer"
PEER_SUITES = ("bookworm", "trixie", "bullseye")


def peer_tag(suite: str) -> str:
    """``testbed-peer-<suite>:<hash of images/peer and the suite>``; raises ValueError for an
    unknown suite (the matrix knows only PEER_SUITES)."""
    if suite not in PEER_SUITES:
        raise ValueError(f"unknown peer suite {suite!r}: choose one of {', '.join(PEER_SUITES)}")
    return f"testbed-peer-{suite}:{_digest(PEER_DIR, suite)}"


def host_mirror() -> str:
    """The Debian mirror the host's own apt uses (TESTBED_DEBIAN_MIRROR overrides); raises
    BackendError naming the fix when none is found."""
    import os
    import re
    if os.environ.get("TESTBED_DEBIAN_MIRROR"):
        return os.environ["TESTBED_DEBIAN_MIRROR"]
    texts = [p.read_text(errors="replace") for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for t in texts:
        m = re.search(r"^URIs:\s*(\S+)", t, re.M)
        if m:
            return m.group(1)
    lst = Path("/etc/apt/sources.list")
    if lst.is_file():
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?([a-z]+://\S+)", lst.read_text(errors="replace"), re.M)
        if m:
            return m.group(1)
    raise BackendError("no Debian mirror in /etc/apt/sources.list(.d): set TESTBED_DEBIAN_MIRROR")


def _packages(folder: Path) -> list[str]:
    return [ln.strip() for ln in (folder / "packages.txt").read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def _debootstrap_import(suite: str, packages: list[str], tag: str) -> None:
    """debootstrap --variant=minbase SUITE with PACKAGES into a scratch folder, then
    ``docker import`` it as TAG. Raises BackendError with the tail of debootstrap's log."""
    import shutil
    import tempfile
    root = Path(tempfile.mkdtemp(prefix=f"testbed-peer-{suite}.", dir="/var/tmp"))
    try:
        r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                            suite, str(root), host_mirror()], capture_output=True, text=True)
        if r.returncode != 0:
            log = (root / "debootstrap" / "debootstrap.log")
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise BackendError(f"debootstrap {suite} failed:\n{r.stderr[-2000:]}{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
        (root / "var/run/charon.pid").unlink(missing_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(["docker", "import", "--change", 'CMD ["sleep", "infinity"]', "-", tag],
                             stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise BackendError(f"docker import of {tag} failed: {imp.stderr[-1000:]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ensure_peer(suite: str, say: Say = print, client: docker.DockerClient | None = None) -> str:
    """The tag of the stock strongSwan peer image for Debian SUITE, building it when missing:
    from the registry's ``debian:<suite>-slim`` where one answers, else debootstrap + import
    (about a minute per suite). Raises BackendError when neither works (issue 12)."""
    client = client or docker.from_env(timeout=900)
    tag = peer_tag(suite)
    if _exists(client, tag):
        return tag
    say(f"building peer image {tag} (once)")
    try:
        client.images.pull(f"debian:{suite}-slim")
        client.images.build(path=str(PEER_DIR), dockerfile="Dockerfile.registry", tag=tag, rm=True,
                            buildargs={"SUITE": suite}, labels={"testbed.image": f"peer-{suite}"})
    except docker.errors.APIError:
        say(f"  no registry reachable: debootstrap {suite} + docker import")
        _debootstrap_import(suite, _packages(PEER_DIR), tag)
    except docker.errors.BuildError as e:
        raise BackendError(f"building {tag} from debian:{suite}-slim failed: {e}") from None
    _prune(client, tag)
    return tag


def ensure_peers(suites: tuple[str, ...] = PEER_SUITES, say: Say = print) -> dict[str, str]:
    """Suite -> peer image tag, building what is missing (one after another: debootstrap is
    disk- and network-bound and the machine is shared)."""
    client = docker.from_env(timeout=900)
    return {s: ensure_peer(s, say, client) for s in suites}
