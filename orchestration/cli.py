"""The ``testbed`` command line: each command is one call of the Python API."""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .backend import BackendError
from .lab import Lab, LabError
from .state import labs_up
from .topology import TopologyError, load_topology

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emulate mobile VPNs, security gateways and mobility routers in containers.")
EXPECTED = (TopologyError, LabError, BackendError, FileNotFoundError, ValueError)


def make_console(stderr: bool = False) -> Console:
    """A console for data: no markup or highlighting of what it prints (text from the
    network or from files is printed as it is: a MAC 'e6:ab:ce' stays one, '[/x]' does
    not raise), progress lines without the source-file suffix, and, when the output is
    not a terminal, no wrapping at 80 columns (lines stay whole for grep and logs)."""
    probe = Console(stderr=stderr)
    wide = {} if probe.is_terminal else {"width": 100_000, "soft_wrap": True}
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, log_path=False, **wide)


console = make_console(stderr=True)
out_console = make_console()


def _say(msg: str) -> None:
    """A progress line on stderr: local time, then the message as plain text."""
    console.print(Text.assemble((time.strftime("[%H:%M:%S] "), "dim"), str(msg)))


def _fail(e: Exception) -> None:
    console.print(Text.assemble(("error:", "red"), " ", str(e)))
    raise typer.Exit(2)


def _checks_table(title: str, checks: list[dict]) -> Table:
    """One row per check of a report: name, pass/FAIL, detail."""
    t = Table(title=Text(title))
    t.add_column("check")
    t.add_column("result")
    t.add_column("detail", overflow="fold")
    for c in checks:  # names and details are data: printed as text, never read as markup
        t.add_row(Text(c["name"]), Text("pass", style="green") if c["passed"] else Text("FAIL", style="red"),
                  Text(c["detail"]))
    return t


def _lab_name(lab: Optional[str]) -> str:
    if lab:
        return lab
    names = labs_up()
    if len(names) == 1:
        return names[0]
    if not names:
        _fail(LabError("no lab is up; start one with 'testbed up FILE'"))
    _fail(LabError(f"several labs are up ({', '.join(names)}); name one with --lab"))
    raise AssertionError


@app.command()
def up(file: Path = typer.Argument(..., help="topology YAML"),
       lab: Optional[str] = typer.Option(None, help="lab name (default: the topology's name)"),
       workdir: Optional[Path] = typer.Option(None, help="where logs and volumes go")) -> None:
    """Start a lab from a topology file."""
    try:
        with console.status("bringing the lab up...") as st:
            def say(m: str) -> None:
                st.update(Text(m))
                _say(m)
            Lab.from_file(file, name=lab, workdir=workdir).up(say=say)
    except EXPECTED as e:
        _fail(e)


@app.command()
def down(lab: Optional[str] = typer.Option(None, help="lab name")) -> None:
    """Remove a lab's nodes, links and namespaces (logs stay)."""
    name = _lab_name(lab)
    try:
        Lab.attach(name).down(say=_say)
    except LabError:
        # No saved state (e.g. 'up' was killed before it saved): remove what carries the name.
        from .cleanup import clean_lab
        from .lab import default_backend

        gone = clean_lab(name, default_backend())
        if not any(gone.values()):
            _fail(LabError(f"no lab named {name!r} is up and nothing of it is left"))
        _say(f"lab {name} had no saved state; removed what was left: {gone}")
    except EXPECTED as e:
        _fail(e)


