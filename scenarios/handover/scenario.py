"""Handover: the MN streams UDP at 100/s to h behind the far end m1 (and h to the MN) and
moves twice (cell-m4 -> cell-m3 -> cell-m2, lab.move with carrier flap). The same lab runs three
variants one after another (extension; plain AODV with carrier detection; plain AODV with
hello-loss detection only) and the checks compare them per move (description.md).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import orchestration.aodv_variants as lib

RATE = 100.0
PORT = 5005
HOST = "198.51.100.10"
# The handover signalling the in-flight bound allows, fixed (not the run's own measurement, so
# slower signalling does not widen its own allowance): measured 16-45 ms per handover on the
# chain, 100 ms is about twice the worst.
SIGNAL_BUDGET_S = 0.1


MN_PORT = "mn:eth0"  # the MN's interface in its sink's radio cell (topology.yaml's mesh)


@dataclass(frozen=True)
class Layout:
    """Where the MN moves: MSRs with their AODV address (as topology.yaml's mesh derives
    them), the MN's first sink, and the moves (radio cell segment, seconds after the streams
    start); ``seconds`` is the stream's length. Interfaces and prefixes come from the lab."""

    msrs: tuple[str, ...]
    addr: dict[str, str]
    first_sink: str
    start_segment: str
    moves: tuple[tuple[str, float], ...]
    seconds: float

    @property
    def nodes(self) -> list[str]:
        return list(self.msrs) + ["mn"]


def degree(cfg: dict) -> int:
    """Neighbours an MSR hears: one per backbone interface (its radio cell is the MN's)."""
    return len([i for i in cfg["interfaces"] if i != "cell"])


CHAIN = Layout(msrs=("m1", "m2", "m3", "m4"),
               addr={"m1": "10.20.0.1", "m2": "10.20.0.2", "m3": "10.20.0.3", "m4": "10.20.0.4", "mn": "10.20.1.5"},
               first_sink="m4", start_segment="cell-m4",
               moves=(("cell-m3", 2.5), ("cell-m2", 6.0)), seconds=9.5)
MSRS, NODES, ADDR = list(CHAIN.msrs), CHAIN.nodes, CHAIN.addr
MOVES, SECONDS = list(CHAIN.moves), CHAIN.seconds
# the extension; plain AODV with the same link-layer (carrier) detection; plain AODV that
# learns of a lost neighbour only from missed hellos (RFC 3561 6.9, the classic baseline)
VARIANTS = {"ext": {"handover": True, "lld": True},
            "plain": {"handover": False, "lld": True},
            "hello": {"handover": False, "lld": False}}


def configs(lab, handover: bool, lld: bool = True, layout: Layout = CHAIN) -> dict[str, dict]:
    """topology.yaml's configs (the gateway m1 announces h's 198.51.100.0/24, the MN manages
    it too) with the extension and carrier detection switched as the variant says."""
    return lib.lab_configs(lab, layout.nodes, handover={"enabled": handover}, link_layer_detection=lld)


