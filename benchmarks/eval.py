"""Evaluation throughput: the eval service with 1 and 2 worker processes, where a shard's time goes,
and what SmolLM2-135M would take for 10,000 prompts.

    .venv/bin/python benchmarks/eval.py [--prompts 768] [--shard-size 64] [--cores N] [--runs 1x2 2x1 1x1 1x2p]
        [--max-new-tokens 64] [--batch-size 16] [--stage-threads 1] [--target-prompts 10000]
        [--smollm2-prompts 16] [--gpu-step-ms 10 25 50] [--generation-prompts 64] [--skip-smollm2]
        [--skip-generation] [--json]

1. Setup, in this process: the platform's eval service (API, claims, recorder, finaliser) on the
   embedded SQLite store and bus (4 partitions); the tiny base model ``tiny-llama``
   (``gpu_worker.base_models.build_tiny_model``); a candidate fine-tuned from it for real
   (``gpu_worker.job.run_job``, full weights, 20 steps) and registered as ``ModelVersionRegistered``;
   a dataset version whose holdout is ``--prompts`` support tickets
   (``tests/generators/support_task.py``); a suite of exactly those items (``include_general`` and
   ``include_safety`` off, no extraction probes). Greedy decoding, judge ``metric:rouge_l``, PII
   counting on: what a worker does by default.
2. Service throughput, one run per ``--runs`` entry ``WxT[p]``: W ``privtune serve eval-worker``
   processes with ``PRIVTUNE_EVAL_THREADS`` = T and ``OMP_WAIT_POLICY=ACTIVE`` (OpenMP's own default;
   ``p``: ``PASSIVE``, what ``privtune serve eval-worker`` now sets unless told otherwise). The default
   is ``1xC 2x(C/2)`` (C = ``--cores``: the cores split between the workers, the comparison asked
   for), then two controls: ``1x1`` (so ``2x1`` vs ``1x1`` is process scaling alone) and ``1xCp``.
   A warm-up run (16 one-item shards; repeated until every worker computed one) loads torch, the
   models and the PII detector. Then the timed run: ``CreateEvalRun`` to ``EvalCompleted`` (the two
   events' times; the client's view, polling ``GetEvalRun``, is printed too); prompts/s = items /
   seconds. From the run's events, storage and /proc: shards, output files and bus partitions per
   worker; busy time (sum of ``EvalShardCompleted.seconds``); the CPU seconds each worker used; the
   gap between one shard's report and the next shard's start (bus poll, claim, commit); the idle
   tail (a worker's last report to the run's last one); the finaliser's lag (last report to
   ``EvalCompleted``) and the recorder's and finaliser's time in this process; the finaliser's own
   work (``summarise`` + ``render_html`` on the outputs) is timed again afterwards.
3. Where a shard's time goes: the stages of ``compute_shard`` timed one by one on the first
   ``--shard-size`` suite items in this process (``--stage-threads`` torch threads), then
   ``compute_shard`` itself on the same items.
4. SmolLM2-135M-Instruct (from the model store: ``$PRIVTUNE_MODELS`` or ``~/.cache/privtune/models``;
   ``gpu_worker.base_models.import_smollm2`` puts it there): the same stages on ``--smollm2-prompts``
   suite prompts (one batch), candidate and reference both the base model. Measured: seconds per
   prompt on this machine. Projected: ``--target-prompts`` prompts on this machine, and on one GPU
   worker from ASSUMED ``--gpu-step-ms`` per decode step (no GPU is measured here) plus the
   CPU-side stages as measured.
5. Batched vs one-prompt-at-a-time generation: ``benchmarks/eval_generation.py`` with the same
   decoding settings, ``--generation-prompts`` prompts and ``--stage-threads`` threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_ITEMS = 16
TRAIN_TICKETS = 64
SEC = 1e-9  # nanoseconds to seconds


# -- setup -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """The registered model version under evaluation and what a worker loads for it."""

    model_version_id: str
    artifact_uri: str
    artifact_sha256: str
    base_sha256: str


def start_eval_platform(tmp: Path) -> Any:
    """The eval service alone, in this process, on the embedded store and bus under ``tmp``."""
    from tests.platform_fixtures import start_platform

    return start_platform(tmp / "data", bus_uri=f"sqlite:///{tmp}/events.db", storage_root=str(tmp / "tenants"),
                          services=("eval",))


def register_candidate(platform: Any, work: Path) -> Candidate:
    """Fine-tune ``tiny-llama`` on support tickets (full weights, 20 steps) and register the result as
    the orchestrator would (a ``ModelVersionRegistered`` event)."""
    from gpu_worker.job import run_job
    from gpu_worker.synthetic import write_dataset_version
    from privtune.v1 import events_pb2
    from services.common import eventstore
    from services.common.envelope import Causation, new_envelope
    from services.common.model_store import read_manifest
    from services.common.storage import open_tenant_storage
    from services.orchestrator.registry_domain import model_stream_id
    from tests.generators.support_task import support_tickets
    from tests.training_fixtures import TENANT, tiny_spec

    storage_root = platform.config.storage_uri
    storage = open_tenant_storage(storage_root, TENANT)
    write_dataset_version(storage, "datasets/bench/versions/v1", support_tickets(128, 1), support_tickets(8, 3))
    spec = tiny_spec(storage.uri_for("datasets/bench/versions/v1"), "full", job_id="bench-job", max_steps=20,
                     learning_rate=0.003)
    done: list[dict[str, Any]] = []
    status = run_job(spec, platform.config.models_dir, storage_root, work,
                     lambda kind, payload: done.append(payload) if kind == "completed" else None)
    if status != 0 or not done:
        raise SystemExit(f"fine-tuning the benchmark's candidate failed (exit status {status}); see {work}")
    base = read_manifest(platform.config.models_dir, "tiny-llama")
    registered = events_pb2.ModelVersionRegistered(
        model_version_id="bench-bot/v1", model_name="bench-bot", version=1, kind="full",
        artifact_uri=done[0]["artifact_uri"], artifact_sha256=done[0]["artifact_sha256"], job_id="bench-job",
        base_model_id="tiny-llama", base_model_sha256=base["sha256"])
    with platform.engine.begin() as conn:
        eventstore.append(conn, "registered_model", [new_envelope(
            registered, subject=model_stream_id(TENANT, "bench-bot"), tenant_id=TENANT, source="privtune/orchestrator",
            causation=Causation(actor="bench", correlation_id=uuid.uuid4().hex))], expected_version=0)
    return Candidate("bench-bot/v1", done[0]["artifact_uri"], done[0]["artifact_sha256"], base["sha256"])


def create_suite(platform: Any, stub: Any, name: str, holdout: int, seed: int) -> Any:
    """A suite of exactly ``holdout`` domain items: a dataset version's holdout of support tickets."""
    from privtune.v1 import eval_service_pb2 as epb
    from tests.generators.support_task import support_tickets
    from tests.orchestrator_fixtures import register_version
    from tests.platform_fixtures import metadata

    version = register_version(platform.engine, platform.config.storage_uri,
                               rows=(support_tickets(TRAIN_TICKETS, 1), support_tickets(holdout, seed)))
    options = epb.EvalSuiteOptions(include_general=False, include_safety=False, extraction_items=0,
                                   max_domain_items=holdout)
    suite = stub.CreateEvalSuite(epb.CreateEvalSuiteRequest(name=name, dataset_version_id=version, options=options),
                                 metadata=metadata(), timeout=600).suite
    if suite.item_count != holdout:
        raise SystemExit(f"suite {name} has {suite.item_count} items, expected {holdout}: {dict(suite.counts)}")
    return suite


