"""Read model of curation jobs, as ListCurationJobs serves it. Rebuilt by `privtune replay`."""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from privtune.v1 import events_pb2
from services.common.projection import Projection
from services.common.store.schema import curation_job_view as view
from services.common.topics import CURATION_EVENTS
from services.curation.domain import FAILED, REQUESTED, SUCCEEDED


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    key = (view.c.tenant_id == env.tenant_id, view.c.job_id == env.subject)
    if kind == "curation_requested":
        e = env.curation_requested
        conn.execute(insert(view).values(tenant_id=env.tenant_id, job_id=e.job_id, dataset_id=e.dataset_id,
                                         recipe=e.recipe, state=REQUESTED, dataset_version_id="", error_code="",
                                         reason="", created_at_ms=at, updated_at_ms=at))
    elif kind == "dataset_version_created":
        conn.execute(update(view).where(*key).values(
            state=SUCCEEDED, dataset_version_id=env.dataset_version_created.dataset_version_id, updated_at_ms=at))
    elif kind == "curation_failed":
        e = env.curation_failed
        conn.execute(update(view).where(*key).values(state=FAILED, error_code=e.error_code, reason=e.reason,
                                                     updated_at_ms=at))


PROJECTION = Projection(name="curation.job_view", topics=(CURATION_EVENTS,), tables=(view,), apply=apply)
