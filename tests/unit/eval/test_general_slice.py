"""The general-capability slice: deterministic, every category and task kind covered, every answer right."""

from __future__ import annotations

import ast
import json
import operator
import re
from collections import Counter

import pytest

from services.eval import general_slice
from services.eval.general_slice import CATEGORIES, FACTS, answered_general_items, general_items

pytestmark = pytest.mark.unit

from services.eval.metrics import check_passed, json_valid

CONTRACT_KEYS = {"id", "category", "kind", "messages", "reference", "check"}
ID = re.compile(r"^gen-(arith|fact|reason|instr|json)-\d{4}$")


def _prompt(item: dict) -> str:
    [turn] = item["messages"]
    assert turn["role"] == "user"
    return turn["content"]


def test_items_follow_the_suite_contract_with_stable_ids() -> None:
    items = general_items(25, seed=0)
    assert [i["category"] for i in items] == [c for c in CATEGORIES for _ in range(25)]
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        assert set(item) == CONTRACT_KEYS and item["kind"] == "generate" and ID.match(item["id"])
        assert _prompt(item).strip()
    by_category = {c: [i["id"] for i in items if i["category"] == c] for c in CATEGORIES}
    assert by_category["general/arithmetic"][:2] == ["gen-arith-0000", "gen-arith-0001"]
    assert json.loads(json.dumps(items)) == items  # plain JSON values only


