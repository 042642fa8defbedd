"""Read models of the model registry and the experiment tracker, and the registration follow-up.

- ``registry.model_version_view``: model versions with their aliases and latest evaluation;
- ``tracker.run_view``: runs (= training jobs) with parameters, tags, provenance and
  learning curves (``run_view``, ``run_tags``, ``run_metric_points``);
- ``registry.follow_up``: registers a model version when a training job succeeds.

The read models are functions of the events alone, so ``privtune replay`` rebuilds them.
"""

from __future__ import annotations

import json
import logging
import re

from sqlalchemy import (
    BigInteger, Boolean, Column, Connection, Float, Index, Integer, String, Table, Text, bindparam, delete, insert,
    select, update,
)

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope, payload_name
from services.common.projection import Projection
from services.common.store.direct import DirectRead, DirectWrite, insert_rows
from services.common.store.schema import metadata
from services.common.topics import DEPLOYMENT_EVENTS, EVAL_EVENTS, MODEL_EVENTS, TRAINING_EVENTS
from services.orchestrator import job_domain, run_facts
from services.orchestrator.registry_domain import model_name_for

log = logging.getLogger(__name__)
REGISTRY_ACTOR = "service:privtune-registry"
_VERSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,57}/v[0-9]{1,9}$")

model_version_view = Table(
    "model_version_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("model_version_id", String(128), primary_key=True),
    Column("version_key", String(128), nullable=False),     # "<model name>/<version:08d>": page order
    Column("model_name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("artifact_sha256", String(64), nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("base_model_id", String(255), nullable=False),
    Column("base_model_sha256", String(64), nullable=False),
    Column("dataset_id", String(128), nullable=False),
    Column("dataset_version_id", String(128), nullable=False),
    Column("dataset_manifest_sha256", String(64), nullable=False),
    Column("config_sha256", String(64), nullable=False),
    Column("code_version", String(255), nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("aliases_json", Text, nullable=False),
    Column("evaluation_json", Text, nullable=False),
    Column("evaluation_passed", Boolean, nullable=False),
    Column("eval_id", String(128), nullable=False),
    Column("evaluated_at_ms", BigInteger, nullable=False),
    Column("registered_by", String(255), nullable=False),
    Column("registered_at_ms", BigInteger, nullable=False),
    Index("ix_model_version_view_key", "tenant_id", "version_key"),
    Index("ix_model_version_view_job", "tenant_id", "job_id"),
)

run_view = Table(
    "run_view", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("job_id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("params_json", Text, nullable=False),
    Column("tags_json", Text, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("loss", Float, nullable=False),
    Column("eval_loss", Float, nullable=False),
    Column("initial_eval_loss", Float, nullable=False),
    Column("epsilon_spent", Float, nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Column("dataset_id", String(128), nullable=False),
    Column("dataset_version_id", String(128), nullable=False),
    Column("dataset_manifest_sha256", String(64), nullable=False),
    Column("base_model_id", String(255), nullable=False),
    Column("base_model_sha256", String(64), nullable=False),
    Column("code_version", String(255), nullable=False),
    Column("library_versions_json", Text, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("hardware", Text, nullable=False),
    Column("config_sha256", String(64), nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("ended_at_ms", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)

run_tags = Table(
    "run_tags", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("job_id", String(128), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", String(1024), nullable=False),
    Index("ix_run_tags_key_value", "tenant_id", "key", "value"),
)

run_metric_points = Table(
    "run_metric_points", metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("job_id", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
    Column("recorded_at_ms", BigInteger, nullable=False),
)


# ------------------------------------------------------------------ model versions


def _version_key(model_name: str, version: int) -> str:
    return f"{model_name}/{version:08d}"


def _model_version_row(conn: Connection, tenant_id: str, model_version_id: str) -> dict | None:
    row = conn.execute(select(model_version_view).where(
        model_version_view.c.tenant_id == tenant_id,
        model_version_view.c.model_version_id == model_version_id)).first()
    return dict(row._mapping) if row else None


def _ensure_version_row(conn: Connection, tenant_id: str, model_version_id: str) -> dict:
    """The version's row; an evaluation that arrives before its registration (another topic) gets a stub."""
    row = _model_version_row(conn, tenant_id, model_version_id)
    if row is not None:
        return row
    name, _, number = model_version_id.rpartition("/v")
    stub = dict(tenant_id=tenant_id, model_version_id=model_version_id, version_key=_version_key(name, int(number)),
                model_name=name, version=int(number), kind="", artifact_uri="", artifact_sha256="", job_id="",
                base_model_id="", base_model_sha256="", dataset_id="", dataset_version_id="",
                dataset_manifest_sha256="", config_sha256="", code_version="", metrics_json="{}",
                aliases_json="[]", evaluation_json="{}", evaluation_passed=False, eval_id="", evaluated_at_ms=0,
                registered_by="", registered_at_ms=0)
    conn.execute(insert(model_version_view).values(**stub))
    return stub


def _set_version(conn: Connection, tenant_id: str, model_version_id: str, **values: object) -> None:
    conn.execute(update(model_version_view).where(model_version_view.c.tenant_id == tenant_id,
                                                  model_version_view.c.model_version_id == model_version_id)
                 .values(**values))


def _move_alias(conn: Connection, tenant_id: str, e: events_pb2.ModelAliasMoved) -> None:
    for version_id, change in ((e.previous_model_version_id, "remove"), (e.model_version_id, "add")):
        if not version_id:
            continue
        aliases = set(json.loads(_ensure_version_row(conn, tenant_id, version_id)["aliases_json"]))
        aliases = aliases - {e.alias} if change == "remove" else aliases | {e.alias}
        _set_version(conn, tenant_id, version_id, aliases_json=json.dumps(sorted(aliases)))


def apply_model_version(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = payload_name(env)
    if kind == "model_version_registered":
        e = env.model_version_registered
        _ensure_version_row(conn, env.tenant_id, e.model_version_id)
        _set_version(conn, env.tenant_id, e.model_version_id, version_key=_version_key(e.model_name, e.version),
                     model_name=e.model_name, version=e.version, kind=e.kind, artifact_uri=e.artifact_uri,
                     artifact_sha256=e.artifact_sha256, job_id=e.job_id, base_model_id=e.base_model_id,
                     base_model_sha256=e.base_model_sha256, dataset_id=e.dataset_id,
                     dataset_version_id=e.dataset_version_id, dataset_manifest_sha256=e.dataset_manifest_sha256,
                     config_sha256=e.config_sha256, code_version=e.code_version,
                     metrics_json=json.dumps(dict(e.metrics), sort_keys=True), registered_by=env.actor,
                     registered_at_ms=env.time.ToMilliseconds())
    elif kind == "model_alias_moved":
        _move_alias(conn, env.tenant_id, env.model_alias_moved)
    elif kind == "eval_completed":
        e, at = env.eval_completed, env.time.ToMilliseconds()
        if not _VERSION_ID_RE.match(e.model_version_id):
            log.warning("eval %s names model version %r, not '<name>/v<n>'; not shown in the registry",
                        e.eval_id, e.model_version_id)
            return
        row = _ensure_version_row(conn, env.tenant_id, e.model_version_id)
        if at >= row["evaluated_at_ms"]:  # keep the latest evaluation, whatever order they arrive in
            _set_version(conn, env.tenant_id, e.model_version_id, evaluation_passed=e.passed, eval_id=e.eval_id,
                         evaluation_json=json.dumps(dict(e.metrics), sort_keys=True), evaluated_at_ms=at)


# ------------------------------------------------------------------ runs

_FINAL_STATES = ("succeeded", "cancelled", "rejected")
_STATE_BY_PAYLOAD = {"training_rejected": "rejected", "training_queued": "queued", "training_cancelled": "cancelled",
                     "training_failed": "failed", "training_preempted": "preempted",
                     "training_started": "running", "training_completed": "succeeded"}


_RUN_KEY = (run_view.c.tenant_id == bindparam("key_tenant"), run_view.c.job_id == bindparam("key_job"))
_SELECT_RUN = DirectRead(select(run_view).where(*_RUN_KEY))
_RUN_COLUMNS = frozenset(run_view.c.keys())
_UPDATES: dict[frozenset[str], DirectWrite] = {}


def _update_run(conn: Connection, key: dict[str, str], values: dict[str, object]) -> None:
    """SET the columns named in ``values``: one statement per set of columns (a handful, one per event kind),
    compiled once, run on the driver's cursor."""
    columns = frozenset(values)
    statement = _UPDATES.get(columns)
    if statement is None:
        unknown = columns - _RUN_COLUMNS
        if unknown:  # a parameter that names no column would be dropped from the SET silently
            raise KeyError(f"run_view has no column {sorted(unknown)}")
        statement = _UPDATES.setdefault(columns, DirectWrite(
            update(run_view).where(*_RUN_KEY).values({name: bindparam(name) for name in sorted(columns)})))
    statement.run(conn, {**key, **values})


def _new_run(env: events_pb2.EventEnvelope) -> tuple[dict[str, object], list[dict[str, str]]]:
    """The run_view row and run_tags rows a ``TrainingRequested`` starts a run with."""
    r, at = env.training_requested, env.time.ToMilliseconds()
    job = job_domain.fold([env])
    tags = dict(r.experiment_tags)
    row = dict(
        tenant_id=env.tenant_id, job_id=r.job_id, name=r.name, model_name=model_name_for(job), state="requested",
        params_json=json.dumps(run_facts.run_params(r), sort_keys=True), tags_json=json.dumps(tags, sort_keys=True),
        step=0, loss=0.0, eval_loss=0.0, initial_eval_loss=0.0, epsilon_spent=0.0, duration_seconds=0.0,
        dataset_id=r.dataset_id, dataset_version_id=r.dataset_version_id, dataset_manifest_sha256="",
        base_model_id=r.base_model_id, base_model_sha256="", code_version="", library_versions_json="{}", seed=0,
        hardware="", config_sha256=r.config_sha256, requested_by=env.actor, created_at_ms=at, started_at_ms=0,
        ended_at_ms=0, updated_at_ms=at)
    columns_fit = {k[:255]: v[:1024] for k, v in tags.items()}
    return row, [dict(tenant_id=env.tenant_id, job_id=r.job_id, key=k, value=v) for k, v in columns_fit.items()]


def _insert_runs(conn: Connection, runs: list[tuple[dict[str, object], list[dict[str, str]]]]) -> None:
    # values as parameters of constant statements (compiled once), in few multi-row statements
    insert_rows(conn, run_view, [row for row, _ in runs])
    insert_rows(conn, run_tags, [tag for _, tags in runs for tag in tags])


def _record_points(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    p, at = env.training_progress, env.time.ToMilliseconds()
    points = run_facts.progress_points(p)
    key = (run_metric_points.c.tenant_id == env.tenant_id, run_metric_points.c.job_id == env.subject,
           run_metric_points.c.step == p.step)
    conn.execute(delete(run_metric_points).where(*key, run_metric_points.c.name.in_(list(points))))
    conn.execute(insert(run_metric_points), [dict(tenant_id=env.tenant_id, job_id=env.subject, name=name,
                                                  step=p.step, value=value, recorded_at_ms=at)
                                             for name, value in points.items()])


def _run_changes(env: events_pb2.EventEnvelope, row: dict) -> dict[str, object]:
    """The run_view columns an event changes (besides state and updated_at)."""
    kind, at = payload_name(env), env.time.ToMilliseconds()
    if kind in ("training_rejected", "training_cancelled"):
        return {"ended_at_ms": at}
    if kind == "training_started":
        s = env.training_started
        return dict(dataset_manifest_sha256=s.dataset_manifest_sha256, base_model_sha256=s.base_model_sha256,
                    code_version=s.code_version, library_versions_json=json.dumps(dict(s.library_versions),
                                                                                  sort_keys=True),
                    seed=s.seed, hardware=s.hardware, config_sha256=s.config_sha256 or row["config_sha256"],
                    started_at_ms=row["started_at_ms"] or at)
    if kind == "training_progress":
        p = env.training_progress
        return dict(step=p.step, loss=p.loss, eval_loss=p.eval_loss or row["eval_loss"],
                    epsilon_spent=max(row["epsilon_spent"], p.epsilon_spent))
    if kind == "training_completed":
        c = env.training_completed
        return dict(step=c.steps, loss=c.final_loss, eval_loss=c.eval_loss, initial_eval_loss=c.initial_eval_loss,
                    epsilon_spent=max(row["epsilon_spent"], c.epsilon_spent), duration_seconds=c.duration_seconds,
                    ended_at_ms=at)
    if kind == "training_failed":
        return {"ended_at_ms": at, "step": max(row["step"], env.training_failed.step)}
    return {}


def _run_update(env: events_pb2.EventEnvelope, row: dict) -> dict[str, object] | None:
    """The columns ``env`` sets on its run's ``row`` (None: it changes nothing the run shows)."""
    kind = payload_name(env)
    if kind in job_domain.WORKER_FACTS and row["state"] in _FINAL_STATES:
        return None  # a late fact of an attempt the orchestrator already gave up on
    values = {**_run_changes(env, row), "updated_at_ms": env.time.ToMilliseconds()}
    if kind in _STATE_BY_PAYLOAD:
        values["state"] = _STATE_BY_PAYLOAD[kind]
    return values


def apply_run(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = payload_name(env)
    if kind == "training_requested":
        _insert_runs(conn, [_new_run(env)])
        return
    if kind not in _STATE_BY_PAYLOAD and kind != "training_progress":
        return  # heartbeats, checkpoints and stop requests change nothing a run shows
    key = {"key_tenant": env.tenant_id, "key_job": env.subject}
    found = _SELECT_RUN.rows(conn, key)
    if not found:
        return
    values = _run_update(env, dict(zip(_SELECT_RUN.columns, found[0])))
    if values is None:
        return
    if kind == "training_progress":
        _record_points(conn, env)
    _update_run(conn, key, values)


def apply_runs(conn: Connection, envs: list[events_pb2.EventEnvelope]) -> None:
    """``apply_run`` on each of ``envs`` in turn, with the same result in fewer statements: a run whose
    ``TrainingRequested`` is in the batch is kept in memory while the batch's next events of it change it (a
    create's requested and queued events arrive together), and the batch's new runs are inserted together.

    A run's events keep their order: before a progress point of a run still in memory, the runs held are
    written (points go to their own table), and that run's later events go to the store one by one.
    """
    held: dict[tuple[str, str], tuple[dict[str, object], list[dict[str, str]]]] = {}
    for env in envs:
        kind = payload_name(env)
        if kind not in _STATE_BY_PAYLOAD and kind not in ("training_requested", "training_progress"):
            continue  # heartbeats, checkpoints and stop requests change nothing a run shows
        requested = kind == "training_requested"
        key = (env.tenant_id, env.training_requested.job_id if requested else env.subject)
        if requested and key not in held:
            held[key] = _new_run(env)
        elif not requested and key in held and kind in _STATE_BY_PAYLOAD:
            values = _run_update(env, held[key][0])
            if values is not None:
                held[key][0].update(values)
        else:  # in the store: after the held runs if it touches one (a progress point, a second request)
            if key in held:
                _insert_runs(conn, list(held.values()))
                held.clear()
            apply_run(conn, env)
    _insert_runs(conn, list(held.values()))


# ------------------------------------------------------------------ follow-up


def register_on_completion(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    """On ``TrainingCompleted``, fold the job and register its model version (in the consumer's transaction).

    A concurrent registration on the same model raises ConcurrencyConflict: the
    consumer retries the batch, and registering a job twice yields nothing.
    """
    if payload_name(env) != "training_completed":
        return
    # imported here because the registry application reads this module's tables
    from services.orchestrator.registry_application import register_from_job

    job = job_domain.fold(eventstore.load_stream(conn, env.tenant_id, env.subject))
    if job.state != job_domain.SUCCEEDED:
        log.info("training job %s completed but is %s in this store (a late attempt, or another store); "
                 "not registered", env.subject, job.state_name)
        return
    register_from_job(conn, env.tenant_id, job, Causation(
        actor=REGISTRY_ACTOR, correlation_id=env.correlation_id or job.correlation_id, causation_id=env.id))


def move_alias_on_deployment(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    """A full flip points the environment's alias at the deployed version; a rollback points it back.

    The deploy service decides; the registry keeps the alias history (each move names the deployment
    and why, and its causation is the deployment event). A version the registry does not know, or an
    alias already in place, changes nothing; a concurrent move on the model makes the consumer retry.
    """
    kind = payload_name(env)
    if kind == "traffic_flipped" and env.traffic_flipped.weight_percent == 100:
        e = env.traffic_flipped
        version, environment = e.model_version_id, e.environment
        reason = f"deployment {e.deployment_id}: all traffic of endpoint {e.endpoint_name}"
    elif kind == "rolled_back" and env.rolled_back.from_model_version_id:
        e2 = env.rolled_back
        version, environment = e2.model_version_id, e2.environment
        how = f"automatic rollback ({e2.trigger})" if e2.automatic else "manual rollback"
        reason = f"deployment {e2.deployment_id}: {how} of endpoint {e2.endpoint_name}"
    else:
        return
    source = env.traffic_flipped.model_version_id if kind == "traffic_flipped" else env.rolled_back.from_model_version_id
    if "/" not in source or not environment:
        return
    from services.orchestrator import registry_domain
    from services.orchestrator.registry_application import SOURCE, load_model

    model_name = source.rsplit("/", 1)[0]
    state = load_model(conn, env.tenant_id, model_name)
    if not state.exists:
        log.warning("deployment event %s names model %s, unknown to the registry; no alias moved", env.id, model_name)
        return
    if kind == "rolled_back":
        if state.aliases.get(environment, "") != source:
            return  # the alias moved on since (or never pointed here): a rollback never undoes a later move
        if version and not version.startswith(model_name + "/"):
            version = ""  # traffic went back to another model: this model's alias no longer names a live version
    try:
        events = registry_domain.decide_move_alias(state, environment, version, reason[:500])
    except Exception as exc:  # noqa: BLE001 - an alias the registry refuses (unknown version, bad name): log it
        log.warning("deployment event %s: alias %s not moved: %s", env.id, environment, exc)
        return
    envelopes = [new_envelope(ev, subject=registry_domain.model_stream_id(env.tenant_id, model_name),
                              tenant_id=env.tenant_id, source=SOURCE,
                              causation=Causation(actor=env.actor or REGISTRY_ACTOR,
                                                  correlation_id=env.correlation_id, causation_id=env.id))
                 for ev in events]
    eventstore.append(conn, registry_domain.STREAM_TYPE, envelopes, expected_version=state.version)


MODEL_VERSION_VIEW = Projection(name="registry.model_version_view", topics=(MODEL_EVENTS, EVAL_EVENTS),
                                tables=(model_version_view,), apply=apply_model_version)
RUN_VIEW = Projection(name="tracker.run_view", topics=(TRAINING_EVENTS,),
                      tables=(run_view, run_tags, run_metric_points), apply=apply_run, apply_batch=apply_runs,
                      payloads=frozenset({"training_requested", "training_progress", *_STATE_BY_PAYLOAD}))
FOLLOW_UP = Projection(name="registry.follow_up", topics=(TRAINING_EVENTS,), tables=(), apply=register_on_completion,
                       payloads=frozenset({"training_completed"}))
ALIAS_FOLLOWER = Projection(name="registry.deployment_aliases", topics=(DEPLOYMENT_EVENTS,), tables=(),
                            apply=move_alias_on_deployment, payloads=frozenset({"traffic_flipped", "rolled_back"}))

READ_MODELS: list[Projection] = [MODEL_VERSION_VIEW, RUN_VIEW]
PROJECTIONS: list[Projection] = [*READ_MODELS, FOLLOW_UP, ALIAS_FOLLOWER]
