"""Benchmarks, each against a baseline run side by side in the same run.

Results are ratios of medians over interleaved repetitions, so a slow moment of the
machine hits both sides alike. ``testbed bench`` runs them all and writes JSON.
A benchmark is a function ``(say) -> dict`` registered in ``BENCHMARKS``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from .images import ensure_images
from .lab import Lab
from .netns import NETNS_DIR
from .topology import parse_topology, wires

Say = Callable[[str], None]
REPEAT = 3


def twenty_nodes() -> dict[str, Any]:
    """4 M-VPNs (equal realms) x (SG + 3 hosts) and 4 routers in a ring: 20 nodes."""
    mv = "abcd"
    nodes: dict[str, Any] = {}
    for i, m in enumerate(mv):
        nodes[f"r{i}"] = {"role": "router", "links": [
            {"peer": f"r{(i + 1) % 4}", "address": f"198.51.100.{4 * i + 1}/30", "peer_address": f"198.51.100.{4 * i + 2}/30"}]}
        nodes[f"sg-{m}"] = {"role": "sg", "mvpn": m.upper(), "links": [
            {"segment": f"lan-{m}", "address": "10.0.0.1/24"},
            {"peer": f"r{i}", "address": f"192.0.2.{4 * i + 1}/30", "peer_address": f"192.0.2.{4 * i + 2}/30"}],
            "routes": [{"to": "default", "via": f"192.0.2.{4 * i + 2}"}]}
        for h in range(3):
            nodes[f"h{m}{h}"] = {"role": "host", "mvpn": m.upper(),
                                 "links": [{"segment": f"lan-{m}", "address": f"10.0.0.{10 + h}/24"}],
                                 "routes": [{"to": "default", "via": "10.0.0.1"}]}
    return {"name": "bench", "mvpns": {m.upper(): {"realm": "10.0.0.0/24"} for m in mv},
            "segments": {f"lan-{m}": {"mvpn": m.upper(), "subnet": "10.0.0.0/24"} for m in mv}, "nodes": nodes}


def baseline_script(topo_data: dict[str, Any], lab: str, image: str) -> tuple[str, str]:
    """The same lab by hand (orchestration/bench_bare.py), every node from ``image``.
    Returns (up, down) shell scripts."""
    from .bench_bare import bare_script

    bare = Lab.from_dict(topo_data, name=lab, workdir=f"/var/lib/testbed/bench-{lab}")
    bare.images = {n.role.value: image for n in bare.topology.nodes.values()}
    return bare_script(bare)


def _timed_bash(script: str) -> float:
    t = time.monotonic()
    # On stdin, not as an argument: a 200-node script is over the kernel's 128 KiB per argument.
    r = subprocess.run(["bash", "-s"], input=script, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"baseline script failed: {r.stderr[-1000:]}")
    return time.monotonic() - t


def bench_bringup(say: Say) -> dict[str, Any]:
    """Bring-up and tear-down of the 20-node lab (``twenty_nodes``): testbed's ``Lab.up``/``down``
    against the same lab by hand (``baseline_script``: plain ``docker run`` + ``ip``), REPEAT
    interleaved runs each.

    Returns a dict: ``nodes``, ``links``, ``repeat``; medians in seconds ``testbed_up_s``,
    ``testbed_down_s``, ``baseline_up_s``, ``baseline_down_s``; ``ratio_up``/``ratio_down``
    (testbed / baseline, 3 decimals; below 1 = testbed faster) and the raw ``samples`` (s).
    Raises AssertionError when the testbed lab's hd2 cannot ping its SG 10.0.0.1, and
    RuntimeError when the baseline script fails or its lab is not wired the same way.
    """
    data = twenty_nodes()
    image = ensure_images({"sg", "router", "host"}, say)["host"]
    ours_up, ours_down, base_up, base_down = [], [], [], []
    for i in range(REPEAT):
        say(f"bringup run {i + 1}/{REPEAT}: testbed")
        lab = Lab.from_dict(data, name="benchtb", workdir=f"/var/lib/testbed/bench-{i}")
        t = time.monotonic()
        lab.up(build_images=False)
        ours_up.append(time.monotonic() - t)
        assert lab.exec("hd2", "ping -c1 -W1 10.0.0.1").ok, "testbed lab is not wired"
        t = time.monotonic()
        lab.down()
        ours_down.append(time.monotonic() - t)
        say(f"bringup run {i + 1}/{REPEAT}: plain docker run + ip")
        up, down = baseline_script(data, "benchbl", image)
        base_up.append(_timed_bash(up))
        ok = subprocess.run(["docker", "exec", "benchbl.hd2", "ping", "-c1", "-W1", "10.0.0.1"], capture_output=True).returncode == 0
        base_down.append(_timed_bash(down))
        if not ok:
            raise RuntimeError("baseline lab is not wired")
    med = statistics.median
    return {
        "nodes": len(data["nodes"]), "links": len(wires(parse_topology(data))), "repeat": REPEAT,
        "testbed_up_s": round(med(ours_up), 3), "testbed_down_s": round(med(ours_down), 3),
        "baseline_up_s": round(med(base_up), 3), "baseline_down_s": round(med(base_down), 3),
        "ratio_up": round(med(ours_up) / med(base_up), 3), "ratio_down": round(med(ours_down) / med(base_down), 3),
        "samples": {"testbed_up_s": ours_up, "baseline_up_s": base_up},
    }


def bench_portal(say: Say) -> dict[str, Any]:
    """The MSM portal over mutual TLS vs plain HTTP, loopback only (testbed/msm/bench.py, issue 9)."""
    from testbed.msm.bench import run

    return run(say=say)


def _cleanup_baseline() -> None:
    subprocess.run("docker rm -f $(docker ps -aq --filter label=testbed.lab=benchbl) >/dev/null 2>&1", shell=True)
    if (NETNS_DIR / "benchbl.switch").exists():
        subprocess.run(["ip", "netns", "del", "benchbl.switch"])


def bench_diameter(say: Say) -> dict[str, Any]:
    """AA round trip and AA/s of 10 clients against a TCP echo of the same bytes (no Docker)."""
    import asyncio

    from testbed.diameter.bench import run

    return asyncio.run(run(rounds=2, n=100, duration_s=1.0, say=say) if quick() else run(say=say))


def bench_tunnel(say: Say) -> dict[str, Any]:
    """IP-IP data planes against plain routing and IPsec alone (orchestration/bench_tunnel.py)."""
    from .bench_tunnel import bench_tunnel as run

    return run(say, seconds=2, repeat=2) if quick() else run(say)


BENCHMARKS: dict[str, Callable[[Say], dict[str, Any]]] = {"bringup": bench_bringup,
                                                         "diameter": bench_diameter,
                                                         "tunnel": bench_tunnel,
                                                         "scale": lambda say: __import__("orchestration.bench_scale", fromlist=["bench_scale"]).bench_scale(say)}


def _scenario_benchmarks() -> dict[str, Callable[[Say], dict[str, Any]]]:
    """Each ``scenarios/<name>/bench.py`` with a ``bench(say) -> dict`` (or ``bench_<name>``) is a benchmark named
    after its scenario, so a scenario brings its own measurement without touching this file."""
    from .scenario import SCENARIOS_DIR, load_module

    found: dict[str, Callable[[Say], dict[str, Any]]] = {}
    for path in sorted(SCENARIOS_DIR.glob("*/bench.py")):
        mod = load_module(path)
        fn = getattr(mod, "bench", None) or getattr(mod, f"bench_{path.parent.name.replace('-', '_')}", None)
        if callable(fn):
            found[path.parent.name] = fn
    return found


#: What ``testbed bench`` (``make bench``) runs without ``--only``/``--all``: issue 14's four
#: sections (``roaming`` fills ``moves``), about 40 minutes on a 2-core machine. The others
#: (bring-up of a 20-node lab, portal, the scenarios' own benches) run with ``--all`` or ``--only``.
DEFAULT = ("diameter", "tunnel", "roaming", "scale")


def quick() -> bool:
    """``TESTBED_BENCH_QUICK=1``: every section with its fewest runs, to see that it works.
    Its numbers are no result (fewer than 5 runs per median)."""
    return bool(os.environ.get("TESTBED_BENCH_QUICK"))


def chosen(names: list[str], only: str | None = None, run_all: bool = False) -> list[str]:
    """The benchmarks to run: ``only`` (a comma-separated list), all of them, or
    :data:`DEFAULT`; ``scale`` always last (the longest: a run cut short keeps the rest).
    Raises ValueError naming an unknown benchmark."""
    if only:
        want = [w.strip() for w in only.split(",") if w.strip()]
        bad = [w for w in want if w not in names]
        if bad:
            raise ValueError(f"no benchmark {', '.join(map(repr, bad))}; benchmarks: {', '.join(names)}")
        out = [n for n in names if n in want]
    else:
        out = list(names) if run_all else [n for n in DEFAULT if n in names]
    return sorted(out, key=lambda n: n == "scale")


def run_benchmarks(only: str | None = None, output: Path = Path("results/bench.json"),
                   say: Say = print, run_all: bool = False) -> dict[str, Any]:
    """Run the chosen benchmarks (:func:`chosen`), merging each section into ``output`` as
    soon as it is done (sections of earlier runs stay). ``run`` records this run: start
    time, quick or not, and each benchmark's duration in seconds."""
    benchmarks = {**BENCHMARKS, **_scenario_benchmarks()}
    names = chosen(list(benchmarks), only, run_all)
    results: dict[str, Any] = json.loads(output.read_text()) if output.is_file() else {}
    results["run"] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": quick(),
                      "benchmarks": names, "duration_s": {}}
    failed: dict[str, str] = {}
    for name in names:
        fn = benchmarks[name]
        t0 = time.monotonic()
        try:
            res = fn(say)
            # a benchmark may fill further top-level sections (e.g. roaming -> moves); each
            # section says which run measured it, so one kept from an earlier run shows as such
            extra = res.pop("sections", {}) if isinstance(res, dict) else {}
            for sec in [res, *extra.values()]:
                if isinstance(sec, dict):
                    sec["run"] = results["run"]["started"]
            results.update(extra)
            results[name] = res
        except Exception as e:  # one section failing keeps the others of a 40-minute run
            failed[name] = f"{type(e).__name__}: {e}"
            results[name] = {"error": failed[name], "run": results["run"]["started"]}
            say(f"bench {name} FAILED: {failed[name]}")
        finally:
            _cleanup_baseline()
            from .cleanup import clean_lab
            from .lab import default_backend

            clean_lab("benchtb", default_backend())
            results["run"]["duration_s"][name] = round(time.monotonic() - t0, 1)
            say(f"bench {name}: {results['run']['duration_s'][name]} s")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2))
    if failed:
        raise BenchError(f"benchmarks failed: {'; '.join(f'{k}: {v}' for k, v in failed.items())} "
                         f"(the others are in {output})")
    return results


class BenchError(ValueError):
    """One or more benchmarks of a run failed; the message names each with its error."""


BENCHMARKS["portal"] = bench_portal  # registered apart from the dict line, which other benches extend
