"""The trimmed interop matrix in a real lab (issue 12): stock strongSwan 6.0.1 (trixie, a
release other than the node image's 5.9.8) in all three roles, two proposals x two key types,
the four negative cells, rekey/reauth during a stream; plus proof that the traffic and
filter steps can fail. The full matrix is `testbed scenario interop`."""
from __future__ import annotations

import pytest

from orchestration.interop import labspec as L
from orchestration.interop.runner import MatrixRun, write_results
from orchestration.lab import Lab
from orchestration.pytest_plugin import unique_lab_name

SUITE = "trixie"
PROPOSALS = ["aes128gcm16-prfsha256-ecp256", "chacha20poly1305-prfsha256-curve25519"]
KEYS = ["rsa3072", "ed25519"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    name = unique_lab_name("io")
    work = tmp_path_factory.mktemp("interop")
    lab = Lab.from_dict(L.topology([SUITE], name=name), name=name, workdir=work)
    lab.up(say=print)
    try:
        run = MatrixRun(lab, [SUITE], proposals=PROPOSALS, key_types=KEYS, say=print)
        run.prepare()
        wrong = run.check_algorithms(SUITE)
        run.run_rows(SUITE)
        write_results(run.cells, work / "results")
        yield run, wrong, work
    finally:
        lab.collect_logs()
        lab.down()


def test_knowledge_matches_the_peer(matrix) -> None:
    _, wrong, _ = matrix
    assert wrong == []


def test_every_cell_passes_in_every_role(matrix) -> None:
    run, _, work = matrix
    cells = {(c.role, c.column): c for c in run.cells}
    want = {(r, f"{p} / {k}") for r in ("mn", "sg") for p in PROPOSALS for k in KEYS}
    want |= {("ha", f"{p} / psk") for p in PROPOSALS}
    want |= {("mn", n) for n in ("wrong-san", "expired", "other-ca", "no-proposal")}
    passed = {k for k, c in cells.items() if c.status == "pass"}
    failed = {k: (c.reason, c.logs) for k, c in cells.items() if c.status not in ("pass", "n/a")}
    assert not failed, failed
    assert passed == want
    for (role, col), c in cells.items():
        if c.status == "pass" and "/" in col:
            assert c.steps["IKE_SA up"] and c.steps["CHILD_SA up"] and c.steps["traffic both ways"]
            assert c.steps["rekey lost"] <= 2 and c.setup_ms and c.setup_ms > 0
    md = (work / "results" / "matrix.md").read_text()
    for role in ("mn", "sg", "ha"):
        assert f"| trixie (6.0.1) as {role} |" in md


def test_negative_cells_name_the_reason_from_both_logs(matrix) -> None:
    run, _, _ = matrix
    neg = {c.column: c for c in run.cells if "/" not in c.column}
    assert "no matching peer config" in neg["wrong-san"].logs["ours (sg-b realm A)"]
    assert "no issuer certificate" in neg["other-ca"].logs["ours (sg-b realm A)"]
    assert "NO_PROPOSAL_CHOSEN" in neg["no-proposal"].logs["peer (im-tr)"]
    for c in neg.values():
        assert c.steps == {"refused": True, "peer log says why": True, "our log says why": True}


def test_a_cell_fails_when_its_target_is_outside_the_workgroup(matrix) -> None:
    """The traffic step can fail: swap target and non-member, and the filter's drop shows."""
    run, _, _ = matrix
    bad = MatrixRun(run.lab, [SUITE], proposals=PROPOSALS[:1], key_types=KEYS[:1], say=print,
                    rekey=False, target=L.NOT_TARGET, not_target=L.TARGET)
    cell = bad.mn_cell(SUITE, PROPOSALS[0], KEYS[0])
    assert cell.status == "fail" and cell.steps["IKE_SA up"] and cell.steps["CHILD_SA up"]
    assert not cell.steps["traffic both ways"] and "0/3 answered" in cell.reason
    assert set(cell.logs) >= {"peer (im-tr)", "ours (sg-b realm A)"}
