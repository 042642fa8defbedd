"""Hostile gRPC requests against every service the platform serves.

Hypothesis builds requests for every method of each service from its protobuf
descriptor — huge strings, NUL bytes, 100,000-deep JSON, ids of another tenant's
objects, URIs outside the tenant, extreme numbers — and sometimes sends bytes that are
not the method's request at all (raw channel, identity serializers). Every call must:

* answer with a 4xx-class status (or OK where the input happens to be valid), never
  INTERNAL, UNKNOWN or a timeout, within the client deadline;
* say what was wrong in a short message that never holds the server's storage root, with
  machine-readable details (a google.rpc.Status holding an ErrorInfo of domain privtune.dev);
* change no state when rejected (``stored_events`` keeps its row count, and with it the
  outbox, written in the same transactions; an AccessDenied audit record for a denied call
  is the one allowed write).
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Iterator

import grpc
import pytest
from google.protobuf import descriptor as pbd
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from privtune.platform import Platform
from privtune.v1 import curation_config_pb2 as ccpb
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cpb_grpc
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import (curation_work_service_pb2, events_pb2, registry_service_pb2, training_attempt_service_pb2,
                         training_service_pb2)
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.store.schema import stored_events
from tests.orchestrator_fixtures import register_version
from tests.platform_fixtures import channel, dataset_stub, metadata, put_files, start_platform, wait_until
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PRIVTUNE_HOSTILE_EXAMPLES", "30"))  # per service; raise it to hunt longer
DEADLINE_S = 15.0             # client deadline of every call; DEADLINE_EXCEEDED fails the test
MAX_DETAILS = 1024            # no status message may be longer
GRPC_MAX_MESSAGE = 4 << 20    # gRPC's own receive limit: above it RESOURCE_EXHAUSTED is right
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
           grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OUT_OF_RANGE}
# acme may train on no pool: every training job it creates is rejected at once, so nothing runs
# in the background while the store's row counts are compared
ACME_POLICY = 'version: "hostile-1"\npools: {allowed: []}\n'
SERVICES = {
    "DatasetService": dpb.DESCRIPTOR.services_by_name["DatasetService"],
    "CurationService": cpb.DESCRIPTOR.services_by_name["CurationService"],
    "TrainingService": training_service_pb2.DESCRIPTOR.services_by_name["TrainingService"],
    "ModelRegistryService": registry_service_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"],
    "ExperimentService": registry_service_pb2.DESCRIPTOR.services_by_name["ExperimentService"],
    "TrainingAttemptService": training_attempt_service_pb2.DESCRIPTOR.services_by_name["TrainingAttemptService"],
    "CurationWorkService": curation_work_service_pb2.DESCRIPTOR.services_by_name["CurationWorkService"],
    "Health": health_pb2.DESCRIPTOR.services_by_name["Health"],
}


class Target:
    """The running platform, another tenant's objects and a raw channel to call it with."""

    def __init__(self, platform: Platform, ids: dict[str, str], own: dict[str, str]) -> None:
        self.platform = platform
        self.ids = ids  # globex's objects
        self.own = own  # acme's: only what cannot start background work when used
        self.channel = channel(platform, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_metadata_size", 16 << 20)])
        self.storage_root = str(platform.config.storage_path)

    def counts(self) -> int:
        """Rows in stored_events, AccessDenied audit records left out. (Each outbox row is written with its
        stored event in one transaction, and the relay deletes it once published, so the event count is the
        one that tells whether a request wrote anything.)"""
        assert self.platform.engine is not None
        with self.platform.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(stored_events)
                                    .where(stored_events.c.stream_type != "access")).scalar_one())


