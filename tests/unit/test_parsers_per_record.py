"""Per-record decisions: one bad line or record is quarantined on its own, wherever it is, and every
good record around it survives (issue 13). Includes the attacker's files that fool an 8 KB sniff."""

from __future__ import annotations

import json
import os
import random
import struct
from pathlib import Path

import pytest

from services.common.storage import FileStorage, ObjectInfo, RejectedEntry, list_entries
from services.curation.documents import Document, Quarantined
from services.curation.parsers import ParserConfig, parse_object, rejected_object
from services.curation.parsers.json_stream import MAX_DEPTH
from services.curation.parsers.textio import SNIFF_BYTES
from services.ingest import storage_scan

pytestmark = pytest.mark.unit

MARKER = "MARKER-41c9-HERON-SLATE"


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "acme")


def parse(storage: FileStorage, key: str, data: bytes, **kwargs: object) -> list[Document | Quarantined]:
    storage.write(key, data)
    return list(parse_object(storage, key, **kwargs))  # type: ignore[arg-type]


def docs(items: list[Document | Quarantined]) -> list[Document]:
    return [i for i in items if isinstance(i, Document)]


def quarantined(items: list[Document | Quarantined]) -> list[tuple[str, int]]:
    return [(i.code, i.provenance.line) for i in items if isinstance(i, Quarantined)]


def line(record: object) -> bytes:
    return json.dumps(record).encode() + b"\n"


def good_lines(first: int, n: int) -> bytes:
    return b"".join(line({"text": f"record {i}"}) for i in range(first, first + n))


def assert_no_marker(items: list[Document | Quarantined]) -> None:
    for item in items:
        if isinstance(item, Quarantined):
            assert MARKER not in item.reason


# -- JSON Lines ---------------------------------------------------------------------------------


def test_jsonl_keeps_every_good_line_around_a_nul_a_latin1_and_a_truncated_line(storage: FileStorage) -> None:
    nul = b'{"text": "' + MARKER.encode() + b'\0\0"}\n'
    latin1 = '{"text": "caf\xe9 '.encode("latin-1") + MARKER.encode() + b'"}\n'
    data = good_lines(1, 2) + nul + good_lines(4, 1) + latin1 + good_lines(6, 2) + b'{"text": "' + MARKER.encode()
    items = parse(storage, "mixed.jsonl", data)
    assert [d.text for d in docs(items)] == ["record 1", "record 2", "record 4", "record 6", "record 7"]
    assert [d.provenance.line for d in docs(items)] == [1, 2, 4, 6, 7]
    assert quarantined(items) == [("binary_record", 3), ("bad_encoding", 5), ("truncated_json", 8)]
    binary, encoding, truncated = (i for i in items if isinstance(i, Quarantined))
    assert binary.provenance.offset == data.index(nul) and "line 3" in binary.reason
    assert encoding.provenance.offset == data.index(b"\xe9") and "line 5" in encoding.reason
    assert truncated.provenance.offset == data.rindex(b"\n") + 1 and "end of the file" in truncated.reason
    assert_no_marker(items)


def test_sixteen_good_records_survive_one_nul_line_in_the_first_8_kb(storage: FileStorage) -> None:
    data = good_lines(1, 8) + b"\0" * 40 + b"\n" + good_lines(10, 8)
    items = parse(storage, "export.jsonl", data)
    assert len(docs(items)) == 16 and quarantined(items) == [("binary_record", 9)]


def test_attacker_clean_first_8_kb_then_binary_junk_then_good_records(storage: FileStorage) -> None:
    head = good_lines(1, 400)
    assert len(head) > SNIFF_BYTES
    rng = random.Random(3)
    junk = bytes(rng.randrange(256) for _ in range(5000)).replace(b"\n", b"") + b"\n" + bytes(300) + b"\n\n" + \
        b"\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10" * 30 + b"\n"
    data = head + junk + good_lines(405, 3)
    items = parse(storage, "attack.jsonl", data)
    assert len(docs(items)) == 403
    [span] = [i for i in items if isinstance(i, Quarantined)]
    assert (span.code, span.provenance.line, span.provenance.offset) == ("binary_record", 401, len(head))
    assert "lines 401-404" in span.reason  # one span for the run, the blank line inside it included


def test_attacker_nul_in_the_first_8_kb_and_good_jsonl_after(storage: FileStorage) -> None:
    for name, first in (("short.jsonl", b"\0\n"), ("long.jsonl", b"\0" * (SNIFF_BYTES + 100) + b"\n"),
                        ("mixed.jsonl", b'{"text": "x\0y"}\n')):
        items = parse(storage, name, first + good_lines(2, 50))
        assert len(docs(items)) == 50, name
        assert quarantined(items) == [("binary_record", 1)], name


