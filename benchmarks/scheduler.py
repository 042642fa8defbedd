"""Scheduler benchmark: privtune's ``plan_schedule`` decisions/s against a naive FIFO first-fit peer.

    .venv/bin/python benchmarks/scheduler.py [--queued 200 1000] [--seconds 2] [--seed 0]

Seeded snapshots of a cluster with two pools (``a100``: 64 GPUs shared by three tenants,
``h100``: 32 GPUs dedicated to two of them) and per-tenant concurrency quotas. Each
queue size runs in two shapes: ``idle`` (empty pools: many placements per plan) and
``busy`` (pools ~80% held by running jobs of mixed priorities: few placements, some
preemptions, most jobs blocked). Queued jobs ask for 1, 2, 4 or 8 GPUs, have priorities
0-2, and 10% are still in retry backoff.

Variants, on the same snapshots, one after the other in this process:

* ``privtune`` — :func:`services.orchestrator.scheduling.plan_schedule`: priorities,
  weighted dominant-share fair share, quotas, gang placement, per-pool reservation,
  preemption.
* ``fifo`` — the textbook peer: queued jobs in enqueue order, each placed if its backoff
  passed, its tenant is under quota and its gang fits its pool (first fit, no
  priorities, no fairness, no reservation, no preemption).

Reported: plans/s (``plan_schedule`` calls per second), decisions/s (``Place`` plus
``Preempt`` per second) and decisions per plan, with privtune's rates as a ratio of the
peer's measured in the same run.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.orchestrator.resources import Pool  # noqa: E402
from services.orchestrator.scheduling import (Decision, Place, QueuedJob, RunningJob, Snapshot,  # noqa: E402
                                              TenantQuota, plan_schedule)

POOLS = {"a100": Pool("a100", "a100-80gb", 64),
         "h100": Pool("h100", "h100-80gb", 32, shared=False, tenants=("acme", "globex"))}
QUOTAS = {"acme": TenantQuota(30, weight=2.0), "globex": TenantQuota(20), "initech": TenantQuota(25)}
SNAPSHOTS_PER_CASE = 20
NOW_MS = 1_000_000

Scheduler = Callable[[Snapshot], list[Decision]]


def plan_fifo_first_fit(snapshot: Snapshot) -> list[Decision]:
    """The naive peer: enqueue order, place whatever fits and is under quota."""
    free = {name: pool.gpus for name, pool in snapshot.pools.items()}
    jobs: dict[str, int] = {}
    for running in snapshot.running:
        free[running.pool] -= running.gpus
        jobs[running.tenant_id] = jobs.get(running.tenant_id, 0) + 1
    decisions: list[Decision] = []
    for job in sorted(snapshot.queued, key=lambda j: (j.enqueued_at_ms, j.job_id)):
        pool = snapshot.pools.get(job.pool)
        quota = snapshot.quotas.get(job.tenant_id, snapshot.default_quota)
        if (pool is None or not pool.admits(job.tenant_id) or job.not_before_ms > snapshot.now_ms
                or jobs.get(job.tenant_id, 0) >= quota.max_concurrent_jobs or not 0 < job.gpus <= free[job.pool]):
            continue
        free[job.pool] -= job.gpus
        jobs[job.tenant_id] = jobs.get(job.tenant_id, 0) + 1
        decisions.append(Place(job.job_id, job.pool, job.gpus))
    return decisions


VARIANTS: dict[str, Scheduler] = {"privtune": plan_schedule, "fifo": plan_fifo_first_fit}


def _pool_for(rng: random.Random, tenant: str) -> str:
    return "h100" if POOLS["h100"].admits(tenant) and rng.random() < 0.35 else "a100"


def make_snapshot(queued: int, busy: bool, rng: random.Random) -> Snapshot:
    tenants = list(QUOTAS)
    running: list[RunningJob] = []
    if busy:
        for name, pool in POOLS.items():
            held, n = 0, 0
            while held < 0.8 * pool.gpus:
                tenant = rng.choice([t for t in tenants if pool.admits(t)])
                gpus = min(rng.choice((1, 2, 4, 8)), pool.gpus - held)
                running.append(RunningJob(f"r-{name}-{n}", tenant, name, gpus, rng.choice((0, 0, 1)),
                                          NOW_MS - rng.randint(1, 3_600_000), stopping=rng.random() < 0.05))
                held, n = held + gpus, n + 1
    jobs = []
    for n in range(queued):
        tenant = rng.choice(tenants)
        jobs.append(QueuedJob(f"q-{n}", tenant, _pool_for(rng, tenant), rng.choice((1, 1, 2, 2, 4, 8)),
                              rng.choices((0, 1, 2), weights=(7, 2, 1))[0], NOW_MS - rng.randint(0, 3_600_000),
                              NOW_MS + 60_000 if rng.random() < 0.1 else 0))
    return Snapshot(NOW_MS, POOLS, jobs, running, QUOTAS, TenantQuota(5))


def measure(scheduler: Scheduler, snapshots: Sequence[Snapshot], seconds: float) -> dict[str, float]:
    """Call ``scheduler`` over the snapshots round-robin for at least ``seconds``."""
    plans = decisions = 0
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for snapshot in snapshots:
            decisions += len(scheduler(snapshot))
        plans += len(snapshots)
        elapsed = time.perf_counter() - start
    return {"plans_per_s": plans / elapsed, "decisions_per_s": decisions / elapsed,
            "decisions_per_plan": decisions / plans}


def run_decisions(queue_sizes: Sequence[int], seconds: float, seed: int) -> None:
    """Part 1: scheduling decisions/s, privtune vs the FIFO first-fit peer."""
    print(f"scheduler decisions/s: {SNAPSHOTS_PER_CASE} seeded snapshots per case (seed {seed}), "
          f"{seconds:g}s per variant per case; {sys.version.split()[0]} on {platform.machine()}, "
          f"{platform.processor() or 'cpu'}")
    print("\n| queued | pools | variant | plans/s | decisions/s | decisions/plan | plans/s vs fifo | decisions/s vs fifo |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for queued in queue_sizes:
        for busy in (False, True):
            rng = random.Random(seed * 1_000_003 + queued * 2 + busy)
            snapshots = [make_snapshot(queued, busy, rng) for _ in range(SNAPSHOTS_PER_CASE)]
            results = {name: measure(scheduler, snapshots, seconds) for name, scheduler in VARIANTS.items()}
            peer = results["fifo"]
            for name, result in results.items():
                print(f"| {queued:,} | {'busy' if busy else 'idle'} | {name} | {result['plans_per_s']:,.0f} | "
                      f"{result['decisions_per_s']:,.0f} | {result['decisions_per_plan']:.1f} | "
                      f"{result['plans_per_s'] / peer['plans_per_s']:.2f}x | "
                      f"{result['decisions_per_s'] / peer['decisions_per_s']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queued", type=int, nargs="+", default=[200, 1000], help="queue sizes to plan over")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per variant per case")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_decisions(args.queued, args.seconds, args.seed)


if __name__ == "__main__":
    main()
