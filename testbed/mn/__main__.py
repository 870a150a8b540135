"""`python3 -m testbed.mn --config FILE`: run the mobile node's workgroup agent.

Writes its state (membership, members, tunnels with SAs) as JSON to `status_file` every
second; logs to stderr.
"""
from __future__ import annotations

import logging
import sys
import threading

from testbed.mn.agent import MnAgent
from testbed.mn.config import MnConfig

from testbed.common.cli import start_agent

log = logging.getLogger("testbed.mn")


def main(argv: list[str] | None = None) -> int:
    cfg, stop = start_agent("python3 -m testbed.mn", __doc__, MnConfig, argv)
    agent = MnAgent(cfg)
    status = threading.Thread(target=agent.write_status_loop, args=(stop,), daemon=True)
    status.start()
    try:
        agent.prepare()
        agent.run(stop)
    except Exception as exc:
        log.error("agent failed: %s", exc)
        return 1
    finally:
        agent.close()
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
