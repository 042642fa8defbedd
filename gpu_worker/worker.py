"""The training worker: the consumer group on ``privtune.training.commands`` is the pool.

The orchestrator places a job and appends ``TrainingScheduled`` (the command). A worker
that receives it runs the attempt only if that command is still the job's current one
(a fencing token: a stale or duplicate command is skipped). Each attempt runs in a child
process (``python -m gpu_worker.job``), which reports JSON lines on a pipe; the worker
turns them into events on the job's stream (TrainingStarted, TrainingProgress at most
once per ``progress_seconds``, CheckpointSaved, TrainingCompleted / TrainingFailed /
TrainingPreempted) and appends a TrainingHeartbeat every ``heartbeat_seconds``.

The command's offset is committed when the attempt starts: from then on the
orchestrator owns the job, and the worker leaves the consumer group until the attempt
ends, so commands keyed to its partitions go to idle workers (and no poll deadline,
such as Kafka's ``max.poll.interval.ms``, runs out during a long job). If the worker dies, its heartbeats stop and the orchestrator
requeues the job, which resumes from the newest good checkpoint on whichever worker
gets it. A child that crashes (e.g. killed by the kernel) is restarted from its
checkpoint up to ``max_attempts`` times. A cancel or preemption (``TrainingStopRequested``)
or worker shutdown sends the child SIGTERM: it checkpoints and stops.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine

from gpu_worker.requests import from_request
from services.orchestrator import job_domain
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Record, Subscription
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import BusUnavailable, CommitFailed, ConcurrencyConflict, MalformedEvent
from services.common.topics import TRAINING_COMMANDS

log = logging.getLogger(__name__)
GROUP = "training.workers"
SOURCE = "privtune/gpu-worker"
STREAM_TYPE = "training_job"


@dataclass(frozen=True)
class WorkerSettings:
    models_dir: Path
    storage_uri: str
    work_dir: Path
    worker_id: str = f"{socket.gethostname()}-{os.getpid()}"
    heartbeat_seconds: float = 10.0
    progress_seconds: float = 1.0
    max_attempts: int = 3
    sigterm_grace_seconds: float = 300.0
    child_threads: int | None = None
    stop_check_seconds: float = 1.0


@dataclass
class _Run:
    """What the worker knows about the child it is watching."""

    step: int = 0
    last_checkpoint: str = ""
    outcome: str = ""
    last_progress_at: float = 0.0
    stop_sent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)  # no heartbeat after the outcome


class TrainingWorker:
    def __init__(self, engine: Engine, bus: EventBus | None, settings: WorkerSettings) -> None:
        """``bus`` None: no pool membership, for running one attempt (``gpu_worker.run_attempt``)."""
        self.engine = engine
        self.bus = bus
        self.settings = settings
        self.subscription: Subscription | None = bus.subscribe(GROUP, [TRAINING_COMMANDS]) if bus else None

    def run(self, stop: threading.Event) -> None:
        assert self.bus is not None, "a worker without a bus runs single attempts (run_job), not the pool loop"
        backoff = 0.5
        while not stop.is_set():
            try:
                if self.subscription is None:
                    self.subscription = self.bus.subscribe(GROUP, [TRAINING_COMMANDS])
                for record in self.subscription.poll(max_records=1, timeout=0.5):
                    command = self.accept(record)
                    self.subscription.commit([record])  # the orchestrator owns the job from here on
                    if command is not None:
                        # A busy member would hold its partitions and strand the commands keyed to them:
                        # leave the group while training and rejoin when the attempt is over.
                        self.subscription.close()
                        self.subscription = None
                        self.run_job(command, stop)
                backoff = 0.5
            except (BusUnavailable, CommitFailed) as exc:
                log.warning("training worker: %s; retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                if self.subscription is not None:
                    self.subscription.close()
                self.subscription = None

    def accept(self, record: Record) -> events_pb2.EventEnvelope | None:
        """The command to run, or None (malformed: dead-lettered; not a schedule: ignored)."""
        try:
            env = codec.decode(record.value)
        except MalformedEvent as exc:
            assert self.bus is not None
            self.bus.publish([dead_letter_message(record, GROUP, exc)])
            return None
        return env if env.WhichOneof("payload") == "training_scheduled" else None

    # ------------------------------------------------------------------ one job

    def run_job(self, command: events_pb2.EventEnvelope, stop: threading.Event) -> str:
        tenant, job_id = command.tenant_id, command.subject
        causation = Causation(actor=self.settings.worker_id, correlation_id=command.correlation_id,
                              causation_id=command.id)
        state = job_domain.fold(self._history(tenant, job_id))
        if state.scheduled_event_id != command.id or state.state != job_domain.SCHEDULED or state.stop_reason:
            log.info("training job %s: command %s is no longer current (%s); skipping it", job_id, command.id,
                     state.state_name)
            return "skipped"
        request, attempt = state.request, state.attempt
        try:
            spec = from_request(request, tenant)
        except ValueError as exc:
            self._append(tenant, job_id, causation, events_pb2.TrainingFailed(
                job_id=job_id, error_code="invalid_input", retryable=False, attempt=attempt,
                reason=f"the training request is invalid: {_first_line(exc)}"))
            return "failed"
        work = self.settings.work_dir / tenant / job_id
        work.mkdir(parents=True, exist_ok=True)
        (work / "spec.json").write_text(spec.canonical_json())
        crashes = 0
        while True:
            run = self._run_child(work, tenant, job_id, attempt, causation, stop, spec.num_processes, command.id)
            if run.outcome in ("completed", "failed", "preempted"):
                return run.outcome
            if run.stop_sent or stop.is_set():
                # Stopped before the trainer could checkpoint (e.g. SIGTERM while importing): it
                # stopped as asked, with whatever checkpoint it had, rather than crashed.
                self._append(tenant, job_id, causation, events_pb2.TrainingPreempted(
                    job_id=job_id, checkpoint_id=run.last_checkpoint or state.last_checkpoint_id, step=run.step,
                    worker_id=self.settings.worker_id, attempt=attempt))
                return "preempted"
            crashes += 1
            if crashes >= self.settings.max_attempts:
                killed = run.outcome == "killed"
                self._append(tenant, job_id, causation, events_pb2.TrainingFailed(
                    job_id=job_id, step=run.step, retryable=not killed, attempt=attempt,
                    error_code="out_of_memory" if killed else "worker_crash",
                    reason=("the training process was killed (SIGKILL), most likely by the kernel for lack of "
                            "memory; lower max_seq_length or micro_batch_size" if killed else
                            f"the training process crashed {crashes} times; see the worker log")))
                return "failed"
            log.warning("training job %s: child %s; restarting from its last checkpoint", job_id, run.outcome)

    def _run_child(self, work: Path, tenant: str, job_id: str, attempt: int, causation: Causation,
                   stop: threading.Event, processes: int = 1, command_id: str = "") -> _Run:
        """One attempt: a child process (or a torchrun group of ``processes``) reporting JSON events."""
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
        argv = [sys.executable, "-m", "gpu_worker.orphan_guard", *argv]
        with open(work / "job.log", "ab") as log_file:
            child = subprocess.Popen(argv, stdout=log_file, stderr=log_file, pass_fds=pass_fds, env=env,
                                     cwd=str(Path(__file__).resolve().parents[1]))
        if processes > 1:
            read_fd = os.open(events_file, os.O_RDONLY)
        else:
            os.close(write_fd)
        run = _Run()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeats, args=(tenant, job_id, attempt, causation, run, done),
                                daemon=True, name=f"heartbeat-{job_id}")
        beat.start()
        stop_child = threading.Event()
        watcher = threading.Thread(target=self._forward_sigterm, args=(child, stop, done, stop_child), daemon=True)
        watcher.start()
        fence = threading.Thread(target=self._watch_for_stop, args=(tenant, job_id, command_id, run, done,
                                                                    stop_child), daemon=True)
        fence.start()
        try:
            for line in self._lines(read_fd, child if processes > 1 else None):
                self._on_child_event(json.loads(line), tenant, job_id, attempt, causation, run)
            code = child.wait()
        finally:
            done.set()
            beat.join(timeout=30)
            if child.poll() is None:
                child.kill()
                child.wait()
        if not run.outcome:
            run.outcome = "killed" if code == -signal.SIGKILL else f"crashed (exit status {code})"
        return run

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

    def _watch_for_stop(self, tenant: str, job_id: str, command_id: str, run: _Run, done: threading.Event,
                        stop_child: threading.Event) -> None:
        """Stop the child when the job is cancelled, preempted, finished or given to another worker."""
        state = job_domain.fold(self._history(tenant, job_id))
        while not done.wait(self.settings.stop_check_seconds):
            try:
                with self.engine.connect() as conn:
                    state = job_domain.fold(eventstore.load_stream(conn, tenant, job_id, after_version=state.version),
                                            state)
            except Exception:  # noqa: BLE001 - the store is briefly unreachable; check again
                log.warning("training job %s: could not read its stream", job_id, exc_info=True)
                continue
            moved_on = bool(command_id) and state.scheduled_event_id != command_id
            if state.stop_reason or moved_on or state.state not in job_domain.HOLDS_GPUS:
                log.info("training job %s: stopping its attempt (%s)", job_id,
                         state.stop_reason or ("superseded" if moved_on else state.state_name))
                run.stop_sent = True
                stop_child.set()
                return

    def _forward_sigterm(self, child: subprocess.Popen[bytes], stop: threading.Event, done: threading.Event,
                         stop_child: threading.Event | None = None) -> None:
        while not done.is_set():
            if stop.wait(0.25) or (stop_child is not None and stop_child.is_set()):
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
                    deadline = time.monotonic() + self.settings.sigterm_grace_seconds
                    while child.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.2)
                    if child.poll() is None:
                        child.kill()
                return

    def _heartbeats(self, tenant: str, job_id: str, attempt: int, causation: Causation, run: _Run,
                    done: threading.Event) -> None:
        while not done.wait(self.settings.heartbeat_seconds):
            try:
                with run.lock:
                    if run.outcome:
                        return
                    self._append(tenant, job_id, causation, events_pb2.TrainingHeartbeat(
                        job_id=job_id, worker_id=self.settings.worker_id, step=run.step, attempt=attempt))
            except Exception:  # noqa: BLE001 - a missed heartbeat must not kill the job
                log.exception("heartbeat for %s failed", job_id)

    def _on_child_event(self, event: dict[str, Any], tenant: str, job_id: str, attempt: int,
                        causation: Causation, run: _Run) -> None:
        kind = event.pop("kind")
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
                trainable_parameters=event["trainable_parameters"])
        elif kind == "progress":
            run.step = event["step"]
            now = time.monotonic()
            due = (now - run.last_progress_at >= self.settings.progress_seconds
                   or event["step"] == event["total_steps"] or "eval_loss" in event)
            if due:
                run.last_progress_at = now
                payload = events_pb2.TrainingProgress(
                    job_id=job_id, step=event["step"], total_steps=event["total_steps"], loss=event["loss"],
                    learning_rate=event["learning_rate"], grad_norm=event["grad_norm"],
                    tokens_per_second=event["tokens_per_second"], epsilon_spent=event.get("epsilon", 0.0),
                    epoch=event["epoch"], eval_loss=event.get("eval_loss", 0.0), attempt=attempt)
        elif kind == "checkpoint":
            run.last_checkpoint = event["checkpoint_id"]
            payload = events_pb2.CheckpointSaved(
                job_id=job_id, checkpoint_id=event["checkpoint_id"], step=event["step"], uri=event["uri"],
                sha256=event["sha256"], metrics=event["metrics"], attempt=attempt)
        elif kind == "completed":
            run.outcome = "completed"
            payload = events_pb2.TrainingCompleted(
                job_id=job_id, artifact_uri=event["artifact_uri"], artifact_sha256=event["artifact_sha256"],
                steps=event["steps"], final_loss=event["final_loss"], epsilon_spent=event["epsilon_spent"],
                duration_seconds=event["duration_seconds"], eval_loss=event["eval_loss"] or 0.0,
                initial_eval_loss=event["initial_eval_loss"] or 0.0, attempt=attempt)
        elif kind == "failed":
            run.outcome = "failed"
            payload = events_pb2.TrainingFailed(job_id=job_id, error_code=event["error_code"],
                                                reason=event["reason"], retryable=event["retryable"],
                                                step=event["step"], attempt=attempt)
        elif kind == "preempted":
            run.outcome = "preempted"
            payload = events_pb2.TrainingPreempted(job_id=job_id, checkpoint_id=run.last_checkpoint,
                                                   step=run.step, worker_id=self.settings.worker_id,
                                                   attempt=attempt)
        if payload is not None:
            with run.lock:
                self._append(tenant, job_id, causation, payload)

    # ------------------------------------------------------------------ store

    def _history(self, tenant: str, job_id: str) -> list[events_pb2.EventEnvelope]:
        with self.engine.connect() as conn:
            return eventstore.load_stream(conn, tenant, job_id)

    def _append(self, tenant: str, job_id: str, causation: Causation, payload: Any) -> None:
        """Append one worker fact to the job's stream (retried past concurrent writers)."""
        for _ in range(20):
            with self.engine.connect() as conn:
                version = eventstore.stream_version(conn, job_id)
            env = new_envelope(payload, subject=job_id, tenant_id=tenant, source=SOURCE, causation=causation)
            try:
                with self.engine.begin() as conn:
                    eventstore.append(conn, STREAM_TYPE, [env], expected_version=version)
                return
            except ConcurrencyConflict:
                time.sleep(0.05)
        raise ConcurrencyConflict(f"could not append to training job {job_id}: the stream keeps changing")

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:500]
