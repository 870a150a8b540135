"""A summary table of results/bench.json: one row per measured quantity, beside its
same-run baseline, the ratio, issue 14's aim and whether it is met.

``testbed bench --report`` prints it as Markdown (the README's bench section and the
notes of a run are this table). Rows of sections that are missing or failed are left out;
a failed section is named in a row of its own.
"""
from __future__ import annotations

from typing import Any

Row = dict[str, Any]


def _row(section: str, what: str, ours: Any, base: Any, base_what: str, ratio: Any = None,
         aim: str = "", met: bool | None = None) -> Row:
    if ratio is None and isinstance(ours, (int, float)) and isinstance(base, (int, float)) and base:
        ratio = round(ours / base, 3)
    return {"section": section, "what": what, "ours": ours, "baseline": base, "baseline_what": base_what,
            "ratio": ratio, "aim": aim, "met": met}


def _tunnel(sec: dict[str, Any]) -> list[Row]:
    med, aims = sec.get("median_mbps", {}), sec.get("aims", {})
    rows = []
    for m in sec.get("modes", []):
        r = sec.get(f"ratio_ipip_{m}_vs_plain")
        if r is not None:
            a = aims.get("ipip_vs_plain")
            rows.append(_row("tunnel", f"IP-IP {m}, Mbit/s", med.get(f"ipip_{m}"), med.get("plain"), "plain routing",
                             r, f">= {a}", r >= a if a is not None else None))
        r = sec.get(f"ratio_ipsec_ipip_{m}_vs_ipsec")
        if r is not None:
            a = aims.get("ipsec_ipip_vs_ipsec")
            rows.append(_row("tunnel", f"IPsec over IP-IP {m}, Mbit/s", med.get(f"ipsec_ipip_{m}"), med.get("ipsec"),
                             "one strongSwan SA alone", r, f">= {a}", r >= a if a is not None else None))
    return rows


def _moves(sec: dict[str, Any]) -> list[Row]:
    rows = []
    for kind in ("sink", "fa", "ccoa", "home"):
        r = sec.get(kind)
        if not isinstance(r, dict) or r.get("gap_ms") is None:
            continue
        base, base_what = r.get("registration_ms"), "registration round trip"
        if base is None:
            base, base_what = r.get("carrier_flap_ms"), "port flap (no registration)"
        rows.append(_row("moves", f"{kind}: UDP gap, ms", r["gap_ms"], base, base_what,
                         aim=f"<= {r.get('aim_ms')} ms", met=r.get("met")))
    return rows


def _diameter(sec: dict[str, Any]) -> list[Row]:
    aims = sec.get("aims", {})
    rt, aps = sec.get("aa_round_trip_median_ms"), sec.get("aa_per_s")
    rows = []
    if rt is not None:
        a = aims.get("aa_round_trip_median_ms")
        rows.append(_row("diameter", "AA round trip, ms", rt, sec.get("echo_round_trip_median_ms"),
                         "TCP echo of the same bytes", sec.get("ratio_round_trip"), f"<= {a} ms",
                         rt <= a if a is not None else None))
    if aps is not None:
        a = aims.get("aa_per_s")
        ok = (aps >= a and sec.get("aa_errors", 0) == 0) if a is not None else None
        rows.append(_row("diameter", f"AA/s, 10 clients ({sec.get('aa_errors', '?')} errors)", round(aps),
                         round(sec.get("echo_per_s") or 0) or None, "TCP echo of the same bytes",
                         sec.get("ratio_per_s"), f">= {a}/s, 0 errors", ok))
    return rows


def _scale(sec: dict[str, Any]) -> list[Row]:
    aims = sec.get("aims", {})
    rows = []
    for r in sec.get("sizes", []):
        n = r["nodes"]
        met = None
        aim = ""
        if n == 100:
            aim = f"<= {aims.get('up_100_s')} s and <= {aims.get('ratio_up_100')}x"
            met = aims.get("met")
        rows.append(_row("scale", f"{n} nodes up, s", r.get("testbed_up_s"), r.get("baseline_up_s"),
                         "bare docker + veth script", r.get("ratio_up"), aim, met))
        if r.get("testbed_ready_s") is not None or r.get("baseline_ready_s") is not None:  # TESTBED_SCALE_READY
            rows.append(_row("scale", f"{n} nodes: all MNs members, s", r.get("testbed_ready_s"),
                             r.get("baseline_ready_s"), "bare script", r.get("ratio_ready")))
        rows.append(_row("scale", f"{n} nodes down, s", r.get("testbed_down_s"), r.get("baseline_down_s"),
                         "docker rm -f", r.get("ratio_down")))
        rows.append(_row("scale", f"{n} nodes: MiB per node", r.get("testbed_mem_per_node_mib"),
                         r.get("baseline_mem_per_node_mib"), "bare script, same agents"))
    for n, why in {**sec.get("skipped", {}), **sec.get("failed", {})}.items():
        rows.append(_row("scale", f"{n} nodes", None, None, "", aim=why))
    return rows


SECTIONS = {"tunnel": _tunnel, "moves": _moves, "diameter": _diameter, "scale": _scale}


def summary(results: dict[str, Any]) -> list[Row]:
    """Rows of the four sections of issue 14 found in ``results`` (bench.json loaded)."""
    rows: list[Row] = []
    started = results.get("run", {}).get("started")
    for name, fn in SECTIONS.items():
        sec = results.get(name)
        if not isinstance(sec, dict):
            continue
        if "error" in sec:
            rows.append(_row(name, "FAILED", None, None, "", aim=sec["error"]))
            continue
        if started and sec.get("run") != started:
            # kept from an earlier run (this run failed it or did not run it): say so
            rows.append(_row(name, f"from the run of {sec.get('run') or 'an unknown time'}, not this one",
                             None, None, ""))
        rows.extend(fn(sec))
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    """:func:`summary` as a Markdown table, with the run's start and per-section durations."""
    lines = ["| section | measured | ours | baseline (same run) | ratio | aim | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in summary(results):
        base = f"{_cell(r['baseline'])} ({r['baseline_what']})" if r["baseline_what"] else _cell(r["baseline"])
        lines.append(f"| {r['section']} | {r['what']} | {_cell(r['ours'])} | {base} | {_cell(r['ratio'])} | "
                     f"{r['aim'] or '-'} | {_cell(r['met']) if r['aim'] else '-'} |")
    run = results.get("run", {})
    if run:
        durations = ", ".join(f"{k} {v:.0f} s" for k, v in run.get("duration_s", {}).items())
        lines.append("")
        lines.append(f"Run started {run.get('started')}{' (QUICK: no result)' if run.get('quick') else ''}; "
                     f"durations: {durations or '-'}.")
    return "\n".join(lines) + "\n"