def test_a_binary_line_above_the_record_limit_is_binary_not_oversized(storage: FileStorage) -> None:
    config = ParserConfig(max_record_bytes=1024)
    items = parse(storage, "big.jsonl", good_lines(1, 1) + bytes(5000) + b"\n" + good_lines(3, 1), config=config)
    assert quarantined(items) == [("binary_record", 2)] and len(docs(items)) == 2


# -- real binaries are still whole files ----------------------------------------------------------


def test_real_binaries_and_utf16_without_bom_are_quarantined_whole(storage: FileStorage) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(64) + b"\n" + good_lines(1, 3)  # text-looking bytes inside do not count
    elf = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 2, 62) + bytes(200)
    for name, data, words in (("pic.jsonl", png, "PNG image"), ("tool.txt", elf, "ELF executable")):
        [q] = parse(storage, name, data)
        assert isinstance(q, Quarantined) and q.code == "binary_file" and words in q.reason, name
    [utf16] = parse(storage, "notes.csv", "text\nGrüße aus Köln\n".encode("utf-16-le") * 20)
    assert isinstance(utf16, Quarantined) and utf16.code == "binary_file"
    assert "UTF-16" in utf16.reason and "byte-order mark" in utf16.reason
    rng = random.Random(5)
    noise = b"\n".join(bytes(rng.randrange(0, 32) for _ in range(80)) for _ in range(400))
    assert quarantined(parse(storage, "noise.txt", noise)) == [("binary_file", 0)]


# -- CSV ------------------------------------------------------------------------------------------


def test_csv_quarantines_each_bad_row_and_keeps_reporting_later_faults(storage: FileStorage) -> None:
    marker = MARKER.encode()
    data = (b"prompt,completion\n"
            b"q1,a1\n"
            b'"caf\xe9 ' + marker + b'",a2\n'     # line 3: not UTF-8
            b"q3,a3\n"
            b"q4,\0" + marker + b"\n"             # line 5: NUL
            b"q5,a5\n"
            b"only one field\n"                   # line 7: wrong field count
            b"\xff\xfe,x\n"                       # line 8: not UTF-8 again
            b"q8,a8\n"
            b'"q9,' + marker)                     # line 10: cut off inside a quote
    items = parse(storage, "faq.csv", data)
    assert [d.fields["prompt"] for d in docs(items)] == ["q1", "q3", "q5", "q8"]
    assert [d.provenance.line for d in docs(items)] == [2, 4, 6, 9]
    assert quarantined(items) == [("bad_encoding", 3), ("binary_record", 5), ("malformed_csv", 7),
                                  ("bad_encoding", 8), ("malformed_csv", 10)]
    assert_no_marker(items)


def test_a_csv_row_spanning_an_unreadable_line_is_left_out_whole(storage: FileStorage) -> None:
    data = b'prompt,completion\n"q1","first part\nbad \xe9 part\nlast part"\nq2,a2\n'
    items = parse(storage, "multi.csv", data)
    assert [d.fields["prompt"] for d in docs(items)] == ["q2"]
    assert quarantined(items) == [("bad_encoding", 3), ("malformed_csv", 2)]
    row = [i for i in items if isinstance(i, Quarantined)][1]
    assert "lines 2-4" in row.reason and "line 3" in row.reason


def test_a_csv_whose_header_cannot_be_read_says_so(storage: FileStorage) -> None:
    items = parse(storage, "h.csv", b"pr\xe9mpt,completion\nq1,a1\n")
    assert quarantined(items) == [("bad_encoding", 1), ("malformed_csv", 1)] and not docs(items)
    assert "header row" in [i for i in items if isinstance(i, Quarantined)][1].reason


# -- line-oriented prose and code -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["notes.txt", "guide.md", "tool.py", "tool.js"])
def test_prose_and_code_quarantine_a_bad_line_and_keep_the_rest(storage: FileStorage, name: str) -> None:
    data = b"alpha line one\n\nbeta \0\0 line\n\ngamma line caf\xe9\n\ndelta line four\n"
    items = parse(storage, name, data)
    assert quarantined(items) == [("binary_record", 3), ("bad_encoding", 5)], name
    text = "\n".join(d.text for d in docs(items))
    assert "alpha line one" in text and "delta line four" in text and "beta" not in text


def test_html_with_a_bad_byte_keeps_the_text_on_both_sides(storage: FileStorage) -> None:
    page = (b"<html><body><h1>Refunds</h1><p>Refunds take five days to reach the card.</p>"
            b"<p>Caf\xe9 " + MARKER.encode() + b"</p><h1>Fees</h1><p>There is no fee for the first transfer.</p>"
            b"<p>Na\xefve \xff</p></body></html>")
    items = parse(storage, "page.html", page)
    assert [d.fields["title"] for d in docs(items)] == ["Refunds", "Fees"]
    assert "no fee" in docs(items)[1].text
    [bad] = [i for i in items if isinstance(i, Quarantined)]
    assert bad.code == "bad_encoding" and bad.provenance.offset == page.index(b"\xe9")
    assert "2 more places" in bad.reason and MARKER not in bad.reason


