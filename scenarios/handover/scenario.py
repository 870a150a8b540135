"""Handover: the MN streams UDP at 100/s to h behind the far end m1 (and h to the MN) and
moves twice (acc4 -> acc3 -> acc2, lab.move with carrier flap). The same lab runs three
variants one after another (extension; plain AODV with carrier detection; plain AODV with
hello-loss detection only) and the checks compare them per move (description.md).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _lib():
    """aodvlab.py beside this file (scenario folders are not packages)."""
    from orchestration.scenario import load_module

    return load_module(HERE / "aodvlab.py", "aodvlab")


lib = _lib()

MSRS = ["m1", "m2", "m3", "m4"]
NODES = MSRS + ["mn"]
ADDR = {"m1": "10.20.0.1", "m2": "10.20.0.2", "m3": "10.20.0.3", "m4": "10.20.0.4", "mn": "10.20.1.5"}
IFS = {"m1": ["c12"], "m2": ["c12", "c23", "acc"], "m3": ["c23", "c34", "acc"], "m4": ["c34", "acc"], "mn": ["wlan"]}
HOST = "198.51.100.10"
RATE = 100.0
PORT = 5005
MOVES = [("acc3", 2.5), ("acc2", 6.0)]   # (segment, seconds after the stream starts)
SECONDS = 9.5
# the extension; plain AODV with the same link-layer (carrier) detection; plain AODV that
# learns of a lost neighbour only from missed hellos (RFC 3561 6.9, the classic baseline)
VARIANTS = {"ext": {"handover": True, "lld": True},
            "plain": {"handover": False, "lld": True},
            "hello": {"handover": False, "lld": False}}


def configs(handover: bool, lld: bool = True) -> dict[str, dict]:
    out = {}
    for n in NODES:
        c = {"address": ADDR[n], "interfaces": IFS[n], "managed_prefixes": ["10.20.0.0/16"],
             "handover": {"enabled": handover}, "link_layer_detection": lld}
        if n == "m1":
            c["announced_prefixes"] = ["198.51.100.0/24"]
        if n == "mn":
            c["role"] = "mn"
            c["managed_prefixes"] = ["10.20.0.0/16", "198.51.100.0/24"]
        out[n] = c
    return out


def phase(lab, tag: str, say) -> dict:
    """One run of the streams with two moves; the MN starts on acc4."""
    handover = VARIANTS[tag]["handover"]
    lib.start_agents(lab, configs(handover, VARIANTS[tag]["lld"]), tag)
    if not lib.agents_ready(lab, NODES):
        raise RuntimeError(f"{tag}: agents did not write their status")
    # every MSR hears its chain neighbours, the MN hears m4 (and, with the extension, is registered)
    deg = {"m1": 1, "m2": 2, "m3": 2, "m4": 2}
    lib.wait(lambda: all(len(s.get("neighbours", [])) >= deg[m] for m, s in lib.statuses(lab, MSRS).items()), 15, 0.5)
    if handover:
        lib.wait(lambda: (lib.status(lab, "mn").get("handover") or {}).get("sink") == ADDR["m4"], 10, 0.3)
    else:
        lib.wait(lambda: ADDR["m4"] in str(lib.status(lab, "mn").get("neighbours")), 10, 0.3)
    lib.start_stream(lab, "mn", "h", HOST, PORT, RATE, SECONDS, tag)
    t_start = time.time()
    lib.start_stream(lab, "h", "mn", ADDR["mn"], PORT + 1, RATE, SECONDS - 0.5, tag + "-down")
    moves = []
    for seg, at in MOVES:
        time.sleep(max(0.0, t_start + at - time.time()))
        t = time.time()
        took = lab.move("mn:wlan", seg, flap=True)
        moves.append({"to": seg, "at": t, "move_s": took})
    sent, recs = lib.stream_result(lab, "mn", "h", tag, timeout=SECONDS + 20)
    dsent, drecs = lib.stream_result(lab, "h", "mn", tag + "-down", timeout=SECONDS + 20)
    mn_st = lib.status(lab, "mn")
    st = lib.statuses(lab, MSRS)
    lib.stop_agents(lab, NODES)
    done = [e for e in mn_st.get("events", []) if e.get("kind") == "handover_done"]
    pre = {"up": lib.window(sent, recs, sent["t0"], moves[0]["at"] - 0.05),
           "down": lib.window(dsent, drecs, dsent["t0"], moves[0]["at"] - 0.05)}
    per = []
    for i, mv in enumerate(moves):
        end = moves[i + 1]["at"] - 0.05 if i + 1 < len(moves) else sent["t0"] + SECONDS
        # signalling: the MN's handover of this move, from sink loss to the old sink's ACK
        sig = [e for e in done if mv["at"] - 0.5 < e.get("t", e.get("time", 0)) < end]
        sig_ms = float(sig[0]["ms"]) if sig and sig[0].get("ms") is not None else 0.0
        m = {"to": mv["to"], "move_ms": round(mv["move_s"] * 1000, 1), "signalling_ms": sig_ms}
        for d, (sn, rc) in (("up", (sent, recs)), ("down", (dsent, drecs))):
            w = lib.window(sn, rc, mv["at"] - 0.05, end)
            # the bound: datagrams sent during the re-attachment, i.e. while the MN's port was
            # off its old segment (lab.move's carrier-down time) and until the network had
            # bound it at the new sink (the MN's handover signalling), plus those already on
            # their way over the old path (one-way delay before the move), plus one being
            # serialised. Anything above it was lost by the routing, not by the move.
            delay = max((r[2] - r[1] for r in rc if mv["at"] - 1.0 < r[1] < mv["at"]), default=0.0)
            w["in_flight_bound"] = math.ceil(RATE * (mv["move_s"] + sig_ms / 1000 + delay)) + 1
            m[d] = w
        per.append(m)
    done = [e for e in mn_st.get("events", []) if e.get("kind") == "handover_done"]
    say(f"{tag}: before moves {pre}; per move {per}; handovers {[(e.get('new_sink'), e.get('ms')) for e in done]}")
    return {"pre": pre, "moves": per, "done": done, "mn": mn_st, "msrs": st, "sent": sent}


def run_comparison(lab, say, variants=tuple(VARIANTS)) -> dict:
    lib.install_stream(lab, ["mn", "h"])
    out = {}
    for i, tag in enumerate(variants):
        if i:  # back to the start: the MN on m4's segment, agents restarted with the next config
            lab.move("mn:wlan", "acc4", flap=True)
            time.sleep(0.3)
        out[tag] = phase(lab, tag, say)
    return out


NAMES = {"ext": "extension", "plain": "plain AODV (carrier detection)", "hello": "plain AODV (hello loss only)"}


def run(ctx) -> None:
    res = run_comparison(ctx.lab, ctx.say)
    ext = res["ext"]
    for tag, r in res.items():
        ctx.check(f"{NAMES[tag]}: both streams (MN -> h and h -> MN) arrived before the first move without loss",
                  all(r["pre"][d]["lost"] == 0 and r["pre"][d]["sent"] > 100 for d in ("up", "down")),
                  f"up {r['pre']['up']}, down {r['pre']['down']}")
        ctx.check(f"{NAMES[tag]}: both streams recover after each move",
                  all(m[d]["lost"] < m[d]["sent"] - 50 for m in r["moves"] for d in ("up", "down")),
                  str([(d, m[d]["sent"], m[d]["lost"]) for m in r["moves"] for d in ("up", "down")]))
    sinks = [e.get("new_sink") for e in ext["done"]]
    ctx.check("extension: two handovers completed (m4 -> m3 -> m2, claims 27-36)",
              sinks[-2:] == [ADDR["m3"], ADDR["m2"]], f"handover_done to {sinks}")
    ctx.check("plain AODV runs: no handover machinery ran",
              all(not res[t]["done"] and not res[t]["mn"].get("counters", {}).get("handover_attach_sent")
                  for t in res if t != "ext"), "")
    for i, e in enumerate(ext["moves"], start=1):
        for d, name in (("up", "MN -> h"), ("down", "h -> MN")):
            ed = e[d]
            ctx.check(f"move {i} ({e['to']}), {name}: with the extension no more lost than in flight during the re-attachment",
                      ed["lost"] <= ed["in_flight_bound"],
                      f"lost {ed['lost']}, bound {ed['in_flight_bound']} (move {e['move_ms']} ms + signalling "
                      f"{e['signalling_ms']} ms at {RATE:.0f}/s)")
            ctx.metric(f"move{i}_{d}_in_flight_bound", ed["in_flight_bound"])
            for tag, r in res.items():
                m = r["moves"][i - 1][d]
                ctx.metric(f"move{i}_{d}_{tag}_interruption_ms", m["interruption_ms"])
                ctx.metric(f"move{i}_{d}_{tag}_lost", m["lost"])
        # the comparison: the MN's stream, extension against plain AODV rediscovery
        # after hello loss (the interface survives the move, so only hellos tell)
        if "hello" in res:
            hd = res["hello"]["moves"][i - 1]["up"]
            ed = e["up"]
            ctx.check(f"move {i} ({e['to']}), MN -> h: the extension beats plain AODV (hello-loss detection)",
                      ed["interruption_ms"] < hd["interruption_ms"] and ed["lost"] < hd["lost"],
                      f"extension {ed['interruption_ms']} ms / {ed['lost']} lost; plain {hd['interruption_ms']} ms / {hd['lost']} lost")
        ctx.metric(f"move{i}_ext_signalling_ms", e["signalling_ms"])
        ctx.metric(f"move{i}_move_ms", e["move_ms"])