class ServiceTimers:
    """Calls and wall seconds of the eval service's report recorder (``recorder.record``) and finaliser
    (``Finaliser.finalise``) in this process. Installed before the platform starts (the recorder's
    consumer takes its handler when it starts)."""

    def __init__(self) -> None:
        self.calls = {"record": 0, "finalise": 0}
        self.seconds = {"record": 0.0, "finalise": 0.0}

    def install(self) -> None:
        from services.eval import recorder
        from services.eval.finaliser import Finaliser

        recorder.record = self._timed("record", recorder.record)  # type: ignore[assignment]
        Finaliser.finalise = self._timed("finalise", Finaliser.finalise)  # type: ignore[method-assign]

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.calls[name] += 1
                self.seconds[name] += time.perf_counter() - started
        return timed

    def snapshot(self) -> dict[str, float]:
        return {**{f"{k}_calls": v for k, v in self.calls.items()}, **{f"{k}_s": v for k, v in self.seconds.items()}}


# -- worker processes ---------------------------------------------------------------------------------


class WorkerProcesses:
    """``count`` ``privtune serve eval-worker`` processes, each with ``threads`` torch threads."""

    def __init__(self, platform: Any, count: int, threads: int, logs: Path, extra_env: dict[str, str]) -> None:
        from tests.platform_fixtures import component_target, shared_auth_overrides

        auth = shared_auth_overrides()
        config = platform.config
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = [logs / f"worker-{i}.log" for i in range(count)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PRIVTUNE_PKI_DIR": str(auth["pki_root"]),
               "PRIVTUNE_AUTH_DIR": str(auth["auth_root"]), "PRIVTUNE_MODELS": str(config.models_dir),
               "PRIVTUNE_EVAL_THREADS": str(threads), **extra_env}
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "privtune", "serve", "eval-worker", "--bus", config.bus_uri,
             "--storage", config.storage_root, "--data-dir", str(config.data_dir),
             "--eval", component_target(platform)],
            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env) for log in self.logs]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"eval worker {proc.pid} exited with status {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def pid_of(worker_id: str) -> int:
    """The process id in a worker id (``<host>-<pid>-<hex>``)."""
    return int(worker_id.rsplit("-", 2)[-2])


