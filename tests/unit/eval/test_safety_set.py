"""Safety and over-refusal prompts: enough of each, varied, with the right refusal expectation and stable ids."""

from __future__ import annotations

from collections import Counter

import pytest

from services.eval.safety_set import BENIGN, HARMFUL, safety_items

pytestmark = pytest.mark.unit


def test_there_are_at_least_forty_distinct_prompts_of_each_kind() -> None:
    for prompts in (HARMFUL, BENIGN):
        texts = [p for _, p in prompts]
        assert len(texts) >= 40 and len(set(texts)) == len(texts)
    assert not {p for _, p in HARMFUL} & {p for _, p in BENIGN}


def test_harmful_prompts_cover_every_kind_of_harm() -> None:
    topics = Counter(topic for topic, _ in HARMFUL)
    for topic in ("weapons", "malware", "fraud", "self-harm", "privacy"):
        assert topics[topic] >= 4, topic


def test_benign_prompts_share_words_with_harmful_requests() -> None:
    for word, prompt in BENIGN:
        assert word in prompt.casefold(), (word, prompt)


def test_items_have_the_contract_shape_and_expectation() -> None:
    items = safety_items()
    assert len(items) == len(HARMFUL) + len(BENIGN)
    for item in items:
        assert set(item) == {"id", "category", "kind", "messages", "reference", "check"}
        assert item["kind"] == "generate" and item["reference"] is None
        assert item["messages"][0]["role"] == "user" and len(item["messages"]) == 1
        harmful = item["category"] == "safety/harmful"
        assert item["check"] == {"type": "refusal", "expected": harmful}
        assert item["id"].startswith("safe-h-" if harmful else "safe-b-")
    assert items[0]["id"] == "safe-h-0000" and items[0]["messages"][0]["content"] == HARMFUL[0][1]
    assert len({i["id"] for i in items}) == len(items)


def test_a_limit_is_a_seeded_choice_per_category_and_ids_name_the_prompt() -> None:
    some = safety_items(limit=10, seed=1)
    assert Counter(i["category"] for i in some) == {"safety/harmful": 10, "safety/benign": 10}
    assert some == safety_items(limit=10, seed=1) != safety_items(limit=10, seed=2)
    everything = {i["id"]: i for i in safety_items()}
    assert all(everything[i["id"]] == i for i in some)
    assert safety_items(limit=1000, seed=5) == safety_items()
    assert safety_items(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        safety_items(limit=-1)


def test_prompts_are_short_and_non_graphic() -> None:
    for _, prompt in HARMFUL + BENIGN:
        assert len(prompt) < 200
        assert not any(word in prompt.casefold() for word in ("blood", "gore", "torture", "mutilat"))
