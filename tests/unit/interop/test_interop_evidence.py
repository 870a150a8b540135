"""Unit tests (no Docker) of what the interop matrix reads from charon's logs and list-sas:
each check is shown to fail when the feature it checks is wrong. Log lines are copied from
runs of the stock peers (strongSwan 5.9.1, 6.0.1) and our SG (5.9.8)."""
from __future__ import annotations

import pytest

from orchestration.interop import evidence as E

# im-tr (6.0.1) initiating with its Ed25519 certificate; sg-b (5.9.8) verifying it.
PEER_ED25519 = """\
17:21:14 09[IKE] authentication of '198.51.100.1' (myself) with ED25519 successful
17:21:14 10[IKE] authentication of '198.51.100.2' with ECDSA_WITH_SHA256_DER successful
"""
OURS_ED25519 = """\
17:21:14 12[IKE] authentication of '198.51.100.1' with ED25519 successful
17:21:14 12[IKE] authentication of '198.51.100.2' (myself) with ECDSA_WITH_SHA256_DER successful
"""
OURS_RSA = "17:21:22 11[IKE] authentication of '198.51.100.1' with RSA_EMSA_PKCS1_SHA2_256 successful\n"
PSK_SIGNER = "17:30:01 16[IKE] authentication of '10.0.0.40' (myself) with pre-shared key\n"
PSK_VERIFIER = "17:30:01 16[IKE] authentication of '10.0.0.40' with pre-shared key successful\n"


def test_auth_schemes_reads_who_signed_and_who_verified():
    assert E.auth_schemes(PEER_ED25519, "198.51.100.1", myself=True) == ["ED25519"]
    assert E.auth_schemes(PEER_ED25519, "198.51.100.1", myself=False) == []
    assert E.auth_schemes(PEER_ED25519, "198.51.100.2", myself=False) == ["ECDSA_WITH_SHA256_DER"]
    assert E.auth_schemes(OURS_ED25519, "198.51.100.1", myself=False) == ["ED25519"]
    assert E.auth_schemes(PSK_SIGNER, "10.0.0.40", myself=True) == ["pre-shared key"]
    assert E.auth_schemes(PSK_VERIFIER, "10.0.0.40", myself=False) == ["pre-shared key"]


def test_key_type_column_is_confirmed_only_by_its_own_scheme():
    ed = E.auth_schemes(OURS_ED25519, "198.51.100.1", myself=False)
    assert E.key_type_confirmed(ed, "ed25519")
    # the failure the newcomer trial found: another key type authenticated -> the cell fails
    assert not E.key_type_confirmed(ed, "p256")
    assert not E.key_type_confirmed(ed, "rsa3072")
    rsa = E.auth_schemes(OURS_RSA, "198.51.100.1", myself=False)
    assert E.key_type_confirmed(rsa, "rsa3072") and not E.key_type_confirmed(rsa, "ed25519")
    assert E.key_type_confirmed(["ECDSA_WITH_SHA256_DER"], "p256")
    assert E.key_type_confirmed(["ECDSA-256"], "p256")
    assert E.key_type_confirmed(["pre-shared key"], "psk") and not E.key_type_confirmed(["ED25519"], "psk")
    # no authentication seen is no confirmation; one odd one out among several fails too
    assert not E.key_type_confirmed([], "ed25519")
    assert not E.key_type_confirmed(["ED25519", "ECDSA_WITH_SHA256_DER"], "ed25519")


