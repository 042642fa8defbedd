"""Registered-model aggregate: a model's versions and aliases as pure decisions, no I/O.

One stream per (tenant, model name). A succeeded training job becomes version n+1
(``ModelVersionRegistered``, once per job); aliases such as ``staging`` or
``production`` point at versions and every move is an event (``ModelAliasMoved``), so
the alias history (who moved which alias to which version when, and why) is the
stream itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from privtune.v1 import events_pb2
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.orchestrator.job_domain import SUCCEEDED, TrainingJobState

STREAM_TYPE = "registered_model"
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,57}$")  # "model-" + tenant (63) + ":" + 58 = 128
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
MAX_REASON = 1000


def model_stream_id(tenant_id: str, model_name: str) -> str:
    """The model's stream id. Stream ids are global, so the tenant is part of it.

    ``:`` separates the two because neither a tenant id nor a model name may contain
    one: with ``-`` tenant ``a-b`` / model ``c`` and tenant ``a`` / model ``b-c`` would
    share a stream.
    """
    return f"model-{tenant_id}:{model_name}"


def model_name_for(job: TrainingJobState) -> str:
    """``experiment_tags["model_name"]`` if set, else the job's name, made a valid model name."""
    return model_name_from(job.request.experiment_tags, job.name, job.job_id)


def model_name_from(tags: Mapping[str, str], job_name: str, job_id: str) -> str:
    """Characters a model name may not hold become ``-``; at most 58 characters."""
    raw = tags.get("model_name") or job_name or job_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")[:58]
    return cleaned or re.sub(r"[^A-Za-z0-9._-]+", "-", job_id)[:58]


def artifact_kind(job: TrainingJobState) -> str:
    """``full`` for full fine-tuning, ``merged`` when adapter weights were merged too, else ``adapter``."""
    try:
        config = json.loads(job.request.config_json or "{}")
    except json.JSONDecodeError:
        config = {}
    if config.get("method") == "full" or job.request.method == events_pb2.TRAINING_METHOD_FULL:
        return "full"
    return "merged" if config.get("merge_weights") else "adapter"


def version_id(model_name: str, version: int) -> str:
    return f"{model_name}/v{version}"


def split_version_ref(ref: str) -> tuple[str, str]:
    """``name/vN`` -> (name, "name/vN"); ``name@alias`` -> (name, "@alias").

    Raises:
        InvalidArgument: the reference has neither form.
    """
    if "@" in ref:
        name, _, alias = ref.rpartition("@")
        if name and alias:
            return name, f"@{alias}"
    name, sep, number = ref.rpartition("/v")
    if name and sep and number.isdigit():
        return name, ref
    raise InvalidArgument(f"model version {ref!r} is not '<model name>/v<n>' or '<model name>@<alias>', "
                          "e.g. 'support-bot/v3' or 'support-bot@production'")


@dataclass(frozen=True)
class ModelVersion:
    registered: events_pb2.ModelVersionRegistered
    registered_by: str
    registered_at_ms: int

    @property
    def model_version_id(self) -> str:
        return self.registered.model_version_id


@dataclass(frozen=True)
class AliasChange:
    """One move of an alias: to ``model_version_id`` (empty: removed) from ``previous_model_version_id``."""

    alias: str
    model_version_id: str
    previous_model_version_id: str
    actor: str
    reason: str
    changed_at_ms: int
    event_id: str


@dataclass(frozen=True)
class RegisteredModelState:
    tenant_id: str = ""
    model_name: str = ""
    versions: Mapping[str, ModelVersion] = field(default_factory=dict)   # by model_version_id, in order
    version_by_job: Mapping[str, str] = field(default_factory=dict)      # job_id -> model_version_id
    aliases: Mapping[str, str] = field(default_factory=dict)             # alias -> model_version_id
    alias_history: tuple[AliasChange, ...] = ()
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def latest(self) -> int:
        return max((v.registered.version for v in self.versions.values()), default=0)

    def aliases_of(self, model_version_id: str) -> tuple[str, ...]:
        return tuple(sorted(a for a, v in self.aliases.items() if v == model_version_id))

    def resolve(self, ref: str) -> ModelVersion:
        """A version by ``name/vN``, ``vN``, ``N`` or ``@alias``.

        Raises:
            NotFound: naming the version or alias that does not exist.
        """
        if ref.startswith("@"):
            alias = ref[1:]
            if alias not in self.aliases:
                set_ = ", ".join(sorted(self.aliases)) or "none"
                raise NotFound(f"model {self.model_name!r} has no alias {alias!r} (aliases set: {set_})")
            return self.versions[self.aliases[alias]]
        wanted = ref
        if ref.removeprefix("v").isdigit():
            wanted = version_id(self.model_name, int(ref.removeprefix("v")))
        if wanted not in self.versions:
            known = f"v1..v{self.latest}" if self.latest else "none"
            raise NotFound(f"model version {wanted!r} not found (model {self.model_name!r} has versions {known})")
        return self.versions[wanted]