def _fabricate_rejected_training_job(platform: Platform, tenant: str) -> str:
    """A training job of ``tenant`` that policy refused (final: nothing runs in the background)."""
    job_id = f"tj-{uuid.uuid4().hex[:24]}"
    events = [events_pb2.TrainingRequested(job_id=job_id, name="payroll-bot", base_model_id="tiny-llama",
                                           dataset_version_id="dv-none"),
              events_pb2.TrainingRejected(job_id=job_id, rule="test", reason="made by the test")]
    causation = Causation(actor="bob", correlation_id=uuid.uuid4().hex)
    assert platform.engine is not None
    with platform.engine.begin() as conn:
        eventstore.append(conn, "training_job", [new_envelope(e, subject=job_id, tenant_id=tenant,
                                                              source="privtune/orchestrator", causation=causation)
                                                 for e in events], expected_version=0)
    return job_id


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("hostile")
    make_models(data / "models")  # so training requests get as far as sizing and policy
    (data / "policies").mkdir()
    (data / "policies" / "acme.yaml").write_text(ACME_POLICY)
    platform = start_platform(data, services=("ingest", "curation", "curation-worker", "orchestrator"))
    try:
        stub = dataset_stub(platform)
        uri = put_files(platform, "globex", "payroll", {"rows.jsonl": b'{"prompt": "p", "completion": "c"}\n'})
        put_files(platform, "acme", "docs", {"a.txt": b"alpha"})
        dataset = stub.CreateDataset(dpb.CreateDatasetRequest(name="payroll", storage_uri=uri, classification=2),
                                     metadata=metadata("globex", "bob"), timeout=30).dataset
        curation = cpb_grpc.CurationServiceStub(channel(platform))
        job = curation.CreateCurationJob(cpb.CreateCurationJobRequest(dataset_id=dataset.dataset_id),
                                         metadata=metadata("globex", "bob"), timeout=30).job
        wait_until(lambda: curation.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id),
                                                   metadata=metadata("globex", "bob"), timeout=10).job.state
                   in (cpb.CURATION_JOB_STATE_SUCCEEDED, cpb.CURATION_JOB_STATE_FAILED),
                   timeout=120, what="globex's curation job to finish")
        finished = curation.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id),
                                           metadata=metadata("globex", "bob"), timeout=10).job
        ids = {"dataset": dataset.dataset_id, "curation_job": job.job_id,
               "dataset_version": finished.dataset_version_id or "dv-none",
               "training_job": _fabricate_rejected_training_job(platform, "globex")}
        own = {"dataset_version": register_version(platform.engine, platform.config.storage_uri, "acme", n=16,
                                                   holdout=4)}
        t = Target(platform, ids, own)
        _wait_quiet(t)
        yield t
    finally:
        platform.stop()


def _wait_quiet(t: Target) -> None:
    """Until the background (consumers, curation worker, relay) has nothing left to write."""
    last = t.counts()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = t.counts()
        if now == last:
            return
        last = now
    raise AssertionError("the platform kept writing events; the row-count checks need a quiet store")


# -- strategies --------------------------------------------------------------------------------

def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


def hostile_text(t: Target, field: pbd.FieldDescriptor | None) -> st.SearchStrategy[str]:
    root = t.storage_root
    other_ids = list(t.ids.values())
    huge = st.builds(_repeat, st.sampled_from(["a", "a/", "é", "\0", "x\0y", "%00", "../"]),
                     st.sampled_from([300, 5_000, 70_000, 1 << 20]))
    deep = st.builds(lambda n, brackets: brackets[0] * n + brackets[1] * n,
                     st.sampled_from([40, 1_000, 100_000]), st.sampled_from(["[]", "{}"]))
    deep_object = st.builds(lambda n: '{"a":' * n + "1" + "}" * n, st.sampled_from([40, 1_000, 100_000]))
    uris = st.sampled_from([
        f"file://{root}/acme/docs", f"file://{root}/acme/docs\0", f"file://{root}/acme/do\0cs/a.txt",
        f"file://{root}/globex/payroll", f"file://{root}/acme/../globex/payroll", "file:///etc",
        "file:///etc/passwd\0", f"file://{root}/acme/" + "a/" * 300_000, "s3://bucket/acme/docs", "ftp://x/y",
        "file://" + "\0" * 100, f"file://{root}/acme/docs/" + "%00", "",
    ])
    small = st.text(max_size=40)
    options = [small, st.sampled_from(other_ids + ["", "ds-x", "cj-x", "tj-x", "dv-x", "m/v1", "m@prod"]), huge,
               deep, deep_object, st.text(alphabet="\0a/.[{\"", max_size=30)]
    name = field.name if field is not None else ""
    if name.endswith("uri"):
        options += [uris, uris]
    if name.endswith("_id"):
        options.append(st.sampled_from(other_ids))
    if name in PLAUSIBLE:
        options += [PLAUSIBLE[name](t)] * 3  # mostly sensible, so calls get past the first check
    return st.one_of(*options)


