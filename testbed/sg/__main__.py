"""`python3 -m testbed.sg --config FILE`: run the security gateway agent.

Writes its state (tunnel counters, filter rows with counters, drops per peer, SAs per
realm) as JSON to `status_file` every second; logs to stderr.
"""
from __future__ import annotations

import logging
import sys

from testbed.sg.agent import SgAgent
from testbed.sg.config import SgConfig

from testbed.common.cli import start_agent

log = logging.getLogger("testbed.sg")


def main(argv: list[str] | None = None) -> int:
    cfg, stop = start_agent("python3 -m testbed.sg", __doc__, SgConfig, argv)
    agent = SgAgent(cfg)
    try:
        agent.start()
    except Exception as exc:
        log.error("start-up failed: %s", exc)
        agent.close()
        return 1
    log.info("SG %s (%s) up: %d peers, ipsec=%s", cfg.mvpn, cfg.public_address,
             len(agent.peers), cfg.ipsec.enabled)
    try:
        agent.run(stop)
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
