"""Scheduler benchmark: ``plan_schedule`` decisions/s, and training-job API latency per store.

    .venv/bin/python benchmarks/scheduler.py [--part all|decisions|api] [--queued 200 1000] [--seconds 2]
        [--clients 200] [--api-seconds 20] [--warmup 3] [--prefill 200] [--stores sqlite postgresql] [--seed 0]
        [--rate 0] [--api-processes 1] [--rounds 1] [--no-peer] [--no-gc-freeze] [--switch-interval-ms 0]

Part 1, ``decisions`` (``--queued``, ``--seconds``): privtune's ``plan_schedule`` against a
naive FIFO first-fit peer.

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

Part 2, ``api`` (``--clients``, ``--api-seconds``, ``--warmup``, ``--prefill``, ``--stores``): the
``TrainingService`` latency at ``--clients`` concurrent gRPC clients, with the SQLite store and
then the PostgreSQL store, in the same run. For each store a fresh platform runs in this
process with the orchestrator only (API, controller, projections, outbox relay; no training
worker, so jobs stay queued or scheduled), a local pool of 2 device slots, a tenant policy,
the tiny base model, one dataset version and ``--prefill`` jobs created through the API (TLS;
the clients send a bearer token of its development issuer, verified per call). The clients run
in a child process (so they do not share the server's GIL): one thread and one
TLS gRPC channel (its own HTTP/2 connection) per client, closed loop (the next call as soon as
the previous answers), 60% ``GetTrainingJob`` (a random known job), 25% ``ListTrainingJobs``
(first page of 50) and 15% ``CreateTrainingJob`` (full admission: policy file, model
catalog, dataset version, estimate, ledger, then the events and outbox in one transaction).
Calls started in the first ``--warmup`` seconds are not counted. The SQLite store is the
embedded default (WAL, ``synchronous=FULL``); PostgreSQL is a private server on loopback
started for the run with durable commits (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on) and stopped at the end. Both use the embedded SQLite bus. The
gRPC server has 32 worker threads, so at 200 clients most of a call's latency is its wait
in the server's queue.

``--rate R`` makes the clients open loop: R calls/s in all, each client at exponentially spaced
times, latency counted from when a call was due. ``--api-processes N`` adds N-1 API-only server
processes on the same port (``privtune serve --api-processes``; SO_REUSEPORT): the server's CPU
then sums all of them, and "handler" times cover the first process only. ``--rounds N`` measures
privtune and then the peer N times in turn on the same platform and database (this machine's speed
drifts by tens of percent within minutes): the tables pool the rounds, and each round's ratio is
printed with their median. Before each measured window (privtune's or the peer's) the platform
settles: its outbox empty and every consumer caught up, so neither side is measured beside the
other's leftover work. After the prefill the process's heap is frozen for the garbage collector, as
``privtune serve`` does once started (``services/common/heap.py``; ``--no-gc-freeze`` leaves it; the
peer shares this process and its heap either way), and the collections during the rounds are printed.
``--switch-interval-ms`` sets the interpreter's switch interval for privtune and the peer alike.
``--request-ids`` gives every Create a fresh ``request_id``, as an idempotent client's are: privtune
then also checks that it is not a retry (the peer ignores it).

While the clients run, a sampler counts every 0.1 s, in one statement (one snapshot), the jobs in
the event store that the job list does not show yet, and for how long the oldest has been
missing: the job list's lag.

The peer, in the same run after each store (``--no-peer`` skips it): a bare grpcio servicer of the
same TrainingService messages, with the same TLS certificate, 32 threads and clients, answering
Get, List and Create with one indexed SQL statement each on the same database (a row read by key,
the first 50 rows in order, one row inserted), with no authentication, admission or events: the
floor of what a Python gRPC service does here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.heap import freeze_startup_heap  # noqa: E402
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


# ------------------------------------------------------------------ part 2: training-job API latency

API_OPERATIONS = ("GetTrainingJob", "ListTrainingJobs", "CreateTrainingJob")
API_WEIGHTS = (60, 25, 15)
POOLS_YAML = "pools:\n  - {name: local, gpu_type: cpu, gpus: 2, shared: false}\n"
POLICY_YAML = """version: "bench-1"
quotas: {max_concurrent_jobs: 2, monthly_gpu_hours: 1000000.0}
"""
DURABLE_POSTGRES = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

# (operation index, start in s from the clients' start, latency in s, outcome: "OK", "REJECTED" or a gRPC code)
Sample = tuple[int, float, float, str]


def api_credentials(platform: Any) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """What a client of ``platform`` needs: the CA certificate to trust and
    call metadata carrying a bearer token of tenant acme, minted by the platform's development issuer."""
    from services.common.auth.tokens import DevIssuer

    token = DevIssuer(platform.config.auth_dir).mint("acme", "alice", ["ml-engineer"], ttl_s=6 * 3600)
    return (platform.config.pki_dir / "ca.pem").read_bytes(), (("authorization", f"Bearer {token}"),)


