"""Evaluation application service: build suites, request runs, claim shards, query and watch runs."""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy import Connection, Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, FailedPrecondition, InvalidArgument, NotFound, Resource
from services.common.eval_gates import DEFAULT_SUITE, SUITE_ID_RE, check_gates, check_suite_id
from services.common.idempotency import RequestIdTaken, claim_request_id, created_by_request
from services.common.identity import Caller
from services.common.leases import release_lease, take_lease, take_unclaimed_lease
from services.common.limits import quote
from services.common.model_store import is_stored, read_manifest
from services.common.storage import open_tenant_storage
from services.common.store.engine import reader
from services.common.store.schema import eval_run_view, relay_leases, stored_events
from services.eval import catalog, domain
from services.eval.judging import parse_judge_spec
from services.eval.suites import BuiltSuite, SuiteError, SuiteOptions, build_suite

SOURCE = "privtune/eval"
REQUEST_KIND = "eval-request"
SHARD_COMPLETED = "privtune.v1.EvalShardCompleted"
SHARD_FAILED = "privtune.v1.EvalShardFailed"
GENERATION_LIMITS = {"max_new_tokens": (1, 2048, 64), "batch_size": (1, 512, 16)}


def generation_settings(g: events_pb2.GenerationSettings) -> events_pb2.GenerationSettings:
    """The settings with defaults filled in, each checked.

    Raises:
        InvalidArgument: a value out of range, naming it and the range.
    """
    out = events_pb2.GenerationSettings()
    for name, (low, high, default) in GENERATION_LIMITS.items():
        value = getattr(g, name) if g.HasField(name) else default
        if not low <= value <= high:
            raise InvalidArgument(f"generation.{name} must be between {low} and {high}", field=f"generation.{name}")
        setattr(out, name, value)
    temperature = g.temperature if g.HasField("temperature") else 0.0
    if not math.isfinite(temperature) or not 0.0 <= temperature <= 2.0:
        raise InvalidArgument("generation.temperature must be between 0 (greedy) and 2", field="generation.temperature")
    out.temperature = temperature
    out.seed = g.seed
    return out


def suite_event(tenant_id: str, built: BuiltSuite, dataset_version_id: str) -> events_pb2.EvalSuiteCreated:
    return events_pb2.EvalSuiteCreated(
        suite_id=built.suite_id, name=built.name, uri=built.uri, manifest_sha256=built.manifest_sha256,
        item_count=built.item_count, counts=dict(built.counts), dataset_version_id=dataset_version_id,
        dataset_manifest_sha256=built.dataset_manifest_sha256, canaries=built.canaries)