PLAUSIBLE = {
    "name": lambda t: st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    "model_name": lambda t: st.sampled_from(["payroll-bot", "m", "tiny-job"]),
    "base_model_id": lambda t: st.sampled_from(["tiny-llama", "tiny-llama@x", "../tiny-llama", "nope"]),
    "dataset_version_id": lambda t: st.sampled_from([t.own["dataset_version"], t.ids["dataset_version"]]),
    "gpu_pool": lambda t: st.sampled_from(["", "local", "nowhere"]),
    "month": lambda t: st.sampled_from(["2026-11", "0000-00", "9999-12", "2026-1x", ""]),
    "languages": lambda t: st.sampled_from(["en", "de", "", "xx", "e" * 17]),
    "entities": lambda t: st.sampled_from(["PERSON", "EMAIL_ADDRESS", "SHOE_SIZE", ""]),
    "page_token": lambda t: st.sampled_from(["", "v1.W10.AAAAAAAAAAAAAAAAAAAAAA", "ds-x", "v1..", "v2.a.b"]),
    "storage_uri": lambda t: st.sampled_from(["file:///etc", f"file://{t.storage_root}/globex/payroll",
                                              f"file://{t.storage_root}/acme/x", f"file://{t.storage_root}/acme/docs"]),
    "checksum_sha256": lambda t: st.sampled_from(["", "0" * 64, "a" * 63]),
    "alias": lambda t: st.sampled_from(["prod", "Prod", "-", "a" * 70]),
    "request_id": lambda t: st.sampled_from(["r-1", "r-2"]),
}


_INTS = {
    pbd.FieldDescriptor.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    pbd.FieldDescriptor.TYPE_SINT32: (-(1 << 31), (1 << 31) - 1),
    pbd.FieldDescriptor.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    pbd.FieldDescriptor.TYPE_SINT64: (-(1 << 63), (1 << 63) - 1),
    pbd.FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1),
    pbd.FieldDescriptor.TYPE_FIXED32: (0, (1 << 32) - 1),
    pbd.FieldDescriptor.TYPE_UINT64: (0, (1 << 64) - 1),
    pbd.FieldDescriptor.TYPE_FIXED64: (0, (1 << 64) - 1),
}


def _scalar(t: Target, field: pbd.FieldDescriptor, depth: int, hostile: bool = True) -> st.SearchStrategy[Any]:
    """A value for one (non-repeated) field: anything its type allows, or only sensible values."""
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        if not hostile:
            return st.integers(max(low, 0), 64)
        return st.one_of(st.sampled_from([0, 1, low, high]), st.integers(low, high))
    if kind in (pbd.FieldDescriptor.TYPE_DOUBLE, pbd.FieldDescriptor.TYPE_FLOAT):
        if not hostile:
            return st.floats(0, 1)
        return st.floats(allow_nan=True, allow_infinity=True,
                         width=32 if kind == pbd.FieldDescriptor.TYPE_FLOAT else 64)
    if kind == pbd.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == pbd.FieldDescriptor.TYPE_ENUM:
        if not hostile:
            return st.sampled_from([v.number for v in field.enum_type.values if v.number])
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]),
                         st.integers(-(1 << 31), (1 << 31) - 1))
    if kind == pbd.FieldDescriptor.TYPE_STRING:
        if not hostile:
            if field.name in PLAUSIBLE:
                return PLAUSIBLE[field.name](t)
            if field.name.endswith(("_id", "_ids")):
                return st.sampled_from([*t.ids.values(), "ds-x", "tj-x", "m/v1"])
            return st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
        return hostile_text(t, field)
    if kind == pbd.FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == pbd.FieldDescriptor.TYPE_MESSAGE:
        return message_of(t, field.message_type, depth + 1, hostile)
    raise AssertionError(f"no strategy for {field.full_name}")