# ------------------------------------------------------------------ decisions


def decide_register(state: RegisteredModelState, job: TrainingJobState) -> list[events_pb2.ModelVersionRegistered]:
    """A succeeded job becomes the model's next version, once: a job already registered yields []."""
    if job.job_id in state.version_by_job:
        return []
    if job.state != SUCCEEDED:
        raise FailedPrecondition(f"training job {job.job_id} is {job.state_name}; only succeeded jobs are "
                                 "registered as model versions")
    name = state.model_name or model_name_for(job)
    n = state.latest + 1
    started = job.started
    metrics = {"final_loss": job.loss, "eval_loss": job.eval_loss, "initial_eval_loss": job.initial_eval_loss}
    if job.request.dp.enabled or job.epsilon_spent:
        metrics["epsilon_spent"] = job.epsilon_spent
    return [events_pb2.ModelVersionRegistered(
        model_version_id=version_id(name, n), model_name=name, version=n, kind=artifact_kind(job),
        artifact_uri=job.artifact_uri, artifact_sha256=job.artifact_sha256, job_id=job.job_id,
        base_model_id=job.request.base_model_id, base_model_sha256=started.base_model_sha256,
        dataset_version_id=job.request.dataset_version_id,
        dataset_manifest_sha256=started.dataset_manifest_sha256,
        config_sha256=started.config_sha256 or job.request.config_sha256, code_version=started.code_version,
        metrics=metrics, dataset_id=job.request.dataset_id, evaluation_suite_id=job.request.evaluation_suite_id,
        eval_gates=job.request.eval_gates, dataset_uri=job.request.dataset_uri)]


def decide_move_alias(state: RegisteredModelState, alias: str, model_version_id: str,
                      reason: str) -> list[events_pb2.ModelAliasMoved]:
    """Point ``alias`` at a version (empty version: remove it). A move to where it already points yields []."""
    if not ALIAS_RE.match(alias):
        raise InvalidArgument(f"alias {alias!r} is invalid: use lowercase letters, digits and '-' (at most 63), "
                              "e.g. 'staging' or 'production'")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"reason is {len(reason)} characters long, at most {MAX_REASON} are allowed")
    if not state.exists:
        raise NotFound(f"model {state.model_name!r} not found")
    target = state.resolve(model_version_id).model_version_id if model_version_id else ""
    previous = state.aliases.get(alias, "")
    if target == previous:
        return []
    return [events_pb2.ModelAliasMoved(model_name=state.model_name, alias=alias, model_version_id=target,
                                       previous_model_version_id=previous, reason=reason)]


# ------------------------------------------------------------------ evolution


def evolve(state: RegisteredModelState, env: events_pb2.EventEnvelope) -> RegisteredModelState:
    """Fold one stored event into the model's state."""
    kind = env.WhichOneof("payload")
    s = replace(state, version=env.aggregate_version, tenant_id=state.tenant_id or env.tenant_id)
    if kind == "model_version_registered":
        e = env.model_version_registered
        version = ModelVersion(registered=e, registered_by=env.actor, registered_at_ms=env.time.ToMilliseconds())
        return replace(s, model_name=e.model_name, versions={**s.versions, e.model_version_id: version},
                       version_by_job={**s.version_by_job, e.job_id: e.model_version_id})
    if kind == "model_alias_moved":
        e = env.model_alias_moved
        aliases = {a: v for a, v in s.aliases.items() if a != e.alias}
        if e.model_version_id:
            aliases[e.alias] = e.model_version_id
        change = AliasChange(alias=e.alias, model_version_id=e.model_version_id,
                             previous_model_version_id=e.previous_model_version_id, actor=env.actor,
                             reason=e.reason, changed_at_ms=env.time.ToMilliseconds(), event_id=env.id)
        return replace(s, aliases=aliases, alias_history=(*s.alias_history, change))
    return s


def fold(events: Iterable[events_pb2.EventEnvelope],
         state: RegisteredModelState | None = None) -> RegisteredModelState:
    state = state or RegisteredModelState()
    for env in events:
        state = evolve(state, env)
    return state
