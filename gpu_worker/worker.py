"""The training worker: the consumer group on ``privtune.training.commands`` is the pool.

The orchestrator places a job and records ``TrainingScheduled`` (the command). A worker
that receives it first **claims** the attempt from the orchestrator (``ClaimAttempt``, a
compare-and-set on the job's stream) before any setup: exactly one worker wins a given
attempt; a worker that loses (a command delivered twice, a stale command) logs it and does
nothing. The winner runs the attempt in a child process (``python -m gpu_worker.job``),
which reports JSON lines on a pipe; the worker turns them into reports on
``privtune.training.reports`` (TrainingStarted, TrainingProgress at most once per
``progress_seconds``, CheckpointSaved, TrainingCompleted / TrainingFailed /
TrainingPreempted) plus a TrainingHeartbeat every ``heartbeat_seconds`` from the claim on.
The orchestrator records the reports its aggregate accepts; the worker never touches the
orchestrator's store.

The command's offset is committed once the claim is answered: from then on the
orchestrator owns the job, and the worker leaves the consumer group until the attempt
ends, so commands keyed to its partitions go to idle workers (and no poll deadline, such
as Kafka's ``max.poll.interval.ms``, runs out during a long job). If the worker dies, its
heartbeats stop and the orchestrator requeues the job, which resumes from the newest good
checkpoint on whichever worker gets it. A child that crashes (e.g. killed by the kernel)
is restarted from its checkpoint up to ``max_attempts`` times. A stop for the attempt on
``privtune.training.control`` (cancel, preemption, or the orchestrator no longer
recognising the attempt) or worker shutdown sends the child SIGTERM: it checkpoints and
stops. Two attempts of one job never share a work folder at once (a file lock).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from gpu_worker.claims import AttemptClaims, Claim
from gpu_worker.control import ControlListener
from gpu_worker.reporter import Reporter
from gpu_worker.work_folder import WorkFolderLock
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Record, Subscription
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation
from services.common.errors import CommitFailed, MalformedEvent
from services.common.storage import open_tenant_storage
from services.common.supervision import run_loop
from services.common.topics import TRAINING_COMMANDS
from services.common.training_spec import from_request

log = logging.getLogger(__name__)
GROUP = "training.workers"


@dataclass(frozen=True)
class WorkerSettings:
    models_dir: Path
    storage_uri: str
    work_dir: Path
    # unique per process even where host names and pids repeat (containers): it names the claimant
    worker_id: str = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    heartbeat_seconds: float = 10.0
    progress_seconds: float = 1.0
    max_attempts: int = 3
    sigterm_grace_seconds: float = 300.0
    child_threads: int | None = None
    report_flush_seconds: float = 600.0       # how long an ended attempt waits for the bus to take its reports


@dataclass
class _Run:
    """What the worker knows about the child it is watching."""

    step: int = 0
    last_checkpoint: str = ""
    outcome: str = ""
    last_progress_at: float = 0.0
    stop_sent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # no heartbeat after the outcome


@dataclass(frozen=True)
class _Attempt:
    """One claimed attempt: who runs it, what it trains, where its reports go."""

    tenant_id: str
    job_id: str
    number: int
    claim: Claim
    reporter: Reporter


class TrainingWorker:
    def __init__(self, bus: EventBus, claims: AttemptClaims, settings: WorkerSettings) -> None:
        self.bus = bus
        self.claims = claims
        self.settings = settings
        self.subscription: Subscription | None = None
        self.control: ControlListener | None = None
        # attempts this worker claimed (the newest 10,000): another copy of their command is never run
        self._claimed: dict[tuple[str, str, int], None] = {}

    # ------------------------------------------------------------------ the pool member

    def run(self, stop: threading.Event) -> None:
        """Take commands until ``stop`` is set; any failure is retried (see supervision.run_loop)."""
        self._ensure_control()
        run_loop(f"training worker {self.settings.worker_id}", lambda: self._take_command(stop), stop,
                 idle_seconds=0.0, on_error=self._leave_group)

    def _take_command(self, stop: threading.Event) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [TRAINING_COMMANDS])
        records = self.subscription.poll(max_records=1, timeout=0.5)
        for record in records:
            command = self.accept(record)
            if command is None:
                self.subscription.commit([record])
                continue
            claim = self._claim(command)  # ClaimUnavailable: not committed, redelivered after rejoining
            try:
                self.subscription.commit([record])  # the orchestrator owns the job from here on
            except CommitFailed as exc:
                if not claim.granted:
                    raise
                # the attempt is ours whatever happens to this copy: a redelivery is refused its own claim
                log.warning("training job %s: %s; running the claimed attempt anyway", command.subject, exc)
            if claim.granted:
                # A busy member would hold its partitions and strand the commands keyed to them:
                # leave the group while training and rejoin when the attempt is over.
                self._leave_group()
                self.run_claimed(command.tenant_id, command.subject, command.training_scheduled.attempt, claim,
                                 stop, command)
        return bool(records)

    def accept(self, record: Record) -> events_pb2.EventEnvelope | None:
        """The command to run, or None (malformed: dead-lettered; not a local schedule, or one this
        worker already claimed: ignored)."""
        try:
            env = codec.decode(record.value)
        except MalformedEvent as exc:
            self.bus.publish([dead_letter_message(record, GROUP, exc)])
            return None
        if env.WhichOneof("payload") != "training_scheduled":
            return None
        if env.training_scheduled.executor not in ("", "local"):
            return None  # a Kubernetes attempt: its pod claims it, not the local pool
        if (env.tenant_id, env.subject, env.training_scheduled.attempt) in self._claimed:
            log.warning("training job %s: attempt %d was already claimed here; ignoring another copy of its command",
                     env.subject, env.training_scheduled.attempt)
            return None
        return env

    def _claim(self, command: events_pb2.EventEnvelope) -> Claim:
        attempt = command.training_scheduled.attempt
        claim = self.claims.claim(command.tenant_id, command.subject, attempt, self.settings.worker_id, "local")
        self._claimed[(command.tenant_id, command.subject, attempt)] = None
        while len(self._claimed) > 10_000:
            del self._claimed[next(iter(self._claimed))]
        if not claim.granted:
            log.warning("training job %s: lost the claim on attempt %d (%s); not running it", command.subject,
                     attempt, claim.reason)
        return claim

    def _leave_group(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the training worker's membership", exc_info=True)
            self.subscription = None

    def _ensure_control(self) -> ControlListener:
        if self.control is None:
            self.control = ControlListener(self.bus, self.settings.worker_id).start()
        return self.control

    # ------------------------------------------------------------------ one attempt

    def run_attempt(self, tenant_id: str, job_id: str, attempt: int, stop: threading.Event) -> str:
        """Claim and run one attempt (a Kubernetes pod's entry point). Returns the outcome."""
        claim = self.claims.claim(tenant_id, job_id, attempt, self.settings.worker_id, "kubernetes")
        if not claim.granted:
            log.warning("training job %s: lost the claim on attempt %d (%s); not running it", job_id, attempt,
                     claim.reason)
            return "skipped"
        return self.run_claimed(tenant_id, job_id, attempt, claim, stop)

    def run_claimed(self, tenant_id: str, job_id: str, attempt: int, claim: Claim, stop: threading.Event,
                    command: events_pb2.EventEnvelope | None = None) -> str:
        """Run an attempt this worker holds the claim on, reporting on the bus. Returns the outcome."""
        # every report names the claim it was made under: the orchestrator records only the granted one's
        causation = Causation(actor=self.settings.worker_id,
                              correlation_id=claim.correlation_id or (command.correlation_id if command else ""),
                              causation_id=claim.claim_id)
        run = _Attempt(tenant_id, job_id, attempt, claim, Reporter(self.bus, tenant_id, job_id, causation))
        stop_attempt = threading.Event()
        stop_reasons = self._ensure_control().watch(job_id, attempt, stop_attempt)
        beat_done = threading.Event()
        state = _Run()
        beat = threading.Thread(target=self._heartbeats, args=(run, state, beat_done), daemon=True,
                                name=f"heartbeat-{job_id}")
        beat.start()  # alive from the claim on: setup can take minutes
        try:
            outcome = self._run_attempt(run, state, stop, stop_attempt, stop_reasons)
        finally:
            with state.lock:
                state.outcome = state.outcome or "ended"
            beat_done.set()
            beat.join(timeout=30)
            self._ensure_control().unwatch(job_id, attempt)
            if not run.reporter.close(self.settings.report_flush_seconds):
                log.error("training job %s: some reports of attempt %d never reached the bus; the orchestrator "
                          "will treat the attempt as lost and resume it", job_id, attempt)
        return outcome

    def _run_attempt(self, run: _Attempt, state: _Run, stop: threading.Event, stop_attempt: threading.Event,
                     stop_reasons: list[str]) -> str:
        tenant, job_id, attempt = run.tenant_id, run.job_id, run.number
        try:
            spec = from_request(run.claim.request, tenant)
        except (ValidationError, ValueError) as exc:
            self._report(run, state, events_pb2.TrainingFailed(
                job_id=job_id, error_code="invalid_input", retryable=False, attempt=attempt,
                reason=f"the training request is invalid: {_invalid_fields(exc)}"))
            return "failed"
        work = self.settings.work_dir / tenant / job_id
        work.mkdir(parents=True, exist_ok=True)
        with WorkFolderLock(work) as lock:
            if not lock.acquire(lambda: stop.is_set() or stop_attempt.is_set()):
                self._report(run, state, events_pb2.TrainingPreempted(
                    job_id=job_id, checkpoint_id=run.claim.resume_from_checkpoint_id, step=0,
                    worker_id=self.settings.worker_id, attempt=attempt))
                return "preempted"
            (work / "spec.json").write_text(spec.canonical_json())
            crashes = 0
            while True:
                child = self._run_child(work, run, state, stop, stop_attempt, spec.num_processes)
                if child.outcome in ("completed", "failed", "preempted"):
                    return child.outcome
                if child.stop_sent or stop.is_set():
                    # Stopped before the trainer could checkpoint (e.g. SIGTERM while importing): it
                    # stopped as asked, with whatever checkpoint it had, rather than crashed.
                    self._report(run, state, events_pb2.TrainingPreempted(
                        job_id=job_id, checkpoint_id=child.last_checkpoint or run.claim.resume_from_checkpoint_id,
                        step=child.step, worker_id=self.settings.worker_id, attempt=attempt))
                    return "preempted"
                crashes += 1
                if crashes >= self.settings.max_attempts:
                    killed = child.outcome == "killed"
                    self._report(run, state, events_pb2.TrainingFailed(
                        job_id=job_id, step=child.step, retryable=not killed, attempt=attempt,
                        error_code="out_of_memory" if killed else "worker_crash",
                        log_uri=self._upload_log(run, work),
                        reason=("the training process was killed (SIGKILL), most likely by the kernel for lack of "
                                "memory; lower max_seq_length or micro_batch_size" if killed else
                                f"the training process crashed {crashes} times; see the job log")))
                    return "failed"
                log.warning("training job %s: child %s; restarting from its last checkpoint", job_id, child.outcome)
                with state.lock:
                    state.outcome = ""

    def _run_child(self, work: Path, run: _Attempt, state: _Run, stop: threading.Event,
                   stop_attempt: threading.Event, processes: int = 1) -> _Run:
        """One child (or a torchrun group of ``processes``) reporting JSON events."""
        attempt = run.number
        job_args = [str(work / "spec.json"), "--models-root", str(self.settings.models_dir),
                    "--storage-root", self.settings.storage_uri, "--work-dir", str(work)]
        env = dict(os.environ)
        pass_fds: tuple[int, ...] = ()
        if processes > 1:  # torchrun does not pass file descriptors on: rank 0 appends to a file
            events_file = work / f"events-{attempt}.jsonl"
            events_file.unlink(missing_ok=True)
            events_file.touch()
            argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                    "-m", "gpu_worker.job", *job_args, "--events-file", str(events_file)]
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        else:
            read_fd, write_fd = os.pipe()
            pass_fds = (write_fd,)
            argv = [sys.executable, "-m", "gpu_worker.job", *job_args, "--events-fd", str(write_fd)]
        if self.settings.child_threads:
            env["OMP_NUM_THREADS"] = str(self.settings.child_threads)
        env["PRIVTUNE_PARENT_PID"] = str(os.getpid())
        argv = [sys.executable, "-m", "services.common.orphan_guard", *argv]
        with open(work / "job.log", "ab") as log_file:
            child = subprocess.Popen(argv, stdout=log_file, stderr=log_file, pass_fds=pass_fds, env=env,
                                     cwd=str(Path(__file__).resolve().parents[1]))
        if processes > 1:
            read_fd = os.open(events_file, os.O_RDONLY)
        else:
            os.close(write_fd)
        done = threading.Event()
        watcher = threading.Thread(target=self._forward_sigterm, args=(child, stop, done, stop_attempt, state),
                                   daemon=True)
        watcher.start()
        try:
            for line in self._lines(read_fd, child if processes > 1 else None):
                self._on_child_event(json.loads(line), run, state)
            code = child.wait()
        finally:
            done.set()
            if child.poll() is None:
                child.kill()
                child.wait()
        if not state.outcome:
            state.outcome = "killed" if code == -signal.SIGKILL else f"crashed (exit status {code})"
        return state

    def _lines(self, fd: int, tailed: subprocess.Popen[bytes] | None = None) -> Iterator[str]:
        """The child's event lines.

        ``fd`` is a pipe (ends when the child closes it) or, with ``tailed``, a file the
        child appends to (ends once that process has exited and the file is read).
        """
        buffer = b""
        try:
            while True:
                if tailed is None:
                    ready, _, _ = select.select([fd], [], [], 1.0)
                else:
                    exited = tailed.poll() is not None
                    ready = [fd]
                if not ready:
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    if tailed is not None and not exited:
                        time.sleep(0.2)
                        continue
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line.decode()
        finally:
            os.close(fd)


    def _forward_sigterm(self, child: subprocess.Popen[bytes], stop: threading.Event, done: threading.Event,
                         stop_attempt: threading.Event, state: _Run) -> None:
        while not done.is_set():
            if stop.wait(0.25) or stop_attempt.is_set():
                state.stop_sent = True
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + self.settings.sigterm_grace_seconds
                    while child.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.2)
                    if child.poll() is None:
                        child.kill()
                return

    def _heartbeats(self, run: _Attempt, state: _Run, done: threading.Event) -> None:
        while not done.wait(self.settings.heartbeat_seconds):
            with state.lock:
                if state.outcome:
                    return
                run.reporter.report(events_pb2.TrainingHeartbeat(
                    job_id=run.job_id, worker_id=self.settings.worker_id, step=state.step, attempt=run.number))

    def _on_child_event(self, event: dict[str, Any], run: _Attempt, state: _Run) -> None:
        kind = event.pop("kind")
        job_id, attempt = run.job_id, run.number
        payload: Any = None
        if kind == "started":
            payload = events_pb2.TrainingStarted(
                job_id=job_id, worker_id=self.settings.worker_id, attempt=attempt,
                resumed_from_checkpoint_id=event["resumed_from_checkpoint_id"],
                dataset_manifest_sha256=event["dataset_manifest_sha256"],
                base_model_sha256=event["base_model_sha256"], code_version=event["code_version"],
                seed=event["seed"], hardware=event["hardware"], library_versions=event["library_versions"],
                total_steps=event["total_steps"], effective_batch_size=event["effective_batch_size"],
                config_sha256=event["config_sha256"], bitwise_reproducible=event["bitwise_reproducible"],
                trainable_parameters=event["trainable_parameters"], torch_threads=event.get("torch_threads", 0),
                precision=event.get("precision", ""), packing_fill_ratio=event.get("packing_fill_ratio", 0.0),
                device=event.get("device", ""))
        elif kind == "progress":
            state.step = event["step"]
            now = time.monotonic()
            due = (now - state.last_progress_at >= self.settings.progress_seconds
                   or event["step"] == event["total_steps"] or "eval_loss" in event)
            if due:
                state.last_progress_at = now
                payload = events_pb2.TrainingProgress(
                    job_id=job_id, step=event["step"], total_steps=event["total_steps"], loss=event["loss"],
                    learning_rate=event["learning_rate"], grad_norm=event["grad_norm"],
                    tokens_per_second=event["tokens_per_second"], epsilon_spent=event.get("epsilon", 0.0),
                    epoch=event["epoch"], eval_loss=event.get("eval_loss", 0.0), attempt=attempt)
        elif kind == "checkpoint":
            state.last_checkpoint = event["checkpoint_id"]
            payload = events_pb2.CheckpointSaved(
                job_id=job_id, checkpoint_id=event["checkpoint_id"], step=event["step"], uri=event["uri"],
                sha256=event["sha256"], metrics=event["metrics"], attempt=attempt)
        elif kind == "completed":
            payload = events_pb2.TrainingCompleted(
                job_id=job_id, artifact_uri=event["artifact_uri"], artifact_sha256=event["artifact_sha256"],
                steps=event["steps"], final_loss=event["final_loss"], epsilon_spent=event["epsilon_spent"],
                duration_seconds=event["duration_seconds"], eval_loss=event["eval_loss"] or 0.0,
                initial_eval_loss=event["initial_eval_loss"] or 0.0, attempt=attempt)
        elif kind == "failed":
            payload = events_pb2.TrainingFailed(job_id=job_id, error_code=event["error_code"],
                                                reason=event["reason"], retryable=event["retryable"],
                                                step=event["step"], attempt=attempt,
                                                log_uri=self._upload_log(run, None))
        elif kind == "preempted":
            payload = events_pb2.TrainingPreempted(job_id=job_id, checkpoint_id=state.last_checkpoint,
                                                   step=state.step, worker_id=self.settings.worker_id,
                                                   attempt=attempt)
        if payload is not None:
            with state.lock:  # an outcome is the attempt's last report: no heartbeat after it
                if kind in ("completed", "failed", "preempted"):
                    state.outcome = kind
                run.reporter.report(payload)

    def _report(self, run: _Attempt, state: _Run, payload: Any) -> None:
        with state.lock:
            state.outcome = state.outcome or type(payload).__name__
            run.reporter.report(payload)

    def _upload_log(self, run: _Attempt, work: Path | None) -> str:
        """Copy the attempt's job log into the tenant's storage: a failure's details stay there, never on the bus."""
        work = work or self.settings.work_dir / run.tenant_id / run.job_id
        log_file = work / "job.log"
        if not log_file.exists():
            return ""
        try:
            storage = open_tenant_storage(self.settings.storage_uri, run.tenant_id)
            key = f"training/{run.job_id}/logs/attempt-{run.number}.log"
            with open(log_file, "rb") as fh:
                storage.write(key, iter(lambda: fh.read(1 << 20), b""))
            return storage.uri_for(key)
        except Exception:  # noqa: BLE001 - the log stays in the local work folder
            log.warning("training job %s: could not copy its job log to tenant storage", run.job_id, exc_info=True)
            return ""

    def close(self) -> None:
        self._leave_group()
        if self.control is not None:
            self.control.close()
            self.control = None


def _invalid_fields(exc: Exception) -> str:
    """Which fields of a request are wrong, never their values (they may quote anything)."""
    if isinstance(exc, ValidationError):
        fields = sorted({".".join(str(p) for p in e["loc"]) or "spec" for e in exc.errors()})
        return "check " + ", ".join(fields[:10])
    return f"{type(exc).__name__}; the job log has the details"
