"""Gang scheduler over GPU pools: which queued training jobs start now, which running ones to preempt.

Pure: :func:`plan_schedule` reads a :class:`Snapshot` (time included) and returns decisions;
the application layer turns them into ``JobScheduled`` / preemption commands.

Policy, in the order the scheduler walks the queue:

* **Eligibility.** A queued job is considered only if its pool exists and admits its
  tenant, it asks for between 1 and the pool's capacity GPUs, and its retry backoff has
  passed (``not_before_ms <= now_ms``). Others are skipped without side effects.
* **Rank.** Higher priority first. Within a priority, the next job comes from the
  tenant with the lowest *weighted dominant share* — GPUs it holds across all pools
  (stopping jobs included) divided by all pools' GPUs, divided by its quota weight —
  recomputed after every placement in the plan, so tenants interleave. Ties go to the
  tenant whose next job was enqueued first; within a tenant, FIFO.
* **Quota.** A tenant whose running jobs (stopping included) plus jobs placed in this
  plan reach ``max_concurrent_jobs`` places nothing more. Quota-blocked jobs neither
  reserve capacity nor preempt anyone: freeing GPUs would not let them start.
* **Gang placement.** A job is placed only when all its GPUs are free in its pool at
  once; a pool never holds more GPUs than its capacity (stopping jobs still hold theirs).
* **Reservation (no starvation).** The highest-ranked job that does not fit in a pool
  reserves that pool: nothing ranked below it is placed there until it starts. We have
  no runtime estimates, so safe backfilling (EASY) is impossible; with this rule a big
  gang job waits at most for the jobs already running in its pool (or for work ranked
  above it), never for a stream of smaller jobs. The cost is idle GPUs while a pool
  drains; other pools keep scheduling normally.
* **Preemption.** When that reserving job outranks running jobs in its pool by
  priority (strictly), and the GPUs already free, the GPUs stopping jobs are about to
  release, and the GPUs of lower-priority running jobs (lowest priority first, then most
  recently started) add up to its gang, the scheduler preempts just enough of them. If
  stopping jobs already free enough, it preempts nobody. If even preempting every
  lower-priority job would not free enough, it preempts nobody and only reserves.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from dataclasses import dataclass
from operator import attrgetter
from typing import Mapping, Sequence, Union

from services.orchestrator.resources import Pool


@dataclass(frozen=True)
class QueuedJob:
    """A training job waiting for GPUs."""

    job_id: str
    tenant_id: str
    pool: str
    gpus: int                       # gang size: all or nothing
    priority: int                   # higher runs first
    enqueued_at_ms: int             # FIFO key within a tenant (a preempted job keeps its original time)
    not_before_ms: int = 0          # retry backoff: not placed before this time


@dataclass(frozen=True)
class RunningJob:
    """A job holding GPUs; ``stopping`` jobs were asked to stop but still hold them."""

    job_id: str
    tenant_id: str
    pool: str
    gpus: int
    priority: int
    started_at_ms: int
    stopping: bool = False


@dataclass(frozen=True)
class TenantQuota:
    """A tenant's concurrency cap and fair-share weight (weight 2 deserves twice the GPUs)."""

    max_concurrent_jobs: int
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.max_concurrent_jobs < 0:
            raise ValueError(f"max_concurrent_jobs must be >= 0, got {self.max_concurrent_jobs}; "
                             "use 0 to stop a tenant from starting jobs")
        if not self.weight > 0:
            raise ValueError(f"fair-share weight must be > 0, got {self.weight}; use 1.0 for an equal share")


@dataclass(frozen=True)
class Snapshot:
    """Everything the scheduler may look at, taken at ``now_ms``."""

    now_ms: int
    pools: Mapping[str, Pool]
    queued: Sequence[QueuedJob]
    running: Sequence[RunningJob]
    quotas: Mapping[str, TenantQuota]
    default_quota: TenantQuota      # for tenants missing from ``quotas``


@dataclass(frozen=True)
class Place:
    """Start ``job_id`` on ``gpus`` GPUs of ``pool`` (always the job's whole gang)."""

    job_id: str
    pool: str
    gpus: int


@dataclass(frozen=True)
class Preempt:
    """Ask running ``job_id`` to checkpoint and requeue, to make room for ``for_job_id``."""

    job_id: str
    for_job_id: str


Decision = Union[Place, Preempt]


