"""A gRPC server with health checking, reflection and error mapping (grpcurl can list and call it)."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.grpc_errors import DenialRecorder, ErrorMappingInterceptor


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and the generated function that adds it, plus its full service name."""

    full_name: str
    servicer: Any
    add_to_server: Callable[[Any, grpc.Server], None]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_grpc_server(address: str, bindings: Sequence[ServiceBinding], max_workers: int = 32,
                      on_denied: DenialRecorder | None = None) -> RunningServer:
    """Start serving ``bindings`` on ``address`` (``host:port``; port 0 picks a free one).

    ``on_denied`` is called for every unauthenticated or forbidden call (see access_log).
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         interceptors=[ErrorMappingInterceptor(on_denied)])
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for b in bindings:
        b.add_to_server(b.servicer, server)
        health_servicer.set(b.full_name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    names = [b.full_name for b in bindings] + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                              reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind the gRPC server to {address}")
    server.start()
    return RunningServer(server=server, port=port, health=health_servicer)