# -- one evaluation run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardReport:
    shard: int
    worker_pid: int
    items: int
    seconds: float            # EvalShardCompleted.seconds: the worker's load items + compute + write
    reported_at: float        # the report's envelope time (made by the worker right after computing)
    tokens: int
    partition: int            # the bus partition of its command (its key is the shard's stream id)


@dataclass
class RunTimeline:
    """A finished run, from its events and its shards' output files."""

    eval_id: str
    items: int
    requested_at: float
    completed_at: float
    client_seconds: float
    shards: list[ShardReport] = field(default_factory=list)
    output_files: int = 0

    @property
    def seconds(self) -> float:
        return self.completed_at - self.requested_at


def run_eval(platform: Any, stub: Any, candidate: Candidate, suite: Any, shard_size: int, generation: Any,
             workers: WorkerProcesses, timeout: float) -> RunTimeline:
    """Request a run, wait for its outcome, and read its timeline back."""
    import grpc

    from privtune.v1 import eval_service_pb2 as epb
    from tests.platform_fixtures import metadata

    request = epb.CreateEvalRunRequest(model_version_id=candidate.model_version_id, suite_id=suite.suite_id,
                                       shard_size=shard_size, generation=generation)
    started = time.monotonic()
    deadline = started + timeout
    while True:  # the catalog projection may not have seen the registration yet
        try:
            run = stub.CreateEvalRun(request, metadata=metadata(), timeout=120).run
            break
        except grpc.RpcError as exc:  # NOT_FOUND until the catalog has the version
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > started + 60:
                raise
            time.sleep(0.5)
    while True:
        got = stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=metadata(), timeout=30).run
        if got.state in (epb.EVAL_RUN_STATE_SUCCEEDED, epb.EVAL_RUN_STATE_FAILED):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"evaluation {run.eval_id} did not finish within {timeout:.0f}s "
                             f"({got.shards_done}/{got.shards_total} shards)")
        workers.check_alive()
        time.sleep(1.0)  # the run's seconds come from its events; polling only has to notice the end
    client_seconds = time.monotonic() - started
    if got.state != epb.EVAL_RUN_STATE_SUCCEEDED:
        raise SystemExit(f"evaluation {run.eval_id} failed: {got.reason}")
    return read_timeline(platform, run.eval_id, got.shards_total, client_seconds)


def read_timeline(platform: Any, eval_id: str, shards: int, client_seconds: float) -> RunTimeline:
    from services.common import eventstore
    from services.common.bus.sqlite import partition_for
    from services.common.storage import open_tenant_storage
    from services.common.topics import EVAL_COMMANDS
    from services.eval import domain
    from tests.training_fixtures import TENANT

    partitions = platform.bus.partitions(EVAL_COMMANDS)
    with platform.engine.connect() as conn:
        run_events = {e.WhichOneof("payload"): e for e in eventstore.load_stream(conn, TENANT, eval_id)}
        outcomes = [next(e for e in eventstore.load_stream(conn, TENANT, domain.shard_stream(eval_id, n))
                         if e.WhichOneof("payload") == "eval_shard_completed") for n in range(shards)]
    timeline = RunTimeline(eval_id, run_events["eval_completed"].eval_completed.items,
                           run_events["eval_requested"].time.ToNanoseconds() * SEC,
                           run_events["eval_completed"].time.ToNanoseconds() * SEC, client_seconds)
    for env in outcomes:
        c = env.eval_shard_completed
        timeline.shards.append(ShardReport(c.shard, pid_of(c.worker_id), c.items, c.seconds,
                                           env.time.ToNanoseconds() * SEC, c.generated_tokens,
                                           partition_for(env.subject.encode(), partitions)))
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    timeline.output_files = sum(1 for o in storage.list(f"{domain.run_prefix(eval_id)}/shards/")
                                if o.key.endswith(".jsonl"))
    return timeline


def warm_up(platform: Any, stub: Any, candidate: Candidate, suite: Any, generation: Any,
            workers: WorkerProcesses, timeout: float) -> list[float]:
    """Runs of one-item shards until every worker has computed one (models and PII detector loaded);
    returns each run's seconds."""
    seconds = []
    for _ in range(5):
        timeline = run_eval(platform, stub, candidate, suite, 1, generation, workers, timeout)
        seconds.append(timeline.seconds)
        if set(workers.pids) <= {s.worker_pid for s in timeline.shards}:
            return seconds
    raise SystemExit("a worker computed none of five warm-up runs' shards; its bus partitions stayed with the other")