class _Plan:
    """Mutable working state of one :func:`plan_schedule` call."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.total_gpus = sum(pool.gpus for pool in snapshot.pools.values())
        self.used: dict[str, int] = defaultdict(int)           # pool -> GPUs held (stopping + placed included)
        self.stopping: dict[str, int] = defaultdict(int)       # pool -> GPUs stopping jobs will release
        self.tenant_jobs: dict[str, int] = defaultdict(int)
        self.tenant_gpus: dict[str, int] = defaultdict(int)
        self.victims: dict[str, list[RunningJob]] = defaultdict(list)   # pool -> preemptible, unsorted
        for job in snapshot.running:
            self.used[job.pool] += job.gpus
            self.tenant_jobs[job.tenant_id] += 1
            self.tenant_gpus[job.tenant_id] += job.gpus
            if job.stopping:
                self.stopping[job.pool] += job.gpus
            else:
                self.victims[job.pool].append(job)
        self.reserved: set[str] = set()
        self.decisions: list[Decision] = []

    def quota(self, tenant_id: str) -> TenantQuota:
        return self.snapshot.quotas.get(tenant_id, self.snapshot.default_quota)

    def at_quota(self, tenant_id: str) -> bool:
        return self.tenant_jobs[tenant_id] >= self.quota(tenant_id).max_concurrent_jobs

    def share(self, tenant_id: str) -> float:
        if not self.total_gpus:
            return 0.0
        return self.tenant_gpus[tenant_id] / self.total_gpus / self.quota(tenant_id).weight

    def free(self, pool: str) -> int:
        return self.snapshot.pools[pool].gpus - self.used[pool]

    def place(self, job: QueuedJob) -> None:
        self.used[job.pool] += job.gpus
        self.tenant_jobs[job.tenant_id] += 1
        self.tenant_gpus[job.tenant_id] += job.gpus
        self.decisions.append(Place(job.job_id, job.pool, job.gpus))

    def reserve_for(self, job: QueuedJob) -> None:
        """``job`` is the pool's highest-ranked blocked job: reserve the pool, preempting if that helps."""
        self.reserved.add(job.pool)
        need = job.gpus - self.free(job.pool) - self.stopping[job.pool]
        if need <= 0:
            return
        candidates = sorted((v for v in self.victims[job.pool] if v.priority < job.priority),
                            key=lambda v: (v.priority, -v.started_at_ms, v.job_id))
        chosen: list[RunningJob] = []
        for victim in candidates:
            chosen.append(victim)
            need -= victim.gpus
            if need <= 0:
                break
        if need > 0:
            return
        for victim in chosen:
            self.stopping[job.pool] += victim.gpus
            self.decisions.append(Preempt(victim.job_id, job.job_id))
        stopped = {victim.job_id for victim in chosen}
        self.victims[job.pool] = [v for v in self.victims[job.pool] if v.job_id not in stopped]


def _eligible_by_priority(snapshot: Snapshot) -> dict[int, list[QueuedJob]]:
    """Queued jobs that may start now (pool exists and admits the tenant, gang fits, backoff over)."""
    admitted: dict[tuple[str, str], bool] = {}
    levels: dict[int, list[QueuedJob]] = defaultdict(list)
    for job in snapshot.queued:
        key = (job.pool, job.tenant_id)
        ok = admitted.get(key)
        if ok is None:
            pool = snapshot.pools.get(job.pool)
            ok = admitted[key] = pool is not None and pool.admits(job.tenant_id)
        if ok and job.not_before_ms <= snapshot.now_ms and 0 < job.gpus <= snapshot.pools[job.pool].gpus:
            levels[job.priority].append(job)
    return levels


_FIFO = attrgetter("enqueued_at_ms", "job_id")


def _fifo_by_tenant(jobs: list[QueuedJob]) -> dict[str, deque[QueuedJob]]:
    by_tenant: dict[str, list[QueuedJob]] = defaultdict(list)
    for job in jobs:
        by_tenant[job.tenant_id].append(job)
    return {tenant: deque(sorted(mine, key=_FIFO)) for tenant, mine in by_tenant.items()}


def plan_schedule(snapshot: Snapshot) -> list[Decision]:
    """Decide which queued jobs to place and which running jobs to preempt now.

    Guarantees (see the module docstring for the policy): no pool over capacity, gangs
    placed whole or not at all, per-tenant ``max_concurrent_jobs`` respected, priority
    then weighted fair share then FIFO, retry backoff honoured, one reservation per
    pool against starvation, and preemption only of strictly lower-priority jobs, only
    as many as needed.

    Returns:
        ``Preempt`` and ``Place`` decisions in the order they were taken.
    """
    plan = _Plan(snapshot)
    open_pools = sum(1 for pool in snapshot.pools.values() if pool.gpus > 0)
    levels = _eligible_by_priority(snapshot)
    for priority in sorted(levels, reverse=True):     # lower levels are never sorted once every pool is reserved
        if len(plan.reserved) >= open_pools:
            break
        level = _fifo_by_tenant(levels[priority])
        heap = [(plan.share(tenant), jobs[0].enqueued_at_ms, jobs[0].job_id, tenant)
                for tenant, jobs in level.items() if not plan.at_quota(tenant)]
        heapq.heapify(heap)
        while heap and len(plan.reserved) < open_pools:
            tenant = heapq.heappop(heap)[3]
            jobs = level[tenant]
            job = jobs.popleft()
            if job.pool not in plan.reserved:
                if job.gpus <= plan.free(job.pool):
                    plan.place(job)
                else:
                    plan.reserve_for(job)
            if plan.at_quota(tenant):
                continue                # the rest of its jobs are quota-blocked: no reservation, no preemption
            while jobs and jobs[0].pool in plan.reserved:
                jobs.popleft()          # behind a reservation for the rest of this plan
            if jobs:
                heapq.heappush(heap, (plan.share(tenant), jobs[0].enqueued_at_ms, jobs[0].job_id, tenant))
    return plan.decisions
