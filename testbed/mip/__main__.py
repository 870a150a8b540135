"""`python3 -m testbed.mip {ha,fa,mn} --config FILE`: run a Mobile IP agent.

Logs go to stderr (DEBUG explains every accept/deny/drop decision); state and counters
are written as JSON to the config's status_file at least once a second.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from pydantic import ValidationError

from testbed.mip.config import FaAgentConfig, HaAgentConfig, MnAgentConfig
from testbed.common.config import read_mapping as load_config_file
from testbed.common.jsonfile import write_json_atomic as write_status

log = logging.getLogger("testbed.mip")

MODELS = {"ha": HaAgentConfig, "fa": FaAgentConfig, "mn": MnAgentConfig}


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())


def load(role: str, path: str):
    try:
        return MODELS[role].model_validate(load_config_file(path))
    except ValidationError as exc:
        raise SystemExit(f"bad config {path}: {_errors(exc)}")
    except (ValueError, OSError) as exc:
        raise SystemExit(f"bad config {path}: {exc}")


def _serve(cfg, status, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            write_status(cfg.status_file, {"time": time.time(), **status()})
        except Exception as exc:  # a status write must never stop the agent
            log.debug("status: %s", exc)
        stop.wait(cfg.status_interval)
    write_status(cfg.status_file, {"time": time.time(), **status()})


def run_ha(cfg: HaAgentConfig, stop: threading.Event) -> int:
    from testbed.mip.dispatcher import Dispatcher
    from testbed.mip.ha import HomeAgent
    dispatcher = None
    if cfg.operator is not None:
        dispatcher = Dispatcher(cfg.operator, cfg.home_agents)
        dispatcher.setup()
    has = [HomeAgent(h, h.tunnel_mode or cfg.tunnel_mode, cfg.adv_interval).start() for h in cfg.home_agents]
    for h in has:
        h.ready.wait(10)

    def status() -> dict:
        return {"role": "ha", "home_agents": {h.name: h.status() for h in has},
                "dispatcher": dispatcher.status() if dispatcher else None}
    try:
        _serve(cfg, status, stop)
    finally:
        for h in has:
            h.stop()
    return 0 if all(h.error is None for h in has) else 1


def run_agent(agent, cfg, stop: threading.Event, role: str) -> int:
    agent.open()
    t = threading.Thread(target=agent.run, name=role, daemon=True)
    t.start()
    try:
        _serve(cfg, lambda: {"role": role, **agent.status()}, stop)
    finally:
        agent.stop()
        t.join(timeout=3)
        agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m testbed.mip", description=__doc__)
    ap.add_argument("role", choices=sorted(MODELS))
    ap.add_argument("--config", required=True)
    args = ap.parse_args(argv)
    cfg = load(args.role, args.config)
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)   # its DEBUG is every netlink message
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.role == "ha":
        return run_ha(cfg, stop)
    if args.role == "fa":
        from testbed.mip.fa import ForeignAgent
        return run_agent(ForeignAgent(cfg), cfg, stop, "fa")
    from testbed.mip.mn import MobileNode
    return run_agent(MobileNode(cfg), cfg, stop, "mn")


if __name__ == "__main__":
    sys.exit(main())