def _is_map(field: pbd.FieldDescriptor) -> bool:
    return field.type == pbd.FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def field_value(t: Target, field: pbd.FieldDescriptor, depth: int, hostile: bool) -> st.SearchStrategy[Any]:
    """A value for ``field`` as the message constructor takes it (a dict for a map, a list if repeated)."""
    if _is_map(field):
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        keys, values = _scalar(t, key_field, depth, hostile), _scalar(t, value_field, depth, hostile)
        return st.dictionaries(keys, values, max_size=3)
    if field.is_repeated:
        return st.lists(_scalar(t, field, depth, hostile), max_size=3)
    return _scalar(t, field, depth, hostile)


def _fields(descriptor: pbd.Descriptor) -> list[pbd.FieldDescriptor]:
    """The fields to fill: all but the second and later members of a oneof."""
    return [f for f in descriptor.fields
            if f.containing_oneof is None or f.name == f.containing_oneof.fields[0].name]


def message_of(t: Target, descriptor: pbd.Descriptor, depth: int = 0, hostile: bool = True) -> st.SearchStrategy[Any]:
    """A message of ``descriptor`` with any subset of its fields set (to hostile or to sensible values)."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    optional = {f.name: field_value(t, f, depth, hostile) for f in _fields(descriptor)}
    return st.fixed_dictionaries({}, optional=optional).map(lambda kwargs: cls(**kwargs))


@st.composite
def one_hostile_field(draw: st.DrawFn, t: Target, descriptor: pbd.Descriptor) -> Any:
    """A sensible message with one field made hostile: gets past the first check to the code behind it."""
    cls = message_factory.GetMessageClass(descriptor)
    fields = _fields(descriptor)
    kwargs = draw(st.fixed_dictionaries({f.name: field_value(t, f, 0, hostile=False) for f in fields}))
    if fields:
        target = draw(st.sampled_from(fields))
        kwargs[target.name] = draw(field_value(t, target, 0, hostile=True))
    return cls(**kwargs)


def garbage() -> st.SearchStrategy[bytes]:
    """Bytes that are not the method's request: random, invalid UTF-8, wrong wire types, deep nesting."""
    def nested(depth: int) -> bytes:
        body = b""
        for _ in range(depth):
            body = b"\x0a" + _varint(len(body)) + body
        return body
    return st.one_of(
        st.binary(min_size=1, max_size=512),
        st.sampled_from([b"\x0a\x02\xff\xfe", b"\x08\x01", b"\x0a\x05ab", b"\xff" * 16, b"\x0a" + b"\xff" * 10,
                         b"\x10" + b"\xff" * 11, nested(200), nested(2_000)]),
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def caller() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Mostly acme's token; also globex's, none, tokens whose subject or tenant is invalid, a token
    naming another tenant in a header, and bare identity headers without a token."""
    return st.one_of(st.just(metadata("acme", "mallory")), st.just(metadata("acme", "mallory")),
                     st.just(metadata("globex", "bob")), st.just([]),
                     st.just(metadata("acme", "x" * 5_000)), st.just(metadata("Not A Tenant!", "m")),
                     st.just(metadata("acme", "mallory") + [("x-privtune-tenant", "globex")]),
                     st.just([("x-privtune-tenant", "globex"), ("x-privtune-actor", "bob")]))


# -- the check -----------------------------------------------------------------------------------

def _has_error_info(exc: grpc.RpcError) -> bool:
    """Whether a failed call carries machine-readable details: a google.rpc.Status with an ErrorInfo."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    if status is None or status.code != exc.code().value[0]:  # type: ignore[attr-defined]
        return False
    info = error_details_pb2.ErrorInfo()
    return any(d.Unpack(info) and info.domain == "privtune.dev" and info.reason for d in status.details)


def call(t: Target, service: pbd.ServiceDescriptor, method: pbd.MethodDescriptor, payload: bytes,
         md: list[tuple[str, str]]) -> tuple[grpc.StatusCode, str, float]:
    path = f"/{service.full_name}/{method.name}"
    started = time.monotonic()
    try:
        if method.server_streaming:
            stream = t.channel.unary_stream(path)(payload, metadata=md, timeout=DEADLINE_S)
            try:
                next(stream)
            except StopIteration:
                pass
            finally:
                stream.cancel()
        else:
            t.channel.unary_unary(path)(payload, metadata=md, timeout=DEADLINE_S)
        return grpc.StatusCode.OK, "", time.monotonic() - started
    except grpc.RpcError as exc:
        ours = service.full_name.startswith("privtune.")  # grpc.health answers as the standard says
        if ours and exc.code() in ALLOWED and not _has_error_info(exc):  # type: ignore[attr-defined]
            return grpc.StatusCode.UNKNOWN, f"no ErrorInfo in the status details: {exc.details()}", 0.0  # type: ignore[attr-defined]
        return exc.code(), exc.details() or "", time.monotonic() - started  # type: ignore[attr-defined]


def check_hostile_call(t: Target, service_name: str, data: st.DataObject) -> None:
    service = SERVICES[service_name]
    name = data.draw(st.sampled_from([m.name for m in service.methods if not m.client_streaming]), label="method")
    method = service.methods_by_name[name]
    kind = data.draw(st.sampled_from(["garbage", "hostile", "one hostile field", "one hostile field"]), label="kind")
    if kind == "garbage":
        payload = data.draw(garbage(), label="garbage")
    elif kind == "hostile":
        payload = data.draw(message_of(t, method.input_type), label="request").SerializeToString()
    else:
        payload = data.draw(one_hostile_field(t, method.input_type), label="request").SerializeToString()
    md = data.draw(caller(), label="metadata")
    before = t.counts()
    code, details, elapsed = call(t, service, method, payload, md)
    where = f"{method.full_name} with {len(payload)} bytes: {code.name} after {elapsed:.1f}s: {details[:200]!r}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(payload) > GRPC_MAX_MESSAGE:
        return  # gRPC's own message-size limit, a real resource limit
    assert code in ALLOWED, where  # every call carries a DEADLINE_S deadline: DEADLINE_EXCEEDED fails here
    assert len(details) <= MAX_DETAILS, where
    if t.storage_root.encode() not in payload and t.storage_root not in str(md):
        assert t.storage_root not in details, where
    if code != grpc.StatusCode.OK:
        assert t.counts() == before, f"{where}: a rejected request changed stored_events"
    elif t.counts() != before:
        _wait_quiet(t)  # a valid create: let its read models catch up before the next comparison


HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.large_base_example, HealthCheck.filter_too_much])


