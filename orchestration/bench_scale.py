"""The ``scale`` benchmark (issue 14 part 4): up time, down time and memory per node of
labs of 20, 50, 100 and 200 nodes, each against a bare ``docker run`` + veth script of
the same lab in the same run.

The lab is N M-VPNs x M mobile nodes, the shape of ``orchestration.domain.generate``
(every M-VPN has the same realm and its own SG; the SGs share the Internet segment), written
here in the low-level topology format because the domain compiler is not on this branch.
Every node runs a light agent (``testbed.mip.probe server``, a TCP/UDP echo) so memory per
node counts a resident Python agent, not an idle shell. The bare script starts the same
agent with ``docker exec -d``.

Knobs (environment): ``TESTBED_SCALE_SIZES`` ("20,50,100,200"), ``TESTBED_BENCH_QUICK=1``
(20 and 50 only), ``TESTBED_SCALE_REPEAT`` (repetitions per size; default 3, 1 above 100
nodes; ``TESTBED_SCALE_REPEAT_<n>`` for one size), ``TESTBED_SCALE_LOCK`` (a lock file taken per size and released between sizes, for
a shared machine; unset when the caller already holds the heavy-run lock),
``TESTBED_SCALE_PROFILE`` (a folder for cProfile stats of each testbed up and down).
"""
from __future__ import annotations

import fcntl
import os
import statistics
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .backend import BackendError, repo_root
from .bench import _timed_bash, baseline_script
from .lab import Lab, LabError, default_backend
from .netns import NETNS_DIR
from .topology import parse_topology, wires

Say = Callable[[str], None]
AGENT = "python3 -m testbed.mip.probe server --port 5001"
# (M-VPNs, mobile nodes per M-VPN): nodes = N * (1 SG + M MNs).
SHAPES = {20: (4, 4), 50: (5, 9), 100: (10, 9), 200: (10, 19)}
TB_LAB, BL_LAB = "scaletb", "scalebl"
SETTLE_S = 3.0  # agents start detached; let them reach their resident size before reading memory
MIB = 1 << 20


def scale_topology(mvpns: int, mns: int) -> dict[str, Any]:
    """Low-level topology of ``mvpns`` M-VPNs (realm 10.0.0.0/24 each, claim 1) x ``mns``
    mobile nodes; SG i at 198.51.100.i on segment ``inet`` (claim 3). Nodes: mvpns*(mns+1)."""
    if not 1 <= mvpns <= 250 or not 0 <= mns <= 250:
        raise ValueError(f"{mvpns} M-VPNs x {mns} MNs do not fit the address plan (at most 250 each)")
    nodes: dict[str, Any] = {}
    segments: dict[str, Any] = {"inet": {"subnet": "198.51.100.0/24"}}
    for i in range(1, mvpns + 1):
        m = f"m{i}"
        segments[f"lan-{m}"] = {"mvpn": m.upper(), "subnet": "10.0.0.0/24"}
        nodes[f"sg{i}"] = {"role": "sg", "mvpn": m.upper(), "start": [AGENT], "links": [
            {"segment": f"lan-{m}", "address": "10.0.0.1/24"},
            {"segment": "inet", "address": f"198.51.100.{i}/24"}]}
        for j in range(1, mns + 1):
            nodes[f"{m}n{j}"] = {"role": "mn", "mvpn": m.upper(), "start": [AGENT],
                                 "links": [{"segment": f"lan-{m}", "address": f"10.0.0.{j + 1}/24"}],
                                 "routes": [{"to": "default", "via": "10.0.0.1"}]}
    return {"name": "scale", "mvpns": {f"M{i}": {"realm": "10.0.0.0/24"} for i in range(1, mvpns + 1)},
            "segments": segments, "nodes": nodes}


def _sizes() -> list[int]:
    if os.environ.get("TESTBED_BENCH_QUICK"):
        return [20, 50]
    raw = os.environ.get("TESTBED_SCALE_SIZES", "20,50,100,200")
    sizes = [int(s) for s in raw.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SHAPES]
    if bad:
        raise ValueError(f"TESTBED_SCALE_SIZES: no shape for {bad}; choose from {sorted(SHAPES)}")
    return sizes


