"""What an eval worker process runs: members of group ``eval.workers``.

A worker needs the bus, tenant storage, the base-model store and the eval service's gRPC
address (to claim shards), never the metadata store: ``NEEDS_STORE`` tells the platform not to
open one for it (``privtune serve eval-worker --bus … --eval host:port``). It loads torch on
first use; ``PRIVTUNE_EVAL_THREADS`` sets its torch threads (default: all cores) and
``PRIVTUNE_EVAL_LEASE_S`` how long a shard's claim outlives a worker that stopped renewing it
(default 30 s: a dead worker's shard is computed again by another worker after that long).
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts

NEEDS_STORE = False


def build(engine: Engine | None, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    parts = ServiceParts(name="eval-worker")
    if bus is not None:
        from services.common.auth.channels import component_credentials
        from services.eval.claims import GrpcShardClaims
        from services.eval.computer import ModelShardComputer
        from services.eval.worker import EvalWorker

        def run_worker(stop_event: threading.Event) -> None:
            claims = GrpcShardClaims(lambda: config.eval_target,
                                     credentials=component_credentials(config, "worker", "eval"))
            computer = ModelShardComputer(config.models_dir, config.storage_uri, config.work_dir / "eval")
            lease = os.environ.get("PRIVTUNE_EVAL_LEASE_S", "")
            worker = EvalWorker(bus, claims, config.storage_uri, computer,
                                lease_seconds=int(lease) if lease.isdigit() and int(lease) >= 2 else 30)
            try:
                worker.run(stop_event)
            finally:
                worker.close()
                claims.close()

        parts.workers.append(run_worker)
    return parts