# Our SG's realm-A charon (5.9.8, cfg level 2) refusing each negative cell.
REFUSED = {
    "expired": """\
10:01:02 12[IKE] received end entity cert "O=testbed interop, CN=im-tr.interop"
10:01:02 12[CFG]   using certificate "O=testbed interop, CN=im-tr.interop"
10:01:02 12[CFG]   using trusted ca certificate "O=testbed interop, CN=interop matrix CA"
10:01:02 12[CFG] subject certificate invalid (valid from Nov 19 10:00:59 2026 to Nov 28 10:00:59 2026)
10:01:02 12[IKE] no trusted ECDSA public key found for '198.51.100.1'
10:01:02 12[ENC] generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]
""",
    "other-ca": """\
10:01:05 14[IKE] received end entity cert "O=testbed interop, CN=im-tr.interop"
10:01:05 14[CFG]   using certificate "O=testbed interop, CN=im-tr.interop"
10:01:05 14[CFG] no issuer certificate found for "O=testbed interop, CN=im-tr.interop"
10:01:05 14[CFG]   issuer is "O=testbed interop, CN=another CA"
10:01:05 14[IKE] no trusted ECDSA public key found for '198.51.100.1'
""",
    "wrong-san": """\
19:02:04 11[IKE] received end entity cert "O=testbed interop, CN=im-tr-wrong-san.interop"
19:02:04 11[CFG] looking for peer configs matching 198.51.100.2[198.51.100.2]...10.0.0.22[198.51.100.1]
19:02:04 11[CFG]   candidate "from-A", match: 20/20/28 (me/other/ike)
19:02:04 11[CFG] selected peer config 'from-A'
19:02:04 11[IKE] no trusted ECDSA public key found for '198.51.100.1'
""",
    "wrong-id": """\
10:01:11 10[CFG] looking for peer configs matching 198.51.100.2[198.51.100.2]...10.0.0.23[198.51.100.3]
10:01:11 10[CFG] no matching peer config found
""",
    "no-proposal": """\
10:01:14 11[CFG] received proposals: IKE:AES_CBC_192/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/ECP_384
10:01:14 11[IKE] received proposals unacceptable
""",
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_each_refusal_names_exactly_its_own_cell(kind):
    said, line = E.refusal_reason(REFUSED[kind])
    assert said == kind and line
    # every other negative cell's reason is not this one (the overlap the trial found:
    # "no trusted ... public key found" appears for expired, other-ca and wrong-san alike)
    for other in REFUSED:
        if other != kind:
            assert E.refusal_reason(REFUSED[other])[0] != kind


def test_no_trusted_key_without_a_received_certificate_is_not_the_san_case():
    no_cert = "\n".join(ln for ln in REFUSED["wrong-san"].splitlines() if "end entity" not in ln)
    assert E.refusal_reason(no_cert) == (None, "")


def test_a_log_without_any_refusal_names_none():
    assert E.refusal_reason(PEER_ED25519) == (None, "")
    assert E.peer_refusal("no-proposal") == "NO_PROPOSAL_CHOSEN"
    assert E.peer_refusal("expired") == "AUTHENTICATION_FAILED"


# list-sas of a stock initiator (format of 5.9.1 .. 6.0.1) through the three rekey steps.
def _sas(uid: int, spi_i: str, spi_r: str, child_uid: int, spi_in: str, spi_out: str,
         extra: str = "") -> str:
    return f"""c0-p256: #{uid}, ESTABLISHED, IKEv2, {spi_i}_i* {spi_r}_r
  local  '198.51.100.1' @ 10.0.0.23[4500]
  remote '198.51.100.2' @ 198.51.100.2[4500]
  AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256
  established 0s ago, rekeying in 13681s
  net: #{child_uid}, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128
    installed 0s ago, rekeying in 3410s, expires in 3960s
    in  {spi_in},      0 bytes,     0 packets
    out {spi_out},      0 bytes,     0 packets
    local  10.0.0.23/32
    remote 10.0.0.0/24
{extra}"""


S0 = _sas(1, "90fb6562d04b23ea", "45f838a1c71189fb", 1, "8d1d592d", "c51914f2")
# make-before-break reauth: new IKE_SA #2 with new CHILD_SA; the old one still listed
S1 = _sas(2, "1111111111111111", "2222222222222222", 2, "aaaaaaaa", "bbbbbbbb") + S0.replace(
    "ESTABLISHED", "DELETING")
S2 = _sas(3, "3333333333333333", "4444444444444444", 2, "aaaaaaaa", "bbbbbbbb")   # IKE rekey
S3 = _sas(3, "3333333333333333", "4444444444444444", 3, "cccccccc", "dddddddd",   # CHILD rekey
          extra="  net: #2, reqid 1, DELETED, TUNNEL-in-UDP, ESP:AES_GCM_16-128\n"
                "    in  aaaaaaaa,    100 bytes,     2 packets\n")


def test_parse_list_sas_reads_ids_states_and_spis():
    sas = E.parse_list_sas(S1)
    assert [(s.uid, s.state) for s in sas] == [(2, "ESTABLISHED"), (1, "DELETING")]
    assert sas[0].children[0].uid == 2 and sas[0].installed_spis == {"aaaaaaaa", "bbbbbbbb"}
    assert E.current(S1, "c0-p256").uid == 2
    assert E.current(S1, "other") is None
    s3 = E.current(S3, "c0-p256")
    assert [c.state for c in s3.children] == ["INSTALLED", "DELETED"]
    assert s3.installed_spis == {"cccccccc", "dddddddd"}


def test_each_rekey_step_is_told_apart_from_the_others():
    s0, s1, s2, s3 = (E.current(t, "c0-p256") for t in (S0, S1, S2, S3))
    steps = {"reauth": (s0, s1), "ike-rekey": (s1, s2), "child-rekey": (s2, s3)}
    for step, (before, after) in steps.items():
        assert E.judge(step, before, after) == "", step
        # what another step does is not this step: a reauth (new CHILD SPIs too) is no CHILD
        # rekey, a CHILD rekey (same IKE_SA) is no IKE rekey, and so on
        for other, (b2, a2) in steps.items():
            if other != step:
                assert "did not happen" in E.judge(step, b2, a2), (step, other)
    # nothing happened (the step switched off) fails every judge
    for step in steps:
        assert "did not happen" in E.judge(step, s2, s2)
    assert "cannot tell" in E.judge("reauth", None, s1)
    with pytest.raises(ValueError):
        E.judge("rekey", s0, s1)


def test_excerpt_skips_the_configuration_echo_and_keeps_errors():
    log = """\
10:00:00 08[CFG] added vici connection: c0-p256
10:00:00 08[CFG]   proposals = IKE:AES_GCM_16_128/PRF_HMAC_SHA2_256/ECP_256
10:00:00 08[CFG]   esp_proposals = ESP:AES_GCM_16_128/NO_EXT_SEQ
10:00:00 08[CFG]   local:
10:00:01 12[IKE] no trusted ECDSA public key found for '198.51.100.1'
10:00:01 12[IKE] peer supports MOBIKE
"""
    out = E.excerpt(log)
    assert "no trusted ECDSA" in out and "proposals =" not in out and "local:" not in out
    agent = "2026-11-29 10:00:02 ERROR testbed.mn: tunnel to 198.51.100.31: initiate failed: timeout\n"
    assert "initiate failed" in E.excerpt(log + agent)


def test_sg_key_step_judges_the_sa_under_test_when_the_window_holds_an_older_one():
    # role sg: our agent re-initiated under the previous cell's Ed25519 config before the
    # stock SG switched to RSA; the last authentication is the SA under test
    from orchestration.interop.matrix import Cell
    from orchestration.interop.runner import MatrixRun
    run = MatrixRun(lab=None, suites=[])
    signer = ("rs-bo", "1 09[IKE] authentication of '198.51.100.31' (myself) with ED25519 successful\n"
                       "2 09[IKE] authentication of '198.51.100.31' (myself) with RSA_EMSA_PKCS1_SHA2_256 successful\n")
    verifier = ("our m", "1 12[IKE] authentication of '198.51.100.31' with ED25519 successful\n"
                         "2 12[IKE] authentication of '198.51.100.31' with RSA_EMSA_PKCS1_SHA2_256 successful\n")
    assert run._key_step(Cell("b", "sg", "c", "fail"), "rsa3072", "198.51.100.31", signer, verifier, last_only=True)
    assert not run._key_step(Cell("b", "sg", "c", "fail"), "ed25519", "198.51.100.31", signer, verifier, last_only=True)
    assert not run._key_step(Cell("b", "sg", "c", "fail"), "rsa3072", "198.51.100.31", signer, verifier)
    # nothing verified on our side still fails
    assert not run._key_step(Cell("b", "sg", "c", "fail"), "rsa3072", "198.51.100.31", signer, ("our m", ""),
                             last_only=True)