def describe_run(timeline: RunTimeline, pids: list[int]) -> dict[str, Any]:
    """Throughput and where the wall time went, per worker and for the finaliser."""
    last_report = max(s.reported_at for s in timeline.shards)
    per_worker = []
    for pid in pids:
        mine = sorted((s for s in timeline.shards if s.worker_pid == pid), key=lambda s: s.reported_at)
        gaps = [b.reported_at - b.seconds - a.reported_at for a, b in zip(mine, mine[1:])]
        first_start = mine[0].reported_at - mine[0].seconds if mine else timeline.requested_at
        per_worker.append({
            "pid": pid, "shards": len(mine), "items": sum(s.items for s in mine),
            "busy_s": sum(s.seconds for s in mine),
            "shard_s_median": statistics.median(s.seconds for s in mine) if mine else math.nan,
            "s_per_item": sum(s.seconds for s in mine) / max(1, sum(s.items for s in mine)),
            "first_start_s": first_start - timeline.requested_at,
            "gap_s_median": statistics.median(gaps) if gaps else math.nan,
            "gap_s_total": sum(gaps),
            "idle_tail_s": last_report - (mine[-1].reported_at if mine else timeline.requested_at)})
    partitions: dict[int, dict[str, Any]] = {}
    for s in timeline.shards:
        entry = partitions.setdefault(s.partition, {"shards": 0, "pids": set()})
        entry["shards"] += 1
        entry["pids"].add(s.worker_pid)
    return {"eval_id": timeline.eval_id, "items": timeline.items, "shards": len(timeline.shards),
            "partitions": {p: {"shards": e["shards"], "pids": sorted(e["pids"])}
                           for p, e in sorted(partitions.items())},
            "output_files": timeline.output_files, "seconds": timeline.seconds,
            "client_seconds": timeline.client_seconds, "prompts_per_s": timeline.items / timeline.seconds,
            "finalise_lag_s": timeline.completed_at - last_report,
            "tokens": sum(s.tokens for s in timeline.shards), "workers": per_worker}


def time_finaliser(platform: Any, timeline: RunTimeline) -> float:
    """Seconds the finaliser's own work takes on this run's outputs: read and check them, load the suite's
    items, ``summarise`` (bootstrap intervals) and ``render_html`` (not written again)."""
    import hashlib

    from services.common import eventstore
    from services.common.storage import open_tenant_storage
    from services.eval import domain
    from services.eval.finaliser import run_seed
    from services.eval.report import render_html
    from services.eval.results import summarise
    from services.eval.suites import load_items
    from tests.training_fixtures import TENANT

    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    with platform.engine.connect() as conn:
        run = domain.fold_run(eventstore.load_stream(conn, TENANT, timeline.eval_id))
        shards = [domain.fold_shard(eventstore.load_stream(conn, TENANT, domain.shard_stream(timeline.eval_id, n)))
                  for n in range(run.request.shard_count)]
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    for shard in shards:
        assert shard.completed is not None
        body = storage.open(storage.key_for(shard.completed.outputs_uri)).read()
        assert hashlib.sha256(body).hexdigest() == shard.completed.outputs_sha256
        records.extend(json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip())
    r = run.request
    items = load_items(storage, storage.key_for(r.suite_uri).rstrip("/"), r.suite_manifest_sha256, 0, r.item_count)
    results = summarise(records, eval_id=run.eval_id, suite_id=r.suite_id, model_version_id=r.model_version_id,
                        base_model_id=r.base_model_id, judge=r.judge, shards=len(shards), gates={},
                        seed=run_seed(run.eval_id), items={item["id"]: item for item in items})
    render_html(results)
    return time.perf_counter() - started


# -- stages of a shard ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def clock(into: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into[name] = into.get(name, 0.0) + time.perf_counter() - started


