"""The agent's status file: counters and state as JSON for the host (scenarios read it)."""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("aodv")


class StatusMixin:
    def status(self) -> dict:
        now = self.now()
        c = dict(self.counters)
        c["buffered"] = self.buffer.buffered
        c["buffer_dropped"] = self.buffer.dropped
        if self.monitor:
            c["packets_forwarded"] = self.monitor.forwarded_total
            c["packets_delivered"] = self.monitor.delivered_total
            c["packets_sent"] = self.monitor.sent_total
            c["monitor_untracked"] = self.monitor.untracked
        valid = [r for r in self.routes if r.valid]
        c["routes"] = len(valid)
        return {
            "agent": "aodv",
            "address": self.addr,
            "role": self.cfg.role,
            "time": round(time.time(), 4),
            "uptime_s": round(now - self.started, 3),
            "seq": self.seq,
            "extensions": {"handover": self.cfg.handover.enabled,
                           "weighted_search": self.cfg.weighted_search.enabled,
                           "gratuitous": self.cfg.gratuitous.enabled,
                           "refresh_on_use": self.cfg.refresh_on_use},
            "counters": c,
            # sizes of every table a peer's messages can add to (issue 11 section 4)
            "tables": {"routes": len(self.routes), "neighbours": len(self.neighbours),
                       "seen_rreq": len(self.discovery.seen_rreq),
                       "sessions": len(self.long_sessions.sessions),
                       "precursors_max": max((len(r.precursors) for r in self.routes),
                                             default=0),
                       "buffer_queues": len(self.buffer.queues),
                       "monitor": {k: len(getattr(self.monitor, k))
                                   for k in ("to_dst", "from_src", "forwarded")}
                       if self.monitor else {}},
            "interfaces": {n: {"ifindex": i, "address": a} for n, (i, a) in self.ifaces.items()},
            "neighbours": {a: {"iface": n.iface, "last_heard_s": round(now - n.last_heard, 3)}
                           for a, n in self.neighbours.items()},
            "routes": [r.as_dict(now) for r in self.routes],
            "discoveries": self.discovery.status(now),
            "route_installs": list(self.discovery.installs),
            "buffer": self.buffer.sizes(),
            "forwarded_by_dst": dict(self.monitor.forwarded) if self.monitor else {},
            "handover": {"sink": self.sink, "last_sink": self.last_sink,
                         "registered_seq": self.reg_seq, "attaching": self.attaching,
                         "registered_mns": self.registered, "held": list(self.held)},
            "sessions": self.long_sessions.status(now),
            "events": list(self.events),
            "access": self.access_hook.status()
            if self.access_hook is not None and hasattr(self.access_hook, "status") else None,
        }

    def write_status(self) -> None:
        path = Path(self.cfg.status_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.status(), indent=1, default=str))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write status %s: %s", path, exc)
