"""Interop against stock strongSwan as a matrix (issue 12): peer releases x roles x
proposals x certificate key types, run in one lab (scenarios/interop)."""
