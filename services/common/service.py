"""What a service contributes to a process: gRPC bindings and read-model projections."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from services.common.grpc_server import ServiceBinding
from services.common.projection import Projection


@dataclass(frozen=True)
class ServiceParts:
    name: str
    bindings: list[ServiceBinding] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)
    # long-running loops, each run in its own thread until the event is set
    workers: list[Callable[[threading.Event], None]] = field(default_factory=list)