def phase(lab, tag: str, say, layout: Layout = CHAIN, streams: tuple[str, ...] = ("up", "down"),
          variant: str | None = None) -> dict:
    """One run of the streams (``up`` MN -> h, ``down`` h -> MN) with the layout's moves; the
    MN starts on the first sink's segment. ``variant`` (a VARIANTS key, default ``tag``) sets
    the agents' config. Returns per direction and move: sent, lost, interruption_ms,
    in_flight_bound."""
    v = VARIANTS[variant or tag]
    cfgs = configs(lab, v["handover"], v["lld"], layout)
    lib.start_agents(lab, cfgs, tag)
    if not lib.agents_ready(lab, layout.nodes):
        raise RuntimeError(f"{tag}: agents did not write their status")
    msrs = list(layout.msrs)
    lib.wait(lambda: all(len(s.get("neighbours", [])) >= degree(cfgs[m]) for m, s in lib.statuses(lab, msrs).items()),
             15, 0.5)
    sink = layout.addr[layout.first_sink]
    if v["handover"]:
        lib.wait(lambda: (lib.status(lab, "mn").get("handover") or {}).get("sink") == sink, 10, 0.3)
    else:
        lib.wait(lambda: sink in str(lib.status(lab, "mn").get("neighbours")), 10, 0.3)
    mn_addr = layout.addr["mn"]
    if "down" in streams and "up" not in streams:
        # downlink only: h's first datagrams need a route to the MN; one ping from the MN
        # makes it (as a session's set-up would), then the MN sends nothing more
        lab.exec("mn", f"ping -c1 -W2 {HOST}")
    run_s = {"up": layout.seconds, "down": layout.seconds - 0.5}
    if "up" in streams:
        lib.start_stream(lab, "mn", "h", HOST, PORT, RATE, run_s["up"], tag)
    t_start = time.time()
    if "down" in streams:
        lib.start_stream(lab, "h", "mn", mn_addr, PORT + 1, RATE, run_s["down"], tag + "-down")
    moves = []
    for seg, at in layout.moves:
        time.sleep(max(0.0, t_start + at - time.time()))
        t = time.time()
        took = lab.move(MN_PORT, seg, flap=True)
        moves.append({"to": seg, "at": t, "move_s": took})
    res = {}
    if "up" in streams:
        res["up"] = lib.stream_result(lab, "mn", "h", tag, timeout=layout.seconds + 20)
    if "down" in streams:
        res["down"] = lib.stream_result(lab, "h", "mn", tag + "-down", timeout=layout.seconds + 20)
    mn_st = lib.status(lab, "mn")
    st = lib.statuses(lab, msrs)
    lib.stop_agents(lab, layout.nodes)
    done = [e for e in mn_st.get("events", []) if e.get("kind") == "handover_done"]
    pre = {d: lib.window(sn, rc, sn["t0"], moves[0]["at"] - 0.05) for d, (sn, rc) in res.items()}
    per = []
    for i, mv in enumerate(moves):
        end = moves[i + 1]["at"] - 0.05 if i + 1 < len(moves) else t_start + layout.seconds
        # the MN's handover of this move, from sink loss to the old sink's ACK (a metric)
        sig = [e for e in done if mv["at"] - 0.5 < e.get("t", e.get("time", 0)) < end]
        sig_ms = float(sig[0]["ms"]) if sig and sig[0].get("ms") is not None else 0.0
        m = {"to": mv["to"], "move_ms": round(mv["move_s"] * 1000, 1), "signalling_ms": sig_ms}
        for d, (sn, rc) in res.items():
            w = lib.window(sn, rc, mv["at"] - 0.05, end)
            # the bound: datagrams sent while the MN's port was off its old segment (lab.move's
            # carrier-down time, the harness's, not the extension's), plus a fixed signalling
            # budget (SIGNAL_BUDGET_S), plus those already on their way over the old path
            # (one-way delay before the move), plus one being serialised
            delay = max((r[2] - r[1] for r in rc if mv["at"] - 1.0 < r[1] < mv["at"]), default=0.0)
            w["in_flight_bound"] = math.ceil(RATE * (mv["move_s"] + SIGNAL_BUDGET_S + delay)) + 1
            m[d] = w
        per.append(m)
    say(f"{tag}: before moves {pre}; per move {per}; handovers {[(e.get('new_sink'), e.get('ms')) for e in done]}")
    return {"pre": pre, "moves": per, "done": done, "mn": mn_st, "msrs": st}


def run_comparison(lab, say, variants=tuple(VARIANTS), layout: Layout = CHAIN,
                   streams: tuple[str, ...] = ("up", "down"), suffix: str = "") -> dict:
    lib.install_stream(lab, ["mn", "h"])
    out = {}
    for tag in variants:
        # back to the start: the MN on the first sink's segment, agents started with this config
        port = lab.port(MN_PORT)
        if port.segment != layout.start_segment:
            lab.move(MN_PORT, layout.start_segment, flap=True)
            time.sleep(0.3)
        out[tag] = phase(lab, tag + suffix, say, layout, streams, variant=tag)
    return out


NAMES = {"ext": "extension", "plain": "plain AODV (carrier detection)", "hello": "plain AODV (hello loss only)"}
DIRS = {"up": "MN -> h", "down": "h -> MN"}
# "No worse than plain AODV with carrier detection" on the chain: measured ext - plain per move
# and direction at most +9 ms of interruption and +0 datagrams lost (two runs, load average
# 15-28); the margins allow 5 stream periods (10 ms each) of scheduling jitter and 3 datagrams.
SAME_MARGIN_MS = 50.0
SAME_MARGIN_LOST = 3


