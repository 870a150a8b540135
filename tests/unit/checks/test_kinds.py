"""Every check kind passes on the real thing and fails when the feature is off or the input
is wrong (issue 10 §4). Status and counter checks read real files, pcap checks run tshark
over pcaps crafted with scapy, reach/counter/continuity checks run real ping, nft and UDP
streams between two network namespaces (root; skipped without)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from orchestration.backend import ExecResult
from orchestration.checks import AnyCheck, CheckSession
from orchestration.checks import stream as stream_mod
from orchestration.checks.compare import compare
from orchestration.checks.counter import parse_nft_counter, parse_snmp
from orchestration.checks.jsonpath import MISSING, lookup, parse_path
from orchestration.checks.reach import classify_ping, classify_tcp

from .conftest import needs

CHECK = TypeAdapter(AnyCheck)


def mk(**kw):  # type: ignore[no-untyped-def]
    return CHECK.validate_python({"name": kw.pop("name", "c"), **kw})


class HostLab:
    """Nodes are the host's shell (real files and commands); counts nothing, fakes nothing."""

    topology = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def exec(self, node: str, cmd: str, timeout: float | None = None, check: bool = False) -> ExecResult:
        import subprocess

        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        return ExecResult(p.returncode, p.stdout, p.stderr)


# --- jsonpath and compare -------------------------------------------------------------------
DOC = {"mode": "fa", "filter": {"rows": [{"initiator_private": "10.0.0.5", "packets": 7, "installed": True},
                                          {"initiator_private": "10.0.0.6", "packets": 2, "installed": False}],
                                 "drops": {"198.51.100.1": {"packets": 4}}},
       "list": [1, 2, 3], "n": "12"}


def test_jsonpath_segments() -> None:
    assert lookup(DOC, "mode") == "fa"
    assert lookup(DOC, "filter.rows[initiator_private=10.0.0.5].packets") == 7
    assert lookup(DOC, "filter.rows[installed=false].initiator_private") == "10.0.0.6"
    assert lookup(DOC, "filter.rows[*].packets") == [7, 2]
    assert lookup(DOC, "filter.drops['198.51.100.1'].packets") == 4
    assert lookup(DOC, "filter.drops[*].packets") == [4]
    assert lookup(DOC, "list[-1]") == 3
    assert lookup(DOC, "filter.rows[initiator_private=10.0.0.9]") is MISSING
    assert lookup(DOC, "list[5]") is MISSING and lookup(DOC, "mode.x") is MISSING
    for bad in ("", "a[", "a[]", "a..b["):
        with pytest.raises(ValueError):
            parse_path(bad)


@pytest.mark.parametrize("actual,op,expected,ok", [
    ("fa", "==", "fa", True), ("fa", "==", "ccoa", False), ("12", ">=", 10, True), (3, ">", 3, False),
    (3, "<=", 3, True), ("x", ">=", 1, False), ("fa", "in", ["fa", "ccoa"], True), ("home", "in", ["fa"], False),
    ([1, 2], "contains", 2, True), ([1, 2], "contains", 5, False), (MISSING, "absent", None, True),
    (0, "absent", None, False), (MISSING, "exists", None, False), (MISSING, "==", 0, False), (MISSING, "!=", 1, True),
    (True, "==", 1, False), (1, "==", "1", True), ("fa", "not in", ["ccoa"], True),
])
def test_compare(actual, op, expected, ok) -> None:  # type: ignore[no-untyped-def]
    assert compare(actual, op, expected)[0] is ok


