from __future__ import annotations

import grpc
import pytest

from services.common import errors
from services.common.grpc_errors import STATUS_FOR, status_for

pytestmark = pytest.mark.unit


def test_every_error_class_maps_to_a_status() -> None:
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.PrivtuneError) and c is not errors.PrivtuneError
               and c not in (errors.MalformedEvent, errors.CommitFailed)]  # bus-internal, never sent to callers
    assert set(classes) == set(STATUS_FOR)
    assert status_for(errors.NotFound("x")) is grpc.StatusCode.NOT_FOUND
    assert status_for(errors.PrivtuneError("x")) is grpc.StatusCode.INTERNAL


def _decoded(status: grpc.Status) -> tuple[object, dict[str, str], list[str]]:
    from google.rpc import error_details_pb2, status_pb2

    [details] = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    decoded = status_pb2.Status.FromString(details)
    info, fields = error_details_pb2.ErrorInfo(), []
    decoded.details[0].Unpack(info)
    for any_ in decoded.details[1:]:
        bad = error_details_pb2.BadRequest()
        if any_.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return decoded, dict(info.metadata), fields


def test_details_carry_the_reason_fields_and_resource() -> None:
    from services.common.grpc_errors import rich_status

    exc = errors.NotFound("dataset 'x' not found", reason="DATASET_NOT_FOUND",
                          resource=errors.Resource("privtune.v1.Dataset", "x"), field="dataset_id")
    status = rich_status(grpc.StatusCode.NOT_FOUND, str(exc), exc)
    decoded, metadata, fields = _decoded(status)
    assert decoded.code == grpc.StatusCode.NOT_FOUND.value[0] and decoded.message == str(exc)  # type: ignore[attr-defined]
    assert fields == ["dataset_id"] and metadata == {}


def test_details_and_message_stay_small_whatever_the_input() -> None:
    """Clients cap trailing metadata (8 KiB by default): a long multi-byte message and hundreds of
    violations are cut to a byte budget, and the details say how many violations were left out."""
    from services.common.grpc_errors import MAX_DETAILS_BYTES, MAX_MESSAGE_BYTES, rich_status

    violations = [errors.FieldViolation(f"config.quality.max_duplicate_ngram_fraction[{i}]", "€" * 300)
                  for i in range(300)]
    exc = errors.InvalidArgument("€" * 5000, reason="INVALID_CURATION_CONFIG", fields=violations)
    status = rich_status(grpc.StatusCode.INVALID_ARGUMENT, str(exc), exc)
    decoded, metadata, fields = _decoded(status)
    assert len(status.details.encode()) <= MAX_MESSAGE_BYTES  # type: ignore[attr-defined]
    assert decoded.ByteSize() <= MAX_DETAILS_BYTES + MAX_MESSAGE_BYTES  # type: ignore[attr-defined]
    assert 0 < len(fields) < 300 and int(metadata["omitted_field_violations"]) == 300 - len(fields)
    assert fields == [v.field for v in violations[:len(fields)]]  # the first ones, in order
