"""``python3 -m testbed.diameter --config FILE``: standalone DIAMETER server.

Runs ``DiameterServer`` with the static user table of the config file, logs to
stderr, writes the status JSON (counters, peers, recent exchanges) once a
second, and on SIGTERM/SIGINT sends DPR to every peer before exiting. A bad
config is refused with exit code 2 and a message naming the field.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from .config import ConfigError, backend_from_config, load_config
from .peer import LocalIdentity
from .server import DiameterServer


async def _serve(server: DiameterServer) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("testbed.diameter").info("stopping: sending DPR to open peers")
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.diameter", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="JSON or YAML server configuration")
    ap.add_argument("--log-level", help="override the config's log_level")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"config refused: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=(args.log_level or cfg.log_level).upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    identity = LocalIdentity(cfg.origin_host, cfg.origin_realm, list(cfg.host_ip_addresses))
    server = DiameterServer(identity, backend_from_config(cfg), host=cfg.listen, port=cfg.port,
                            tw=cfg.tw, exchange_log_path=cfg.exchange_log,
                            status_path=cfg.status_file)
    try:
        asyncio.run(_serve(server))
    except OSError as exc:
        print(f"cannot serve on {cfg.listen}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
