"""A create's request id is checked in admission's one read (``admission.admit(request_id=...)``), not by a
read of its own, on SQLite and PostgreSQL. What a retry answers must not change with that: the original
job, whatever has changed since (a request no longer admissible, a dataset version gone, a renamed job),
with nothing written; and only ever the caller's own tenant's job, whatever request id it sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import Engine, text

from privtune.v1 import training_service_pb2 as pb
from services.common import positions
from services.common.errors import InvalidArgument, NotFound
from services.common.identity import Caller
from services.common.store.engine import dispose, open_store
from services.orchestrator import admission
from services.orchestrator.application import TrainingJobApplication
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator_fixtures import job_request, register_version
from tests.stores import fresh_store_url
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

ACME = Caller(tenant_id="acme", actor="alice")
BETA = Caller(tenant_id="beta", actor="mallory")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    engine = open_store(fresh_store_url(request, request.param, tmp_path))
    yield engine, str(tmp_path / "storage")
    dispose(engine)


def _app(engine: Engine, tmp_path: Path, storage: str) -> TrainingJobApplication:
    make_models(tmp_path / "models")
    return TrainingJobApplication(engine, OrchestratorSettings(
        models_dir=tmp_path / "models", storage_uri=storage, policies_dir=tmp_path / "no-policies"))


def _request(version: str, name: str, request_id: str) -> pb.CreateTrainingJobRequest:
    made = job_request(version, name=name)
    made.request_id = request_id
    return made


def _written(engine: Engine) -> tuple[int, int, int]:
    """Events, outbox rows and request-id claims in the store."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # type: ignore[return-value]
                     for table in ("stored_events", "outbox", "unique_names"))


def _max_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT max(seq) FROM stored_events")).scalar_one())


def test_a_retry_answers_the_original_job_whatever_changed_and_writes_nothing(
        store: tuple[Engine, str], tmp_path: Path) -> None:
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    version = register_version(engine, storage, tenant="acme")
    original, position = app.create(ACME, _request(version, "first", "req-1"))
    before, batches = _written(engine), app.new_jobs.batches

    def changed(edit: Any) -> pb.CreateTrainingJobRequest:
        retry = _request(version, "first", "req-1")
        edit(retry)
        return retry

    retries = {
        "the same request": changed(lambda r: None),
        "renamed": changed(lambda r: setattr(r.spec, "name", "second")),
        "no longer admissible (no name)": changed(lambda r: setattr(r.spec, "name", "")),
        "its dataset version unknown": changed(lambda r: setattr(r.spec, "dataset_version_id", "dv-gone")),
        "its base model unknown": changed(lambda r: setattr(r.spec, "base_model_id", "no-such-model")),
        "refused by policy now (a pool nobody has)": changed(lambda r: setattr(r.spec, "gpu_pool", "nowhere")),
        "its adapter's targets now invalid": changed(lambda r: r.spec.lora_config.target_modules.append("nope")),
    }
    for what, retry in retries.items():
        answered, at = app.create(ACME, retry)
        assert answered.job_id == original.job_id, f"a retry {what} made or answered another job"
        assert (answered.state, answered.name) == (original.state, original.name), what
        assert positions.unseal(engine, "acme", at) == positions.unseal(engine, "acme", position), what
    # a failure of admission that is no caller's mistake (the stored model's config broken since) is no
    # reason to refuse a retry either: the job exists
    config = tmp_path / "models" / "tiny-llama" / "config.json"
    good = config.read_text()
    config.write_text("{}")
    try:
        assert app.create(ACME, retries["the same request"])[0].job_id == original.job_id
        with pytest.raises(ValueError, match="config.json"):  # a first try meets it as before
            app.create(ACME, _request(version, "other", "req-9"))
    finally:
        config.write_text(good)
    assert _written(engine) == before, "a retry wrote something"
    # nor tried to: a retry answers from admission's read, before any write (which would join a batch on
    # SQLite, checked by the first assertion, or burn a sequence value on PostgreSQL, by the second: each of
    # the two can only fail on its own store)
    assert app.new_jobs.batches == batches, "a retry went to a batch"
    top = _max_seq(engine)
    fresh, _ = app.create(ACME, _request(version, "fresh", "req-3"))
    with engine.connect() as conn:
        first = conn.execute(text("SELECT min(seq) FROM stored_events WHERE stream_id = :j"),
                             {"j": fresh.job_id}).scalar_one()
    assert first == top + 1, "the retries' failed writes burnt event-store positions"
    before = _written(engine)

    # the same broken requests without a request id (or with a fresh one) are refused as ever
    with pytest.raises(InvalidArgument):
        app.create(ACME, changed(lambda r: (setattr(r.spec, "name", ""), setattr(r, "request_id", "req-2"))))
    with pytest.raises(NotFound):
        app.create(ACME, changed(lambda r: (setattr(r.spec, "dataset_version_id", "dv-gone"),
                                            setattr(r, "request_id", ""))))
    with pytest.raises(InvalidArgument) as bad_target:  # named for the caller, not an internal error
        app.create(ACME, changed(lambda r: (r.spec.lora_config.target_modules.append("nope"),
                                            setattr(r, "request_id", "req-4"))))
    assert "nope" in str(bad_target.value)
    assert [f.field for f in bad_target.value.details.fields] == ["spec.lora_config.target_modules"]
    assert _written(engine) == before