@contextmanager
def _heavy_lock() -> Iterator[None]:
    path = os.environ.get("TESTBED_SCALE_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def container_memory(lab: str) -> list[int]:
    """Bytes in use per container of ``lab`` as ``docker stats`` counts them: the cgroup's
    usage minus its inactive page cache (cgroup v1 ``memory.usage_in_bytes`` and
    ``memory.stat: total_inactive_file``). One entry per running container."""
    ids = subprocess.run(["docker", "ps", "-q", "--no-trunc", "--filter", f"label=testbed.lab={lab}"],
                         capture_output=True, text=True, check=True).stdout.split()
    out = []
    for cid in ids:
        d = Path("/sys/fs/cgroup/memory/docker") / cid
        if not d.is_dir():  # cgroup v2 layout
            d = Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope")
        try:
            usage_f = d / "memory.usage_in_bytes"
            usage = int((usage_f if usage_f.exists() else d / "memory.current").read_text())
            stat = dict(l.split() for l in (d / "memory.stat").read_text().splitlines())
            inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
        except (OSError, ValueError):
            continue
        out.append(usage - inactive)
    return out


def _agents_running(lab: str, names: list[str]) -> int:
    """How many of the lab's containers have the agent process (counted, not assumed)."""
    n = 0
    for name in names:
        # Plain 'docker top' (its CMD column): with '-o args' the engine refuses ("Couldn't find
        # PID field") and every node counted as agent-less.
        r = subprocess.run(["docker", "top", f"{lab}.{name}"], capture_output=True, text=True)
        n += "testbed.mip.probe" in r.stdout
    return n


def _profiled(tag: str, fn: Callable[[], object]) -> None:
    """Run ``fn``; with ``TESTBED_SCALE_PROFILE=DIR`` under cProfile, stats in DIR/<tag>.pstats
    (the evidence for what grows faster than linear; read with ``python3 -m pstats``)."""
    out = os.environ.get("TESTBED_SCALE_PROFILE")
    if not out:
        fn()
        return
    import cProfile

    prof = cProfile.Profile()
    prof.runcall(fn)
    Path(out).mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(Path(out) / f"{tag}.pstats"))