def stage_seconds(candidate: Any, reference: Any, items: list[dict[str, Any]], settings: Any,
                  pii: Any) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds of each stage ``compute_shard`` runs for ``generate`` items (metric judge), timed one by one;
    and the tokens each side generated."""
    from services.eval import judging, metrics
    from services.eval.generation import generate, pairs_nll

    prompts = [item["messages"] for item in items]
    pairs = [(item["messages"], item["reference"]) for item in items]
    seconds: dict[str, float] = {}
    answers = {}
    for side, bundle in (("candidate", candidate), ("reference", reference)):
        generate(bundle.model, bundle.tokenizer, prompts[:2], max_new_tokens=2, batch_size=2)  # warm-up
        with clock(seconds, f"generate ({side})"):
            answers[side] = generate(bundle.model, bundle.tokenizer, prompts, max_new_tokens=settings.max_new_tokens,
                                     batch_size=settings.batch_size)
        with clock(seconds, f"reference NLL ({side})"):
            pairs_nll(bundle.model, bundle.tokenizer, pairs)
    texts = {side: [g.text for g in found] for side, found in answers.items()}
    with clock(seconds, "PII count (both sides)"):
        pii.count_many(texts["candidate"] + texts["reference"])
    with clock(seconds, "metrics + toxicity (both sides)"):
        for side in texts:
            for item, text in zip(items, texts[side]):
                metrics.score_generation(item, text, pii_found=0)
    with clock(seconds, "judge metric:rouge_l (both orders)"):
        for item, c, r in zip(items, texts["candidate"], texts["reference"]):
            judging.combine(judging.metric_verdict(c, r, item["reference"]),
                            judging.metric_verdict(r, c, item["reference"]))
    return seconds, {side: sum(g.tokens for g in found) for side, found in answers.items()}


def print_stages(title: str, seconds: dict[str, float], prompts: int, tokens: dict[str, int]) -> None:
    total = sum(seconds.values())
    print(f"\n{title}: {prompts} prompts; generated tokens: candidate {tokens['candidate']:,}, reference "
          f"{tokens['reference']:,}")
    print("| stage | seconds | ms/prompt | share |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {1000 * value / prompts:,.1f} | {value / total:.0%} |")
    print(f"| all stages | {total:.2f} | {1000 * total / prompts:,.1f} | 100% |")


def local_models(candidate: Candidate, platform: Any, cache: Path) -> tuple[Any, Any]:
    """(candidate, reference) bundles as a worker loads them."""
    from services.common.storage import open_tenant_storage
    from services.eval.models import ModelLoader
    from tests.training_fixtures import TENANT

    loader = ModelLoader(platform.config.models_dir, cache, capacity=3)
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    return (loader.candidate(storage, candidate.artifact_uri, candidate.artifact_sha256, "tiny-llama",
                             candidate.base_sha256, kind="full"),
            loader.base("tiny-llama", candidate.base_sha256))


def suite_items(platform: Any, suite: Any, count: int) -> list[dict[str, Any]]:
    from services.common.storage import open_tenant_storage
    from services.eval.suites import load_items
    from tests.training_fixtures import TENANT

    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    return load_items(storage, storage.key_for(suite.uri).rstrip("/"), suite.manifest_sha256, 0, count)


def smollm2_stages(models_root: Path, cache: Path, items: list[dict[str, Any]], settings: Any,
                   pii: Any) -> tuple[dict[str, float], dict[str, int]] | None:
    """The stages with SmolLM2 as both sides, or None when it is not in the model store."""
    from gpu_worker.base_models import SMOLLM2_ID
    from services.common.model_store import is_stored
    from services.eval.models import ModelLoader

    if not is_stored(models_root, SMOLLM2_ID):
        return None
    bundle = ModelLoader(models_root, cache).base(SMOLLM2_ID)
    return stage_seconds(bundle, bundle, items, settings, pii)


# -- main ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    """How the workers of one timed run are started: ``WxT`` (W processes, T torch threads each) and an
    optional ``p`` suffix for ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep instead of spinning)."""

    workers: int
    threads: int
    passive: bool = False

    @classmethod
    def parse(cls, text: str) -> RunConfig:
        body = text.lower().rstrip("p")
        workers, _, threads = body.partition("x")
        if not (workers.isdigit() and threads.isdigit() and int(workers) > 0 and int(threads) > 0):
            raise argparse.ArgumentTypeError(f"{text!r}: expected WxT or WxTp, e.g. 2x1 or 1x2p")
        return cls(int(workers), int(threads), text.lower().endswith("p"))

    @property
    def label(self) -> str:
        return f"{self.workers}x{self.threads}{'p' if self.passive else ''}"

    @property
    def env(self) -> dict[str, str]:
        return {"OMP_WAIT_POLICY": "PASSIVE" if self.passive else "ACTIVE"}  # explicit: serve defaults to PASSIVE


def default_runs(cores: int) -> list[RunConfig]:
    """1 and 2 workers with the cores split between them (the comparison asked for), then the controls:
    1 worker with 1 thread, and 1 worker with every core but sleeping OpenMP threads."""
    runs = [RunConfig(1, cores), RunConfig(2, max(1, cores // 2)), RunConfig(1, 1), RunConfig(1, cores, True)]
    return list(dict.fromkeys(runs))


def measure_config(platform: Any, stub: Any, candidate: Candidate, suite: Any, warm_suite: Any, config: RunConfig,
                   generation: Any, timers: ServiceTimers, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the config's workers, warm them up, time one run of ``suite``, stop them; what describe_run says
    plus the CPU each worker and the whole machine used during the timed run."""
    workers = WorkerProcesses(platform, config.workers, config.threads, logs, config.env)
    try:
        warm = warm_up(platform, stub, candidate, warm_suite, generation, workers, args.run_timeout)
        load = os.getloadavg()[0]
        before, cpu = timers.snapshot(), time.process_time()
        worker_cpu, machine = {p: process_cpu_seconds(p) for p in workers.pids}, machine_busy_jiffies()
        timeline = run_eval(platform, stub, candidate, suite, args.shard_size, generation, workers, args.run_timeout)
        worker_cpu = {p: process_cpu_seconds(p) - worker_cpu[p] for p in workers.pids}
        busy, total = (a - b for a, b in zip(machine_busy_jiffies(), machine))
        cpu, after = time.process_time() - cpu, timers.snapshot()
    finally:
        workers.stop()
    described = describe_run(timeline, workers.pids)
    for w in described["workers"]:
        w["cpu_s"] = worker_cpu[w["pid"]]
    described.update(service={k: after[k] - before[k] for k in after}, platform_cpu_s=cpu,
                     machine_cores_busy=busy / max(1, total) * (os.cpu_count() or 1),
                     workers_n=config.workers, threads=config.threads, passive=config.passive,
                     warm_up_s=warm, load_before=load, load_after=os.getloadavg()[0],
                     finaliser_work_s=time_finaliser(platform, timeline))
    return described


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=768, help="items of the timed suite (support tickets)")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores the workers split")
    parser.add_argument("--runs", type=RunConfig.parse, nargs="+",
                        help="worker configurations WxT[p], in order (default: 1xC 2x(C/2) 1x1 1xCp, C = --cores)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--stage-threads", type=int, default=1,
                        help="torch threads of the stage timings, SmolLM2 and eval_generation.py")
    parser.add_argument("--target-prompts", type=int, default=10_000, help="suite size of the projections")
    parser.add_argument("--smollm2-prompts", type=int, default=16)
    parser.add_argument("--gpu-step-ms", type=float, nargs="+", default=[10.0, 25.0, 50.0],
                        help="ASSUMED (not measured) milliseconds per SmolLM2 decode step on a GPU")
    parser.add_argument("--generation-prompts", type=int, default=64, help="prompts of eval_generation.py")
    parser.add_argument("--skip-smollm2", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--run-timeout", type=float, default=4 * 3600)
    parser.add_argument("--seed", type=int, default=2, help="seed of the suite's support tickets")
    parser.add_argument("--json", action="store_true", help="print every measurement as one JSON line at the end")
    args = parser.parse_args()
    configs: list[RunConfig] = args.runs or default_runs(args.cores)

    import torch

    from privtune.v1 import eval_service_pb2_grpc as egrpc
    from privtune.v1 import events_pb2
    from services.eval.generation import DecodingSettings
    from services.eval.probes import shared_pii_counter
    from services.eval.shard_run import compute_shard
    from tests.platform_fixtures import channel, shared_auth_overrides
    from tests.training_fixtures import make_models

    user_models = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))
    auth = shared_auth_overrides()
    os.environ["PRIVTUNE_PKI_DIR"], os.environ["PRIVTUNE_AUTH_DIR"] = str(auth["pki_root"]), str(auth["auth_root"])
    generation = events_pb2.GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    decoding = DecodingSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; suite of {args.prompts:,} "
          f"support tickets, shards of {args.shard_size}, up to {args.max_new_tokens} new tokens, batch "
          f"{args.batch_size}, greedy, judge metric:rouge_l, PII counting on; runs (workers x threads): "
          f"{' '.join(c.label for c in configs)}", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="privtune-bench-eval-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["PRIVTUNE_MODELS"] = str(tmp / "data" / "models")
        make_models(tmp / "data" / "models")
        timers = ServiceTimers()
        timers.install()
        platform = start_eval_platform(tmp)
        try:
            stub = egrpc.EvalServiceStub(channel(platform))
            started = time.perf_counter()
            candidate = register_candidate(platform, tmp / "train")
            warm_suite = create_suite(platform, stub, "bench-warm-up", WARMUP_ITEMS, args.seed + 100)
            suite = create_suite(platform, stub, "bench", args.prompts, args.seed)
            print(f"setup (fine-tune the candidate, write and build the suites): {time.perf_counter() - started:.0f}s",
                  flush=True)

            runs: dict[str, dict[str, Any]] = {}
            for config in configs:
                runs[config.label] = measure_config(platform, stub, candidate, suite, warm_suite, config, generation,
                                                    timers, tmp / "logs" / config.label, args)
                print_run(config, runs[config.label])
            results["runs"] = runs
            print_comparison(configs, runs, args.cores)

            torch.set_num_threads(args.stage_threads)
            pii = shared_pii_counter()
            started = time.perf_counter()
            pii.count_many(["warm up the detector"])
            pii_load = time.perf_counter() - started
            cand, ref = local_models(candidate, platform, tmp / "cache")
            items = suite_items(platform, suite, min(args.shard_size, args.prompts))
            tiny, tiny_tokens = stage_seconds(cand, ref, items, decoding, pii)
            print_stages(f"tiny-llama, the stages of one shard timed one by one in this process "
                         f"({torch.get_num_threads()} thread)", tiny, len(items), tiny_tokens)
            started = time.perf_counter()
            compute_shard(items, candidate=cand, reference=ref, judge=("metric", "rouge_l"), settings=decoding,
                          pii=pii)
            whole = time.perf_counter() - started
            print(f"compute_shard on the same {len(items)} items: {whole:.2f}s ({1000 * whole / len(items):.1f} "
                  f"ms/prompt; the stages above sum to {sum(tiny.values()):.2f}s); PII detector load, once per "
                  f"process: {pii_load:.1f}s", flush=True)
            results["tiny_stages"] = {"seconds": tiny, "prompts": len(items), "compute_shard_s": whole}

            if not args.skip_smollm2:
                smol_items = suite_items(platform, suite, min(args.smollm2_prompts, args.prompts))
                found = smollm2_stages(user_models, tmp / "cache", smol_items, decoding, pii)
                if found is None:
                    print(f"\nSmolLM2-135M is not in the model store {user_models}: no SmolLM2 measurement "
                          "(import it with gpu_worker.base_models.import_smollm2, or run the demo)")
                else:
                    smol, smol_tokens = found
                    print_stages(f"SmolLM2-135M-Instruct, the same stages ({torch.get_num_threads()} thread; "
                                 "candidate = reference = the base model)", smol, len(smol_items), smol_tokens)
                    results["smollm2"] = project(smol, smol_tokens, len(smol_items), runs, configs, args)
        finally:
            platform.stop()

    if not args.skip_generation:
        print(f"\nBatched vs one prompt at a time (benchmarks/eval_generation.py, {args.stage_threads} thread):",
              flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("eval_generation.py")),
                        "--prompts", str(args.generation_prompts), "--max-new-tokens", str(args.max_new_tokens),
                        "--batch-size", str(args.batch_size), "--threads", str(args.stage_threads)], check=True)
    if args.json:
        print("\n" + json.dumps(results, sort_keys=True, default=str))
    return 0