class EvalApplication:
    """``storage_root``: the tenants' storage root; ``models_dir``: the base-model store (LLM judges)."""

    def __init__(self, engine: Engine, storage_root: str, models_dir: Path) -> None:
        self.engine = engine
        self.storage_root = storage_root
        self.models_dir = models_dir

    # ------------------------------------------------------------------ suites

    def create_suite(self, caller: Caller, name: str, dataset_version_id: str, options: SuiteOptions,
                     correlation_id: str = "") -> events_pb2.EvalSuiteCreated:
        """Build the suite (content addressed: the same inputs give the same suite, recorded once)."""
        if not name:
            raise InvalidArgument("name is required: a label for the suite, e.g. 'support-v1'", field="name")
        if len(name) > 128:
            raise InvalidArgument("name must be at most 128 characters", field="name")
        dataset_uri, dataset_sha256 = "", None
        if dataset_version_id:  # looked up before the transaction: no second connection inside one
            found = catalog.find_dataset_version(self.engine, caller.tenant_id, dataset_version_id)
            if found is None:
                raise NotFound(f"dataset version {quote(dataset_version_id)} not found in tenant "
                               f"{caller.tenant_id!r}; curate a dataset first (CreateCurationJob)",
                               reason="DATASET_VERSION_NOT_FOUND",
                               resource=Resource("privtune.v1.DatasetVersion", dataset_version_id))
            dataset_uri, dataset_sha256 = found[0].rsplit("/", 1)[0], found[1]
        event = self._build_suite(caller.tenant_id, name, dataset_version_id, dataset_uri, options, dataset_sha256)
        with self.engine.begin() as conn:
            return self._record_suite(conn, caller.tenant_id, caller.actor, event, correlation_id)

    def _build_suite(self, tenant_id: str, name: str, dataset_version_id: str, dataset_uri: str,
                     options: SuiteOptions, dataset_sha256: str | None = None) -> events_pb2.EvalSuiteCreated:
        """Write the suite's files (idempotent) and say what they are; records nothing. ``dataset_sha256``:
        the dataset version's manifest hash as curation recorded it (a changed version is refused)."""
        storage = open_tenant_storage(self.storage_root, tenant_id)
        prefix = storage.key_for(dataset_uri).rstrip("/") if dataset_uri else None
        try:
            built = build_suite(storage, name=name, dataset_prefix=prefix, options=options,
                                expected_dataset_sha256=dataset_sha256)
        except SuiteError as exc:
            raise FailedPrecondition(str(exc), reason="SUITE_NOT_BUILDABLE") from None
        return suite_event(tenant_id, built, dataset_version_id)

    def _record_suite(self, conn: Connection, tenant_id: str, actor: str, event: events_pb2.EvalSuiteCreated,
                      correlation_id: str = "") -> events_pb2.EvalSuiteCreated:
        """Record the suite once (the first record of a content address stands)."""
        stream = domain.suite_stream(tenant_id, event.suite_id)
        existing = eventstore.load_stream(conn, tenant_id, stream)
        if existing:
            return existing[0].eval_suite_created
        env = new_envelope(event, subject=stream, tenant_id=tenant_id, source=SOURCE,
                           causation=Causation(actor=actor, correlation_id=correlation_id or uuid.uuid4().hex))
        try:
            with conn.begin_nested():
                eventstore.append(conn, domain.SUITE_STREAM, [env], expected_version=0)
        except ConcurrencyConflict:  # the same suite, recorded by a concurrent call: its record (and name) stands
            existing = eventstore.load_stream(conn, tenant_id, stream)
            if existing:
                return existing[0].eval_suite_created
        return event

    def get_suite(self, caller: Caller, suite_id: str) -> events_pb2.EvalSuiteCreated:
        if not SUITE_ID_RE.fullmatch(suite_id or ""):
            raise InvalidArgument("suite_id must look like suite-<20 hex digits> (from CreateEvalSuite)",
                                  field="suite_id")
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, domain.suite_stream(caller.tenant_id, suite_id))
        if not events:
            raise NotFound(f"suite {suite_id} not found in tenant {caller.tenant_id!r}", reason="SUITE_NOT_FOUND",
                           resource=Resource("privtune.v1.EvalSuite", suite_id))
        return events[0].eval_suite_created

    # ------------------------------------------------------------------ runs

    def request_run(self, caller: Caller, model_version_id: str, suite_id: str, gates: events_pb2.EvalGates,
                    judge: str = "", generation: events_pb2.GenerationSettings | None = None,
                    shard_size: int = 0, request_id: str = "", correlation_id: str = "") -> domain.EvalRunState:
        """Request an evaluation of a registered model version on a suite (on demand)."""
        if not model_version_id:
            raise InvalidArgument("model_version_id is required: a registered version, e.g. 'support-assistant/v1'",
                                  field="model_version_id")
        if not suite_id:
            raise InvalidArgument(f"suite_id is required: a suite id from CreateEvalSuite, or {DEFAULT_SUITE!r}",
                                  field="suite_id")
        check_suite_id(suite_id, "suite_id")
        gate_values = check_gates(gates, "gates")
        settings = generation_settings(generation or events_pb2.GenerationSettings())
        judge = self._check_judge(judge)
        shard_size = shard_size or domain.DEFAULT_SHARD_SIZE
        if not 1 <= shard_size <= domain.MAX_SHARD_SIZE:
            raise InvalidArgument(f"shard_size must be between 1 and {domain.MAX_SHARD_SIZE}", field="shard_size")
        if request_id:
            existing = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
            if existing:
                return self.get(caller, existing)
        model = catalog.find_model_version(self.engine, caller.tenant_id, model_version_id)
        if model is None:
            raise NotFound(f"model version {quote(model_version_id)} not found in tenant {caller.tenant_id!r}; "
                           "see ListModelVersions", reason="MODEL_VERSION_NOT_FOUND",
                           resource=Resource("privtune.v1.ModelVersion", model_version_id))
        eval_id = f"ev-{uuid.uuid4().hex[:24]}"
        suite = self.resolve_suite(caller.tenant_id, model, suite_id)  # before the transaction: it reads storage
        try:
            with self.engine.begin() as conn:
                if request_id:
                    claim_request_id(conn, caller.tenant_id, REQUEST_KIND, request_id, eval_id)
                self.append_request(conn, caller.tenant_id, caller.actor, eval_id, model, suite, gate_values,
                                    judge, settings, shard_size, "on_demand", correlation_id)
        except RequestIdTaken:
            existing = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
            if existing is None:
                raise ConcurrencyConflict(f"request_id {quote(request_id)} was claimed and released by a "
                                          "concurrent call; retry") from None
            return self.get(caller, existing)
        return self.get(caller, eval_id)

    def _check_judge(self, judge: str) -> str:
        try:
            kind, name = parse_judge_spec(judge)
        except ValueError as exc:
            raise InvalidArgument(str(exc), field="judge") from None
        if kind == "model" and not is_stored(self.models_dir, name):
            raise FailedPrecondition(f"judge model {quote(name)} is not in the model store; import it first "
                                     "(privtune models import) or use the default judge 'metric:rouge_l'",
                                     reason="JUDGE_MODEL_NOT_FOUND")
        return f"{kind}:{name}"

    def resolve_suite(self, tenant_id: str, model: catalog.ModelVersionFacts,
                      suite_id: str) -> events_pb2.EvalSuiteCreated:
        """The suite a run of ``model`` uses: built now for ``default`` (files only, nothing recorded), else
        the recorded suite. Runs outside any transaction (building reads the dataset version)."""
        if suite_id == DEFAULT_SUITE:
            if not model.dataset_uri:
                raise FailedPrecondition(f"model version {model.model_version_id} has no dataset version to build "
                                         "the default suite from; name a suite", reason="NO_DATASET_FOR_SUITE")
            return self._build_suite(tenant_id, f"default:{model.model_version_id}"[:128], model.dataset_version_id,
                                     model.dataset_uri, SuiteOptions(), model.dataset_manifest_sha256 or None)
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, tenant_id, domain.suite_stream(tenant_id, suite_id))
        if not events:
            raise NotFound(f"suite {suite_id} not found in tenant {tenant_id!r}; create it with CreateEvalSuite",
                           reason="SUITE_NOT_FOUND", resource=Resource("privtune.v1.EvalSuite", suite_id))
        return events[0].eval_suite_created

    def append_request(self, conn: Connection, tenant_id: str, actor: str, eval_id: str,
                       model: catalog.ModelVersionFacts, suite: events_pb2.EvalSuiteCreated, gates: dict[str, float],
                       judge: str, settings: events_pb2.GenerationSettings, shard_size: int, trigger: str,
                       correlation_id: str = "") -> bool:
        """Append the run and its shard commands (and the suite, if new) in ``conn``'s transaction; False when
        the run exists already. Does no I/O but the store's."""
        suite = self._record_suite(conn, tenant_id, actor, suite, correlation_id)
        if suite.item_count == 0:
            raise FailedPrecondition(f"suite {suite.suite_id} has no items", reason="EMPTY_SUITE")
        shard_size = max(shard_size, -(-suite.item_count // domain.MAX_SHARDS))
        request = events_pb2.EvalRequested(
            eval_id=eval_id, job_id=model.job_id, model_version_id=model.model_version_id, suite_id=suite.suite_id,
            suite_uri=suite.uri, suite_manifest_sha256=suite.manifest_sha256, item_count=suite.item_count,
            shard_count=len(domain.plan_shards(suite.item_count, shard_size)), shard_size=shard_size,
            base_model_id=model.base_model_id, base_model_sha256=model.base_model_sha256,
            artifact_uri=model.artifact_uri, artifact_sha256=model.artifact_sha256, artifact_kind=model.kind,
            judge=judge, gates=events_pb2.EvalGates(**gates), generation=settings, trigger=trigger,
            judge_model_sha256=self._judge_sha256(judge))
        storage = open_tenant_storage(self.storage_root, tenant_id)
        runs, shards = domain.decide_request(domain.EvalRunState(), request,
                                             lambda e, s: storage.uri_for(domain.outputs_key(e, s)))
        causation = Causation(actor=actor, correlation_id=correlation_id or uuid.uuid4().hex)
        run_envs = [new_envelope(e, subject=eval_id, tenant_id=tenant_id, source=SOURCE, causation=causation)
                    for e in runs]
        try:
            with conn.begin_nested():
                eventstore.append(conn, domain.RUN_STREAM, run_envs, expected_version=0)
                for shard in shards:
                    env = new_envelope(shard, subject=domain.shard_stream(eval_id, shard.shard), tenant_id=tenant_id,
                                       source=SOURCE, causation=causation)
                    eventstore.append(conn, domain.SHARD_STREAM, [env], expected_version=0)
        except ConcurrencyConflict:
            return False
        return True

    def _judge_sha256(self, judge: str) -> str:
        """The LLM judge's model sha256 (pinned in the request, so every worker judges with the same model)."""
        kind, name = parse_judge_spec(judge)
        return str(read_manifest(self.models_dir, name).get("sha256", "")) if kind == "model" else ""

    def get(self, caller: Caller, eval_id: str) -> domain.EvalRunState:
        if not eval_id:
            raise InvalidArgument("eval_id is required", field="eval_id")
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, eval_id)
        state = domain.fold_run(events)
        if not state.exists:
            raise NotFound(f"evaluation run {quote(eval_id)} not found in tenant {caller.tenant_id!r}",
                           reason="EVAL_RUN_NOT_FOUND", resource=Resource("privtune.v1.EvalRun", eval_id))
        return state

    def shards_done(self, tenant_id: str, eval_id: str) -> int:
        low, high = domain.shard_range(eval_id)
        with reader(self.engine).connect() as conn:
            rows = conn.execute(select(stored_events.c.stream_id).where(
                stored_events.c.tenant_id == tenant_id, stored_events.c.stream_id >= low,
                stored_events.c.stream_id < high, stored_events.c.event_type == SHARD_COMPLETED)).all()
        return len({r.stream_id for r in rows})

    def list(self, caller: Caller, page_size: int = 50, page_token: str = "",
             model_version_id: str = "") -> tuple[list[dict], str]:
        filters = [eval_run_view.c.model_version_id == model_version_id] if model_version_id else []
        return queries.page(self.engine, eval_run_view, ("created_at_ms", "eval_id"), caller.tenant_id, page_size,
                            page_token, *filters, filters={"model_version_id": model_version_id})

    def watch(self, caller: Caller, eval_id: str, is_active: Callable[[], bool], stop: threading.Event,
              poll_interval: float = 0.2) -> Iterator[events_pb2.EventEnvelope]:
        """The run's events from the first; ends after its outcome."""
        self.get(caller, eval_id)
        return queries.watch_stream(self.engine, caller.tenant_id, eval_id, is_active, stop, poll_interval,
                                    final=lambda env: env.WhichOneof("payload") in ("eval_completed", "eval_failed"))

    # ------------------------------------------------------------------ worker claims

    def claim_shard(self, caller: Caller, eval_id: str, shard: int, worker_id: str, claim_id: str,
                    lease_seconds: int = 30) -> tuple[bool, bool, str]:
        """Take or renew a worker's claim on a shard (a lease in the store). Returns (granted, finished, reason)."""
        if not eval_id or not worker_id or not claim_id or len(claim_id) > 64:
            raise InvalidArgument("eval_id, worker_id and claim_id (at most 64 characters) are required")
        lease_seconds = min(max(lease_seconds or 30, 2), 3600)
        state = self._shard(caller.tenant_id, eval_id, shard)
        if not state.exists:
            raise NotFound(f"shard {shard} of evaluation run {quote(eval_id)} not found in tenant "
                           f"{caller.tenant_id!r}", reason="EVAL_SHARD_NOT_FOUND")
        if state.finished or self.get(caller, eval_id).finished:
            return False, True, ""
        name = domain.claim_name(eval_id, shard)
        if not take_lease(self.engine, name, claim_id, lease_seconds * 1000):
            return False, False, "the shard is being computed under another claim"
        if self._shard(caller.tenant_id, eval_id, shard).finished:
            release_lease(self.engine, name, claim_id)
            return False, True, ""
        return True, False, ""

    def claim_next_shard(self, caller: Caller, eval_id: str, worker_id: str, claim_id: str,
                         lease_seconds: int = 30) -> tuple[bool, bool, str, events_pb2.EventEnvelope | None]:
        """Claim, for an idle worker, the highest-numbered shard of the run with no outcome and no live claim.

        Returns (granted, finished, reason, the shard's EvalShardScheduled envelope when granted);
        finished: the run has its outcome. Highest first: those are the commands furthest back in
        the workers' queues, so the worker whose partition holds one most likely reaches it after it
        is done (and then commits it unseen) rather than while it runs.

        Only shards never claimed, or whose claim ended with a recorded outcome, are handed out: a
        lapsed claim is left to the shard's own command. Its worker may still be computing (renewals
        failed for a while) or have reported while the recorder lags; taking its lease would drop
        that report (the fence records only the current claim's) and could leave the shard with no
        outcome and no command once the new claimant died.
        """
        if not eval_id or not worker_id or not claim_id or len(claim_id) > 64:
            raise InvalidArgument("eval_id, worker_id and claim_id (at most 64 characters) are required")
        lease_seconds = min(max(lease_seconds or 30, 2), 3600)
        run = self.get(caller, eval_id)
        if run.finished:
            return False, True, "", None
        low, high = domain.shard_range(eval_id)
        with reader(self.engine).connect() as conn:
            done = {r.stream_id for r in conn.execute(select(stored_events.c.stream_id).where(
                stored_events.c.tenant_id == caller.tenant_id, stored_events.c.stream_id >= low,
                stored_events.c.stream_id < high, stored_events.c.event_type.in_((SHARD_COMPLETED, SHARD_FAILED))))}
            claimed = {r.name for r in conn.execute(select(relay_leases.c.name).where(
                relay_leases.c.name >= f"eval:{low}", relay_leases.c.name < f"eval:{high}"))}
        for shard in reversed(range(run.request.shard_count)):
            stream, name = domain.shard_stream(eval_id, shard), domain.claim_name(eval_id, shard)
            if stream in done or name in claimed or not take_unclaimed_lease(self.engine, name, claim_id,
                                                                             lease_seconds * 1000):
                continue
            with reader(self.engine).connect() as conn:
                events = eventstore.load_stream(conn, caller.tenant_id, stream)
            state = domain.fold_shard(events)
            if not state.exists or state.finished:
                release_lease(self.engine, name, claim_id)
                continue
            return True, False, "", events[0]
        return False, False, "every shard of the run is computed or claimed", None

    def _shard(self, tenant_id: str, eval_id: str, shard: int) -> domain.ShardState:
        with reader(self.engine).connect() as conn:
            return domain.fold_shard(eventstore.load_stream(conn, tenant_id, domain.shard_stream(eval_id, shard)))


def auto_eval_id(tenant_id: str, model_version_id: str, suite_id: str) -> str:
    """The run a registration asks for: the same registration (redelivered) names the same run."""
    digest = hashlib.sha256(f"{tenant_id}/{model_version_id}/{suite_id}".encode()).hexdigest()
    return f"ev-{digest[:24]}"