# --- validation: every kind refuses wrong input with the fix --------------------------------
@pytest.mark.parametrize("data,msg", [
    ({"stat": "a"}, "names its kind by one key"),
    ({"status": "a", "path": "x"}, "give 'agent: NAME'"),
    ({"status": "a", "agent": "sg", "file": "/x.json", "path": "x"}, "not both or neither"),
    ({"status": "a", "agent": "sg", "path": "rows["}, "cannot read"),
    ({"status": "a", "agent": "sg", "path": "x", "op": ">="}, "needs 'value'"),
    ({"status": "a", "agent": "sg", "path": "x", "op": "in", "value": "fa"}, "needs 'value' to be a list"),
    ({"status": "a", "agent": "sg", "path": "x", "op": "~"}, "Input should be"),
    ({"status": "a", "agent": "Sg.json", "path": "x"}, "base name"),
    ({"pcap": "inet", "filter": "ip"}, "count"),
    ({"counter": "a", "delta": 1}, "reads one counter"),
    ({"counter": "a", "nft": "napt portal", "delta": 1}, "FAMILY TABLE NAME"),
    ({"counter": "a", "snmp": "InEchos", "delta": 1}, "Proto.Name"),
    ({"counter": "a", "nft": "ip napt x", "agent": "sg", "delta": 1}, "go with 'path'"),
    ({"counter": "a", "snmp": "Icmp.InEchos", "delta": 1, "from": "end"}, "leaves no time"),
    ({"reach": [], "to": ["b"]}, "at least 1"),
    ({"reach": ["a"], "to": ["b"], "how": "tcp"}, "needs 'port'"),
    ({"reach": ["a"], "to": ["b"], "port": 80}, "'port' is for how: tcp"),
    ({"reach": ["a"], "to": ["b"], "expect": "fail"}, "'reach' or 'blocked'"),
    ({"continuity": "a", "to": "b", "max_gap_ms": 100}, "max_lost"),
    ({"node": "a", "run": "true", "claims": [71]}, "claims are numbered 1-70"),
    ({"node": "a", "run": "false", "expect": "fail"}, "needs 'reason'"),
])
def test_bad_checks_are_refused_with_the_fix(data: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        mk(**data)


def test_lab_file_names_file_path_and_fix(tmp_path: Path) -> None:
    """Errors in a lab's checks name the file, checks[i] (not the union's tag) and the fix;
    nodes and schedule names a check refers to must exist."""
    from orchestration.domain import compile_lab
    from orchestration.topology import TopologyError

    lab = {"kind": "lab", "name": "t", "mvpns": {"A": {"realm": "10.0.0.0/24"}},
           "hosts": {"h": {"mvpn": "A"}, "k": {"mvpn": "A"}},
           "schedule": [{"at": 1, "name": "cut", "link": "h", "up": False}],
           "checks": [{"name": "x", "status": "h", "agent": "sg", "path": "a", "op": ">="}]}
    with pytest.raises(TopologyError) as e:
        compile_lab(lab, "t.yaml", check_nft=False)
    assert "t.yaml: checks[0]: op '>=' needs 'value'" in str(e.value)
    lab["checks"] = [{"name": "r", "reach": ["h"], "to": ["nobody"]},
                     {"name": "n", "counter": "k", "snmp": "Icmp.InEchos", "from": "before cutt", "delta": 0}]
    with pytest.raises(TopologyError) as e:
        compile_lab(lab, "t.yaml", check_nft=False)
    text = str(e.value)
    assert "t.yaml: checks[0]: unknown node 'nobody' in check 'r'" in text
    assert "t.yaml: checks[1]: no schedule entry named 'cutt' to count before; add 'name: cutt'" in text
    lab["checks"][0]["to"] = ["k"]
    lab["checks"][1]["from"] = "before cut"
    compiled = compile_lab(lab, "t.yaml", check_nft=False)
    assert [type(c).__name__ for c in compiled.lab.checks] == ["ReachCheck", "CounterCheck"]


def test_scenario_file_refuses_at_and_unknown_steps(tmp_path: Path) -> None:
    from orchestration.scenario import load_scenario
    from orchestration.topology import TopologyError

    (tmp_path / "scenario.yaml").write_text(
        "steps: [{name: warm, node: a, run: 'true'}]\n"
        "checks:\n - {name: x, counter: a, snmp: Icmp.InEchos, from: after wram, delta: 1}\n")
    with pytest.raises(TopologyError, match="no step named 'wram'.*named steps: \\['warm'\\]"):
        load_scenario(tmp_path)
    (tmp_path / "scenario.yaml").write_text("checks:\n - {name: x, node: a, run: 'true', at: 2s}\n")
    with pytest.raises(TopologyError, match="'at' is for lab files"):
        load_scenario(tmp_path)
    (tmp_path / "scenario.yaml").write_text(
        "steps: [{name: warm, node: a, run: 'true'}]\n"
        "checks:\n - {name: x, counter: a, snmp: Icmp.InEchos, from: after warm, delta: 1}\n"
        " - {name: y, status: a, file: /x.json, path: 'rows[0]', op: exists, claims: [6]}\n")
    spec = load_scenario(tmp_path)
    assert [c.kind for c in spec.checks] == ["counter", "status"] and spec.checks[1].claims == [6]


# --- status ---------------------------------------------------------------------------------
def test_status_check_on_a_status_file(tmp_path: Path) -> None:
    f = tmp_path / "sg.json"
    f.write_text(json.dumps(DOC))
    lab = HostLab(tmp_path)
    s = CheckSession(lab, [])
    ok = s.run(mk(status="sg-b", file=str(f), path="filter.rows[initiator_private=10.0.0.5].installed", value=True,
                  claims=[6]))
    assert ok.passed and ok.claims == [6] and "found true" in ok.detail
    # feature off: the row for 10.0.0.5 is not installed
    doc = json.loads(f.read_text())
    doc["filter"]["rows"][0]["installed"] = False
    f.write_text(json.dumps(doc))
    r = s.run(mk(status="sg-b", file=str(f), path="filter.rows[initiator_private=10.0.0.5].installed", value=True))
    assert not r.passed and "found false, expected == true" in r.detail
    # wrong input: a path that is not there, and a file that is not there
    r = s.run(mk(status="sg-b", file=str(f), path="filter.rowz[0]", op="exists"))
    assert not r.passed and "found nothing" in r.detail
    r = s.run(mk(status="sg-b", file=str(tmp_path / "none.json"), path="mode", value="fa"))
    assert not r.passed and "no status file" in r.detail
    # absence is judged inside an existing container: a row that is not there passes, the
    # same path with a misspelt key on the way fails (it passed before a newcomer trial)
    assert s.run(mk(status="sg-b", file=str(f), path="filter.rows[initiator_private=10.0.0.9]", op="absent")).passed
    r = s.run(mk(status="sg-b", file=str(f), path="filtr.rows[initiator_private=10.0.0.9]", op="absent"))
    assert not r.passed and "misspelt" in r.detail


def test_status_check_retries_until_the_agent_writes(tmp_path: Path) -> None:
    import threading

    f = tmp_path / "mip-mn.json"
    threading.Timer(0.6, lambda: f.write_text('{"mode": "fa"}')).start()
    t = time.monotonic()
    r = CheckSession(HostLab(tmp_path), [], interval_s=0.1).run(
        mk(status="a", file=str(f), path="mode", op="in", value=["fa", "ccoa"], retry=5))
    assert r.passed and time.monotonic() - t < 4


# --- pcap -----------------------------------------------------------------------------------
def _pcap(path: Path, ipip: int) -> Path:
    from scapy.all import IP, UDP, Ether, Raw, wrpcap

    inner = IP(src="10.0.0.5", dst="10.0.0.7") / UDP(sport=4500, dport=4500) / Raw(b"\x00" * 40)
    frames = [Ether() / IP(src="198.51.100.1", dst="198.51.100.2", proto=4) / inner for _ in range(ipip)]
    frames += [Ether() / IP(src="198.51.100.1", dst="198.51.100.10") / UDP(sport=40000, dport=53) / Raw(b"x")] * 2
    wrpcap(str(path), frames)
    return path


PCAP_CHECK = {"pcap": "inet", "filter": "ip.src == 198.51.100.1 && ip.dst == 198.51.100.2 && ip.proto == 4",
              "count": 3}


@needs("tshark")
def test_pcap_check_counts_with_tsharks_filter(tmp_path: Path) -> None:
    c = mk(**PCAP_CHECK)
    ok = CheckSession(HostLab(tmp_path), [c], captures={"inet": _pcap(tmp_path / "on.pcap", 3)}).run(c)
    assert ok.passed and "3 frame(s) match" in ok.detail
    # feature off: no IP-IP between the SGs, only the DNS frames
    off = CheckSession(HostLab(tmp_path), [c], captures={"inet": _pcap(tmp_path / "off.pcap", 0)}).run(c)
    assert not off.passed and "0 frame(s) match" in off.detail
    # "==" 0: no plaintext of the inner flow would pass only without it
    eq = mk(pcap="inet", filter="udp.port == 4500", op="==", count=0)
    assert not CheckSession(HostLab(tmp_path), [eq], captures={"inet": tmp_path / "on.pcap"}).run(eq).passed
    # wrong input: a filter tshark refuses fails with tshark's reason, not a count of 0
    bad = mk(pcap="inet", filter="ip.srcx == 1", op="==", count=0)
    r = CheckSession(HostLab(tmp_path), [bad], captures={"inet": tmp_path / "off.pcap"}).run(bad)
    assert not r.passed and "EvidenceError" in r.detail and "ip.srcx" in r.detail
    # no capture of that link at all
    r = CheckSession(HostLab(tmp_path), [c]).run(c)
    assert not r.passed and "no capture of inet" in r.detail


# --- counter --------------------------------------------------------------------------------
def test_counter_parsers() -> None:
    nft = '{"nftables": [{"metainfo": {}}, {"counter": {"family": "ip", "name": "portal_flows", "table": "napt", ' \
          '"handle": 1, "packets": 5, "bytes": 300}}]}'
    assert parse_nft_counter(nft) == 5 and parse_nft_counter(nft, "bytes") == 300
    assert parse_nft_counter("Error: No such file") is None and parse_nft_counter('{"nftables": []}') is None
    snmp = "Icmp: InMsgs InErrors InEchos\nIcmp: 9 0 4\nIp: Forwarding\nIp: 1\n"
    assert parse_snmp(snmp, "Icmp.InEchos") == 4 and parse_snmp(snmp, "Ip.Forwarding") == 1
    assert parse_snmp(snmp, "Icmp.OutEchos") is None and parse_snmp(snmp, "Tcp.InSegs") is None


def test_status_counter_between_named_points(tmp_path: Path) -> None:
    f = tmp_path / "sg.json"
    f.write_text(json.dumps(DOC))
    grow = mk(counter="sg-b", file=str(f), path="filter.rows[*].packets", delta=3)            # 9 -> ?
    step = mk(counter="sg-b", file=str(f), path="filter.rows[0].packets", **{"from": "after ping"}, op="==", delta=0)
    never = mk(counter="sg-b", file=str(f), path="filter.rows[0].packets", **{"from": "before move"}, delta=0)
    s = CheckSession(HostLab(tmp_path), [grow, step, never])
    s.start()
    doc = json.loads(f.read_text())
    doc["filter"]["rows"][0]["packets"] += 3
    f.write_text(json.dumps(doc))
    s.mark("after", "ping")
    r = s.run(grow)
    assert r.passed and "9 -> 12, delta 3" in r.detail
    assert s.run(step).passed  # nothing counted after the step
    r = s.run(never)
    assert not r.passed and "'before move' was not reached" in r.detail
    # feature off: the counter does not grow
    s2 = CheckSession(HostLab(tmp_path), [grow])
    s2.start()
    r = s2.run(grow)
    assert not r.passed and "delta 0" in r.detail
    # wrong input: a path that never resolves
    typo = mk(counter="sg-b", file=str(f), path="filter.rowz[0].packets", op="==", delta=0)
    s3 = CheckSession(HostLab(tmp_path), [typo])
    s3.start()
    r = s3.run(typo)
    assert not r.passed and "not found at 'end'" in r.detail


# --- in network namespaces: reach, nft/snmp counters, continuity ------------------------------
DROP_B = "nft add table ip tbck; nft add chain ip tbck in '{ type filter hook input priority 0; policy accept; }'; " \
         "nft add rule ip tbck in ip saddr 10.9.0.1 drop"


@needs("ip", "nft", "ping")
def test_reach_matrix_and_blocked(nslab) -> None:  # type: ignore[no-untyped-def]
    reach = mk(reach=["a"], to=["b@10.9.0.2"], count=2)
    blocked = mk(reach=["a"], to=["10.9.0.2"], expect="blocked", count=2, claims=[6])
    s = CheckSession(nslab, [])
    assert s.run(reach).passed
    r = s.run(blocked)
    assert not r.passed and "expected blocked" in r.detail and "reach, 2/2 answered" in r.detail
    nslab.exec("b", DROP_B, check=True)
    r = s.run(reach)
    assert not r.passed and "blocked, 0/2 answered" in r.detail
    assert s.run(blocked).passed
    # no route: nothing left the node; that is an error, not "blocked"
    r = s.run(mk(reach=["a"], to=["192.0.2.9"], expect="blocked", count=1))
    assert not r.passed and "error" in r.detail


@needs("ip", "nft")
def test_reach_tcp(nslab) -> None:  # type: ignore[no-untyped-def]
    import sys

    nslab.net.spawn(nslab.nodes["b"], [sys.executable, "-c", "import socket,time; s=socket.socket(); "
                    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 7007)); "
                    "s.listen(); time.sleep(30)"], "listen.log")
    time.sleep(0.5)
    s = CheckSession(nslab, [])
    assert s.run(mk(reach=["a"], to=["10.9.0.2"], how="tcp", port=7007, retry=3)).passed
    r = s.run(mk(reach=["a"], to=["10.9.0.2"], how="tcp", port=7008))
    assert not r.passed and "refused" in r.detail
    # a reset is the target answering: not "blocked" (a wrong port must not pass as a filter)
    assert not s.run(mk(reach=["a"], to=["10.9.0.2"], how="tcp", port=7008, expect="blocked")).passed
    nslab.exec("b", "nft add table ip tbrc; nft add chain ip tbrc in '{ type filter hook input priority 0; "
                    "policy accept; }'; nft add rule ip tbrc in tcp dport 7007 drop")
    assert s.run(mk(reach=["a"], to=["10.9.0.2"], how="tcp", port=7007, expect="blocked")).passed
    nslab.exec("b", "nft delete table ip tbrc")
    assert classify_tcp(1, "Traceback ...")[0] == "error" and classify_tcp(0, "oserror 101 Network is unreachable")[0] == "error"
    assert classify_ping(2, "connect: Network is unreachable", 3)[0] == "error"


