"""`python3 -m testbed.mn --config FILE`: run the mobile node's workgroup agent.

Writes its state (membership, members, tunnels with SAs) as JSON to `status_file` every
second; logs to stderr.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from pydantic import ValidationError

from testbed.mn.agent import MnAgent
from testbed.mn.config import MnConfig
from testbed.tunnel.status import load_config_file

log = logging.getLogger("testbed.mn")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.mn", description=__doc__)
    ap.add_argument("--config", required=True, help="JSON or YAML file (see testbed/mn/config.py)")
    args = ap.parse_args(argv)
    try:
        cfg = MnConfig.model_validate(load_config_file(args.config))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"bad config {args.config}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
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
