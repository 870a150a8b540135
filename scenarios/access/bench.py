"""`testbed bench` entry for issue 5: attach time (hello to routes installed) with a shared
secret, with a certificate, and in DHCP proxy mode, each beside a plain AODV hello attach
measured in the same run (see testbed/access/bench.py for how each is timed)."""
from __future__ import annotations

from typing import Any, Callable

from testbed.access.bench import run


def bench(say: Callable[[str], None] = print) -> dict[str, Any]:
    # apply_nft stays off: it would run nft in the namespace this runs in, the host's.
    return run(say=say, apply_nft=False)