@needs("ip", "nft", "ping")
def test_nft_and_snmp_counters(nslab) -> None:  # type: ignore[no-untyped-def]
    nslab.exec("b", "nft add table ip tbck; nft add counter ip tbck echoes; nft add chain ip tbck in "
                    "'{ type filter hook input priority 0; policy accept; }'; nft add rule ip tbck in icmp type "
                    "echo-request counter name echoes", check=True)
    nft = mk(counter="b", nft="ip tbck echoes", delta=3)
    snmp = mk(counter="b", snmp="Icmp.InEchos", op="==", delta=3)
    missing = mk(counter="b", nft="ip tbck nosuch", op=">=", delta=0)
    s = CheckSession(nslab, [nft, snmp, missing])
    s.start()
    nslab.exec("a", "ping -c3 -i0.2 -W1 10.9.0.2")
    assert s.run(nft).passed and s.run(snmp).passed
    r = s.run(missing)
    assert not r.passed and "not found" in r.detail
    # feature off: the echoes are dropped before they are counted / answered
    nslab.exec("b", "nft insert rule ip tbck in ip saddr 10.9.0.1 drop", check=True)
    s = CheckSession(nslab, [nft, snmp])
    s.start()
    nslab.exec("a", "ping -c3 -i0.2 -W1 10.9.0.2")
    assert not s.run(nft).passed
    r = s.run(snmp)
    assert not r.passed and "delta 0" in r.detail


