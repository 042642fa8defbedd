"""A gRPC server with health checking, reflection, input limits and error mapping (grpcurl can list and call it).

The servicers are synchronous, so each call runs on a server thread. A server stream
(the Watch* calls) holds its thread for as long as it is open; the pool therefore has
``StreamLimits.per_process`` threads for streams on top of ``max_workers`` for unary
calls, and ``grpc_limits`` refuses streams beyond the caps. However many streams are
open, unary calls and health checks keep their own threads.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import reflection
from services.common.grpc_errors import DenialRecorder, ErrorMappingInterceptor
from services.common.grpc_limits import RequestLimitsInterceptor, StreamSlots
from services.common.limits import MAX_WIRE_BYTES, StreamLimits
from services.common.store.engine import serves_calls

# unary calls that may wait for a thread, per unary worker, before the server answers
# RESOURCE_EXHAUSTED at once (a bounded answer instead of an ever longer queue)
QUEUED_PER_WORKER = 4


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and the generated function that adds it, plus its full service name."""

    full_name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]


@dataclass(frozen=True)
class TlsSettings:
    """TLS for a server: its certificate and key (PEM), and the CA whose client certificates the
    component listener requires (mutual TLS)."""

    cert: bytes
    key: bytes
    client_ca: bytes
    component_address: str = ""  # mutual-TLS listener for platform components; "": none


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    streams: StreamSlots
    service_names: tuple[str, ...] = ()
    component_port: int = 0  # the mutual-TLS listener's port (0: none)

    def set_serving(self, serving: bool) -> None:
        """Health of the whole process ("") and of every served service: SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_grpc_server(address: str, bindings: Sequence[ServiceBinding], *, auth: grpc.ServerInterceptor,
                      tls: TlsSettings | None, max_workers: int = 32, on_denied: DenialRecorder | None = None,
                      stream_limits: StreamLimits = StreamLimits()) -> RunningServer:
    """Start serving ``bindings`` on ``address`` (``host:port``; port 0 picks a free one).

    ``auth`` runs first on every call: the platform's is ``services.common.auth.grpc_auth.AuthInterceptor``
    (``privtune.platform.security``), which authenticates and authorises the call and binds its
    verified caller; a handler refuses any call without one. ``tls``: ``address`` speaks TLS (callers
    bring bearer tokens) and, when ``tls.component_address`` is set, a second listener requires client
    certificates from ``tls.client_ca`` (platform components). The platform always passes both;
    ``tls=None`` (plaintext) is for benchmarks and tests that measure or fake what is around the API.

    ``max_workers`` threads serve unary calls; ``stream_limits.per_process`` more serve
    streams. ``on_denied`` is called for every unauthenticated or forbidden call (see access_log).
    """
    slots = StreamSlots(stream_limits)
    threads = max_workers + stream_limits.per_process
    # auth first (outermost): stream slots and error records then see the verified caller
    interceptors = [auth, RequestLimitsInterceptor(slots), ErrorMappingInterceptor(on_denied)]
    # serves_calls: on SQLite the workers' writes go before the background loops' (store.engine._WriterLock)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc",
                                                    initializer=serves_calls),
                         interceptors=interceptors,
                         maximum_concurrent_rpcs=threads + QUEUED_PER_WORKER * max_workers,
                         options=[("grpc.max_receive_message_length", MAX_WIRE_BYTES)])
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for b in bindings:
        b.add_to_server(b.servicer, server)
        health_servicer.set(b.full_name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable([b.full_name for b in bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name],
                      server)
    component_port = 0
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(tls.key, tls.cert)]))
        if tls.component_address:
            component_port = server.add_secure_port(tls.component_address, grpc.ssl_server_credentials(
                [(tls.key, tls.cert)], root_certificates=tls.client_ca, require_client_auth=True))
            if component_port == 0:
                raise OSError(f"could not bind the component (mutual TLS) listener to {tls.component_address}")
    if port == 0:
        raise OSError(f"could not bind the gRPC server to {address}")
    server.start()
    return RunningServer(server=server, port=port, health=health_servicer, streams=slots,
                         service_names=tuple(b.full_name for b in bindings), component_port=component_port)
