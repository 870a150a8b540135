"""`python3 -m testbed.sg --config FILE`: run the security gateway agent.

Writes its state (tunnel counters, filter rows with counters, drops per peer, SAs per
realm) as JSON to `status_file` every second; logs to stderr.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pydantic import ValidationError

from testbed.sg.agent import SgAgent
from testbed.sg.config import SgConfig
from testbed.tunnel.status import load_config_file

log = logging.getLogger("testbed.sg")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.sg", description=__doc__)
    ap.add_argument("--config", required=True, help="JSON or YAML file (see testbed/sg/config.py)")
    args = ap.parse_args(argv)
    try:
        cfg = SgConfig.model_validate(load_config_file(args.config))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
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
