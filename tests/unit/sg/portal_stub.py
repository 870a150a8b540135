"""A tiny stdlib HTTP server speaking the MSM portal's SG contract, for the SG tests.

    GET /api/sg/{mvpn}/filter           -> {version, rows}
    GET /api/changes?since=V&timeout=S  -> {version}   (long-poll)
    GET /api/crl                        -> `crl_pem` (PEM text)

With `tls` (a server SSLContext), it speaks HTTPS; `client_cns` records the CN of each
client certificate seen, and a request without one is answered 401 no_cert.
"""
from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class PortalStub:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.crl_pem = ""
        self.client_cns: list[str] = []
        self.version = 1
        self.rows: dict[str, list[dict]] = {}
        self.cond = threading.Condition()
        self.requests: list[str] = []
        self.broken = False  # answer 500 to everything (portal outage)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def _send(self, code: int, doc) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlparse(self.path)
                stub.requests.append(self.path)
                if stub.broken:
                    return self._send(500, {"error": "down"})
                if tls is not None:
                    peer = self.connection.getpeercert()
                    if not peer:
                        return self._send(401, {"error": "no client certificate", "reason": "no_cert"})
                    stub.client_cns.append(dict(x[0] for x in peer["subject"])["commonName"])
                if url.path == "/api/crl":
                    body = stub.crl_pem.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/pkix-crl")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.wfile.write(body)
                parts = url.path.strip("/").split("/")
                if len(parts) == 4 and parts[:2] == ["api", "sg"] and parts[3] == "filter":
                    with stub.cond:
                        return self._send(200, {"version": stub.version,
                                                "rows": stub.rows.get(parts[2], [])})
                if url.path == "/api/changes":
                    q = parse_qs(url.query)
                    since = int(q.get("since", ["0"])[0])
                    timeout = float(q.get("timeout", ["5"])[0])
                    with stub.cond:
                        stub.cond.wait_for(lambda: stub.version > since, timeout=min(timeout, 5))
                        return self._send(200, {"version": stub.version})
                return self._send(404, {"error": "no such path"})

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set_rows(self, mvpn: str, rows: list[dict]) -> None:
        with self.cond:
            self.rows[mvpn] = rows
            self.version += 1
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.version += 1  # release long-polls
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
