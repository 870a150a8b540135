"""The intruder scenario's attempt table (scenarios/intruder/scenario.py) against a real MSM
process on loopback, seeded as the intruder lab seeds it: every attempt refused with its
reason and counted; with the test-only `insecure_no_authz: true` the attempts that need
authorisation get in, i.e. the scenario's checks fail without it. The trimmed, fast form of
tests/integration/test_intruder.py::test_intruder_checks_fail_without_authorisation."""
from __future__ import annotations

import pytest

from orchestration.scenario import SCENARIOS_DIR, load_module
from orchestration.topology import load_topology
from testbed.common.enroll import enroll, make_csr
from testbed.msm.ca import new_key
from testbed.common.portal_client import MsmClient, MsmError

from .test_msm_contract import real_msm

scenario = load_module(SCENARIOS_DIR / "intruder" / "scenario.py", "intruder_scenario")
# compiled once: the lab file's tokens are made anew at each compilation
TOPOLOGY = load_topology(SCENARIOS_DIR / "intruder" / "topology.yaml")
# refused only by authorisation (roles, self, membership, certificates), not by token checks
NEEDS_AUTHZ = ("d adds itself to W", "d signs on as itself to W", "d signs on as member a",
               "d mints an enrolment token for user a", "d mints an SG token for M-VPN B",
               "d reads M-VPN B's filter rows", "x adds itself to W", "x reads M-VPN B's filter rows")


def outcome(client: MsmClient, a) -> tuple[int, str | None]:
    try:
        client.request(a.method, a.path, a.body)
        return 200, None
    except MsmError as exc:
        return exc.status, exc.reason


def run_attempts(tmp_path, **extra) -> dict[str, tuple[int, str | None, int]]:
    """name -> (HTTP status, reason, rise of auth.refused.<reason>) for every attempt."""
    seed = scenario.msm_config(TOPOLOGY)["seed"]
    tokens = scenario.lab_tokens(TOPOLOGY)
    with real_msm(tmp_path, seed=seed, zone="mwg.test.", **extra) as op:
        creds = enroll(op.base_url, tokens["d.mwg.test"], "mn", tmp_path / "d", wait=10, key_type="ec")
        d = MsmClient(op.base_url, ca_file=creds.ca, cert_file=creds.cert, key_file=creds.key)
        x = MsmClient(op.base_url, ca_file=creds.ca)
        csr = make_csr(new_key("ec"), "intruder")
        out = {}
        for a in scenario.d_attempts(tokens, csr) + scenario.x_attempts(tokens, csr):
            before = op.status()["auth"]["refused"]
            code, reason = outcome(d if a.node == "d" else x, a)
            after = op.status()["auth"]["refused"]
            out[a.name] = (code, reason, after.get(reason, 0) - before.get(reason, 0) if reason else 0)
        return out


def test_every_attempt_is_refused_with_its_reason_and_counted(tmp_path):
    table = {a.name: a for a in scenario.d_attempts(scenario.lab_tokens(TOPOLOGY), "")
             + scenario.x_attempts(scenario.lab_tokens(TOPOLOGY), "")}
    got = run_attempts(tmp_path)
    for name, (code, reason, rise) in got.items():
        assert code in (401, 403) and reason in table[name].reasons and rise == 1, (name, code, reason, rise)
    assert len(got) == 13


def test_without_authorisation_the_attempts_get_in(tmp_path):
    got = run_attempts(tmp_path, insecure_no_authz=True)
    for name in NEEDS_AUTHZ:
        (code, reason, _), = [v for k, v in got.items() if k.startswith(name)]
        assert code not in (401, 403), (name, code, reason)
