"""Pairwise judging: the order swap cancels position bias, the judge prompt, judge specs."""

from __future__ import annotations

import itertools

import pytest

from services.eval.judging import (JUDGE_TEMPLATE_VERSION, RUBRIC, combine, judge_messages, metric_verdict,
                                   parse_judge_spec)

pytestmark = pytest.mark.unit

REFERENCE = "Refunds are issued within five business days of the return being received."
GOOD = "Refunds are issued within five business days after we receive the return."
BAD = "We do not offer refunds."


def test_only_a_preference_that_survives_the_swap_is_a_win_or_a_loss() -> None:
    assert combine("A", "B") == 1.0     # candidate preferred in both orders
    assert combine("B", "A") == 0.0     # base preferred in both orders
    for first, second in itertools.product(("A", "B", "tie"), repeat=2):
        if (first, second) not in (("A", "B"), ("B", "A")):
            assert combine(first, second) == 0.5


def test_a_judge_that_always_prefers_one_position_gives_only_ties() -> None:
    always_first = lambda a, b: "A"  # noqa: E731  (a position-biased judge)
    always_second = lambda a, b: "B"  # noqa: E731
    for judge in (always_first, always_second):
        wins = [combine(judge(GOOD, BAD), judge(BAD, GOOD)), combine(judge(BAD, GOOD), judge(GOOD, BAD))]
        assert wins == [0.5, 0.5]


@pytest.mark.parametrize(("first", "second"), [("a", "B"), ("A", ""), ("C", "B"), (None, "A")])
def test_unknown_verdicts_are_refused(first: object, second: object) -> None:
    with pytest.raises(ValueError, match="judge verdict"):
        combine(first, second)  # type: ignore[arg-type]


def test_metric_verdict_prefers_the_answer_closer_to_the_reference() -> None:
    assert metric_verdict(GOOD, BAD, REFERENCE) == "A"
    assert metric_verdict(BAD, GOOD, REFERENCE) == "B"
    assert metric_verdict(GOOD, GOOD, REFERENCE) == "tie"
    assert metric_verdict("", "", REFERENCE) == "tie"
    # through both orders, the better candidate wins and the worse one loses
    assert combine(metric_verdict(GOOD, BAD, REFERENCE), metric_verdict(BAD, GOOD, REFERENCE)) == 1.0
    assert combine(metric_verdict(BAD, GOOD, REFERENCE), metric_verdict(GOOD, BAD, REFERENCE)) == 0.0


def test_judge_messages_hold_rubric_conversation_answers_and_reference() -> None:
    prompt = [{"role": "system", "content": "You are the support bot of Acme."},
              {"role": "user", "content": "How long do refunds take?"}]
    messages = judge_messages(prompt, GOOD, BAD, REFERENCE)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == RUBRIC
    user = messages[1]["content"]
    assert "How long do refunds take?" in user and "You are the support bot of Acme." in user
    assert user.index("Answer A]") < user.index(GOOD) < user.index("Answer B]") < user.index(BAD)
    assert REFERENCE in user and "reference" in user.lower()
    assert user.rstrip().endswith("Reply with exactly one letter, A or B.")


def test_judge_messages_without_reference_leave_it_out() -> None:
    user = judge_messages([{"role": "user", "content": "Write a haiku."}], "one", "two", None)[1]["content"]
    assert "Reference" not in user and "reference" not in user
    assert "Answer A" in user and "Answer B" in user


def test_the_swap_only_swaps_the_answers() -> None:
    prompt = [{"role": "user", "content": "Q?"}]
    first = judge_messages(prompt, GOOD, BAD, REFERENCE)[1]["content"]
    second = judge_messages(prompt, BAD, GOOD, REFERENCE)[1]["content"]
    assert first.replace(GOOD, "\0").replace(BAD, GOOD).replace("\0", BAD) == second


def test_the_template_is_versioned() -> None:
    assert isinstance(JUDGE_TEMPLATE_VERSION, str) and JUDGE_TEMPLATE_VERSION


@pytest.mark.parametrize(("spec", "expected"), [
    ("", ("metric", "rouge_l")),
    ("   ", ("metric", "rouge_l")),
    ("metric:rouge_l", ("metric", "rouge_l")),
    ("model:qwen2.5-0.5b-instruct", ("model", "qwen2.5-0.5b-instruct")),
    (" model:tiny-judge ", ("model", "tiny-judge")),
])
def test_judge_specs(spec: str, expected: tuple[str, str]) -> None:
    assert parse_judge_spec(spec) == expected


@pytest.mark.parametrize("spec", [
    "rouge_l", "metric:bleu", "metric:", "model:", "model:../etc", "model:a/b", "model:.hidden",
    "model:two words", "gpt-4", "llm:judge", "model:" + "x" * 201,
])
def test_bad_judge_specs_list_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_judge_spec(spec)
    message = str(raised.value)
    assert "metric:rouge_l" in message and "model:<model id>" in message
    assert len(message) < 400    # never echoes a huge input back
