"""The curation config rules that depend on the dataset: PII redaction may be skipped for public data only."""

from __future__ import annotations

import pytest

from privtune.v1 import events_pb2
from services.common.errors import InvalidArgument
from services.curation.config import CurationConfig, check_pii_redaction

pytestmark = pytest.mark.unit
NOT_PUBLIC = [events_pb2.DATA_CLASSIFICATION_UNSPECIFIED, events_pb2.DATA_CLASSIFICATION_INTERNAL,
              events_pb2.DATA_CLASSIFICATION_CONFIDENTIAL, events_pb2.DATA_CLASSIFICATION_RESTRICTED, 99]


@pytest.mark.parametrize("classification", [events_pb2.DATA_CLASSIFICATION_PUBLIC, *NOT_PUBLIC])
def test_redaction_on_is_always_accepted(classification: int) -> None:
    check_pii_redaction(CurationConfig(), classification)


def test_redaction_off_is_accepted_for_public_data() -> None:
    check_pii_redaction(CurationConfig(redact_pii=False), events_pb2.DATA_CLASSIFICATION_PUBLIC)


@pytest.mark.parametrize("classification", NOT_PUBLIC)
def test_redaction_off_is_refused_for_data_not_classified_public(classification: int) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_pii_redaction(CurationConfig(redact_pii=False), classification)
    message = str(info.value)
    assert "redact_pii=false" in message and "DATA_CLASSIFICATION_PUBLIC" in message
    name = (events_pb2.DataClassification.Name(classification) if classification in events_pb2.DataClassification.values()
            else f"classification {classification}")
    assert f"classified {name}" in message  # names the dataset's classification
    assert "keep PII redaction on" in message  # and what to do
