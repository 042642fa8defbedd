"""The curation report lists every dropped or quarantined record by location and reason, bounded, and
never carries a record's text (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.common.storage import FileStorage
from services.curation.config import CurationConfig
from services.curation.documents import Document, Provenance, Quarantined
from services.curation.pipeline import Curator
from services.curation.recipes import build_examples, no_example_reason
from services.curation.report import MAX_LISTED, CurationReport, render_html

pytestmark = pytest.mark.unit

MARKER = "MARKER-93d1-OSPREY-LINEN"
ANSWER = "Refunds reach the card within five business days after the shop confirms the return."


def _jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _corpus(storage: FileStorage, tmp_path: Path) -> None:
    pair = {"instruction": "How long do refunds take to arrive?", "output": ANSWER}
    storage.write("data/pairs.jsonl", _jsonl(
        pair,
        {"instruction": f"Short {MARKER}", "output": "ok"},                       # line 2: quality (too short)
        dict(pair),                                                               # line 3: exact duplicate
        {"messages": [{"role": "user", "content": f"Anyone there? {MARKER} Please reply soon, thanks."}]},
    ) + b'{"text": "' + MARKER.encode() + b'\0"}\n')                              # line 5: binary_record
    storage.write("data/page.html", b"<html><body><p>" + MARKER.encode() + b" is our internal code word for "
                  b"the refund desk and nothing more than that.</p></body></html>")  # no heading, one sentence
    storage.write("data/faq.html", b"<html><body><p>Refund window. Customers may return goods within "
                  b"thirty days of delivery for a full refund to the original card.</p></body></html>")
    secret = tmp_path / "elsewhere" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_bytes(_jsonl({"text": MARKER}))
    (storage.root / "data" / "linked.jsonl").symlink_to(secret)


def test_the_report_lists_dropped_records_by_location_and_reason_never_their_text(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "acme")
    _corpus(storage, tmp_path)
    curator = Curator(CurationConfig(redact_pii=False, holdout_fraction=0.0), salt="s")
    (tmp_path / "work").mkdir()
    outcome = curator.run(storage, "data/", "ds-1", "0" * 64, work_dir=tmp_path / "work")
    report = outcome.report

    quarantine = report["quarantine"]  # type: ignore[index]
    assert [(i["source"], i["line"], i["code"]) for i in quarantine["items"]] == [
        ("linked.jsonl", 0, "outside_boundary"), ("pairs.jsonl", 5, "binary_record")]
    dropped = report["dropped"]  # type: ignore[index]
    assert [(i["source"], i["line"], i["rule"]) for i in dropped["quality"]["items"]] == \
        [("pairs.jsonl", 2, "too_short")]
    [dup] = dropped["dedupe"]["items"]
    assert (dup["source"], dup["line"], dup["kind"]) == ("pairs.jsonl", 3, "exact")
    assert (dup["kept"]["source"], dup["kept"]["line"]) == ("pairs.jsonl", 1)
    no_example = {(i["source"], i["line"]): i["reason"] for i in dropped["no_example"]["items"]}
    assert "no assistant turn" in no_example[("pairs.jsonl", 4)]
    assert "no heading or title" in no_example[("page.html", 1)]
    assert ("faq.html", 1) not in no_example  # its first sentence became the question
    assert report["examples"]["documents_without_example"] == 2  # type: ignore[index]
    assert dropped["pii"] == {"total": 0, "listed_max": MAX_LISTED, "not_listed": 0, "items": []}

    version = f"datasets/ds-1/versions/{outcome.version.version_id}/"
    for name in ("report.json", "report.html"):
        with storage.open(version + name) as fh:
            body = fh.read().decode()
        assert MARKER not in body, name
        assert "outside_boundary" in body and "pairs.jsonl" in body and "too_short" in body, name
    with storage.open(version + "report.html") as fh:
        page = fh.read().decode()
    assert "Dropped as duplicates" in page and "pairs.jsonl, line 1" in page  # the kept record's location


def test_untitled_html_becomes_a_question_from_its_first_sentence() -> None:
    doc = Document(text="Refund window. Customers may return goods within thirty days.",
                   provenance=Provenance("faq.html", line=1), kind="text", fields={"title": "", "path": []},
                   format="html")
    [example] = build_examples(doc, "documents_to_qa", "alpaca")
    assert example == {"instruction": 'What does our documentation say about "Refund window"?',
                       "input": "Source: faq.html", "output": "Customers may return goods within thirty days."}
    text = Document(text="A page of a plain text file.", provenance=Provenance("a.txt"), kind="text", format="text")
    assert list(build_examples(text, "auto", "alpaca")) == []
    assert "no heading or title" in no_example_reason(text, "auto")
    assert "does not use text documents" in no_example_reason(text, "passthrough")


def test_every_list_is_bounded_and_says_how_many_are_not_listed() -> None:
    report = CurationReport()
    n = MAX_LISTED + 7
    for i in range(n):
        p = Provenance(f"big-{i % 3}.jsonl", line=i + 1)
        report.quarantine(Quarantined(p, "bad_encoding", "not valid UTF-8"))
        report.drop_for_quality(p, "too_short")
        report.keep_unique(f"id-{i}", p)
        report.drop_as_duplicate(p, "near", f"id-{i}")
        report.drop_for_pii(p)
        report.no_example_for(p, "text", "no heading")
    data = report.to_dict()
    assert data["quarantine"]["not_listed"] == 7  # type: ignore[index]
    for name in ("quality", "dedupe", "pii", "no_example"):
        listing = data["dropped"][name]  # type: ignore[index]
        assert (listing["total"], len(listing["items"]), listing["not_listed"]) == (n, MAX_LISTED, 7), name
    page = render_html(data, "t")
    assert page.count("7 more not listed.") == 5
    assert len(json.dumps(data)) < 2_000_000


def test_no_kept_location_is_remembered_once_the_dedupe_list_is_full() -> None:
    report = CurationReport()
    for i in range(MAX_LISTED):
        report.drop_as_duplicate(Provenance("a.jsonl", line=i + 2), "exact", "id-0")
    report.keep_unique("id-late", Provenance("a.jsonl", line=99_999))
    assert report._kept_at == {}