@needs("ip", "nft")
def test_continuity_over_a_stream(nslab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(stream_mod, "STREAM", str(tmp_path / "tb_stream.py"))
    monkeypatch.setattr(stream_mod, "RUN_DIR", str(tmp_path))
    c = mk(continuity="a", to="b@10.9.0.2", port=9411, rate=50, max_gap_ms=400, max_lost=2, claims=[26])
    s = CheckSession(nslab, [c])
    s.start()
    time.sleep(1.5)
    r = s.run(c)
    assert r.passed, r.detail
    assert r.claims == [26]
    # the feature off: the path is cut for 1.2 s during the session
    s = CheckSession(nslab, [c])
    s.start()
    time.sleep(0.8)
    nslab.exec("b", DROP_B, check=True)
    time.sleep(1.2)
    nslab.exec("b", "nft delete table ip tbck", check=True)
    time.sleep(0.8)
    r = s.run(c)
    assert not r.passed and "(max 400)" in r.detail
    gap = float(r.detail.split("longest gap ")[1].split(" ms")[0])
    assert 1100 <= gap <= 2500, r.detail
    # wrong input: nobody receives on that address
    bad = mk(continuity="a", to="b@10.9.0.77", port=9412, max_gap_ms=400, max_lost=2)
    s = CheckSession(nslab, [bad])
    s.start()
    time.sleep(0.5)
    r = s.run(bad)
    assert not r.passed and "none of" in r.detail


def test_stream_session_arithmetic() -> None:
    sent = {"t0": 100.0, "rate": 10.0, "sent": 20, "errors": 0}
    recs = [[i, 100.0 + i / 10, 100.0 + i / 10 + 0.01] for i in range(20) if not 5 <= i < 9]
    r = stream_mod.session(sent, recs)
    assert r["lost"] == 4 and r["received"] == 16 and r["max_gap_ms"] == pytest.approx(500, abs=1)
    late = [[i, 100.0 + i / 10, 100.0 + i / 10 + 0.01] for i in range(3, 20)]  # set-up: first 3 before the path
    r = stream_mod.session(sent, late)
    assert r["lost"] == 0 and r["first_arrival_s"] == pytest.approx(0.31) and r["max_gap_ms"] == pytest.approx(100, abs=1)
    # the first datagrams buffered during a discovery and delivered together: set-up, not a gap
    buffered = [[i, 100.0 + i / 10, 100.65] for i in range(7)] + [[i, 100.0 + i / 10, 100.0 + i / 10 + 0.01]
                                                                     for i in range(7, 20)]
    r = stream_mod.session(sent, buffered)
    assert r["lost"] == 0 and r["first_arrival_s"] == pytest.approx(0.65) and r["max_gap_ms"] == pytest.approx(100, abs=1)
    tail = [[i, 100.0 + i / 10, 100.0 + i / 10 + 0.01] for i in range(12)]  # nothing after seq 11: a silent tail
    r = stream_mod.session(sent, tail)
    assert r["lost"] == 8 and r["max_gap_ms"] == pytest.approx(790, abs=1)
    assert stream_mod.session(sent, [])["received"] == 0


def test_what_cannot_start_fails_its_own_check_only(tmp_path: Path) -> None:
    """A continuity target that names no address and a link that cannot be captured fail
    their checks with the reason; the session starts, the other checks run."""
    class NoCapture(HostLab):
        def capture(self, key: str, path: Path) -> None:
            raise RuntimeError(f"lab has no link {key!r}")

    cont = mk(continuity="a", to="ghost", max_gap_ms=100, max_lost=0)
    pc = mk(pcap="nolink", filter="ip", count=1)
    ok = mk(status="a", file=str(tmp_path / "s.json"), path="x", op="absent")
    (tmp_path / "s.json").write_text("{}")
    s = CheckSession(NoCapture(tmp_path), [cont, pc, ok])
    s.start()
    r = s.run(cont)
    assert not r.passed and "stream did not start" in r.detail and "no node 'ghost'" in r.detail
    r = s.run(pc)
    assert not r.passed and "capture of nolink did not start" in r.detail
    assert s.run(ok).passed