def test_another_tenants_request_id_never_answers_its_job(store: tuple[Engine, str], tmp_path: Path) -> None:
    """An attacker who learns (or guesses) acme's request id and sends it as beta gets beta's own new job,
    never acme's, in every path the check can take: admissible, and refused before admission reads."""
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    acme_version = register_version(engine, storage, tenant="acme")
    beta_version = register_version(engine, storage, tenant="beta")
    theirs, _ = app.create(ACME, _request(acme_version, "acme-job", "shared-id"))

    with pytest.raises(InvalidArgument):  # not admissible: no retry of beta's to answer, so refused
        app.create(BETA, _request(beta_version, "", "shared-id"))
    with pytest.raises(NotFound):  # acme's dataset version is not beta's to read, even with acme's request id
        app.create(BETA, _request(acme_version, "beta-job", "shared-id"))
    mine, _ = app.create(BETA, _request(beta_version, "beta-job", "shared-id"))
    assert mine.job_id != theirs.job_id and mine.tenant_id == "beta" and mine.name == "beta-job"
    assert app.create(BETA, _request(beta_version, "again", "shared-id"))[0].job_id == mine.job_id
    assert app.create(ACME, _request(acme_version, "again", "shared-id"))[0].job_id == theirs.job_id


def test_a_request_id_of_another_kind_is_not_a_training_jobs(store: tuple[Engine, str], tmp_path: Path) -> None:
    """Datasets, curation jobs and deployments claim their request ids in the same table under their own
    kind: a training create with such an id is a new job, never that aggregate (nor an error)."""
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    version = register_version(engine, storage, tenant="acme")
    with engine.begin() as conn:
        for kind, aggregate in (("curation-request", "cj-0001"), ("dataset-request", "ds-0001")):
            conn.execute(text("INSERT INTO unique_names (tenant_id, kind, name, aggregate_id) "
                              "VALUES ('acme', :k, 'shared-name', :a)"), {"k": kind, "a": aggregate})
    made, _ = app.create(ACME, _request(version, "mine", "shared-name"))
    assert made.job_id.startswith("tj-") and made.name == "mine"
    assert app.create(ACME, _request(version, "again", "shared-name"))[0].job_id == made.job_id


def test_admission_reads_the_request_ids_job_with_the_version_in_the_callers_tenant_only(
        store: tuple[Engine, str], tmp_path: Path) -> None:
    """``admit(request_id=...)`` answers the job the id made in the caller's tenant, and nothing for a fresh
    id, another tenant's id, or no id (the estimate's call)."""
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    acme_version = register_version(engine, storage, tenant="acme")
    beta_version = register_version(engine, storage, tenant="beta")
    made, _ = app.create(ACME, _request(acme_version, "made", "req-7"))
    spec = job_request(acme_version).spec

    def created_by(tenant: str, version: str, request_id: str) -> str:
        asked = pb.TrainingJobSpec()
        asked.CopyFrom(spec)
        asked.dataset_version_id = version
        return admission.admit(engine, app.settings, tenant, "tj-probe", asked, 0, request_id=request_id).created_by

    assert created_by("acme", acme_version, "req-7") == made.job_id
    assert created_by("acme", acme_version, "req-8") == ""
    assert created_by("acme", acme_version, "") == ""
    assert created_by("beta", beta_version, "req-7") == ""
