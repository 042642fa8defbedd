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
