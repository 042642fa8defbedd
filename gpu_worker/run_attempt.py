"""Run one scheduled attempt of a training job, then exit: a Kubernetes training pod's entry point.

    python -m gpu_worker.run_attempt --tenant T --job-id J --attempt N \\
        --models-root /var/privtune/models --storage-root file:///data/tenants --work-dir /scratch \\
        --bus kafka://kafka:9092 --orchestrator orchestrator:50051

It does exactly what a gpu_worker pool member does with a ``TrainingScheduled`` command:
it claims the attempt from the orchestrator (``ClaimAttempt``; a pod that loses the claim
exits 0 without running anything), runs the same child process (torchrun for several
devices), reports on the bus (``privtune.training.reports``), heartbeats, and checkpoints
then stops on a stop command or SIGTERM. It needs the bus and the orchestrator's gRPC
address, never the metadata store's credentials.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Sequence

EXIT = {"completed": 0, "skipped": 0, "preempted": 3, "failed": 1}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.run_attempt", description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--models-root", required=True, type=Path)
    parser.add_argument("--storage-root", required=True)
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument("--bus", default=os.environ.get("PRIVTUNE_BUS", ""),
                        help="event bus URI (default $PRIVTUNE_BUS)")
    parser.add_argument("--orchestrator", default=os.environ.get("PRIVTUNE_ORCHESTRATOR", ""),
                        help="the orchestrator's gRPC address host:port (default $PRIVTUNE_ORCHESTRATOR)")
    parser.add_argument("--worker-id", default=os.environ.get("PRIVTUNE_WORKER_ID", ""),
                        help="name of this worker in events (default: the pod's hostname)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = [name for name, value in (("--bus / $PRIVTUNE_BUS", args.bus),
                                        ("--orchestrator / $PRIVTUNE_ORCHESTRATOR", args.orchestrator)) if not value]
    if missing:
        print(f"error: set {' and '.join(missing)}", file=sys.stderr)
        return 2

    from gpu_worker.claims import GrpcAttemptClaims
    from gpu_worker.worker import TrainingWorker, WorkerSettings
    from services.common.bus import open_bus

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = WorkerSettings(models_dir=args.models_root, storage_uri=args.storage_root, work_dir=args.work_dir,
                              worker_id=args.worker_id or f"{socket.gethostname()}-{os.getpid()}",
                              heartbeat_seconds=float(os.environ.get("PRIVTUNE_HEARTBEAT_S", "10")))
    bus = open_bus(args.bus)
    claims = GrpcAttemptClaims(args.orchestrator, stop=stop)
    worker = TrainingWorker(bus, claims, settings)
    try:
        outcome = worker.run_attempt(args.tenant, args.job_id, args.attempt, stop)
    finally:
        worker.close()
        claims.close()
        bus.close()
    return EXIT.get(outcome, 1)


if __name__ == "__main__":
    raise SystemExit(main())
