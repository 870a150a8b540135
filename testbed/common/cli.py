"""The start of every agent's ``python3 -m testbed.<area> --config FILE``.

Read and validate the config (a bad one exits 2 with the field named, before anything
is touched), set up logging to stderr at the config's level, and turn SIGTERM/SIGINT
into an event the agent's loop watches, so it can remove what it installed and exit 0.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from testbed.common.config import read_mapping

M = TypeVar("M", bound=BaseModel)
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def start_agent(prog: str, doc: str | None, model: type[M], argv: list[str] | None = None,
                log_level_field: str = "log_level") -> tuple[M, threading.Event]:
    ap = argparse.ArgumentParser(prog=prog, description=doc)
    ap.add_argument("--config", required=True, help="JSON or YAML file")
    args = ap.parse_args(argv)
    try:
        cfg = model.model_validate(read_mapping(args.config))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"bad config {args.config}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=str(getattr(cfg, log_level_field, "INFO")).upper(), stream=sys.stderr,
                        format=LOG_FORMAT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return cfg, stop
