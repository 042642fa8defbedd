"""Run one scheduled attempt of a training job, then exit: a Kubernetes training pod's entry point.

    python -m gpu_worker.run_attempt --tenant T --job-id J --attempt N \\
        --models-root /var/privtune/models --storage-root file:///data/tenants --work-dir /scratch

It does exactly what a gpu_worker pool member does with a ``TrainingScheduled`` command
(``TrainingWorker.run_job``): the same fencing (the attempt must still be the job's
current one), the same child process (torchrun for several devices), events appended
to the job's stream, heartbeats, and a checkpoint-then-stop on a cancel, a preemption
or SIGTERM. The store comes from ``$PRIVTUNE_STORE`` (or ``--store``); the platform has
already migrated it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
    parser.add_argument("--store", default=os.environ.get("PRIVTUNE_STORE", ""),
                        help="metadata store URL (default $PRIVTUNE_STORE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.store:
        print("error: no metadata store: set $PRIVTUNE_STORE or pass --store", file=sys.stderr)
        return 2

    from gpu_worker.worker import TrainingWorker, WorkerSettings
    from services.common import eventstore
    from services.common.store.engine import create_store_engine

    engine = create_store_engine(args.store)
    with engine.connect() as conn:
        history = eventstore.load_stream(conn, args.tenant, args.job_id)
    commands = [e for e in history if e.WhichOneof("payload") == "training_scheduled"
                and e.training_scheduled.attempt == args.attempt]
    if not commands:
        print(f"error: training job {args.job_id!r} of tenant {args.tenant!r} has no scheduled attempt "
              f"{args.attempt}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = WorkerSettings(models_dir=args.models_root, storage_uri=args.storage_root, work_dir=args.work_dir,
                              heartbeat_seconds=float(os.environ.get("PRIVTUNE_HEARTBEAT_S", "10")))
    worker = TrainingWorker(engine, None, settings)
    try:
        outcome = worker.run_job(commands[-1], stop)
    finally:
        engine.dispose()
    return EXIT.get(outcome, 1)


if __name__ == "__main__":
    raise SystemExit(main())