def judge_common(res: dict, streams: tuple[str, ...] = ("up", "down")) -> list[tuple[str, bool, str]]:
    """Checks every variant must pass: streams clean before the first move and recovering
    after each; the extension's loss per move within the in-flight bound."""
    out = []
    for tag, r in res.items():
        out.append((f"{NAMES[tag]}: {' and '.join(DIRS[d] for d in streams)} arrived before the first move without loss",
                    all(r["pre"][d]["lost"] == 0 and r["pre"][d]["sent"] > 100 for d in streams),
                    ", ".join(f"{d} {r['pre'][d]}" for d in streams)))
        out.append((f"{NAMES[tag]}: the streams recover after each move",
                    all(m[d]["lost"] < m[d]["sent"] - 50 for m in r["moves"] for d in streams),
                    str([(d, m[d]["sent"], m[d]["lost"]) for m in r["moves"] for d in streams])))
    for i, e in enumerate(res["ext"]["moves"], start=1):
        for d in streams:
            ed = e[d]
            out.append((f"move {i} ({e['to']}), {DIRS[d]}: with the extension no more lost than in flight during the "
                        f"re-attachment (bound: carrier-down time + {SIGNAL_BUDGET_S * 1000:.0f} ms fixed signalling budget)",
                        ed["lost"] <= ed["in_flight_bound"],
                        f"lost {ed['lost']}, bound {ed['in_flight_bound']} (move {e['move_ms']} ms; measured signalling "
                        f"{e['signalling_ms']} ms, not part of the bound)"))
    return out


def judge(res: dict) -> list[tuple[str, bool, str]]:
    """The chain's checks from the three variants' ``phase`` results (claims 26-39)."""
    ext = res["ext"]
    out = judge_common(res)
    sinks = [e.get("new_sink") for e in ext["done"]]
    out.append(("extension: two handovers completed (m4 -> m3 -> m2, claims 27-36)",
                sinks[-2:] == [ADDR["m3"], ADDR["m2"]], f"handover_done to {sinks}"))
    out.append(("plain AODV runs: no handover machinery ran",
                all(not res[t]["done"] and not res[t]["mn"].get("counters", {}).get("handover_attach_sent")
                    for t in res if t != "ext"), ""))
    for i, e in enumerate(ext["moves"], start=1):
        for d in ("up", "down"):
            ed, pd = e[d], res["plain"]["moves"][i - 1][d]
            # one thing changed: the extension against plain AODV with the same carrier detection
            out.append((f"move {i} ({e['to']}), {DIRS[d]}: the extension is no worse than plain AODV with carrier "
                        f"detection (new sink on the old path; within {SAME_MARGIN_MS:.0f} ms / {SAME_MARGIN_LOST} lost)",
                        ed["interruption_ms"] <= pd["interruption_ms"] + SAME_MARGIN_MS
                        and ed["lost"] <= pd["lost"] + SAME_MARGIN_LOST,
                        f"extension {ed['interruption_ms']} ms / {ed['lost']} lost; plain (carrier) "
                        f"{pd['interruption_ms']} ms / {pd['lost']} lost"))
        hd, ed = res["hello"]["moves"][i - 1]["up"], e["up"]
        out.append((f"move {i} ({e['to']}), MN -> h: the extension beats the classic baseline, plain AODV with "
                    f"hello-loss detection (two things differ: handover and carrier detection)",
                    ed["interruption_ms"] < hd["interruption_ms"] and ed["lost"] < hd["lost"],
                    f"extension {ed['interruption_ms']} ms / {ed['lost']} lost; hello-loss {hd['interruption_ms']} ms / "
                    f"{hd['lost']} lost"))
    return out


def metrics(ctx, res: dict, prefix: str = "") -> None:
    for i, e in enumerate(res["ext"]["moves"], start=1):
        for d in e.keys() & DIRS.keys():
            ctx.metric(f"{prefix}move{i}_{d}_in_flight_bound", e[d]["in_flight_bound"])
            for tag, r in res.items():
                m = r["moves"][i - 1][d]
                ctx.metric(f"{prefix}move{i}_{d}_{tag}_interruption_ms", m["interruption_ms"])
                ctx.metric(f"{prefix}move{i}_{d}_{tag}_lost", m["lost"])
        ctx.metric(f"{prefix}move{i}_ext_signalling_ms", e["signalling_ms"])
        ctx.metric(f"{prefix}move{i}_move_ms", e["move_ms"])


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    for name, ok, detail in judge(res):
        # claims: sink handover on a chain: hello, unsolicited RREP, route update, forwarding, done
        ctx.check(name, ok, detail, claims=[26, 27, 28, 29, 33, 34, 35, 36])
    metrics(ctx, res)
