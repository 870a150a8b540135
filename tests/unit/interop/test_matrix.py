"""Unit tests (no Docker) of the interop matrix: the "not supported" knowledge, its runtime
cross-check against `swanctl --list-algs`, rendering, peer configs and the lab spec."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestration.interop import labspec, matrix, peer
from orchestration.interop.matrix import Cell, missing_features

ROOT = Path(__file__).resolve().parents[3]

LIST_ALGS_591 = """aead:
  AES_GCM_16[aesni] CHACHA20_POLY1305[openssl]
dh:
  ECP_256[openssl] MODP_3072[openssl] CURVE_25519[openssl]
"""


def test_shipped_suites_support_every_cell():
    # What the built images showed: bullseye 5.9.1, bookworm 5.9.8, trixie 6.0.1 can do all.
    for suite, release in matrix.SUITE_RELEASE.items():
        for p in matrix.PROPOSALS:
            for k in matrix.KEY_TYPES:
                assert missing_features(release, p, k) == [], (suite, p, k)


def test_old_releases_are_not_supported_where_features_came_later():
    assert missing_features("5.5.1", "chacha20poly1305-prfsha256-curve25519", "p256") == ["curve25519"]
    assert missing_features("5.2.0", "chacha20poly1305-prfsha256-curve25519", "ed25519") == [
        "chacha20poly1305", "curve25519", "ed25519"]
    assert missing_features("5.5.1", "aes256-sha256-modp3072", "ed25519") == ["ed25519"]
    assert missing_features("5.5.2", "aes256-sha256-modp3072", "ed25519") == []


def test_version_parsing_refuses_garbage():
    with pytest.raises(ValueError):
        matrix.version("5.9")
    with pytest.raises(ValueError):
        matrix.version("five")


def test_list_algs_cross_check_finds_a_missing_algorithm():
    assert matrix.algs_disagree("5.9.1", LIST_ALGS_591) == []
    without_chacha = LIST_ALGS_591.replace("CHACHA20_POLY1305[openssl]", "")
    assert matrix.algs_disagree("5.9.1", without_chacha) == ["chacha20poly1305"]
    # an old release is not expected to list what it cannot do
    assert matrix.algs_disagree("5.2.0", without_chacha.replace("CURVE_25519[openssl]", "")) == []


def test_list_algs_cross_check_fails_knowledge_that_is_too_old():
    # the other way: knowledge that marks cells "not supported" although the release lists
    # the algorithm (a release that CAN do a cell marked not supported fails the check)
    assert matrix.algs_disagree("5.2.0", LIST_ALGS_591) == ["chacha20poly1305", "curve25519"]
    assert matrix.algs_disagree("5.5.1", LIST_ALGS_591) == ["curve25519"]


def test_list_algs_cross_check_matches_names_exactly():
    # ECP_256_BP (brainpool) is not ECP_256, MODP_3072_256 is not MODP_3072: substrings lied
    brainpool = LIST_ALGS_591.replace("ECP_256[openssl]", "ECP_256_BP[openssl]")
    assert matrix.algs_disagree("5.9.1", brainpool) == ["ecp256"]
    sub = LIST_ALGS_591.replace("MODP_3072[openssl]", "MODP_3072_256[openssl]")
    assert matrix.algs_disagree("5.9.1", sub) == ["modp3072"]
    assert matrix.listed_algs("  AES_GCM_16[aesni] ECP_256_BP[openssl]") == {"AES_GCM_16", "ECP_256_BP"}


def _cells():
    return [
        Cell("bullseye", "mn", "p / k", "pass", setup_ms=41.6),
        Cell("bullseye", "mn", "q / k", "fail", "CHILD_SA not installed",
             logs={"peer (im-bu)": "10[IKE] received TS_UNACCEPTABLE", "ours (sg-b)": "no route"}),
        Cell("trixie", "sg", "p / k", "unsupported", "6.0.1 (x)"),
        Cell("trixie", "sg", "q / k", "n/a", "PSK only"),
    ]


def test_markdown_has_one_row_per_release_and_role_and_the_failing_logs():
    md = matrix.render_markdown(_cells())
    lines = md.splitlines()
    assert lines[0] == "| peer release x role | p / k | q / k |"
    assert lines[2] == "| bullseye (5.9.1) as mn | pass (42 ms) | FAIL: CHILD_SA not installed |"
    assert lines[3] == "| trixie (6.0.1) as sg | not supported by 6.0.1 (x) | n/a |"
    assert "n/a: sg: PSK only." in md
    assert ("Cells per row (n/a and not supported were not tested): bullseye (5.9.1) as mn 1 pass, 0 n/a, "
            "0 not supported, 1 fail; trixie (6.0.1) as sg 0 pass, 1 n/a, 1 not supported, 0 fail.") in md
    assert "received TS_UNACCEPTABLE" in md and "no route" in md
    # a passing table carries no log section
    assert "```" not in matrix.render_markdown([_cells()[0]])


def test_counts_keep_n_a_and_unsupported_apart_from_pass():
    n = matrix.counts(_cells())
    assert n["trixie (6.0.1) as sg"] == {"pass": 0, "fail": 0, "n/a": 1, "unsupported": 1}
    assert n["bullseye (5.9.1) as mn"] == {"pass": 1, "fail": 1, "n/a": 0, "unsupported": 0}


def test_markdown_escapes_pipes_in_reasons():
    md = matrix.render_markdown([Cell("bookworm", "mn", "c", "fail", "a | b")])
    assert "FAIL: a / b" in md


def test_html_colours_and_escapes():
    page = matrix.render_html(_cells() + [Cell("bookworm", "mn", "p / k", "fail", "<script>")])
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert page.count("#c8f0c8") == 1 and page.count("#f5b5b5") == 2
    assert "<details><summary>peer (im-bu) log</summary>" in page


def test_initiator_config_has_every_cell_and_the_negatives():
    text = peer.initiator_swanctl("198.51.100.2", "198.51.100.1", "198.51.100.3", "10.0.0.0/24",
                                  baseline=("198.51.100.31", "10.0.0.31/32"))
    for p in matrix.PROPOSALS:
        for k in matrix.KEY_TYPES:
            assert f"    {peer.cell_name(p, k)} {{" in text and f"    b{peer.cell_name(p, k)} {{" in text
    for n in matrix.NEGATIVES:
        assert f"n-{n} {{" in text
    assert "mobike = no" in text and "proposals = aes192-sha384-ecp384" in text
    # wrong-san: the right identity with a certificate naming another SG; wrong-id: both wrong
    blocks = {name: text.split(f"    {name} {{", 1)[1].split("\n    }", 1)[0] for name in ("n-wrong-san", "n-wrong-id")}
    assert "id = 198.51.100.1" in blocks["n-wrong-san"] and "certs = wrong-san.pem" in blocks["n-wrong-san"]
    assert "id = 198.51.100.3" in blocks["n-wrong-id"] and "certs = wrong-san.pem" in blocks["n-wrong-id"]


def test_responder_config_offers_only_the_cell_proposal():
    text = peer.responder_swanctl("198.51.100.31", "10.0.0.31/32", "198.51.100.2",
                                  "aes256-sha256-modp3072", "ed25519")
    assert "proposals = aes256-sha256-modp3072" in text and "certs = ed25519.pem" in text
    assert "esp_proposals = aes256-sha256" in text and "base {" not in text


def test_peer_strongswan_conf_loads_libipsec_and_makes_before_break():
    conf = peer.strongswan_conf()
    assert "kernel-libipsec {" in conf and "make_before_break = yes" in conf


def test_topology_yaml_is_the_generator_output():
    on_disk = yaml.safe_load((ROOT / "scenarios/interop/topology.yaml").read_text())
    assert on_disk == labspec.topology()


def test_topology_subset_keeps_only_the_asked_suites():
    t = labspec.topology(["trixie"])
    peers = sorted(n for n in t["nodes"] if n.startswith(("im-", "rs-")))
    assert peers == ["im-tr", "rs-tr"]
    rows = yaml.safe_load(t["nodes"]["sg-b"]["files"]["/etc/testbed/sg.yaml"])["static_rows"]
    assert [r["initiator_private"] for r in rows] == [labspec.initiator_addr("trixie")]


def test_columns_are_ordered_by_proposal_then_key_then_negatives():
    p0, p1 = list(matrix.PROPOSALS)[:2]
    cells = [Cell("trixie", "mn", "expired", "pass"), Cell("trixie", "mn", f"{p1} / rsa3072", "pass"),
             Cell("trixie", "ha", f"{p0} / psk", "pass"), Cell("trixie", "mn", f"{p0} / ed25519", "pass"),
             Cell("trixie", "mn", "wrong-san", "pass")]
    header = matrix.render_markdown(cells).splitlines()[0]
    assert header == (f"| peer release x role | {p0} / ed25519 | {p0} / psk | {p1} / rsa3072 | "
                      "wrong-san | expired |")


def test_a_rerun_removes_the_previous_matrix_before_anything_else(tmp_path):
    from orchestration.scenario import run_scenario
    for name in ("matrix.md", "matrix.json", "matrix.html", "report.json"):
        (tmp_path / name).write_text("old run")
    (tmp_path / "notes.txt").write_text("not ours")
    with pytest.raises(Exception):   # stops early: the topology does not even validate
        run_scenario("interop", lab_name="iopu1", topology={"nodes": "broken"}, results_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


class _Ctx:
    def __init__(self, tmp_path):
        self.lab, self.results, self.checks, self.metrics, self.said = None, tmp_path, [], {}, []

    def say(self, text):
        self.said.append(text)

    def check(self, name, passed, detail=""):
        self.checks.append((name, passed, detail))
        return passed

    def metric(self, name, value):
        self.metrics[name] = value


def test_scenario_counts_n_a_and_unsupported_cells_apart_from_checks(tmp_path, monkeypatch):
    from orchestration.scenario import load_module
    mod = load_module(ROOT / "scenarios/interop/scenario.py", "interop_scenario_under_test")

    class FakeRun:
        def __init__(self, lab, suites, say, **kw):
            self.cells = []

        def prepare(self):
            pass

        def check_algorithms(self, suite):
            return []

        def run_rows(self, suite):
            self.cells += [Cell("trixie", "mn", "p / k", "pass", setup_ms=30.0, steps={"rekey lost": 1}),
                           Cell("trixie", "mn", "p / psk", "n/a", "X.509 only"),
                           Cell("trixie", "sg", "q / k", "unsupported", "6.0.1 (x)"),
                           Cell("trixie", "sg", "p / k", "fail", "CHILD_SA not installed")]

        def collect_logs(self):
            self.collected = True

    monkeypatch.setattr(mod, "MatrixRun", FakeRun)
    monkeypatch.setattr(mod, "suites_in", lambda lab: ["trixie"])
    ctx = _Ctx(tmp_path)
    mod.run(ctx)
    names = [c[0] for c in ctx.checks]
    assert names == ["trixie (6.0.1): swanctl --list-algs agrees with the support knowledge",
                     "trixie as mn: p / k", "trixie as sg: p / k"]   # no check for n/a or unsupported
    assert [c[1] for c in ctx.checks] == [True, True, False]
    assert ctx.metrics["cells_na"] == 1 and ctx.metrics["cells_unsupported"] == 1
    assert ctx.metrics["cells_pass"] == 1 and ctx.metrics["cells_fail"] == 1
    assert ctx.metrics["rekey_lost_packets_max"] == 1 and ctx.metrics["ike_child_setup_ms_median_mn"] == 30.0
    assert (tmp_path / "matrix.md").is_file()
