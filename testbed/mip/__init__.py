"""Mobile IPv4 (RFC 5944, RFC 3024): home agent (incl. virtual HAs), foreign agent, mobile node."""
