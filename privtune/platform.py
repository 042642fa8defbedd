"""Run privtune services in one process: outbox relay, projection consumers, gRPC API.

``privtune up`` runs every service on the embedded defaults; ``privtune serve NAME``
runs one of them on whichever backends the URIs name.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from grpc_health.v1 import health_pb2
from sqlalchemy import Engine, func, select

from services.common.access_log import AccessDenialRecorder, AllowedCallRecorder
from services.common.bus import EventBus, open_bus
from services.common.config import PlatformConfig
from services.common import page_tokens
from services.common.consumer import EventConsumer, Lag
from services.common.auth.grpc_auth import AuthInterceptor
from services.common.grpc_server import RunningServer, TlsSettings, start_grpc_server
from services.common.limits import StreamLimits
from services.common.metrics import MetricsServer
from services.common.outbox import OutboxRelay
from services.common.projection import Projection
from services.common.service import ServiceParts
from services.common.store import dispose_store, open_store
from services.common.store.schema import outbox
from services.common.heap import freeze_startup_heap
from services.common.supervision import LoopStatus, Supervisor
from services.common.topics import ALL_TOPICS

log = logging.getLogger(__name__)
PROJECTION_LAG_LIMIT_S = 30.0  # default: a consumed read model further behind its topics reports NOT_SERVING
API_STATEFUL_SERVICES = frozenset({"deploy", "training", "curation-worker", "eval-worker"})  # never API replicas
STALE_GRACE_S = 3.0  # how much older than the limit a lag measure may be before it counts as late itself
PROJECTION_HEALTH_PREFIX = "privtune.projection."  # + projection name: its health-check service name


def projection_health_file(data_dir: Path, pid: int) -> Path:
    """Where the full process ``pid`` publishes its read models' health each second for its API replicas."""
    return data_dir / "run" / f"projection-health.{pid}.json"
_SERVING, _NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

# service name -> module with build(engine, bus, config, stop) -> ServiceParts
SERVICES: dict[str, str] = {"ingest": "services.ingest.service", "curation": "services.curation.service",
                            "curation-worker": "services.curation.worker_service",
                            "orchestrator": "services.orchestrator.service", "training": "gpu_worker.service",
                            "eval": "services.eval.service", "eval-worker": "services.eval.worker_service",
                            "deploy": "services.deploy.service", "audit": "services.audit.service"}


