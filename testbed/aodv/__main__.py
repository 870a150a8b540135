"""Entry point: python3 -m testbed.aodv --config FILE (JSON or YAML)."""
from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.aodv", description=__doc__)
    ap.add_argument("--config", required=True, help="agent config file (JSON or YAML)")
    ap.add_argument("--log-level", default=None, help="override the config's log_level")
    ap.add_argument("--check", action="store_true", help="validate the config and exit")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"aodv: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("config ok")
        return 0
    logging.basicConfig(level=args.log_level or cfg.log_level, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    from .agent import Agent  # imports scapy/pyroute2 only when really running

    for noisy in ("pyroute2", "asyncio", "scapy"):  # after import: pyroute2 sets its own
        logging.getLogger(noisy).setLevel(logging.WARNING)

    agent = Agent(cfg)
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. no /dev/net/tun, no CAP_NET_ADMIN, port 654 taken
        logging.getLogger("aodv").error("cannot run the agent: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