def drive_clients(target: str, ca_pem: bytes, call_metadata: tuple[tuple[str, str], ...], job_ids: list[str],
                  create_request: bytes, clients: int, seconds: float, seed: int, rate: float = 0.0,
                  request_ids: bool = False) -> tuple[list[Sample], float, float]:
    """Run ``clients`` client threads, one TLS channel each (trusting ``ca_pem``), for ``seconds``: closed
    loop (``rate`` 0), or open loop at ``rate`` calls/s in all (each client sends at exponentially spaced
    times, a call's latency counted from when it was due, so a server that falls behind is not excused).

    Runs in a child process. Returns every call's sample, the process's CPU seconds and the
    clients' start on ``time.perf_counter`` (CLOCK_MONOTONIC on Linux: the same clock as the server's).
    """
    import grpc

    from privtune.v1 import training_service_pb2 as pb
    from privtune.v1 import training_service_pb2_grpc as pb_grpc

    known = list(job_ids)  # creates append: later Gets also read new jobs
    template = pb.CreateTrainingJobRequest.FromString(create_request)
    samples: list[Sample] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    started = [0.0]

    def call(stub: pb_grpc.TrainingServiceStub, op: int, name: str, rng: random.Random) -> str:
        if op == 0:
            stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=rng.choice(known)), metadata=call_metadata,
                                timeout=120)
        elif op == 1:
            stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=50), metadata=call_metadata, timeout=120)
        else:
            request = pb.CreateTrainingJobRequest()
            request.CopyFrom(template)
            request.spec.name = name
            if request_ids:  # as an idempotent client sends: a fresh id per create (its retries would repeat it);
                request.request_id = f"bench-{uuid.uuid4().hex}"  # not from rng: rounds replay its draws
            job = stub.CreateTrainingJob(request, metadata=call_metadata, timeout=120).job
            known.append(job.job_id)
            return "REJECTED" if job.state == pb.TRAINING_JOB_STATE_REJECTED else "OK"
        return "OK"

    def client(n: int) -> None:
        rng = random.Random(seed * 1_000_003 + n)
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca_pem))
        grpc.channel_ready_future(channel).result(timeout=60)
        stub = pb_grpc.TrainingServiceStub(channel)
        mine: list[Sample] = []
        ready.wait()
        deadline = started[0] + seconds
        due = started[0]
        while (begin := time.perf_counter()) < deadline:
            if rate > 0:
                due += rng.expovariate(rate / clients)
                if due >= deadline:
                    break
                if due > begin:
                    time.sleep(due - begin)
                begin = due
            op = rng.choices(range(len(API_OPERATIONS)), API_WEIGHTS)[0]
            try:
                outcome = call(stub, op, f"bench-{n}-{len(mine)}", rng)
            except grpc.RpcError as err:
                outcome = err.code().name
            mine.append((op, begin - started[0], time.perf_counter() - begin, outcome))
        channel.close()
        with lock:
            samples.extend(mine)

    cpu = time.process_time()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    started[0] = time.perf_counter()
    ready.wait()
    for thread in threads:
        thread.join()
    return samples, time.process_time() - cpu, started[0]