def _service_module(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(SERVICES[name])
    except KeyError:
        raise ValueError(f"unknown service {name!r}; available: {', '.join(sorted(SERVICES))}") from None


def needs_store(name: str) -> bool:
    """Whether the service keeps state in the metadata store (a training worker does not)."""
    return bool(getattr(_service_module(name), "NEEDS_STORE", True))


def build_service(name: str, engine: Engine | None, bus: EventBus | None, config: PlatformConfig,
                  stop: threading.Event) -> ServiceParts:
    build: Callable[[Engine | None, EventBus | None, PlatformConfig, threading.Event], ServiceParts] = \
        _service_module(name).build
    return build(engine, bus, config, stop)


def all_projections(engine: Engine, config: PlatformConfig) -> list[Projection]:
    """Every service's read models (their workers are not started).

    Consumers that own no tables (follow-ups such as ledger settlement or model
    registration, which append events) are not read models: replay leaves them alone.
    """
    stop = threading.Event()
    return [p for name in SERVICES for p in build_service(name, engine, None, config, stop).projections if p.tables]


def security(config: PlatformConfig, denials: AccessDenialRecorder | None = None,
             allowed: AllowedCallRecorder | None = None) -> tuple[TlsSettings, AuthInterceptor]:
    """TLS settings and the authenticating interceptor for ``config``: every platform server has both.

    The local CA and the development issuer are made under the data folder on first start; an
    enterprise OpenID Connect issuer is trusted too when configured.

    Raises:
        ValueError: no token issuer is trusted (the development issuer is off and no OIDC issuer is set).
    """
    from services.common.auth.grpc_auth import Authenticator
    from services.common.auth.issuers import trusted_verifiers
    from services.common.auth.pki import ensure_local_pki

    pki = ensure_local_pki(config.pki_dir)
    cert, key = pki.server.read()
    verifiers = trusted_verifiers(config)
    tls = TlsSettings(cert=cert, key=key, client_ca=pki.ca_bytes(), component_address=config.component_address)
    return tls, AuthInterceptor(Authenticator(verifiers=verifiers), on_denied=denials,
                                on_break_glass=denials.break_glass if denials is not None else None,
                                on_allowed=allowed)


@dataclass
class Platform:
    """Services sharing one store and one bus. ``start()``, then ``stop()``."""

    config: PlatformConfig
    services: Sequence[str] = tuple(SERVICES)
    relay: bool = True
    engine: Engine | None = None
    bus: EventBus | None = None
    server: RunningServer | None = None
    consumers: list[EventConsumer] = field(default_factory=list)
    supervisor: Supervisor | None = None
    access_recorder: AllowedCallRecorder | None = None
    denials: AccessDenialRecorder | None = None
    unhealthy_after_s: float = 5.0
    projection_lag_limit_s: float = PROJECTION_LAG_LIMIT_S  # a read model further behind is NOT_SERVING
    # an API replica: serves the services' gRPC APIs only (no relay, projections or workers), beside a full
    # process on the same port (SO_REUSEPORT: the kernel spreads connections over the processes)
    api_only: bool = False
    metrics: MetricsServer | None = None
    stream_limits: StreamLimits = field(default_factory=StreamLimits)  # open Watch* streams per process / tenant
    # a full process publishes its read models' health here each second; an API replica (which runs no
    # consumers) answers the same health names from it (``projection_health_file()``; None: neither)
    projection_health_file: Path | None = None
    # freeze the heap for the garbage collector once the services are built, before any loop runs
    # (services/common/heap.py): for a process that serves until it ends (``privtune serve``), never
    # for one that starts platforms again and again (tests, the demo)
    freeze_heap: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Platform":
        if self.api_only:
            stateful = sorted(set(self.services) & API_STATEFUL_SERVICES)
            if stateful:
                raise ValueError(f"{', '.join(stateful)} cannot run as an API replica: its API drives state kept in "
                                 "its one process (routes, pools); run it in one process")
            self.relay = False
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        if self.config.storage_uri.startswith("file://"):
            self.config.storage_path.mkdir(parents=True, exist_ok=True)
        if any(needs_store(name) for name in self.services):
            self.engine = open_store(self.config.store_uri)
            page_tokens.signing_key(self.engine)  # made once here, not by a first List waiting for a writer
        self.bus = open_bus(self.config.bus_uri)
        self.bus.ensure_topics(ALL_TOPICS)
        parts = [build_service(name, self.engine, self.bus, self.config, self._stop) for name in self.services]
        bindings = [b for part in parts for b in part.bindings]
        if bindings:  # before the loops: a training worker in this process claims attempts through it
            assert self.engine is not None, "services with an API keep their state in the store"
            denials = self.denials = AccessDenialRecorder(self.engine)
            self.access_recorder = AllowedCallRecorder(self.engine)
            tls, auth = security(self.config, denials, self.access_recorder)
            self.server = start_grpc_server(self.config.grpc_address, bindings, on_denied=denials,
                                            stream_limits=self.stream_limits, tls=tls, auth=auth)
            self.config.bind_component_port(self.server.component_port)
            log.info("gRPC API on port %d: %s", self.server.port, ", ".join(b.full_name for b in bindings))
        if self.freeze_heap:  # before the loops: no model or batch they load is frozen with the imports
            log.info("%d objects of the start frozen for the garbage collector", freeze_startup_heap())
        self.supervisor = Supervisor(self._stop, unhealthy_after_s=self.unhealthy_after_s,
                                     on_health=self._set_health)
        if self.access_recorder is not None:
            self.supervisor.spawn("access-recorder", self.access_recorder.run)
        if self.denials is not None:
            self.supervisor.spawn("access-denial-counts", self.denials.run)
        if self.relay and self.engine is not None:
            relay = OutboxRelay(self.engine, self.bus)
            self.supervisor.spawn("outbox-relay", relay.run)
        for projection in (p for part in parts for p in part.projections if p.consumed and not self.api_only):
            assert projection.apply is not None and self.engine is not None
            consumer = EventConsumer(self.engine, self.bus, projection.name, projection.topics, projection.apply,
                                     batch_handler=projection.batched(), self_deduping=projection.self_deduping,
                                     wants=projection.wants if projection.payloads is not None else None)
            self.consumers.append(consumer)
            self.supervisor.spawn(f"consumer-{projection.name}", consumer.run)
        for part in parts if not self.api_only else []:
            for i, worker in enumerate(part.workers):
                self.supervisor.spawn(f"{part.name}-worker-{i}", worker)
        if self.consumers:
            self.supervisor.spawn("projection-lag", self._watch_lag)
        followed = [p.name for part in parts for p in part.projections if p.consumed]
        if self.api_only and self.projection_health_file is not None and followed:
            self.supervisor.spawn("projection-health", lambda stop: self._follow_lag(stop, followed))
        if self.config.metrics_address and not self.api_only:  # (a replica has no read models to report)
            self.metrics = MetricsServer(self.config.metrics_address, self.projection_lag).start()
        self.supervisor.start_watching()
        return self

    def settled_since(self, began: float) -> bool:
        """Whether everything written before ``began`` (``time.time()``) reached every read model: nothing
        is left in the outbox, and each consumer was measured caught up after ``began``."""
        if self.engine is not None:
            with self.engine.connect() as conn:
                if conn.execute(select(func.count()).where(outbox.c.published_at_ms.is_(None))).scalar():
                    return False
        return all(lag.events == 0 and lag.measured_at > began for lag in self.projection_lag().values())

    def projection_lag(self) -> dict[str, Lag]:
        """Each consumed read model's lag behind its topics (events, seconds), by projection name."""
        return {consumer.group: consumer.lag for consumer in self.consumers}

    def _watch_lag(self, stop: threading.Event) -> None:
        """Health name ``privtune.projection.<name>`` per consumed read model: NOT_SERVING while it is
        more than ``projection_lag_limit_s`` behind, SERVING again once it caught up."""
        behind: set[str] = set()
        started = time.time()
        while not stop.wait(1.0):
            now = time.time()
            verdicts: dict[str, bool] = {}
            for name, lag in self.projection_lag().items():
                # a consumer that stopped measuring (its loop fails, or it never got going) is as late as its
                # last measure is old
                # (a healthy consumer measures every LAG_CHECK_S and polls for up to 0.5 s: allow for both)
                unmeasured = now - (lag.measured_at or started) - STALE_GRACE_S
                late = max(lag.seconds, unmeasured) > self.projection_lag_limit_s
                if late != (name in behind):
                    (behind.add if late else behind.discard)(name)
                    if late:
                        log.warning("read model %s is %.1f s (%d events) behind its topics", name, lag.seconds,
                                    lag.events)
                    else:
                        log.info("read model %s caught up", name)
                if self.server is not None:
                    self.server.health.set(PROJECTION_HEALTH_PREFIX + name, _NOT_SERVING if late else _SERVING)
                verdicts[name] = late
            if self.projection_health_file is not None:
                _publish(self.projection_health_file, {"at": now, "late": verdicts})

    def _follow_lag(self, stop: threading.Event, names: Sequence[str]) -> None:
        """An API replica's answer for each ``privtune.projection.<name>``: what its full process last
        published, and NOT_SERVING once that is missing or older than the lag limit plus
        ``STALE_GRACE_S`` (the full process is stuck or gone), as the full process says of a consumer
        that stopped measuring."""
        assert self.projection_health_file is not None
        started = time.time()
        while True:
            try:
                published = json.loads(self.projection_health_file.read_text())
                at, late = float(published["at"]), {str(k): bool(v) for k, v in dict(published["late"]).items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                at, late = 0.0, {}
            stale = time.time() - (at or started) > self.projection_lag_limit_s + STALE_GRACE_S
            if self.server is not None:
                for name in names:
                    bad = stale or late.get(name, False)
                    self.server.health.set(PROJECTION_HEALTH_PREFIX + name, _NOT_SERVING if bad else _SERVING)
            if stop.wait(1.0):
                return

    def _set_health(self, healthy: bool, failing: list[LoopStatus]) -> None:
        """Every served name says NOT_SERVING while a loop cannot recover, SERVING once all run again."""
        if self.server is not None:
            self.server.set_serving(healthy)

    @property
    def healthy(self) -> bool:
        return self.supervisor is None or self.supervisor.check_health()

    @property
    def grpc_target(self) -> str:
        host = self.config.grpc_address.rsplit(":", 1)[0]
        assert self.server is not None, "platform has no gRPC server (start it first)"
        return f"{host}:{self.server.port}"

    def wait(self) -> None:
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        if self.metrics is not None:
            self.metrics.stop()
        if self.server is not None:
            self.server.stop()
        if self.supervisor is not None:
            self.supervisor.join(timeout=10)
        if self.access_recorder is not None:  # calls that ended in the server's grace, after the recorder's own drain
            self.access_recorder.close()
        for consumer in self.consumers:
            consumer.close()
        if self.bus is not None:
            self.bus.close()
        if self.engine is not None:
            dispose_store(self.engine)
        if self.projection_health_file is not None and not self.api_only:
            self.projection_health_file.unlink(missing_ok=True)  # its replicas now say NOT_SERVING

    def __enter__(self) -> "Platform":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def _publish(path: Path, value: dict) -> None:
    """Replace ``path`` with ``value`` as JSON in one step (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{threading.get_ident()}")
    scratch.write_text(json.dumps(value))
    os.replace(scratch, path)
