"""The scenario engine without Docker: the check runner, the scenario run and the exit status
of ``testbed scenario``. The lab is a stand-in whose nodes are the host's shell (real commands,
real exit codes and output); everything else is the engine's own code."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import orchestration.cleanup as cleanup
import orchestration.scenario as engine
from orchestration.backend import ExecResult
from orchestration.cli import app
from orchestration.topology import TopologyError


class ShellLab:
    """A lab whose every node is the host's /bin/sh; counts the commands it ran."""

    instances: list["ShellLab"] = []

    def __init__(self, name: str = "shell") -> None:
        self.name, self.backend, self.timings, self.ran = name, None, {"up": 0.0}, []
        ShellLab.instances.append(self)

    @classmethod
    def from_file(cls, path: Path, name: str | None = None, workdir: Path | None = None) -> "ShellLab":
        return cls(name or "shell")

    def exec(self, node: str, cmd: str, timeout: float | None = None, check: bool = False) -> ExecResult:
        self.ran.append((node, cmd))
        if cmd.startswith("RAISE"):
            raise TimeoutError(f"exec on {node} timed out after {timeout} s")
        p = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode:
            raise RuntimeError(f"{cmd!r} failed: {p.stderr}")
        return ExecResult(p.returncode, p.stdout, p.stderr)

    def up(self, say=None) -> "ShellLab":
        return self

    def down(self, say=None) -> dict:
        return {}

    def collect_logs(self) -> None:
        return None

    def spawn(self, node: str, cmd: str, log: str | None = None) -> None:
        self.ran.append((node, cmd))

    capture_payload: list = []

    def capture(self, key: str, path: Path) -> None:
        """Stands for tcpdump: writes the class's recorded packets into the pcap."""
        from scapy.all import wrpcap

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        wrpcap(str(path), list(self.capture_payload))


def check(**kw) -> engine.Check:
    return engine.Check(name=kw.pop("name", "c"), node="n", **kw)


def run(c: engine.Check, **kw) -> engine.CheckResult:
    return engine.run_check(ShellLab(), c, **kw)


def test_pass_and_fail_on_exit_status() -> None:
    assert run(check(run="true")).passed
    r = run(check(run="echo why >&2; exit 3"))
    assert not r.passed and "exit 3" in r.detail and "why" in r.detail


def test_match_and_no_match_on_stdout() -> None:
    assert run(check(run="echo 2 received", match=r"\d received")).passed
    r = run(check(run="echo 0 packets", match="2 received"))
    assert not r.passed and "lacks /2 received/" in r.detail
    assert run(check(run="echo clean", no_match="Malformed")).passed
    r = run(check(run="echo Malformed Packet", no_match="Malformed"))
    assert not r.passed and "has /Malformed/" in r.detail
    # match looks at stdout only: the same text on stderr does not pass
    assert not run(check(run="echo 2 received >&2", match="2 received")).passed


def test_expect_fail_needs_the_reason_it_fails() -> None:
    with pytest.raises(ValueError, match="needs 'reason'"):
        check(run="false", expect="fail")
    with pytest.raises(ValueError, match="'reason' is for 'expect: fail'"):
        check(run="true", reason="x")
    with pytest.raises(ValueError, match="not a regular expression"):
        check(run="true", match="[unclosed")
    c = check(run="echo 'RTNETLINK answers: Network is unreachable' >&2; exit 2", expect="fail",
              reason="Network is unreachable")
    assert run(c).passed
    # fails, but for another reason (a typo in the command fails too): the check fails
    typo = check(run="ip-rout get 10.0.0.5", expect="fail", reason="Network is unreachable")
    r = run(typo)
    assert not r.passed and "not because /Network is unreachable/" in r.detail
    # the command succeeded: an expect-fail check fails whatever it printed
    assert not run(check(run="echo Network is unreachable", expect="fail", reason="unreachable")).passed


def test_retry_runs_again_until_the_check_passes(tmp_path: Path) -> None:
    marker = tmp_path / "n"
    # passes on the third attempt: the file holds the attempt count
    cmd = f"n=$(cat {marker} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {marker}; [ $n -ge 3 ]"
    lab = ShellLab()
    r = engine.run_check(lab, check(run=cmd, retry=30), interval_s=0.01)
    assert r.passed and marker.read_text().strip() == "3" and len(lab.ran) == 3
    # without retry it is tried once and fails
    marker.unlink()
    lab = ShellLab()
    assert not engine.run_check(lab, check(run=cmd)).passed and len(lab.ran) == 1


def test_retry_gives_up_when_its_time_is_over() -> None:
    lab = ShellLab()
    r = engine.run_check(lab, check(run="false", retry=0.2), interval_s=0.01)
    assert not r.passed and len(lab.ran) >= 2


def test_a_check_that_raises_fails_with_the_reason_and_the_rest_still_run() -> None:
    r = run(check(run="RAISE"))
    assert not r.passed and "could not run: TimeoutError" in r.detail