@contextlib.contextmanager
def timed_handlers() -> Iterator[list[tuple[int, float, float]]]:
    """Record (operation, start, seconds) of every TrainingService handler call served in this process.

    The time a call spends in its handler, without its wait for the gRPC server to admit it
    and for a worker thread. Patch before the platform starts: the server binds the methods then.
    """
    from services.orchestrator.grpc_api import TrainingServicer

    records: list[tuple[int, float, float, float]] = []
    originals = {name: getattr(TrainingServicer, name) for name in API_OPERATIONS}
    for op, name in enumerate(API_OPERATIONS):
        setattr(TrainingServicer, name, _timed(records, op, originals[name]))
    try:
        yield records
    finally:
        for name, handler in originals.items():
            setattr(TrainingServicer, name, handler)


def _timed(records: list[tuple[int, float, float, float]], op: int,
           handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` (a servicer method) appending (operation, start, seconds, thread CPU seconds) per call."""
    @functools.wraps(handler)
    def call(self: Any, request: Any, context: Any) -> Any:
        begin, cpu = time.perf_counter(), time.thread_time()
        try:
            return handler(self, request, context)
        finally:
            records.append((op, begin, time.perf_counter() - begin, time.thread_time() - cpu))
    return call


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def start_store_platform(data: Path, store_uri: str, models: Path) -> Any:
    """A platform running the orchestrator only, on ``store_uri``, with a pool file, a policy and ``models``."""
    from privtune.platform import Platform
    from services.common.config import PlatformConfig

    (data / "policies").mkdir(parents=True)
    (data / "pools.yaml").write_text(POOLS_YAML)
    (data / "policies" / "acme.yaml").write_text(POLICY_YAML)
    (data / "models").symlink_to(models)
    config = PlatformConfig.from_env(data, grpc_address="127.0.0.1:0", store_uri=store_uri,
                                     bus_uri=f"sqlite:///{data}/events.db")
    return Platform(config, services=("orchestrator",)).start()


def serve_api_replica(data: str, store_uri: str, address: str, component_address: str, ready: Any, stop: Any,
                      cpu: Any, freeze: bool = True, switch_interval_s: float = 0.0) -> None:
    """Run an API-only platform (orchestrator) on ``address`` beside the benchmark's, until ``stop`` is set.

    Runs in a child process; ``cpu`` receives its CPU seconds from ``ready`` to ``stop``."""
    from privtune.platform import Platform
    from services.common.config import PlatformConfig

    config = PlatformConfig.from_env(Path(data), grpc_address=address, store_uri=store_uri,
                                     bus_uri=f"sqlite:///{data}/events.db", component_grpc_address=component_address)
    if switch_interval_s > 0:
        sys.setswitchinterval(switch_interval_s)
    replica = Platform(config, services=("orchestrator",), api_only=True, freeze_heap=freeze).start()
    try:
        begin = time.process_time()
        ready.set()
        stop.wait()
        cpu.value = time.process_time() - begin
    finally:
        replica.stop()


@contextlib.contextmanager
def api_replicas(platform: Any, store_uri: str, count: int, freeze: bool = True,
                 switch_interval_s: float = 0.0) -> Iterator[list[Any]]:
    """``count`` API-only server processes on the platform's gRPC port (``freeze``: their heaps, as
    ``privtune serve`` does; ``switch_interval_s`` > 0: theirs); yields their CPU-seconds holders."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    address = platform.grpc_target
    component = f"127.0.0.1:{platform.server.component_port}"
    started = []
    try:
        for _ in range(count):
            ready, cpu = ctx.Event(), ctx.Value("d", 0.0)
            proc = ctx.Process(target=serve_api_replica, daemon=True,
                               args=(str(platform.config.data_dir), store_uri, address, component, ready, stop, cpu,
                                     freeze, switch_interval_s))
            proc.start()
            started.append((proc, ready, cpu))
        for proc, ready, _ in started:
            if not ready.wait(120):
                raise RuntimeError("an API replica did not start within 120 s")
        yield [cpu for _, _, cpu in started]
    finally:
        stop.set()
        for proc, _, _ in started:
            proc.join(30)


def prefill_jobs(platform: Any, request: Any, count: int) -> list[str]:
    """Create ``count`` jobs through the API (8 at a time); wait until the read model lists them all."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from sqlalchemy import func, select

    from privtune.v1 import training_service_pb2 as pb
    from privtune.v1 import training_service_pb2_grpc as pb_grpc
    from services.common.store.schema import training_job_view

    ca_pem, call_metadata = api_credentials(platform)
    stub = pb_grpc.TrainingServiceStub(grpc.secure_channel(platform.grpc_target, grpc.ssl_channel_credentials(ca_pem)))

    def create(n: int) -> str:
        named = pb.CreateTrainingJobRequest()
        named.CopyFrom(request)
        named.spec.name = f"prefill-{n}"
        job = stub.CreateTrainingJob(named, metadata=call_metadata, timeout=120).job
        if job.state == pb.TRAINING_JOB_STATE_REJECTED:
            raise RuntimeError(f"the benchmark's job request was rejected: {job.reason}")
        return job.job_id

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(create, range(count)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with platform.engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(training_job_view)).scalar() >= count:
                return job_ids
        time.sleep(0.2)
    raise RuntimeError(f"the training_job_view projection did not list {count} jobs within 60 s")


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]


def summarize(samples: list[Sample], handlers: list[tuple[int, float, float, float]],
              window: float) -> dict[str, dict[str, float]]:
    """Per operation and ``all``: calls, calls/s, p50/p99/max ms of successful calls as clients saw them,
    handler p50/p99 ms as the server timed them, errors and rejections."""
    nan = float("nan")
    rows: dict[str, dict[str, float]] = {}
    for name, ops in [*((n, {i}) for i, n in enumerate(API_OPERATIONS)), ("all", set(range(len(API_OPERATIONS))))]:
        mine = [s for s in samples if s[0] in ops]
        ok = sorted(s[2] * 1000 for s in mine if s[3] in ("OK", "REJECTED"))
        served = sorted(h[2] * 1000 for h in handlers if h[0] in ops)
        rows[name] = {"calls": len(mine), "calls_per_s": len(ok) / window,
                      "p50_ms": percentile(ok, 50) if ok else nan, "p99_ms": percentile(ok, 99) if ok else nan,
                      "max_ms": ok[-1] if ok else nan,
                      "handler_p50_ms": percentile(served, 50) if served else nan,
                      "handler_p99_ms": percentile(served, 99) if served else nan,
                      # CPU the handler's thread used (the rest of its time it waited: store, locks, the GIL)
                      "handler_cpu_ms": (sum(h[3] for h in handlers if h[0] in ops) * 1000 / len(served)
                                         if served else nan),
                      "errors": sum(1 for s in mine if s[3] not in ("OK", "REJECTED")),
                      "rejected": sum(1 for s in mine if s[3] == "REJECTED")}
    return rows


JOBS_BEHIND_SQL = (
    # one statement, so one snapshot on both stores: jobs in the event store (their first event) that the
    # job list does not show yet, and when the oldest of them was stored
    "SELECT count(*), min(e.recorded_at_ms) FROM stored_events e WHERE e.stream_type = 'training_job' "
    "AND e.stream_version = 1 AND NOT EXISTS (SELECT 1 FROM training_job_view v "
    "WHERE v.tenant_id = e.tenant_id AND v.job_id = e.stream_id)")


@contextlib.contextmanager
def sample_job_list_lag(store_uri: str, every_s: float = 0.1) -> Iterator[dict[str, float]]:
    """Every ``every_s``, how many jobs the event store has that the job list lacks, and for how long the
    oldest of them has been missing (its own connection). Yields the running maxima and the sample count."""
    from sqlalchemy import create_engine, text

    from services.common.clock import now_ms

    found = {"samples": 0, "max_jobs_behind": 0, "max_seconds_behind": 0.0}
    stop = threading.Event()
    engine = create_engine(store_uri, connect_args={"timeout": 60} if store_uri.startswith("sqlite") else {})

    def sample() -> None:
        with engine.connect() as conn:
            while not stop.wait(every_s):
                behind, oldest = conn.execute(text(JOBS_BEHIND_SQL)).one()
                conn.rollback()  # the next sample reads a fresh snapshot
                found["samples"] += 1
                found["max_jobs_behind"] = max(found["max_jobs_behind"], int(behind))
                if behind:
                    found["max_seconds_behind"] = max(found["max_seconds_behind"], (now_ms() - int(oldest)) / 1000)

    thread = threading.Thread(target=sample, name="lag-sampler", daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        engine.dispose()


def start_bare_server(engine: Any, tls_dir: Path,
                      records: list[tuple[int, float, float, float]] | None = None) -> tuple[Any, int]:
    """The peer: a bare grpcio TrainingService (32 threads, the same TLS certificate) answering Get, List
    and Create with one indexed SQL statement each on the platform's database; no authentication, no
    admission, no events. The floor of what a Python gRPC service can do here. Its handlers are timed
    into ``records`` as privtune's are (``timed_handlers``), so both servers' handler times can be set
    side by side."""
    from concurrent import futures

    import grpc
    from sqlalchemy import insert, select

    from privtune.v1 import training_service_pb2 as pb
    from privtune.v1 import training_service_pb2_grpc as pb_grpc
    from services.common.store.engine import reader, serves_calls
    from services.common.store.schema import training_job_view as view
    from services.orchestrator.grpc_api import job_from_row

    reads = reader(engine)
    get_q = select(view).where(view.c.tenant_id == "acme")
    list_q = select(view).where(view.c.tenant_id == "acme").order_by(view.c.created_at_ms, view.c.job_id).limit(50)

    class Bare(pb_grpc.TrainingServiceServicer):
        def GetTrainingJob(self, request: Any, context: Any) -> Any:
            with reads.connect() as conn:
                row = conn.execute(get_q.where(view.c.job_id == request.job_id)).mappings().first()
            if row is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
            return pb.GetTrainingJobResponse(job=job_from_row(dict(row)))

        def ListTrainingJobs(self, request: Any, context: Any) -> Any:
            with reads.connect() as conn:
                rows = conn.execute(list_q).mappings().all()
            return pb.ListTrainingJobsResponse(jobs=[job_from_row(dict(r)) for r in rows])

        def CreateTrainingJob(self, request: Any, context: Any) -> Any:
            now = int(time.time() * 1000)
            row = dict(tenant_id="acme", job_id=f"tj-{uuid.uuid4().hex[:24]}", name=request.spec.name,
                       state=2, gpu_pool="local", gpus=1, priority=0, attempt=1, method=1,
                       base_model_id=request.spec.base_model_id, dataset_version_id=request.spec.dataset_version_id,
                       step=0, total_steps=0, loss=0.0, epsilon_spent=0.0, gpu_hours=0.0, retry_pending=0, failures=0,
                       state_version=2, started_at_ms=0, month="2026-12", reason="", created_at_ms=now,
                       updated_at_ms=now)
            with engine.begin() as conn:
                conn.execute(insert(view).values(**row))
            return pb.CreateTrainingJobResponse(job=job_from_row(row))

    if records is not None:
        for op, name in enumerate(API_OPERATIONS):
            setattr(Bare, name, _timed(records, op, getattr(Bare, name)))
    # its writes go before the background loops', as privtune's handlers' do (store.engine.serves_calls)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, initializer=serves_calls))
    pb_grpc.add_TrainingServiceServicer_to_server(Bare(), server)
    creds = grpc.ssl_server_credentials([((tls_dir / "server-key.pem").read_bytes(),
                                          (tls_dir / "server.pem").read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


def drive(target: str, ca_pem: bytes, call_metadata: tuple[tuple[str, str], ...], job_ids: list[str],
          request: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Drive the clients against ``target`` from a child process; samples and CPU use of both sides."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        child.submit(int, 0).result()  # the child's start-up and imports before the clock
        busy0, total0, cpu0 = *_busy_jiffies(), time.process_time()
        samples, client_cpu, started = child.submit(drive_clients, target, ca_pem, call_metadata, job_ids,
                                                    request.SerializeToString(), args.clients,
                                                    args.warmup + args.api_seconds, args.seed, args.rate,
                                                    args.request_ids).result()
        busy1, total1, cpu1 = *_busy_jiffies(), time.process_time()
    elapsed = args.warmup + args.api_seconds
    cores = os.cpu_count() or 1
    return {"samples": [s for s in samples if s[1] >= args.warmup], "started": started,
            "server_cores": (cpu1 - cpu0) / elapsed, "client_cores": client_cpu / elapsed,
            "machine_cores": (busy1 - busy0) / max(1, total1 - total0) * cores}


def settle(platform: Any, timeout: float = 120.0) -> None:
    """Wait until the platform has worked off what the last round left (``Platform.settled_since`` the wait
    began), so neither side is measured beside the other's backlog."""
    begun, deadline = time.time(), time.monotonic() + timeout
    while not platform.settled_since(begun):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the platform did not settle within {timeout:g} s")
        time.sleep(0.2)


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds' ``drive`` results as one: their samples together, CPU use averaged."""
    return {"samples": [s for run in runs for s in run["samples"]], "started": runs[0]["started"],
            **{k: sum(run[k] for run in runs) / len(runs) for k in ("server_cores", "client_cores", "machine_cores")}}


pauses: list[tuple[int, float]] = []  # (generation, seconds) of every garbage collection in this process


def _record_gc() -> None:
    started: list[float] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pauses.append((info["generation"], time.perf_counter() - started[0]))
    gc.callbacks.append(callback)


def gc_summary(recorded: list[tuple[int, float]]) -> str:
    """The collections (each stops every thread of the process) while the store's clients ran, by generation."""
    parts = []
    for generation in (0, 1, 2):
        times = [t for g, t in recorded if g == generation]
        if times:
            parts.append(f"generation {generation}: {len(times)}, {sum(times) * 1000:,.0f} ms in all, "
                         f"longest {max(times) * 1000:,.1f} ms")
    return "; ".join(parts) or "none"


def bench_store(store: str, store_uri: str, data: Path, models: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One store: start a platform on it, prefill, drive the clients from a child process (sampling the job
    list's lag meanwhile), then the same clients against the bare peer on the same database; stop it."""
    from sqlalchemy import func, select

    from services.common.store.schema import stored_events, training_job_view
    from tests.orchestrator_fixtures import job_request, register_version

    with timed_handlers() as handlers:
        platform_ = start_store_platform(data, store_uri, models)
    try:
        request = job_request(register_version(platform_.engine, platform_.config.storage_uri), name="bench")
        setup = time.perf_counter()
        job_ids = prefill_jobs(platform_, request, args.prefill)
        prefill_s = time.perf_counter() - setup
        if args.gc_freeze:  # as `privtune serve` does once its platform started
            freeze_startup_heap()
        pauses.clear()
        handlers.clear()
        bare_handlers: list[tuple[int, float, float, float]] = []
        bare_server = (start_bare_server(platform_.engine, platform_.config.pki_dir, bare_handlers)
                       if args.peer else None)
        runs, bare_runs, served, bare_served = [], [], [], []
        try:
            with api_replicas(platform_, store_uri, args.api_processes - 1, args.gc_freeze,
                              args.switch_interval_ms / 1000) as replica_cpu, \
                    sample_job_list_lag(store_uri) as lag:
                # rounds alternate privtune and the peer, so a slow spell of this machine costs both alike
                for _ in range(args.rounds):
                    settle(platform_)
                    run = drive(platform_.grpc_target, *api_credentials(platform_), job_ids, request, args)
                    served += [h for h in handlers if h[1] >= run["started"] + args.warmup]
                    handlers.clear()
                    runs.append(run)
                    if bare_server is not None:
                        settle(platform_)  # the peer is not measured while privtune works off its backlog
                        bare_runs.append(drive(f"127.0.0.1:{bare_server[1]}", *api_credentials(platform_), job_ids,
                                               request, args))
                        bare_served += [h for h in bare_handlers if h[1] >= bare_runs[-1]["started"] + args.warmup]
                        bare_handlers.clear()
                    # (a replica reports its CPU when it stops: all rounds' together, spread over them below)
            replicas_cores = sum(c.value for c in replica_cpu) / (args.warmup + args.api_seconds) / args.rounds
        finally:
            if bare_server is not None:
                bare_server[0].stop(1).wait()
        run = pooled(runs)
        run["server_cores"] += replicas_cores
        codes = sorted({s[3] for s in run["samples"]} - {"OK", "REJECTED"})
        with platform_.engine.connect() as conn:  # the read model may lag the event store: show both
            jobs = conn.execute(select(func.count(stored_events.c.stream_id.distinct())).where(
                stored_events.c.stream_type == "training_job")).scalar()
            listed = conn.execute(select(func.count()).select_from(training_job_view).where(  # not the peer's rows
                select(stored_events.c.seq).where(stored_events.c.stream_id == training_job_view.c.job_id).exists())
            ).scalar()
        window = args.api_seconds * args.rounds
        result = {"store": store, "rows": summarize(run["samples"], served, window), "gc": gc_summary(pauses),
                  "prefill_s": prefill_s, "error_codes": codes, "jobs": jobs, "listed": listed, "lag": dict(lag),
                  "round_ratios": [], **{k: run[k] for k in ("server_cores", "client_cores", "machine_cores")}}
        if bare_runs:
            bare = pooled(bare_runs)
            result["bare"] = {"rows": summarize(bare["samples"], bare_served, window),
                              **{k: bare[k] for k in ("server_cores", "client_cores", "machine_cores")}}
            result["round_ratios"] = [summarize(mine["samples"], [], args.api_seconds)["all"]["calls_per_s"]
                                      / max(1e-9, summarize(peer["samples"], [], args.api_seconds)["all"]["calls_per_s"])
                                      for mine, peer in zip(runs, bare_runs)]
        return result
    finally:
        platform_.stop()


def run_api(args: argparse.Namespace) -> None:
    """Part 2: TrainingService latency at ``args.clients`` concurrent clients, per store, same run."""
    import tempfile

    from privtune.devinfra.postgres import PostgresServer
    from tests.training_fixtures import make_models

    loop = f"open-loop ({args.rate:g} calls/s in all)" if args.rate > 0 else "closed-loop"
    print(f"\ntraining-job API: {args.clients} {loop} gRPC clients (one thread and one channel each, in a "
          f"child process), mix {'/'.join(f'{n} {w}%' for n, w in zip(API_OPERATIONS, API_WEIGHTS))}; "
          f"{args.api_seconds:g}s measured after {args.warmup:g}s warm-up per store; {args.prefill} jobs "
          f"prefilled; {args.api_processes} server process(es) with 32 worker threads each; "
          f"{os.cpu_count()} cores")
    results = []
    with tempfile.TemporaryDirectory(prefix="privtune-bench-") as tmp, contextlib.ExitStack() as stack:
        models = make_models(Path(tmp) / "models")
        for store in args.stores:
            if store == "sqlite":
                uri = f"sqlite:///{tmp}/{store}/privtune.db"
            else:
                server = stack.enter_context(PostgresServer(settings=DURABLE_POSTGRES))
                uri = server.create_database("bench_scheduler")
            results.append(bench_store(store, uri, Path(tmp) / store, models, args))
    print("\n| store | operation | calls | calls/s | p50 ms | p99 ms | max ms | handler p50 ms | handler p99 ms "
          "| handler CPU ms (mean) | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        for name, row in result["rows"].items():
            print(f"| {result['store']} | {name} | {row['calls']:,} | {row['calls_per_s']:,.1f} | "
                  f"{row['p50_ms']:,.1f} | {row['p99_ms']:,.1f} | {row['max_ms']:,.1f} | "
                  f"{row['handler_p50_ms']:,.1f} | {row['handler_p99_ms']:,.1f} | {row['handler_cpu_ms']:,.2f} | "
                  f"{row['errors']:,} |")
    for result in results:
        if "bare" not in result:
            continue
        for name, row in result["bare"]["rows"].items():
            print(f"| {result['store']} (bare peer) | {name} | {row['calls']:,} | {row['calls_per_s']:,.1f} | "
                  f"{row['p50_ms']:,.1f} | {row['p99_ms']:,.1f} | {row['max_ms']:,.1f} | "
                  f"{row['handler_p50_ms']:,.1f} | {row['handler_p99_ms']:,.1f} | {row['handler_cpu_ms']:,.2f} | "
                  f"{row['errors']:,} |")
    if any("bare" in r for r in results):
        print("\n| store | operation | calls/s privtune/bare peer | p50 privtune/bare | p99 privtune/bare |")
        print("| --- | --- | ---: | ---: | ---: |")
        for result in results:
            for name, row in result["rows"].items():
                peer = result["bare"]["rows"][name]
                print(f"| {result['store']} | {name} | {row['calls_per_s'] / peer['calls_per_s']:.2f}x | "
                      f"{row['p50_ms'] / peer['p50_ms']:.2f}x | {row['p99_ms'] / peer['p99_ms']:.2f}x |")
        for result in results:
            ratios = result["round_ratios"]
            if len(ratios) > 1:
                print(f"\n{result['store']}: calls/s privtune/bare peer in each of {len(ratios)} rounds (privtune, then "
                      f"the peer): {', '.join(f'{r:.2f}x' for r in ratios)}; median {statistics.median(ratios):.2f}x")
    print()
    for result in results:
        lag = result["lag"]
        print(f"{result['store']}: job list vs event store, sampled every 0.1 s during the run: {lag['samples']} "
              f"samples, at most {lag['max_jobs_behind']} jobs and {lag['max_seconds_behind']:.2f} s behind")
    for result in results:
        print(f"{result['store']}: garbage collections in this process after the prefill (privtune's and the peer's "
              f"rounds): {result['gc']}")
    for result in results:
        rejected = result["rows"]["CreateTrainingJob"]["rejected"]
        print(f"{result['store']}: prefill {args.prefill} jobs in {result['prefill_s']:.1f}s; at the end "
              f"{result['jobs']:,} jobs in the event store, {result['listed']:,} in the read model; {rejected} "
              f"creates rejected; error codes: {', '.join(result['error_codes']) or 'none'}; "
              f"CPU cores busy over the run: server process "
              f"{result['server_cores']:.2f}, clients {result['client_cores']:.2f}, whole machine "
              f"{result['machine_cores']:.2f} of {os.cpu_count()}")
        if "bare" in result:
            bare = result["bare"]
            print(f"{result['store']} bare peer: CPU cores busy: server process {bare['server_cores']:.2f}, clients "
                  f"{bare['client_cores']:.2f}, whole machine {bare['machine_cores']:.2f}")
    by_store = {r["store"]: r["rows"] for r in results}
    if {"sqlite", "postgresql"} <= set(by_store):
        print("\n| operation | calls/s postgresql/sqlite | p50 postgresql/sqlite | p99 postgresql/sqlite |")
        print("| --- | ---: | ---: | ---: |")
        for name in by_store["sqlite"]:
            pg, lite = by_store["postgresql"][name], by_store["sqlite"][name]
            print(f"| {name} | {pg['calls_per_s'] / lite['calls_per_s']:.2f}x | {pg['p50_ms'] / lite['p50_ms']:.2f}x | "
                  f"{pg['p99_ms'] / lite['p99_ms']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "decisions", "api"), default="all")
    parser.add_argument("--queued", type=int, nargs="+", default=[200, 1000], help="queue sizes to plan over")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per variant per case")
    parser.add_argument("--clients", type=int, default=200, help="concurrent gRPC clients of the API part")
    parser.add_argument("--api-seconds", type=float, default=20.0, help="measured window of the API part, per store")
    parser.add_argument("--warmup", type=float, default=3.0, help="API calls started this early are not counted")
    parser.add_argument("--prefill", type=int, default=200, help="jobs created before the API clients start")
    parser.add_argument("--stores", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open loop: calls/s from all clients together (0: closed loop, each client's next "
                             "call as soon as its last answers)")
    parser.add_argument("--api-processes", type=int, default=1,
                        help="server processes on the API's port: the platform plus API-only replicas (SO_REUSEPORT)")
    parser.add_argument("--rounds", type=lambda v: max(1, int(v)), default=1,
                        help="API part: measure privtune then the peer this many times in turn (same platform and "
                             "database); tables pool the rounds, and each round's ratio is printed")
    parser.add_argument("--request-ids", action="store_true",
                        help="every Create carries a fresh request_id, as an idempotent client's do (privtune then "
                             "checks it is not a retry; the bare peer ignores it)")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip the bare grpcio servicer run after each store")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="leave the heap unfrozen after the platform started (privtune serve freezes it: "
                             "services/common/heap.py; in this process the peer shares the heap, frozen or not)")
    parser.add_argument("--switch-interval-ms", type=float, default=0.0,
                        help="this process's interpreter switch interval (sys.setswitchinterval; privtune and the "
                             "peer alike); 0: Python's default, 5 ms")
    args = parser.parse_args()
    if args.switch_interval_ms > 0:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    _record_gc()
    if args.part in ("all", "decisions"):
        run_decisions(args.queued, args.seconds, args.seed)
    if args.part in ("all", "api"):
        run_api(args)


if __name__ == "__main__":
    main()
