"""The trimmed interop matrix in a real lab (issue 12): stock strongSwan 6.0.1 (trixie, a
release other than the node image's 5.9.8) in all three roles, two proposals x two key types,
the five negative cells, rekey/reauth during a stream; plus proof in the real lab that the
traffic, key-type and rekey steps fail when the feature is wrong. The full matrix is
`testbed scenario interop`; the log readers' failure cases are in tests/unit/interop."""
from __future__ import annotations

import pytest

from orchestration.interop import evidence as E
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
    run = MatrixRun(lab, [SUITE], proposals=PROPOSALS, key_types=KEYS, say=print)
    try:
        run.prepare()
        wrong = run.check_algorithms(SUITE)
        run.run_rows(SUITE)
        write_results(run.cells, work / "results")
        run.collect_logs()
        yield run, wrong, work
    finally:
        run.collect_logs()
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
    want |= {("mn", n) for n in ("wrong-san", "wrong-id", "expired", "other-ca", "no-proposal")}
    passed = {k for k, c in cells.items() if c.status == "pass"}
    failed = {k: (c.reason, c.logs) for k, c in cells.items() if c.status not in ("pass", "n/a")}
    assert not failed, failed
    assert passed == want
    for (role, col), c in cells.items():
        if c.status == "pass" and "/" in col:
            assert c.steps["IKE_SA up"] and c.steps["CHILD_SA up"] and c.steps["traffic both ways"]
            assert c.steps["key type"] is True
            assert c.steps["IKE_SA reauth"] and c.steps["IKE_SA rekey"] and c.steps["CHILD_SA rekey"]
            assert c.steps["rekey lost"] <= 2 and c.setup_ms and c.setup_ms > 0
            assert c.steps["realm filter"] == (True if role == "mn" else "n/a")
    md = (work / "results" / "matrix.md").read_text()
    for role in ("mn", "sg", "ha"):
        assert f"| trixie (6.0.1) as {role} |" in md
    # the realm charons' logs of our SG-B are collected with the lab's logs
    assert "authentication of '198.51.100.1'" in (work / "logs" / "sg-b" / "charon-sg-A.log").read_text()


def test_negative_cells_name_the_reason_from_both_logs(matrix) -> None:
    run, _, _ = matrix
    neg = {c.column: c for c in run.cells if "/" not in c.column}
    ours = {k: c.logs["ours (sg-b realm A)"] for k, c in neg.items()}
    assert "no matching peer config" in ours["wrong-id"]
    assert "no trusted" in ours["wrong-san"] and "no matching peer config" not in ours["wrong-san"]
    assert "subject certificate invalid" in ours["expired"]
    assert "no issuer certificate" in ours["other-ca"]
    assert "NO_PROPOSAL_CHOSEN" in neg["no-proposal"].logs["peer (im-tr)"]
    for c in neg.values():
        assert c.steps == {"refused": True, "peer log says why": True, "our log names this cell": True}
    # each reason is this cell's only: judged as any other cell, the same log fails
    for kind, c in neg.items():
        assert [k for k in neg if E.refusal_reason(c.logs["ours (sg-b realm A)"])[0] == k] == [kind]


def test_a_cell_fails_when_its_target_is_outside_the_workgroup(matrix) -> None:
    """The traffic step can fail: swap target and non-member, and the filter's drop shows."""
    run, _, _ = matrix
    bad = MatrixRun(run.lab, [SUITE], proposals=PROPOSALS[:1], key_types=KEYS[:1], say=print,
                    rekey=False, target=L.NOT_TARGET, not_target=L.TARGET)
    cell = bad.mn_cell(SUITE, PROPOSALS[0], KEYS[0])
    assert cell.status == "fail" and cell.steps["IKE_SA up"] and cell.steps["CHILD_SA up"]
    assert not cell.steps["traffic both ways"] and "0/3 answered" in cell.reason
    assert set(cell.logs) >= {"peer (im-tr)", "ours (sg-b realm A)"}


def test_key_type_and_rekey_steps_fail_when_the_feature_is_wrong(matrix) -> None:
    """In the lab: the logs of an Ed25519 initiation pass the ed25519 column's key-type step
    and fail the p256 column's (before, any key type that authenticated passed), and a stream
    during which only the reauthentication runs fails the IKE_SA and CHILD_SA rekey steps
    (make-before-break reauth alone makes new CHILD SPIs, which the old check took for a
    CHILD rekey)."""
    from orchestration.interop.matrix import Cell
    from orchestration.interop.runner import OUR_LOG, PEER_LOG
    run, _, _ = matrix
    node, conn = L.initiator_node(SUITE), "c0-ed25519"
    at = run._offsets({"peer": (node, PEER_LOG), "ours": ("sg-b", OUR_LOG)})
    ok, _, out = run.initiate(node, conn)
    assert ok, out
    try:
        logs = {k: run._since(*v) for k, v in at.items()}
        for key_type, want in (("ed25519", True), ("p256", False), ("rsa3072", False)):
            cell = Cell(SUITE, "mn", f"{PROPOSALS[0]} / {key_type}", "fail")
            assert run._key_step(cell, key_type, L.SG_A, (node, logs["peer"]), ("our sg-b", logs["ours"])) is want
            assert cell.steps["key type"] is want
        assert "signed with ['ED25519']" in cell.reason and "verified ['ED25519']" in cell.reason
        lost, verdicts, detail = run.rekey_during_stream(node, conn, dst=L.TARGET, do=("reauth",))
    finally:
        run.terminate(node, conn)
    assert verdicts["reauth"] == "", verdicts
    assert "did not happen" in verdicts["ike-rekey"] and "did not happen" in verdicts["child-rekey"]
    assert lost is not None and lost <= 2, detail