def test_the_same_seed_gives_the_same_items_and_a_longer_slice_extends_a_shorter_one() -> None:
    assert general_items(10, seed=3) == general_items(10, seed=3)
    assert general_items(10, seed=3) != general_items(10, seed=4)
    short, long = general_items(5, seed=1), general_items(12, seed=1)
    for category in CATEGORIES:
        assert [i for i in short if i["category"] == category] == \
            [i for i in long if i["category"] == category][:5]


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _evaluate(node: ast.expr) -> int:
    """An integer expression of + - * (parsed by Python, evaluated here: no eval())."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    assert isinstance(node, ast.BinOp) and type(node.op) in _OPS
    return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))


def test_arithmetic_references_are_the_value_of_their_expression() -> None:
    checked = Counter()
    for item in general_items(200, seed=7):
        if item["category"] != "general/arithmetic":
            continue
        prompt = _prompt(item)
        assert item["check"] == {"type": "exact"} and re.fullmatch(r"-?\d+", item["reference"])
        if m := re.match(r"What is (\d+) ([-+*]) (\d+)\?", prompt):
            expected = _evaluate(ast.parse(f"{m[1]} {m[2]} {m[3]}", mode="eval").body)
            checked["expression"] += 1
        elif m := re.match(r"A shop has (\d+) apples and sells (\d+)", prompt):
            expected = int(m[1]) - int(m[2])
            checked["shop"] += 1
        elif m := re.match(r"Each box holds (\d+) pens\. How many pens are in (\d+)", prompt):
            expected = int(m[1]) * int(m[2])
            checked["boxes"] += 1
        elif m := re.match(r"A jar holds (\d+) coins and (\d+) more", prompt):
            expected = int(m[1]) + int(m[2])
            checked["jar"] += 1
        elif m := re.match(r"(\d+) chairs are set out in (\d+) equal rows", prompt):
            assert int(m[1]) % int(m[2]) == 0
            expected = int(m[1]) // int(m[2])
            checked["rows"] += 1
        else:
            raise AssertionError(f"unexpected arithmetic prompt {prompt!r}")
        assert int(item["reference"]) == expected, prompt
    assert set(checked) == {"expression", "shop", "boxes", "jar", "rows"}


def test_the_facts_are_many_distinct_and_their_answers_are_listed() -> None:
    questions = [q for q, _ in FACTS]
    assert len(questions) >= 80 and len(set(questions)) == len(questions)
    for question, accepted in FACTS:
        assert question.endswith("?") and accepted and all(a.strip() == a and a for a in accepted)
        assert len({a.casefold() for a in accepted}) == len(accepted), question
    facts = [i for i in general_items(len(FACTS), seed=0) if i["category"] == "general/factual"]
    assert sorted(_prompt(i) for i in facts) == sorted(questions)  # every fact once before any repeats
    for item in facts:
        assert item["check"]["type"] == "contains_any" and item["reference"] == item["check"]["values"][0]


def test_more_factual_items_than_facts_reword_the_repeats() -> None:
    facts = [i for i in general_items(len(FACTS) + 20, seed=0) if i["category"] == "general/factual"]
    prompts = [_prompt(i) for i in facts]
    assert len(prompts) == len(FACTS) + 20 and len(set(prompts)) == len(prompts)


def test_reasoning_answers_are_right() -> None:
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    for item in general_items(120, seed=2):
        if item["category"] != "general/reasoning":
            continue
        prompt, ref = _prompt(item), item["reference"]
        if m := re.match(r"Which is larger, (\d+) or (\d+)\?", prompt):
            assert int(ref) == max(int(m[1]), int(m[2]))
        elif m := re.match(r"What number comes next in the sequence ([\d, ]+), \.\.\.", prompt):
            a, b, c, d = map(int, m[1].split(", "))
            assert (b - a == c - b == d - c and int(ref) == d + (d - c)) or (b * c and b / a == c / b == d / c
                                                                             and int(ref) == d * (d // c))
        elif m := re.match(r"What day of the week comes (\d+) days after (\w+)\?", prompt):
            assert ref == days[(days.index(m[2]) + int(m[1])) % 7]
        elif re.match(r"(All|No) \w+s are", prompt):
            assert ref in ("yes", "no")
            assert ref == ("yes" if prompt.startswith("All") and " is not a " not in prompt else "no")
        elif "shortest" in prompt:
            towers = re.findall(r"[Tt]he (\w+) tower", prompt)
            assert ref == towers[3] and ref not in towers[:2]
        else:
            assert prompt.startswith("Which month comes")


def test_json_tasks_example_answers_validate_against_their_schema() -> None:
    items = [i for i in general_items(60, seed=5) if i["category"] == "general/json"]
    assert {_prompt(i).split(" ")[3] for i in items} >= {"object", "array"}
    for item in items:
        schema = item["check"]["schema"]
        assert item["check"]["type"] == "json_schema" and schema["type"] in ("object", "array")
        value = json.loads(item["reference"])
        assert json_valid(item["reference"], schema) == 1
        assert json_valid("not json at all", schema) == 0
        if schema["type"] == "object":
            assert set(schema["required"]) == set(value)


def test_every_instruction_rule_is_used_with_a_well_typed_value() -> None:
    items = [i for i in general_items(40, seed=0) if i["category"] == "general/instruction"]
    rules = Counter(i["check"]["rule"] for i in items)
    assert set(rules) == {"uppercase", "lowercase", "max_words", "min_words", "starts_with", "ends_with",
                          "no_commas", "contains_word", "bullet_count", "one_word"}
    for item in items:
        check = item["check"]
        assert check["type"] == "instruction" and item["reference"] is None
        if check["rule"] in ("max_words", "min_words", "bullet_count"):
            assert isinstance(check["value"], int) and check["value"] > 0
            assert str(check["value"]) in _prompt(item)
        if check["rule"] in ("starts_with", "ends_with", "contains_word"):
            assert f'"{check["value"]}"' in _prompt(item)


def test_every_items_own_answer_passes_its_check_and_a_wrong_one_does_not() -> None:
    answered = answered_general_items(60, seed=11)
    assert [i for i, _ in answered] == general_items(60, seed=11)
    for item, answer in answered:
        assert check_passed(item, answer) == 1, item["id"]
    wrong = "I am not sure, sorry, maybe 3."
    failed = Counter(i["category"] for i, _ in answered if check_passed(i, wrong) == 0)
    assert failed["general/arithmetic"] >= 55 and failed["general/json"] == 60
    assert failed["general/factual"] >= 55


def test_no_item_names_a_person_or_an_address() -> None:
    """Answers with names or contact details would be counted as PII leakage for both models."""
    text = json.dumps(answered_general_items(50, seed=0))
    assert "@" not in text and not re.search(r"\b(Mr|Mrs|Ms|Dr)\.? [A-Z]", text)


def test_limits_are_checked() -> None:
    assert general_items(0, seed=0) == []
    assert len(general_items(general_slice.MAX_PER_CATEGORY, seed=0)) == 5 * general_slice.MAX_PER_CATEGORY
    with pytest.raises(ValueError, match="per_category"):
        general_items(general_slice.MAX_PER_CATEGORY + 1, seed=0)
    with pytest.raises(ValueError, match="per_category"):
        general_items(-1, seed=0)
