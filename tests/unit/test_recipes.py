from __future__ import annotations

import pytest

from services.curation import general_mix
from services.curation.documents import Document, Provenance
from services.curation.recipes import build_examples
from services.curation.split import is_holdout

pytestmark = pytest.mark.unit
P = Provenance(source="x.jsonl", line=1)


def _doc(kind: str, fields: dict, text: str = "t", fmt: str = "jsonl") -> Document:
    return Document(text=text, provenance=P, kind=kind, fields=fields, format=fmt)


@pytest.mark.parametrize("fmt, expected", [
    ("alpaca", {"instruction": "Reset my PIN", "input": "card 1", "output": "Use the app."}),
    ("prompt_completion", {"prompt": "Reset my PIN\n\ncard 1", "completion": "Use the app."}),
    ("chat", {"messages": [{"role": "user", "content": "Reset my PIN\n\ncard 1"},
                           {"role": "assistant", "content": "Use the app."}]}),
])
def test_paired_records_in_each_output_format(fmt: str, expected: dict) -> None:
    doc = _doc("paired", {"instruction": "Reset my PIN", "input": "card 1", "response": "Use the app."})
    assert list(build_examples(doc, "passthrough", fmt)) == [expected]


def test_preference_pairs_keep_their_shape() -> None:
    doc = _doc("preference", {"prompt": "p", "chosen": "good", "rejected": "bad"})
    assert list(build_examples(doc, "auto", "alpaca")) == [{"prompt": "p", "chosen": "good", "rejected": "bad"}]


def test_ticket_thread_becomes_question_and_first_agent_answer() -> None:
    doc = _doc("ticket", {"subject": "Card declined", "messages": [
        {"role": "customer", "text": "My card fails abroad."}, {"role": "customer", "text": "Still failing."},
        {"role": "agent", "text": "Enable travel mode."}, {"role": "customer", "text": "Thanks!"}]}, fmt="tickets")
    (alpaca,) = build_examples(doc, "tickets_to_sft", "alpaca")
    assert alpaca == {"instruction": "Card declined\n\nMy card fails abroad.\n\nStill failing.", "input": "",
                      "output": "Enable travel mode."}
    (chat,) = build_examples(doc, "tickets_to_sft", "chat")
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user"]
    assert chat["messages"][0]["content"].startswith("Card declined")


def test_ticket_without_agent_answer_makes_no_example() -> None:
    doc = _doc("ticket", {"messages": [{"role": "customer", "text": "hello?"}]}, fmt="tickets")
    assert list(build_examples(doc, "auto", "alpaca")) == []


def test_document_sections_become_questions() -> None:
    doc = _doc("text", {"title": "Wire limits", "path": ["Payments", "Wire limits"]},
               text="Wires above 10k need approval.", fmt="markdown")
    (ex,) = build_examples(doc, "documents_to_qa", "alpaca")
    assert "Wire limits" in ex["instruction"] and ex["output"] == "Wires above 10k need approval."


def test_recipes_only_take_their_kinds() -> None:
    ticket = _doc("ticket", {"messages": [{"role": "customer", "text": "q"}, {"role": "agent", "text": "a"}]})
    assert list(build_examples(ticket, "passthrough", "alpaca")) == []
    assert list(build_examples(ticket, "documents_to_qa", "alpaca")) == []


def test_split_is_deterministic_and_near_the_fraction() -> None:
    examples = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5000)]
    first = [is_holdout(e, 0.1, seed=1) for e in examples]
    assert first == [is_holdout(e, 0.1, seed=1) for e in examples]
    assert 0.08 < sum(first) / len(first) < 0.12
    assert first != [is_holdout(e, 0.1, seed=2) for e in examples]


def test_general_mix_is_deterministic_and_sized_by_ratio() -> None:
    assert general_mix.mix_count(900, 0.1) == 100
    assert general_mix.mix_count(900, 0.0) == 0
    a = general_mix.general_examples(50, "alpaca", seed=3)
    assert a == general_mix.general_examples(50, "alpaca", seed=3) and len(a) == 50
    assert all(set(e) == {"instruction", "input", "output"} for e in a)