def write_scenario(root: Path, checks: list[dict], code: str | None = None) -> str:
    folder = root / "scenarios" / "demo"
    folder.mkdir(parents=True)
    (folder / "topology.yaml").write_text("name: demo\n")
    (folder / "scenario.yaml").write_text(json.dumps({"checks": checks}))
    if code is not None:
        (folder / "scenario.py").write_text(code)
    return "demo"


@pytest.fixture
def shell_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(engine, "SCENARIOS_DIR", tmp_path / "scenarios")
    monkeypatch.setattr(engine, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(engine, "Lab", ShellLab)
    monkeypatch.setattr(cleanup, "leftovers", lambda name, backend: {})
    return tmp_path


GOOD = {"name": "ok", "node": "n", "run": "echo 2 received", "match": "2 received"}
BAD = {"name": "bad", "node": "n", "run": "echo 0 received", "match": "2 received"}
RAISES = {"name": "raises", "node": "n", "run": "RAISE"}


def test_run_scenario_reports_every_check_and_fails_if_one_fails(shell_engine: Path) -> None:
    name = write_scenario(shell_engine, [GOOD, RAISES, BAD])
    rep = engine.run_scenario(name, say=lambda m: None)
    assert json.loads((shell_engine / "results" / "demo" / "report.json").read_text()) == rep
    res = {c["name"]: c["passed"] for c in rep["checks"]}
    assert res == {"ok": True, "raises": False, "bad": False, "nothing of the lab remains after down": True}
    assert rep["passed"] is False


def test_scenario_code_that_raises_is_a_failed_check(shell_engine: Path) -> None:
    name = write_scenario(shell_engine, [GOOD], "def run(ctx):\n    ctx.check('first', True)\n    raise KeyError('x')\n")
    rep = engine.run_scenario(name, say=lambda m: None)
    names = {c["name"]: c for c in rep["checks"]}
    assert names["first"]["passed"] and not names["scenario ran to the end"]["passed"]
    assert "KeyError" in names["scenario ran to the end"]["detail"] and not rep["passed"]
    assert "KeyError" in (shell_engine / "results" / "demo" / "error.txt").read_text()


def test_a_bad_check_line_is_refused_with_file_and_field(shell_engine: Path) -> None:
    name = write_scenario(shell_engine, [{"name": "x", "node": "n", "run": "false", "expect": "fail"}])
    with pytest.raises(TopologyError) as e:
        engine.run_scenario(name, say=lambda m: None)
    assert "scenario.yaml" in str(e.value) and "checks[0]" in str(e.value) and "reason" in str(e.value)


@pytest.mark.parametrize("checks,code", [([GOOD], 0), ([GOOD, BAD], 1), ([RAISES], 1), ([], 1)])
def test_scenario_command_exit_status(shell_engine: Path, checks: list[dict], code: int) -> None:
    name = write_scenario(shell_engine, checks)
    r = CliRunner().invoke(app, ["scenario", name, "--lab", "demo1"])
    assert r.exit_code == code, r.output


# Output (issue 11, section 6): data is printed as text, never as rich markup.
MAC = "e6:ab:ce:01:02:03"
DATA_CHECKS = [
    {"name": f"neighbour {MAC} is listed", "node": "n", "run": f"echo {MAC}", "match": MAC},
    {"name": "link state /[a-z]+ up/", "node": "n", "run": "echo link up", "match": "[a-z]+ up"},
    {"name": "a name with [/x] and [bold]", "node": "n", "run": "echo '[/x]' " + "w" * 300 + "; exit 1"},
]


def test_scenario_output_prints_data_verbatim_unwrapped_and_writes_the_report(shell_engine: Path) -> None:
    name = write_scenario(shell_engine, DATA_CHECKS)
    r = CliRunner().invoke(app, ["scenario", name, "--lab", "demo1"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1, r.output
    out = r.output
    assert MAC in out and "\N{NEGATIVE SQUARED AB}" not in out
    assert "/[a-z]+ up/" in out
    assert "[/x]" in out and "[bold]" in out
    assert "cli.py:" not in out
    # the 300-character detail is one line: no hard wrap at 80 columns off a terminal
    assert any(("w" * 300) in line for line in out.splitlines())
    # and lines are not padded out to some huge width either
    assert max(len(line) for line in out.splitlines()) < 600
    rep = json.loads((shell_engine / "results" / "demo" / "report.json").read_text())
    assert [c["passed"] for c in rep["checks"]] == [True, True, False, True]


def test_progress_lines_have_no_source_suffix_and_keep_markup_like_text(capsys: pytest.CaptureFixture[str]) -> None:
    from orchestration import cli

    cli._say(f"PASS neighbour [/x] {MAC} [red]x[/red]")
    err = capsys.readouterr().err
    assert f"[/x] {MAC} [red]x[/red]" in err and "cli.py" not in err


def test_errors_print_their_text_verbatim() -> None:
    from orchestration import cli

    @cli.app.command(name="boom-for-test")
    def boom() -> None:
        cli._fail(ValueError("bad field [/x] at e6:ab:ce"))

    try:
        r = CliRunner().invoke(cli.app, ["boom-for-test"])
    finally:
        cli.app.registered_commands.pop()
    assert r.exit_code == 2 and "error: bad field [/x] at e6:ab:ce" in r.output


def test_captures_are_judged_by_tshark_after_the_run(shell_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scapy.all import IP, UDP, Ether, Raw

    from test_evidence import RREQ  # same folder (rootdir-relative import)

    def scenario_with(port: int) -> dict:
        monkeypatch.setattr(ShellLab, "capture_payload",
                            [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=port, dport=port) / Raw(RREQ)])
        return engine.run_scenario("demo", say=lambda m: None)

    folder = shell_engine / "scenarios" / "demo"
    folder.mkdir(parents=True)
    (folder / "topology.yaml").write_text("name: demo\n")
    (folder / "scenario.yaml").write_text(json.dumps({"capture": ["seg"], "evidence": ["aodv"], "checks": [GOOD]}))
    good = {c["name"]: c["passed"] for c in scenario_with(654)["checks"]}
    assert good["tshark decodes the 1 pcaps without a malformed frame"]
    assert good["tshark's own dissector decodes aodv in the pcaps (registered port)"]
    bad = scenario_with(655)  # AODV on another port: Wireshark sees plain UDP
    assert not bad["passed"]
    assert not {c["name"]: c["passed"] for c in bad["checks"]}["tshark's own dissector decodes aodv in the pcaps (registered port)"]


def test_named_steps_are_counter_points_and_reports_carry_claims(shell_engine: Path) -> None:
    """scenario.yaml with steps and check kinds (orchestration.checks): the engine samples the
    counter before and after the named step, runs a status check, and every report entry
    names its claims (scenario.py's ctx.check(claims=) too)."""
    st = shell_engine / "st.json"
    st.write_text('{"rows": [{"peer": "198.51.100.1", "packets": 1}]}')
    bump = (f"python3 -c \"import json; p='{st}'; d=json.load(open(p)); d['rows'][0]['packets'] += 4; "
            "json.dump(d, open(p, 'w'))\"")
    folder = shell_engine / "scenarios" / "demo"
    folder.mkdir(parents=True)
    (folder / "topology.yaml").write_text("name: demo\n")
    (folder / "scenario.yaml").write_text(json.dumps({
        "steps": [{"name": "traffic", "node": "n", "run": bump}, {"name": "idle", "node": "n", "run": "true"}],
        "checks": [
            {"name": "row counted the traffic", "counter": "n", "file": str(st), "path": "rows[peer=198.51.100.1].packets",
             "from": "before traffic", "to": "after traffic", "op": "==", "delta": 4, "claims": [6]},
            {"name": "nothing after it", "counter": "n", "file": str(st), "path": "rows[0].packets",
             "from": "idle", "op": "==", "delta": 0},
            {"name": "wrong: it grew by 5", "counter": "n", "file": str(st), "path": "rows[0].packets", "delta": 5,
             "op": "=="},
            {"name": "row is there", "status": "n", "file": str(st), "path": "rows[0].peer", "value": "198.51.100.1",
             "claims": [2]}]}))
    (folder / "scenario.py").write_text("def run(ctx):\n    ctx.check('from code', True, 'x', claims=[12, 13])\n")
    rep = engine.run_scenario("demo", say=lambda m: None)
    res = {c["name"]: (c["passed"], c["claims"]) for c in rep["checks"]}
    assert res["row counted the traffic"] == (True, [6])
    assert res["nothing after it"] == (True, [])
    assert res["wrong: it grew by 5"][0] is False
    assert res["row is there"] == (True, [2]) and res["from code"] == (True, [12, 13])
    detail = next(c["detail"] for c in rep["checks"] if c["name"] == "wrong: it grew by 5")
    assert "1 -> 5, delta 4" in detail


def test_interop_failures_print_names_and_details_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    """`testbed interop` lists failing cells: their names and log excerpts are data ([/x] once
    raised MarkupError there, [bold] vanished)."""
    from orchestration.interop import command

    report = {"passed": False, "checks": [{"name": "cell [bold] x", "passed": False,
                                           "detail": f"no trusted key [/x] for {MAC}"}]}
    monkeypatch.setattr(command, "run_row", lambda peer, **kw: (report, []))
    monkeypatch.setattr(command, "summary", lambda results: "matrix")
    r = CliRunner().invoke(app, ["interop", "--peer", "trixie"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 1, r.output
    assert f"FAIL cell [bold] x: no trusted key [/x] for {MAC}" in r.output