def _clean(say: Say) -> None:
    from .cleanup import clean_lab

    clean_lab(TB_LAB, default_backend())
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=testbed.lab={BL_LAB}"],
                         capture_output=True, text=True).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
    if (NETNS_DIR / f"{BL_LAB}.switch").exists():
        subprocess.run(["ip", "netns", "del", f"{BL_LAB}.switch"])


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _one_size(n: int, repeat: int, image: str, say: Say) -> dict[str, Any]:
    data = scale_topology(*SHAPES[n])
    names = list(data["nodes"])
    probe = names[-1]  # the last MN reaches its SG over the segment: the lab is wired
    tb_up, tb_down, bl_up, bl_down, tb_mem, bl_mem, phases = [], [], [], [], [], [], []
    agents = {"testbed": 0, "baseline": 0}
    for i in range(repeat):
        say(f"scale {n} nodes run {i + 1}/{repeat}: testbed")
        lab = Lab.from_dict(data, name=TB_LAB, workdir=f"/var/lib/testbed/{TB_LAB}")
        t = time.monotonic()
        _profiled(f"up-{n}-{i}", lambda: lab.up(build_images=False))
        tb_up.append(time.monotonic() - t)
        phases.append({k: round(v, 3) for k, v in lab.timings.items()})
        if not lab.exec(probe, "ping -c1 -W2 10.0.0.1").ok:
            raise RuntimeError(f"testbed lab of {n} nodes is not wired ({probe} cannot reach its SG)")
        time.sleep(SETTLE_S)
        tb_mem.append(statistics.mean(container_memory(TB_LAB)))
        agents["testbed"] = _agents_running(TB_LAB, names)
        t = time.monotonic()
        _profiled(f"down-{n}-{i}", lab.down)
        tb_down.append(time.monotonic() - t)

        say(f"scale {n} nodes run {i + 1}/{repeat}: bare docker run + veth")
        up, down = baseline_script(data, BL_LAB, image)
        # The agent's code is bind-mounted into nodes as the lab does; the image has none.
        up = up.replace(f"--label testbed.lab={BL_LAB}",
                        f"-v {repo_root() / 'testbed'}:/opt/testbed/testbed:ro --label testbed.lab={BL_LAB}")
        up += "".join(f"docker exec -d {BL_LAB}.{name} sh -c 'exec {AGENT} >/dev/null 2>&1' &\n" for name in names)
        up += "wait\n"
        bl_up.append(_timed_bash(up))
        ok = subprocess.run(["docker", "exec", f"{BL_LAB}.{probe}", "ping", "-c1", "-W2", "10.0.0.1"],
                            capture_output=True).returncode == 0
        time.sleep(SETTLE_S)
        bl_mem.append(statistics.mean(container_memory(BL_LAB)))
        agents["baseline"] = _agents_running(BL_LAB, names)
        bl_down.append(_timed_bash(down))
        if not ok:
            raise RuntimeError(f"baseline lab of {n} nodes is not wired")
    med = statistics.median
    return {
        "nodes": n, "mvpns": SHAPES[n][0], "mns_per_mvpn": SHAPES[n][1],
        "links": len(wires(parse_topology(data))), "repeat": repeat, "agents_running": agents,
        "testbed_up_s": round(med(tb_up), 3), "baseline_up_s": round(med(bl_up), 3),
        "testbed_down_s": round(med(tb_down), 3), "baseline_down_s": round(med(bl_down), 3),
        "ratio_up": round(med(tb_up) / med(bl_up), 3), "ratio_down": round(med(tb_down) / med(bl_down), 3),
        "testbed_mem_per_node_mib": round(med(tb_mem) / MIB, 1),
        "baseline_mem_per_node_mib": round(med(bl_mem) / MIB, 1),
        "testbed_phases_s": phases,
        "samples": {"testbed_up_s": [round(x, 3) for x in tb_up], "baseline_up_s": [round(x, 3) for x in bl_up],
                    "testbed_down_s": [round(x, 3) for x in tb_down], "baseline_down_s": [round(x, 3) for x in bl_down]},
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Up/down time and memory per node against nodes, testbed and bare docker, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["nodes"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (("testbed_up_s", "testbed up", "o-"), ("baseline_up_s", "bare docker up", "o--"),
                              ("testbed_down_s", "testbed down", "s-"), ("baseline_down_s", "bare docker down", "s--")):
        ax_t.plot(xs, [r[key] for r in rows], style, label=label)
    ax_t.axhline(30, color="grey", lw=0.8, ls=":", label="aim: 100 nodes up <= 30 s")
    ax_t.set(xlabel="nodes", ylabel="seconds (median)", title="bring-up and tear-down")
    ax_t.legend(fontsize=8)
    for key, label, style in (("testbed_mem_per_node_mib", "testbed", "o-"),
                              ("baseline_mem_per_node_mib", "bare docker", "o--")):
        ax_m.plot(xs, [r[key] for r in rows], style, label=label)
    ax_m.set(xlabel="nodes", ylabel="MiB per node (container + agent)", title="memory per node")
    ax_m.set_ylim(bottom=0)
    ax_m.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_scale(say: Say, plot_path: Path = Path("results/scale.png")) -> dict[str, Any]:
    """Run every size; returns ``{"sizes": [...], "skipped": {...}, "plot": path}``."""
    from .images import ensure_images

    image = ensure_images({"sg", "mn"}, say)["mn"]
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for n in _sizes():
        repeat = int(os.environ.get(f"TESTBED_SCALE_REPEAT_{n}", os.environ.get("TESTBED_SCALE_REPEAT", 3 if n <= 100 else 1)))
        if rows:
            # Both labs of one run are never up at once; need the largest per-node figure so far
            # times n, plus 2 GiB for everyone else on the machine.
            per_node = max(max(r["testbed_mem_per_node_mib"], r["baseline_mem_per_node_mib"]) for r in rows) * MIB
            need, have = int(per_node * n * 1.5) + (2 << 30), _mem_available()
            if have < need:
                skipped[str(n)] = f"needs ~{need >> 20} MiB, {have >> 20} MiB available"
                say(f"scale: skipping {n} nodes: {skipped[str(n)]}")
                continue
        with _heavy_lock():
            try:
                rows.append(_one_size(n, repeat, image, say))
            except (RuntimeError, OSError, LabError, BackendError) as e:
                # One size failing (e.g. the engine refusing) keeps the sizes measured so far.
                failed[str(n)] = f"{type(e).__name__}: {e}"
                say(f"scale: {n} nodes failed: {failed[str(n)]}")
                continue
            finally:
                _clean(say)
        r = rows[-1]
        say(f"scale {n}: up {r['testbed_up_s']} s vs {r['baseline_up_s']} s ({r['ratio_up']}x), "
            f"down {r['testbed_down_s']} s vs {r['baseline_down_s']} s ({r['ratio_down']}x), "
            f"{r['testbed_mem_per_node_mib']} MiB/node vs {r['baseline_mem_per_node_mib']}")
    if rows:
        plot(rows, plot_path)
    return {"sizes": rows, "skipped": skipped, "failed": failed, "plot": str(plot_path) if rows else None,
            "aims": {"up_100_s": 30, "ratio_up_100": 1.2}}
