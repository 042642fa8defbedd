"""A Prometheus text endpoint for what a process measures about itself (read-model lag, for now).

    PRIVTUNE_METRICS=127.0.0.1:9464 privtune up      # then: curl http://127.0.0.1:9464/metrics

Plain HTTP, GET ``/metrics`` only, off unless an address is set. It says nothing about any
tenant's data: projection names and numbers. Bind it to loopback or a monitoring network.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from services.common.consumer import Lag

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(lags: Mapping[str, Lag], now: float | None = None) -> str:
    """Each consumed read model's lag as Prometheus gauges (text exposition format 0.0.4)."""
    now = time.time() if now is None else now
    series = [
        ("privtune_projection_lag_events", "Records on a read model's partitions not applied yet.",
         lambda lag: str(lag.events)),
        ("privtune_projection_lag_seconds", "How old what a read model has not applied yet is, at most (0: caught up).",
         lambda lag: f"{lag.seconds:.3f}"),
        ("privtune_projection_lag_measure_age_seconds",
         "Seconds since the read model's consumer last measured its lag (it stops when it is stuck or failing).",
         lambda lag: f"{max(0.0, now - lag.measured_at):.3f}" if lag.measured_at else "NaN"),
    ]
    lines = []
    for name, help_text, value in series:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f'{name}{{projection="{_label(projection)}"}} {value(lag)}' for projection, lag in sorted(lags.items())]
    return "\n".join(lines) + "\n"


@dataclass
class MetricsServer:
    """Serves ``render(collect())`` on ``address`` (host:port; port 0 picks one) from a daemon thread."""

    address: str
    collect: Callable[[], Mapping[str, Lag]]

    def start(self) -> "MetricsServer":
        collect = self.collect

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render(collect()).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                """Not logged: a scrape every few seconds is not news (http.server logs every request)."""

        host, _, port = self.address.rpartition(":")
        self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
