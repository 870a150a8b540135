"""Generated nftables rulesets checked by nft itself (``nft -c``) before a lab starts.

``nft -c -f FILE`` parses the ruleset and asks the kernel to check it without applying it;
it runs in a throwaway network namespace (``unshare --net``) so the host's own ruleset is
never touched or consulted.
"""
from __future__ import annotations

import shutil
import subprocess


def nft_available() -> bool:
    """True when ``nft`` and ``unshare`` exist and may create a namespace (root)."""
    if not (shutil.which("nft") and shutil.which("unshare")):
        return False
    r = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    return r.returncode == 0


def nft_problems(ruleset: str, timeout_s: float = 20.0) -> list[str]:
    """nft's complaints about ``ruleset`` (empty when it would load). Lines are nft's own,
    ``/dev/stdin:LINE:COL: Error: ...`` followed by the offending line."""
    r = subprocess.run(["unshare", "--net", "nft", "-c", "-f", "-"], input=ruleset, text=True,
                       capture_output=True, timeout=timeout_s)
    if r.returncode == 0:
        return []
    return [ln.replace("/dev/stdin:", "line ") for ln in r.stderr.strip().splitlines() if "Error" in ln] or \
        [r.stderr.strip() or f"nft exited {r.returncode}"]
