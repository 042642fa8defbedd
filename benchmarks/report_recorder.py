"""Cost of recording one worker report as a job's stream grows: cached fold vs refolding the stream.

    .venv/bin/python benchmarks/report_recorder.py [--sizes 1000,10000,40000] [--reports 20]

The orchestrator's ReportRecorder records every TrainingProgress / TrainingHeartbeat a worker
reports (a long job's stream reaches tens of thousands of events). It caches each job's folded
state and reads only newer events; the peer, run side by side on the same store, is the same
recorder with its cache off (``max_cached_jobs=0``), which refolds the whole stream per report.
Prints milliseconds per recorded report for both and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from privtune.v1 import events_pb2 as ev
from services.common.envelope import Causation, new_envelope
from services.common.store import open_store
from services.orchestrator import job_domain as jd
from services.orchestrator import job_store
from services.orchestrator.report_recorder import ReportRecorder

TENANT, WORKER, CLAIM = "acme", "worker-1", "claim-1"


def _job(engine, job_id: str) -> None:  # type: ignore[no-untyped-def]
    c = Causation(actor="bench", correlation_id="c")
    request = ev.TrainingRequested(job_id=job_id, name="bot", base_model_id="tiny", dataset_version_id="dv-1",
                                   gpu_pool="local", gpus=1)
    with engine.begin() as conn:
        s = job_store.append_job(conn, TENANT, job_id, jd.TrainingJobState(), jd.decide_create(
            request, [], ev.TrainingQueued(job_id=job_id, gpu_pool="local", attempt=1, gpus=1), "p", "s"), c)
        s = job_store.append_job(conn, TENANT, job_id, s, jd.decide_schedule(s, "local", 1, "local", "cpu", 10**13), c)
        job_store.append_job(conn, TENANT, job_id, s, jd.decide_claim(s, 1, WORKER, CLAIM).events,
                             Causation(WORKER, "c"))


def _progress(job_id: str, step: int) -> ev.EventEnvelope:
    return new_envelope(ev.TrainingProgress(job_id=job_id, attempt=1, step=step, total_steps=10**7, loss=0.5),
                        subject=job_id, tenant_id=TENANT, source="bench",
                        causation=Causation(WORKER, "c", causation_id=CLAIM))


def _grow(engine, job_id: str, size: int, step: int) -> int:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        state = job_store.load_job(conn, TENANT, job_id)
        batch = [_progress(job_id, step + i) for i in range(max(0, size - state.version))]
        job_store.append_envelopes(conn, state, batch)
    return step + len(batch)


def _ms_per_report(engine, recorder: ReportRecorder, job_id: str, step: int, n: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for _ in range(n):
        step += 1
        with engine.begin() as conn:
            recorder.record(conn, _progress(job_id, step))
    return 1000 * (time.perf_counter() - start) / n, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,40000")
    parser.add_argument("--reports", type=int, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="privtune-bench-recorder-"))
    engine = open_store(f"sqlite:///{folder}/store.db")
    cached, refold = ReportRecorder(engine, bus=None), ReportRecorder(engine, bus=None, max_cached_jobs=0)  # type: ignore[arg-type]
    print(f"{'stream events':>14} {'cached ms/report':>17} {'refold ms/report':>17} {'refold/cached':>14}")
    for size in (int(s) for s in args.sizes.split(",")):
        jobs = {"cached": f"tj-cached-{size}", "refold": f"tj-refold-{size}"}
        results = {}
        for name, job_id in jobs.items():
            _job(engine, job_id)
            step = _grow(engine, job_id, size, 0)
            recorder = cached if name == "cached" else refold
            _ms_per_report(engine, recorder, job_id, step, 1)  # warm the cache (its first report folds once)
            results[name], _ = _ms_per_report(engine, recorder, job_id, step + 1, args.reports)
        print(f"{size:>14,} {results['cached']:>17.2f} {results['refold']:>17.2f} "
              f"{results['refold'] / results['cached']:>13.1f}x")
    engine.dispose()


if __name__ == "__main__":
    main()