def test_every_service_the_platform_serves_is_attacked(target: Target) -> None:
    assert target.platform.server is not None
    served = set(target.platform.server.service_names)
    assert served <= {s.full_name for s in SERVICES.values()}, "add the new service to SERVICES"


@pytest.mark.parametrize("service_name", list(SERVICES))
@HYPOTHESIS
@given(data=st.data())
def test_hostile_requests_get_a_client_error_in_bounded_time(target: Target, service_name: str,
                                                            data: st.DataObject) -> None:
    check_hostile_call(target, service_name, data)


# -- the cases found by hand, kept as plain examples ---------------------------------------------

def _details(t: Target, path: str, payload: bytes, md: list[tuple[str, str]] | None = None
             ) -> tuple[grpc.StatusCode, str, float]:
    service_name, method_name = path.strip("/").split("/")
    service = next(s for s in SERVICES.values() if s.full_name == service_name)
    return call(t, service, service.methods_by_name[method_name], payload, md or metadata("acme", "mallory"))


def test_the_reported_hostile_requests(target: Target) -> None:
    root = target.storage_root
    create = "/privtune.v1.DatasetService/CreateDataset"
    cases: list[tuple[str, bytes, grpc.StatusCode, str]] = [
        (create, dpb.CreateDatasetRequest(name="x", classification=1,
                                          storage_uri=f"file://{root}/acme/" + "a/" * (1 << 19)).SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "bytes"),
        (create, dpb.CreateDatasetRequest(name="x", classification=1,
                                          storage_uri=f"file://{root}/acme/" + "a/" * 20_000).SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "storage_uri"),
        (create, dpb.CreateDatasetRequest(name="x", classification=1, storage_uri=f"file://{root}/acme/docs\0"
                                          ).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
        (create, dpb.CreateDatasetRequest(name="x", classification=1, storage_uri=f"file://{root}/acme/docs",
                                          request_id="r" * 300).SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
        (create, dpb.CreateDatasetRequest(name="n" * (1 << 20), classification=1,
                                          storage_uri=f"file://{root}/acme/docs").SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "bytes"),
        (create, dpb.CreateDatasetRequest(name="n" * 5_000, classification=1,
                                          storage_uri=f"file://{root}/acme/docs").SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (create, dpb.CreateDatasetRequest(name="etc", classification=1, storage_uri="file:///etc").SerializeToString(),
         grpc.StatusCode.PERMISSION_DENIED, "outside the tenant's storage"),
        (create, b"\xff" * 32, grpc.StatusCode.INVALID_ARGUMENT, "CreateDatasetRequest"),
        *[("/privtune.v1.CurationService/CreateCurationJob",
           cpb.CreateCurationJobRequest(dataset_id=target.ids["dataset"], config=ccpb.CurationConfig(
               quality=ccpb.QualitySettings(languages=["e" * size]))).SerializeToString(),
           grpc.StatusCode.INVALID_ARGUMENT, needle) for size, needle in ((1 << 20, "bytes"), (5_000, "characters"))],
        ("/privtune.v1.CurationService/CreateCurationJob",
         cpb.CreateCurationJobRequest(dataset_id=target.ids["dataset"], config=ccpb.CurationConfig(
             dedupe=ccpb.DedupeSettings(threshold=float("nan")))).SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "config.dedupe.threshold"),
        *[("/privtune.v1.TrainingService/CreateTrainingJob",
           training_service_pb2.CreateTrainingJobRequest(spec=training_service_pb2.TrainingJobSpec(
               name="x", base_model_id="tiny-llama", dataset_version_id=target.own["dataset_version"],
               lora_config=events_pb2.LoraConfig(target_modules=["q" * size]))).SerializeToString(),
           grpc.StatusCode.INVALID_ARGUMENT, needle) for size, needle in ((1 << 20, "bytes"), (5_000, "characters"))],
        ("/privtune.v1.TrainingService/CreateTrainingJob",
         training_service_pb2.CreateTrainingJobRequest(spec=training_service_pb2.TrainingJobSpec(
             name="x", base_model_id="tiny-llama", dataset_version_id=target.own["dataset_version"],
             options=training_service_pb2.TrainingOptions(checkpoint_every=0, divergence_factor=float("inf"))
         )).SerializeToString(), grpc.StatusCode.INVALID_ARGUMENT, "spec.options.checkpoint_every"),
        ("/privtune.v1.DatasetService/ListDatasets", dpb.ListDatasetsRequest(page_token="v1.W10.AAAA").SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        ("/privtune.v1.DatasetService/GetDataset", dpb.GetDatasetRequest(dataset_id="ds-\0").SerializeToString(),
         grpc.StatusCode.INVALID_ARGUMENT, "NUL"),
    ]
    before = target.counts()
    for path, payload, code, needle in cases:
        got, details, elapsed = _details(target, path, payload)
        where = f"{path}: {got.name} after {elapsed:.1f}s: {details[:300]!r}"
        assert got == code and needle in details, where  # bounded time: the call's deadline
        assert len(details) <= MAX_DETAILS, where
        if root.encode() not in payload:
            assert root not in details, where
    assert target.counts() == before
