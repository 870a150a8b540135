"""Revocation at the SG: the MSM's CRL into every realm charon, and SAs of initiators that
lost their rows torn down so that they must authenticate again under that CRL (issue 9).

Why both (see README "Revocation"):
- Loading the CRL (VICI load-cert x509crl) makes charon's revocation plugin refuse a
  revoked certificate at every *new* IKE authentication, but strongSwan never re-checks an
  IKE_SA that is already established: a revoked MN would keep its SA until it rekeys.
- Tearing SAs down by identity ends those, but the SG cannot tell from an SA which
  certificate authenticated it (VICI list-sas reports IKE identities, and an MN's IKE
  identity is its SG's public address, shared by every MN of that M-VPN; the CRL names
  serials only). What identifies an initiator at the SG is the pair the filter already
  keys on: (realm of the peer SG, initiator private address). So when a CRL revokes a new
  serial (deleting a user removes its rows in the same portal change), SAs whose initiator
  has no filter row in that realm are terminated; a still valid initiator without rows comes
  back when it re-initiates and passes the CRL check, a revoked one is refused.
"""
from __future__ import annotations

from typing import Iterable

from cryptography import x509

from testbed.sg.workgroup_filter import FilterRow


def revoked_serials(pem: str) -> set[int]:
    """Serial numbers (ints) a PEM CRL lists; ValueError if it is not a PEM CRL."""
    crl = x509.load_pem_x509_crl(pem.encode())
    return {entry.serial_number for entry in crl}


def initiators_with_rows(rows: Iterable[FilterRow], peer_public: str) -> set[str]:
    """Private addresses of the initiators behind `peer_public` that have a row."""
    return {r.initiator_private for r in rows if r.peer_sg_public == peer_public}


def sas_without_rows(sas: list[dict], allowed: set[str]) -> list[dict]:
    """The IKE_SAs (as `summarize_sas` gives them) whose remote host has no row."""
    return [sa for sa in sas if sa.get("remote_host") not in allowed and sa.get("uniqueid") is not None]