@app.command()
def status(lab: Optional[str] = typer.Option(None, help="only this lab"),
           as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """List the labs that are up, their nodes and links."""
    names = [lab] if lab else labs_up()
    out = []
    for n in names:
        try:
            out.append(Lab.attach(n).status())
        except EXPECTED as e:
            _fail(e)
    if as_json:
        print(json.dumps(out, indent=2))
        return
    if not out:
        console.print("no lab is up")
    for st in out:
        t = Table(title=Text(f"lab {st['lab']}  ({st['workdir']})"))
        for col in ("node", "role", "M-VPN", "running"):
            t.add_column(col)
        for node, info in st["nodes"].items():
            t.add_row(Text(node), Text(str(info["role"])), Text(info["mvpn"] or "-"),
                      Text("yes") if info["running"] else Text("no", style="red"))
        out_console.print(t)


@app.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_(ctx: typer.Context, node: str = typer.Argument(...), lab: Optional[str] = typer.Option(None)) -> None:
    """Run a command in a node: testbed exec NODE -- CMD ARGS... (exit status is CMD's)."""
    cmd = [a for a in ctx.args]
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        _fail(ValueError("give a command after --, e.g. testbed exec a1 -- ip addr"))
    try:
        r = Lab.attach(_lab_name(lab)).exec(node, cmd)
    except EXPECTED as e:
        _fail(e)
        return
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    raise typer.Exit(r.exit_code)


@app.command()
def capture(link: str = typer.Argument(..., help="segment, SEGMENT:NODE, A--B or NODE:IFNAME"),
            output: Path = typer.Option(..., "-o", "--output", help="pcap file to write"),
            duration: Optional[float] = typer.Option(None, help="seconds (default: until Ctrl-C)"),
            count: Optional[int] = typer.Option(None, help="stop after this many packets"),
            lab: Optional[str] = typer.Option(None)) -> None:
    """Capture a link into a pcap file readable by tshark/Wireshark."""
    try:
        the_lab = Lab.attach(_lab_name(lab))
        proc = the_lab.capture(link, output, count=count)
    except EXPECTED as e:
        _fail(e)
        return
    # Ctrl-C (SIGINT) stops the capture even when this process was started with SIGINT ignored
    # (a background job of a non-interactive shell inherits that, and Python then keeps it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _say(f"capturing {link} into {output} (Ctrl-C to stop)")
    try:
        if duration is not None:
            proc.wait(timeout=duration)
        else:
            proc.wait()
    except (KeyboardInterrupt, Exception):
        pass
    Lab.stop_capture(proc)
    _say(f"wrote {output}")


@app.command()
def link(key: str = typer.Argument(..., help="link key or NODE:IFNAME"),
         state: str = typer.Argument(..., help="up or down"),
         lab: Optional[str] = typer.Option(None)) -> None:
    """Take a link down or up."""
    if state not in ("up", "down"):
        _fail(ValueError("state must be 'up' or 'down'"))
    try:
        Lab.attach(_lab_name(lab)).set_link(key, state == "up")
    except EXPECTED as e:
        _fail(e)


@app.command()
def move(key: str = typer.Argument(..., help="a node's segment interface: SEGMENT:NODE or NODE:IFNAME"),
         segment: str = typer.Argument(..., help="segment to attach it to"),
         flap: bool = typer.Option(False, help="drop carrier during the move"),
         lab: Optional[str] = typer.Option(None)) -> None:
    """Move a node's interface to another segment (radio handover)."""
    try:
        dt = Lab.attach(_lab_name(lab)).move(key, segment, flap=flap)
    except EXPECTED as e:
        _fail(e)
        return
    _say(f"moved {key} to {segment} in {dt * 1000:.1f} ms")


@app.command()
def graph(file: Path = typer.Argument(..., help="topology YAML"),
          output: Path = typer.Option(..., "-o", "--output", help="picture to write (.png, .svg, .pdf)")) -> None:
    """Draw a topology: realms, nodes by role, links."""
    from .graph import render

    try:
        path = render(load_topology(file), output)
    except EXPECTED as e:
        _fail(e)
        return
    _say(f"wrote {path}")


@app.command()
def validate(file: Path = typer.Argument(..., help="topology or lab YAML"),
             as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout, for CI")) -> None:
    """Check a topology or lab file without starting anything (a lab file: domain checks,
    generated agent configs through the agents' models, generated nftables through nft -c)."""
    try:
        topo = load_topology(file)
    except EXPECTED as e:
        if as_json:
            problems = [{"path": p, "problem": m} for p, m in getattr(e, "problems", [("", str(e))])]
            print(json.dumps({"file": str(file), "valid": False, "problems": problems}, indent=1))
            raise typer.Exit(2)
        _fail(e)
        return
    if as_json:
        print(json.dumps({"file": str(file), "valid": True, "nodes": len(topo.nodes), "segments": len(topo.segments),
                          "mvpns": len(topo.mvpns), "problems": []}, indent=1))
        return
    console.print(Text(f"{file}: valid ({len(topo.nodes)} nodes, {len(topo.segments)} segments, {len(topo.mvpns)} M-VPNs)"))


@app.command()
def render(file: Path = typer.Argument(..., help="lab YAML (kind: lab)"),
           seed: Optional[str] = typer.Option(None, help="derive tokens and keys from this text (reproducible output)")) -> None:
    """Print the low-level topology a lab file compiles to, agent configs included."""
    from .domain import load_lab
    from .domain.render import render_topology
    from .domain.enrolment import Secrets

    try:
        compiled = load_lab(file, Secrets(seed))
    except EXPECTED as e:
        _fail(e)
        return
    print(render_topology(compiled.topology), end="")


@app.command(name="run")
def run_(file: Path = typer.Argument(..., help="lab YAML (kind: lab)"),
         lab: Optional[str] = typer.Option(None, help="lab name (default: the file's)"),
         keep: bool = typer.Option(False, help="leave the lab up afterwards")) -> None:
    """Bring a lab file up, run its schedule and checks, take it down; exit 1 if a check fails.
    The report goes to results/examples/<name>/report.json (a file in examples/) or
    results/<name>/report.json, where ``testbed claims`` reads it."""
    from .domain import load_lab
    from .domain.schedule import report_path, run_lab

    try:
        report = run_lab(load_lab(file), lab_name=lab, keep=keep, say=_say, report=report_path(file))
    except EXPECTED as e:
        _fail(e)
        return
    out_console.print(_checks_table(f"lab {report['lab']}: {'PASSED' if report['passed'] else 'FAILED'}", report["checks"]))
    raise typer.Exit(0 if report["passed"] else 1)


@app.command()
def claims(as_json: bool = typer.Option(False, "--json", help="the matrix as one JSON object"),
           as_markdown: bool = typer.Option(False, "--markdown", help="the matrix as a Markdown table (README)"),
           claims_file: Path = typer.Option(Path("docs/claims.txt"), "--claims", help="NUMBER<TAB>text lines"),
           results: Optional[Path] = typer.Option(None, help="reports folder (default: results/)"),
           verbose: bool = typer.Option(False, "-v", help="list every check under its claim"),
           readme: Optional[Path] = typer.Option(None, help="write the Markdown matrix into this file between its markers")) -> None:
    """The coverage matrix of the claims: which checks of the scenarios and examples name each
    claim and how they fared in their last reports (pass / fail / not run), and which claims
    no check covers."""
    from .backend import repo_root
    from .checks.claims import ClaimsError, build, markdown, update_readme

    root = repo_root()
    try:
        m = build(root, results or root / "results", claims_file)
        if readme is not None:
            update_readme(readme, markdown(m))
            _say(f"{readme}: claims matrix written ({len(m.titles) - len(m.uncovered)} of {len(m.titles)} claims have a check)")
            return
    except ClaimsError as e:
        _fail(e)
        return
    if as_json:
        print(json.dumps(m.to_json(), indent=1))
        return
    if as_markdown:
        print(markdown(m))
        return
    t = Table(title=Text(f"claims: {len(m.titles) - len(m.uncovered)} of {len(m.titles)} have a check"))
    for col in ("claim", "what it claims", "checks", "pass", "fail", "not run"):
        t.add_column(col, overflow="fold")
    for n, title in m.titles.items():
        c = m.counts(n)
        t.add_row(str(n), Text(title[:90]), str(len(m.checks.get(n, []))), Text(str(c["pass"]), style="green" if c["pass"] else ""),
                  Text(str(c["fail"]), style="red" if c["fail"] else ""), str(c["not run"]))
        if verbose:
            for r in m.checks.get(n, []):
                t.add_row("", Text(f"  {r.source}: {r.name}"), "", *(("x", "", "") if r.status == "pass" else
                                                                     ("", "x", "") if r.status == "fail" else ("", "", "x")))
    out_console.print(t)
    out_console.print(Text("no check names claims: " + (", ".join(map(str, m.uncovered)) or "(none)")))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the lab format (kind: lab), for editors."""
    from .domain import lab_schema

    print(json.dumps(lab_schema(), indent=1))


@app.command()
def clean(lab: Optional[str] = typer.Option(None, help="only this lab (default: every testbed lab)")) -> None:
    """Remove everything testbed-labelled that is left behind (also after a crash)."""
    from .cleanup import clean_lab, known_labs
    from .lab import default_backend

    backend = default_backend()
    labs = [lab] if lab else sorted(known_labs(backend))
    for name in labs:
        gone = clean_lab(name, backend)
        _say(f"lab {name}: removed {len(gone['containers'])} containers, {len(gone['namespaces'])} namespaces, "
                    f"{len(gone['interfaces'])} host interfaces, {len(gone['state'])} state files")
    if not labs:
        _say("nothing to clean")


@app.command()
def images() -> None:
    """Build the node images that are missing or stale."""
    from .images import ensure_images, IMAGES_DIR

    roles = {p.name for p in IMAGES_DIR.iterdir() if (p / "Dockerfile").is_file()}
    try:
        tags = ensure_images(roles, _say)
    except EXPECTED as e:
        _fail(e)
        return
    for r, t in tags.items():
        _say(f"{r}: {t}")


@app.command()
def scenario(name: str = typer.Argument("roaming", help="folder under scenarios/"),
             lab: Optional[str] = typer.Option(None, help="lab name (default: the topology's)"),
             keep: bool = typer.Option(False, help="leave the lab up afterwards")) -> None:
    """Run a scenario, print its checks and write results/<name>/report.json."""
    from .scenario import run_scenario

    try:
        report = run_scenario(name, lab_name=lab, keep=keep, say=_say)
    except EXPECTED as e:
        _fail(e)
        return
    out_console.print(report_tables(name, report))
    raise typer.Exit(0 if report["passed"] else 1)


def report_tables(name: str, report: dict) -> Group:
    """A scenario report as two tables (checks, metrics); every name and detail is data,
    printed as text, never read as markup."""
    t = _checks_table(f"scenario {name}: {'PASSED' if report['passed'] else 'FAILED'} in {report['duration_s']:.1f} s",
                      report["checks"])
    parts: list[Table] = [t]
    if report["metrics"]:
        m = Table(title="metrics")
        m.add_column("metric")
        m.add_column("value", justify="right")
        for k, v in report["metrics"].items():
            m.add_row(Text(k), Text(f"{v:g}" if isinstance(v, (int, float)) else str(v)))
        parts.append(m)
    return Group(*parts)
    raise typer.Exit(0 if report["passed"] else 1)


@app.command()
def interop(peer: str = typer.Option(..., help="Debian suite of the stock strongSwan peer: bookworm, trixie, bullseye"),
            lab: Optional[str] = typer.Option(None, help="lab name"),
            keep: bool = typer.Option(False, help="leave the lab up afterwards")) -> None:
    """Run one peer release's rows of the strongSwan interop matrix (JSON + table)."""
    from .interop.command import run_row, summary

    try:
        report, results = run_row(peer, lab=lab, keep=keep, say=_say)
    except EXPECTED as e:
        _fail(e)
        return
    print(summary(results))
    for c in report["checks"]:
        if not c["passed"]:
            # names and details are data (log lines, peer identities): never read as markup
            console.print(Text.assemble(("FAIL", "red"), f" {c['name']}: {c['detail']}"), highlight=False)
    raise typer.Exit(0 if report["passed"] else 1)


@app.command()
def bench(only: Optional[str] = typer.Option(None, help="only these benchmarks (comma-separated)"),
          all_: bool = typer.Option(False, "--all", help="every benchmark, not only issue 14's four sections"),
          output: Path = typer.Option(Path("results/bench.json"), "-o", help="JSON results"),
          report: bool = typer.Option(False, "--report", help="only print the summary table of the JSON results")) -> None:
    """Run the benchmarks and write their results as JSON (TESTBED_BENCH_QUICK=1: fewest runs)."""
    from .bench import run_benchmarks

    if report:
        from .bench_report import markdown

        if not output.is_file():
            _fail(FileNotFoundError(f"{output}: no results yet; run 'make bench' first"))
            return
        print(markdown(json.loads(output.read_text())), end="")
        return
    try:
        res = run_benchmarks(only=only, output=output, say=_say, run_all=all_)
    except EXPECTED as e:
        _fail(e)
        return
    print(json.dumps(res, indent=2))


_MAIN_PID = 0


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM during 'up' unwinds like Ctrl-C, so the half-built lab is removed. Forked
    # helpers (pyroute2 creates namespaces in a child it then terminates) die as usual.
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise SystemExit(128 + signum)


def main() -> None:  # pragma: no cover
    """The ``testbed`` command: SIGTERM/SIGPIPE handled so a stopped run cleans up, then typer."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
