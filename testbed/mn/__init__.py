"""Mobile node workgroup agent: sign-on at the MSM portal, member list by long-poll, one
unidirectional IKEv2/X.509 tunnel per target SG (claims 5, 7-10, 12, 13)."""
