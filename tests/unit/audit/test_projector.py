"""What an event becomes in the audit log: kinds, resources, outcomes, and never its text."""

from __future__ import annotations

import pytest

from privtune.v1 import events_pb2
from services.audit import projector
from services.common.envelope import Causation, new_envelope
from services.common.topics import payload_fields

pytestmark = pytest.mark.unit
CANARY = "CANARY-7f3a9c-do-not-leak"


def _env(payload, tenant: str = "acme", actor: str = "alice") -> events_pb2.EventEnvelope:
    return new_envelope(payload, subject="s-1", tenant_id=tenant, source="privtune/test",
                        causation=Causation(actor=actor, correlation_id="corr-1"))


def test_every_routed_event_type_maps_to_a_record() -> None:
    for name in payload_fields():
        field = events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name[name]
        message_class = getattr(events_pb2, field.message_type.name)
        (entry, *_) = projector.entries(_env(message_class()))
        assert entry.kind.count(".") >= 1 and entry.record_id and entry.tenant_id == "acme", name


def test_text_fields_never_reach_a_record() -> None:
    """URIs, reasons, configs, labels, names and metrics are left out; ids, hashes and counts kept."""
    events = [
        events_pb2.DatasetRegistered(dataset_id="ds-1", name=CANARY, storage_uri=f"file:///t/acme/{CANARY}.pdf",
                                     checksum_sha256="ab" * 32, file_count=3, labels={"owner": CANARY}),
        events_pb2.CurationRequested(job_id="cj-1", dataset_id="ds-1", config_json=f'{{"x": "{CANARY}"}}',
                                     dataset_storage_uri=CANARY, dataset_labels={"k": CANARY}),
        events_pb2.CurationFailed(job_id="cj-1", dataset_id="ds-1", error_code="E", reason=CANARY),
        events_pb2.CheckpointSaved(job_id="j", checkpoint_id="c", uri=CANARY, sha256="cd" * 32, metrics={"l": 1.0}),
        events_pb2.ModelAliasMoved(model_name="m", alias="prod", model_version_id="m/v1", reason=CANARY),
        events_pb2.AccessDenied(principal="eve", method="/x.Y/Z", reason=CANARY, rule="authorization"),
    ]
    for event in events:
        for entry in projector.entries(_env(event)):
            flat = repr(entry)
            assert CANARY not in flat, (type(event).__name__, flat)
    (registered,) = projector.entries(_env(events[0]))
    assert registered.attributes["checksum_sha256"] == "ab" * 32 and registered.attributes["file_count"] == "3"
    assert registered.resource == "dataset/ds-1" and registered.kind == "dataset.registered"


def test_access_events_carry_who_what_and_how_it_ended() -> None:
    (allowed,) = projector.entries(_env(events_pb2.AccessAllowed(
        principal="alice", method="/privtune.v1.TrainingService/GetTrainingJob", resource="job_id=j-1",
        via="token", roles=["viewer", "auditor"], outcome="NOT_FOUND", duration_ms=3)))
    assert (allowed.kind, allowed.outcome, allowed.resource) == ("rpc.allowed", "NOT_FOUND", "job_id=j-1")
    assert allowed.attributes["roles"] == "viewer,auditor" and allowed.actor == "alice"
    (denied,) = projector.entries(_env(events_pb2.AccessDenied(principal="eve", method="/privtune.v1.X/Y"),
                                       tenant="_unauthenticated", actor="eve"))
    assert (denied.kind, denied.outcome, denied.tenant_id) == ("rpc.denied", "denied", "platform")
    assert denied.resource == "rpc/privtune.v1.X/Y"


def test_a_training_start_and_a_curated_version_are_also_data_mounts() -> None:
    start, mount = projector.entries(_env(events_pb2.TrainingStarted(
        job_id="j-1", attempt=2, worker_id="w", dataset_manifest_sha256="ee" * 32, base_model_sha256="ff" * 32)))
    assert start.kind == "training.started" and mount.kind == "data.mounted"
    assert mount.record_id == f"{start.record_id}/mount" and mount.resource == f"dataset_manifest/{'ee' * 32}"
    assert mount.attributes["purpose"] == "training" and mount.attributes["attempt"] == "2"
    _, curated = projector.entries(_env(events_pb2.DatasetVersionCreated(
        dataset_version_id="dv", dataset_id="ds-1", job_id="cj", dataset_checksum_sha256="aa" * 32)))
    assert curated.resource == "dataset/ds-1" and curated.attributes["purpose"] == "curation"


def test_failed_outcomes_and_long_values_are_cut() -> None:
    (failed,) = projector.entries(_env(events_pb2.TrainingFailed(job_id="j" * 500)))
    assert failed.outcome == "failed" and len(failed.resource) <= 2 * projector.MAX_VALUE_CHARS
    assert len(failed.attributes["job_id"]) == projector.MAX_VALUE_CHARS


def test_a_platform_auditors_read_is_also_in_the_read_tenants_log() -> None:
    mine, theirs = projector.entries(_env(events_pb2.AccessAllowed(
        principal="pat", method="/privtune.v1.AuditService/SearchAuditRecords", resource="tenant_id=acme",
        outcome="OK"), tenant="platform", actor="pat"))
    assert mine.tenant_id == "platform" and theirs.tenant_id == "acme"
    assert theirs.actor == "platform:pat" and theirs.record_id == f"{mine.record_id}/subject"
    (own,) = projector.entries(_env(events_pb2.AccessAllowed(principal="a", method="/x.Y/Z", resource="tenant_id=acme")))
    assert own.tenant_id == "acme"  # its own log: one record
    denied = projector.entries(_env(events_pb2.AccessDenied(principal="g", method="/x.Y/Z", resource="tenant_id=acme"),
                                    tenant="globex"))
    assert [e.tenant_id for e in denied] == ["globex"]  # a refused attempt never writes into the other log
