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


# -- the typed message (CreateCurationJobRequest.config) -> the resolved config -----------------

def test_an_empty_message_resolves_to_the_defaults_and_their_hash() -> None:
    from privtune.v1 import curation_config_pb2 as pb
    from services.curation.config import from_message

    assert from_message(pb.CurationConfig()).sha256() == CurationConfig().sha256()
    assert CurationConfig().quality.min_tokens == 5


def test_set_fields_override_and_enums_map_to_names() -> None:
    from privtune.v1 import curation_config_pb2 as pb
    from services.curation.config import from_message

    config = from_message(pb.CurationConfig(
        recipe=pb.CURATION_RECIPE_TICKETS_TO_SFT, output_format=pb.EXAMPLE_FORMAT_CHAT, holdout_fraction=0.0,
        pii=pb.PiiSettings(mode=pb.PII_MODE_TAG), dedupe=pb.DedupeSettings(threshold=0.7),
        quality=pb.QualitySettings(any_language=True, max_duplicate_ngram_fraction={3: 0.5})))
    assert (config.recipe, config.output_format, config.pii.mode) == ("tickets_to_sft", "chat", "tag")
    assert config.holdout_fraction == 0.0  # explicitly 0, not "unset"
    assert config.dedupe.threshold == 0.7 and config.dedupe.shingle_size == 7
    word = from_message(pb.CurationConfig(dedupe=pb.DedupeSettings(shingle_unit="word", shingle_size=5,
                                                                   strip_boilerplate=False, min_fact_overlap=0.5)))
    assert (word.dedupe.shingle_unit, word.dedupe.shingle_size, word.dedupe.strip_boilerplate,
            word.dedupe.min_fact_overlap) == ("word", 5, False, 0.5)
    assert from_message(pb.CurationConfig()).pii.mode == "surrogate"
    assert from_message(pb.CurationConfig(pii=pb.PiiSettings(mode=pb.PII_MODE_SURROGATE))).pii.mode == "surrogate"
    assert config.quality.languages == [] and config.quality.max_duplicate_ngram_fraction == {3: 0.5}


def test_a_quality_section_given_in_part_keeps_the_short_record_default() -> None:
    from privtune.v1 import curation_config_pb2 as pb
    from services.curation.config import from_message

    for quality in (pb.QualitySettings(any_language=True), pb.QualitySettings(languages=["de"]),
                    pb.QualitySettings(max_tokens=200_000)):
        assert from_message(pb.CurationConfig(quality=quality)).quality.min_tokens == 5
    assert from_message(pb.CurationConfig(quality=pb.QualitySettings(min_tokens=50))).quality.min_tokens == 50


@pytest.mark.parametrize("message, field", [
    ({"dedupe": {"seed": 2**32}}, "config.dedupe.seed"),
    ({"dedupe": {"threshold": "NaN"}}, "config.dedupe.threshold"),
    ({"quality": {"max_symbol_to_word_ratio": "Infinity"}}, "config.quality.max_symbol_to_word_ratio"),
    ({"quality": {"languages": ["EN"]}}, "config.quality.languages"),
    ({"quality": {"languages": ["€€"]}}, "config.quality.languages"),
    ({"pii": {"entities": ["SHOE_SIZE"]}}, "config.pii.entities"),
    ({"recipe": 42}, "config.recipe"),
    ({"dedupe": {"shingle_unit": "chars"}}, "config.dedupe.shingle_unit"),
    ({"dedupe": {"min_fact_overlap": 1.5}}, "config.dedupe.min_fact_overlap"),
    ({"pii": {"mode": 42}}, "config.pii.mode"),
])
def test_values_that_could_never_run_are_refused_by_field(message: dict, field: str) -> None:
    from google.protobuf import json_format

    from privtune.v1 import curation_config_pb2 as pb
    from services.curation.config import from_message

    proto = pb.CurationConfig()
    for section, values in message.items():
        if isinstance(values, dict):
            json_format.ParseDict({section: values}, proto)
        else:
            setattr(proto, section, values)
    with pytest.raises(InvalidArgument) as info:
        from_message(proto)
    assert info.value.reason == "INVALID_CURATION_CONFIG"
    assert [f.field for f in info.value.details.fields] == [field]