def print_run(config: RunConfig, run: dict[str, Any]) -> None:
    policy = ", OMP_WAIT_POLICY=PASSIVE" if config.passive else ""
    print(f"\n{config.label}: {config.workers} worker process(es), {config.threads} torch thread(s) each{policy} "
          f"(load average {run['load_before']:.1f} before the timed run, {run['load_after']:.1f} after); "
          f"warm-up run(s): {', '.join(f'{s:.1f}s' for s in run['warm_up_s'])}")
    print(f"timed run {run['eval_id']}: {run['items']:,} items in {run['shards']} shards ({run['output_files']} output "
          f"files), {run['seconds']:.1f}s CreateEvalRun -> EvalCompleted ({run['client_seconds']:.1f}s as the client "
          f"saw it) = {run['prompts_per_s']:.2f} prompts/s; finaliser lag after the last shard "
          f"{run['finalise_lag_s']:.2f}s (its own work, timed again here: {run['finaliser_work_s']:.2f}s)")
    service = run["service"]
    print(f"eval service during the run: recorder {service['record_calls']:.0f} reports in {service['record_s']:.2f}s, "
          f"finaliser {service['finalise_calls']:.0f} checks in {service['finalise_s']:.2f}s; CPU of the platform "
          f"process (eval service and this script's GetEvalRun polling): {run['platform_cpu_s']:.1f}s; whole machine "
          f"busy: {run['machine_cores_busy']:.2f} of {os.cpu_count()} cores")
    print("shards per bus partition of privtune.eval.commands (computed by): " + ", ".join(
        f"p{p} {e['shards']} ({'/'.join(map(str, e['pids']))})" for p, e in run["partitions"].items()))
    print("| worker | shards | items | busy s | s/item | CPU s | CPU s/item | cores it got | shard s (median) "
          "| first start s | gap s (median) | gaps s (total) | idle tail s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for w in run["workers"]:
        cpu_per_item = f"{w['cpu_s'] / w['items']:.4f}" if w["items"] else "-"
        print(f"| {w['pid']} | {w['shards']} | {w['items']:,} | {w['busy_s']:.1f} | {w['s_per_item']:.4f} | "
              f"{w['cpu_s']:.1f} | {cpu_per_item} | {w['cpu_s'] / run['seconds']:.2f} | "
              f"{w['shard_s_median']:.2f} | {w['first_start_s']:.2f} | {w['gap_s_median']:.3f} | "
              f"{w['gap_s_total']:.1f} | {w['idle_tail_s']:.1f} |", flush=True)


def scaling(one: dict[str, Any], two: dict[str, Any]) -> dict[str, float]:
    """The 2-vs-1 ratio and its factors: work balance (items / the busiest worker's items), per-item speed
    (1-worker s/item over the busiest worker's), and the share of wall time spent outside shard
    computation on the busiest worker (first start, gaps, finaliser)."""
    busiest = max(two["workers"], key=lambda w: w["busy_s"])
    solo = one["workers"][0]
    return {"ratio": two["prompts_per_s"] / one["prompts_per_s"],
            "balance": two["items"] / busiest["items"],
            "speed": solo["s_per_item"] / busiest["s_per_item"],
            "cpu_per_item": (busiest["cpu_s"] / busiest["items"]) / (solo["cpu_s"] / solo["items"]),
            "cores_each": statistics.mean(w["cpu_s"] / two["seconds"] for w in two["workers"]),
            "cores_solo": solo["cpu_s"] / one["seconds"],
            "overhead_one": 1 - solo["busy_s"] / one["seconds"],
            "overhead_two": 1 - busiest["busy_s"] / two["seconds"]}


def print_comparison(configs: list[RunConfig], runs: dict[str, dict[str, Any]], cores: int) -> None:
    first = runs[configs[0].label]
    print("\n| run (workers x threads) | workers | threads each | OpenMP wait | prompts/s | vs first run "
          "| s/item (busy, mean over workers) |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for config in configs:
        run = runs[config.label]
        s_item = statistics.mean(w["s_per_item"] for w in run["workers"] if w["items"])
        print(f"| {config.label} | {config.workers} | {config.threads} | {'passive' if config.passive else 'active'} "
              f"| {run['prompts_per_s']:.2f} | {run['prompts_per_s'] / first['prompts_per_s']:.2f}x | {s_item:.4f} |")
    pairs = [(RunConfig(1, cores), RunConfig(2, max(1, cores // 2)), "threads = cores / workers (as asked)"),
             (RunConfig(1, 1), RunConfig(2, 1), "1 thread per worker in both (process scaling alone)")]
    for one, two, what in pairs:
        if one.label in runs and two.label in runs and one != two:
            f = scaling(runs[one.label], runs[two.label])
            print(f"2 workers vs 1, {what}: {f['ratio']:.2f}x (goal >= 1.8x); factors: balance {f['balance']:.2f} "
                  f"(items / the busiest worker's; 2.00 = an even split), per-item speed of the busiest worker "
                  f"vs the single one "
                  f"{f['speed']:.2f}, time outside shards {f['overhead_one']:.1%} (1 worker) and "
                  f"{f['overhead_two']:.1%} (2 workers, busiest); CPU s per item, busiest vs single "
                  f"{f['cpu_per_item']:.2f}; cores each worker got {f['cores_each']:.2f} (the single one: "
                  f"{f['cores_solo']:.2f})")
    active, passive = RunConfig(1, cores), RunConfig(1, cores, True)
    if active.label in runs and passive.label in runs:
        print(f"1 worker, {cores} threads: OMP_WAIT_POLICY=PASSIVE vs the default (active spinning): "
              f"{runs[passive.label]['prompts_per_s'] / runs[active.label]['prompts_per_s']:.2f}x")


def project(stages: dict[str, float], tokens: dict[str, int], prompts: int, runs: dict[str, dict[str, Any]],
            configs: list[RunConfig], args: argparse.Namespace) -> dict[str, Any]:
    """SmolLM2 per prompt (measured here) and ``--target-prompts`` on this machine and on a GPU (projected)."""
    per_prompt = sum(stages.values()) / prompts
    cpu_stages = sum(v for k, v in stages.items() if not k.startswith(("generate", "reference NLL"))) / prompts
    target = args.target_prompts
    # what the service adds per prompt (claims, bus, storage, finaliser), from the fastest 1-worker run
    singles = [runs[c.label] for c in configs if c.workers == 1]
    one = max(singles or list(runs.values()), key=lambda r: r["prompts_per_s"])
    overhead = (one["seconds"] - max(w["busy_s"] for w in one["workers"])) / one["items"]
    one_worker_h = (per_prompt + overhead) * target / 3600
    two = runs.get(RunConfig(2, 1).label)
    solo = runs.get(RunConfig(1, 1).label)
    ratio = two["prompts_per_s"] / solo["prompts_per_s"] if two and solo else None
    # a GPU: every batch decodes until its longest answer (at most max_new_tokens steps) plus one prefill step
    steps_per_prompt = (args.max_new_tokens + 1) / args.batch_size
    gpu_h = {}
    for step_ms in args.gpu_step_ms:
        gpu_generate = 2 * steps_per_prompt * step_ms / 1000
        gpu_h[step_ms] = (gpu_generate + cpu_stages + overhead) * target / 3600
    generate_s = stages["generate (reference)"]
    print(f"\nSmolLM2-135M, MEASURED here ({args.stage_threads} thread): {per_prompt:.2f} s/prompt for both models "
          f"and every stage, of which {cpu_stages * 1000:.0f} ms CPU-side scoring (PII, metrics, judge); batched "
          f"generation {prompts / generate_s:.2f} prompts/s per model ({tokens['reference'] / generate_s:.1f} "
          "tokens/s)")
    print(f"PROJECTED, {target:,} prompts on this machine: {one_worker_h:.1f} h with one worker on one core "
          f"(+{overhead * 1000:.0f} ms/prompt service overhead, measured with tiny-llama)"
          + (f"; {one_worker_h / ratio:.1f} h with 2 workers on the 2 cores if SmolLM2 scales as tiny-llama's "
             f"2x1 vs 1x1 did ({ratio:.2f}x)" if ratio else ""))
    print(f"PROJECTED, {target:,} prompts on one GPU worker, ASSUMING a decode step time (not measured: no GPU "
          f"here): 2 models x {args.max_new_tokens + 1} steps per batch of {args.batch_size} + CPU-side scoring "
          f"{cpu_stages * 1000:.0f} ms/prompt (measured) + service {overhead * 1000:.0f} ms/prompt (measured): "
          + ", ".join(f"{h:.2f} h at {ms:g} ms/step" for ms, h in gpu_h.items()))
    return {"per_prompt_s": per_prompt, "cpu_stages_s": cpu_stages, "overhead_s": overhead,
            "one_worker_h": one_worker_h, "two_worker_ratio": ratio, "gpu_h_by_step_ms": gpu_h,
            "prompts": prompts, "stages": stages}


if __name__ == "__main__":
    raise SystemExit(main())
