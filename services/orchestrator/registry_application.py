"""Model registry application service: load -> decide -> save (+ outbox), and queries.

Reads of one model (a version, its aliases, the alias history) fold the model's own
stream, so they are strongly consistent; listing versions reads ``model_version_view``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import Connection, Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, InvalidArgument, NotFound
from services.common.identity import Caller
from services.orchestrator import registry_domain as domain
from services.orchestrator.job_domain import TrainingJobState
from services.orchestrator.registry_views import model_version_view

SOURCE = "privtune/registry"
ALIAS_RETRIES = 3


@dataclass(frozen=True)
class ModelVersionDetails:
    """A version as the API shows it: its registration, current aliases and latest evaluation."""

    version: domain.ModelVersion
    aliases: tuple[str, ...] = ()
    evaluation: Mapping[str, float] = field(default_factory=dict)
    evaluation_passed: bool = False


def load_model(conn: Connection, tenant_id: str, model_name: str) -> domain.RegisteredModelState:
    events = eventstore.load_stream(conn, tenant_id, domain.model_stream_id(tenant_id, model_name))
    return domain.fold(events)


def register_from_job(conn: Connection, tenant_id: str, job_state: TrainingJobState,
                      causation: Causation) -> list[events_pb2.EventEnvelope]:
    """Register a succeeded job as its model's next version, inside the caller's transaction.

    Returns the stored envelopes; [] when the job is already registered.

    Raises:
        ConcurrencyConflict: the model stream changed meanwhile (retry the transaction).
        FailedPrecondition: the job has not succeeded.
    """
    name = domain.model_name_for(job_state)
    state = load_model(conn, tenant_id, name)
    events = domain.decide_register(state, job_state)
    envelopes = [new_envelope(e, subject=domain.model_stream_id(tenant_id, name), tenant_id=tenant_id,
                              source=SOURCE, causation=causation) for e in events]
    eventstore.append(conn, domain.STREAM_TYPE, envelopes, expected_version=state.version)
    return envelopes


class RegistryApplication:
    """Model versions, aliases and their history, always scoped to the caller's tenant."""

    register_from_job = staticmethod(register_from_job)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def model(self, caller: Caller, model_name: str) -> domain.RegisteredModelState:
        """Strongly consistent: folds the model's stream.

        Raises:
            NotFound: the tenant has no model of that name.
        """
        if not model_name:
            raise InvalidArgument("model_name is required")
        with self.engine.connect() as conn:
            state = load_model(conn, caller.tenant_id, model_name)
        if not state.exists:
            raise NotFound(f"model {model_name!r} not found in tenant {caller.tenant_id!r}; a model is registered "
                           "when a training job with that name (or experiment tag model_name) succeeds")
        return state

    def get_version(self, caller: Caller, ref: str) -> ModelVersionDetails:
        """A version by ``<model>/v<n>`` or ``<model>@<alias>``."""
        if not ref:
            raise InvalidArgument("model_version_id is required ('<model name>/v<n>' or '<model name>@<alias>')")
        name, wanted = domain.split_version_ref(ref)
        state = self.model(caller, name)
        return self._details(caller, state, state.resolve(wanted))

    def list_versions(self, caller: Caller, model_name: str = "", page_size: int = 50,
                      page_token: str = "") -> tuple[list[dict], str]:
        """A page of ``model_version_view`` rows (every model, or one), in name and version order."""
        v = model_version_view.c
        filters = [v.registered_at_ms > 0] + ([v.model_name == model_name] if model_name else [])
        return queries.page(self.engine, model_version_view, "version_key", caller.tenant_id, page_size,
                            page_token, *filters, filters={"model_name": model_name})

    def set_alias(self, caller: Caller, model_name: str, alias: str, version_id: str, reason: str,
                  correlation_id: str = "") -> ModelVersionDetails | None:
        """Point ``alias`` at ``version_id`` (empty: remove it); returns the version it points at now."""
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or uuid.uuid4().hex)
        for attempt in range(ALIAS_RETRIES):
            state = self.model(caller, model_name)
            events = domain.decide_move_alias(state, alias, version_id, reason)
            envelopes = [new_envelope(e, subject=domain.model_stream_id(caller.tenant_id, state.model_name),
                                      tenant_id=caller.tenant_id, source=SOURCE, causation=causation)
                         for e in events]
            try:
                with self.engine.begin() as conn:
                    eventstore.append(conn, domain.STREAM_TYPE, envelopes, expected_version=state.version)
                break
            except ConcurrencyConflict:
                if attempt == ALIAS_RETRIES - 1:
                    raise
        state = domain.fold(envelopes, state)
        target = state.aliases.get(alias)
        return self._details(caller, state, state.versions[target]) if target else None

    def alias_history(self, caller: Caller, model_name: str, alias: str = "") -> list[domain.AliasChange]:
        """Every move of the model's aliases (or of one alias), oldest first."""
        state = self.model(caller, model_name)
        return [c for c in state.alias_history if not alias or c.alias == alias]

    def _details(self, caller: Caller, state: domain.RegisteredModelState,
                 version: domain.ModelVersion) -> ModelVersionDetails:
        v = model_version_view.c
        with self.engine.connect() as conn:
            row = conn.execute(select(v.evaluation_json, v.evaluation_passed).where(
                v.tenant_id == caller.tenant_id, v.model_version_id == version.model_version_id)).first()
        return ModelVersionDetails(
            version=version, aliases=state.aliases_of(version.model_version_id),
            evaluation=json.loads(row.evaluation_json) if row else {},
            evaluation_passed=bool(row.evaluation_passed) if row else False)