# -- JSON documents: nesting and brackets ---------------------------------------------------------


def test_deeply_nested_valid_json_is_too_deeply_nested_not_unbalanced(storage: FileStorage) -> None:
    deep = "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10)
    data = f'{{"records": [{{"text": "before"}}, {deep}, {{"text": "after"}}]}}'.encode()
    items = parse(storage, "deep.json", data)
    assert [d.text for d in docs(items)] == ["before", "after"]
    [q] = [i for i in items if isinstance(i, Quarantined)]
    assert (q.code, q.provenance.offset) == ("too_deeply_nested", data.index(b"[["))
    assert str(MAX_DEPTH) in q.reason and "flatten" in q.reason and "unbalanced" not in q.reason
    [whole] = parse(storage, "deep-object.json", f'{{"text": "x", "deep": {deep}}}'.encode())
    assert isinstance(whole, Quarantined) and whole.code == "too_deeply_nested"
    [q] = parse(storage, "deep.jsonl", ("[" * 5000 + "]" * 5000 + "\n").encode())
    assert isinstance(q, Quarantined) and q.code == "too_deeply_nested" and "flatten" in q.reason
    nested: object = {"text": "deep but fine"}
    for _ in range(100):
        nested = {"inner": [nested]}
    assert [d.text for d in docs(parse(storage, "deep-ok.jsonl", line({"wrapper": nested})))] == ["deep but fine"]


def test_genuinely_malformed_json_still_says_what_is_wrong(storage: FileStorage) -> None:
    cases = {"unbalanced.json": (b'[{"text": "kept"}, {"a": [1}]', "unbalanced"),
             "two.json": (b'{"text": "a"} {"text": "b"}', "more than one top-level value"),
             "bare.json": (b'[{"text": "a"}] x', "more than one top-level value"),
             "close.json": (b'[{"text": "kept"}]]', "unbalanced")}
    for name, (data, words) in cases.items():
        bad = [i for i in parse(storage, name, data) if isinstance(i, Quarantined)]
        assert [q.code for q in bad] == ["invalid_json"] and words in bad[0].reason, name


# -- symlinks and other entries storage will not open ---------------------------------------------


def test_a_symlink_out_of_the_tenant_root_is_listed_as_rejected_never_followed(tmp_path: Path) -> None:
    acme = FileStorage(tmp_path / "acme")
    acme.write("docs/a.jsonl", good_lines(1, 1))
    secret = tmp_path / "globex" / "secret.jsonl"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(line({"text": MARKER}))
    (acme.root / "docs" / "b-out.jsonl").symlink_to(secret)
    (acme.root / "docs" / "c-dir").symlink_to(secret.parent)
    (acme.root / "docs" / "d-in.jsonl").symlink_to(acme.root / "docs" / "a.jsonl")
    os.mkfifo(acme.root / "docs" / "e.pipe")

    assert [o.key for o in acme.list("docs/")] == ["docs/a.jsonl"]  # list() is unchanged
    entries = list(list_entries(acme, "docs/"))
    assert [(e.key, type(e).__name__, getattr(e, "code", "")) for e in entries] == [
        ("docs/a.jsonl", "ObjectInfo", ""), ("docs/b-out.jsonl", "RejectedEntry", "outside_boundary"),
        ("docs/c-dir", "RejectedEntry", "outside_boundary"), ("docs/d-in.jsonl", "RejectedEntry", "symlink"),
        ("docs/e.pipe", "RejectedEntry", "not_a_file")]
    for entry in entries:
        if isinstance(entry, RejectedEntry):
            assert str(tmp_path) not in entry.reason and "globex" not in entry.reason  # no server paths

    out = rejected_object(entries[1], "docs/")  # type: ignore[arg-type]
    assert (out.code, out.provenance.source) == ("outside_boundary", "b-out.jsonl")
    assert "symlink" in out.reason and "outside" in out.reason

    scanned = storage_scan.scan_dataset(acme, "docs/")
    assert (scanned.file_count, scanned.rejected) == (1, 4)


def test_list_entries_falls_back_to_list_for_backends_without_rejects() -> None:
    class Plain:
        def list(self, prefix: str = "") -> list[ObjectInfo]:
            return [ObjectInfo(prefix + "x", 1)]

    assert list(list_entries(Plain(), "p/")) == [ObjectInfo("p/x", 1)]  # type: ignore[arg-type]
