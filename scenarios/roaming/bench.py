"""Benchmark: Mobile IP registration latency via FA and via CCoA, handover and interruption.

`bench_roaming(say) -> dict` brings the roaming lab up once and repeats the round
home -> shared FA -> hotspot (CCoA) -> home REPEAT times, reporting medians. The baseline
is the bare round-trip time (ping) between the MN and its home agent over the same path:
a registration cannot be faster than one round trip plus the agents' processing.
"""
from __future__ import annotations

import importlib.util
import re
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from orchestration.lab import Lab

HERE = Path(__file__).resolve().parent
REPEAT = 5


def _steps():
    spec = importlib.util.spec_from_file_location("roaming_scenario_steps", HERE / "scenario.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rtt_ms(lab: Lab, dst: str) -> float | None:
    r = lab.exec("a", f"ping -c5 -i0.2 -W1 {dst}")
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def bench_roaming(say: Callable[[str], None] = print, repeat: int = REPEAT, lab_name: str = "benchmip") -> dict[str, Any]:
    s = _steps()
    lab = Lab.from_file(HERE / "topology.yaml", name=lab_name, workdir=f"/var/lib/testbed/bench-{lab_name}")
    samples: dict[str, list[float]] = {}
    lab.up(say=say)
    try:
        ctx = SimpleNamespace(lab=lab)
        if not s.wait(lambda: s.read(ctx, "a", s.MN_STATUS).get("mode") == "home", 20):
            raise RuntimeError("a never registered at home")
        lab.spawn("a", f"python3 -m testbed.mip.probe client --udp --interval 0.01 --dst 10.0.0.10 --port 5001 "
                  f"--bind 10.0.0.5 --out {s.PROBE_UDP}", log="probe-udp.log")
        if not s.wait(lambda: s.read(ctx, "a", s.PROBE_UDP).get("echoed", 0) > 50, 15):
            raise RuntimeError("UDP probe from a to h gets no echoes at home")
        rounds = [("fa", "visited", None, None),
                  ("ccoa", "hotspot", None, "ip addr add 192.0.2.50/24 dev eth0 && ip route replace default via 192.0.2.1 dev eth0"),
                  ("home", "home-a", "ip addr del 192.0.2.50/24 dev eth0", None)]
        for i in range(repeat):
            for mode, seg, before, after in rounds:
                if before:
                    lab.exec("a", before)
                t_move = time.time()
                lab.move("a:eth0", seg, flap=True)
                if after:
                    lab.exec("a", after)
                reg = s.wait(lambda: s.registered(ctx, "a", mode, t_move), 25)
                if reg is None:
                    raise RuntimeError(f"round {i + 1}: no {mode} registration")
                udp = s.wait(lambda: (p := s.read(ctx, "a", s.PROBE_UDP)) and (p.get("last_echo") or 0) > reg["time"] + 0.5 and p, 15)
                samples.setdefault(f"{mode}_registration_ms", []).append(reg["latency_ms"])
                samples.setdefault(f"{mode}_handover_ms", []).append(round((reg["time"] - t_move) * 1000, 1))
                if udp:
                    samples.setdefault(f"{mode}_interruption_ms", []).append(s.interruption_ms(udp, t_move))
                if mode in ("fa", "ccoa"):
                    rtt = _rtt_ms(lab, "198.51.100.11")
                    if rtt is not None:
                        samples.setdefault(f"{mode}_baseline_rtt_ms", []).append(rtt)
                say(f"round {i + 1}/{repeat} {mode}: registration {reg['latency_ms']} ms")
    finally:
        lab.down(say=say)
    out: dict[str, Any] = {"repeat": repeat}
    for k, v in samples.items():
        out[k] = round(statistics.median(v), 2)
    out["samples"] = samples
    return out


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(bench_roaming(lambda m: print(m, file=sys.stderr)), indent=1))
