"""Parsers: every format, every bad input, bounded memory, zip bombs."""

from __future__ import annotations

import codecs
import gzip
import io
import json
import random
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from fpdf import FPDF

from services.common.storage import FileStorage
from services.curation.documents import Document, Quarantined
from services.curation.parsers import ParserConfig, parse_object

pytestmark = pytest.mark.unit

MIB = 1 << 20
CANARY = "CANARY-7f3a-OTTER-PLUM"


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    return FileStorage(tmp_path / "acme")


def parse(storage: FileStorage, key: str, data: bytes | None = None, **kwargs: object) -> list[Document | Quarantined]:
    if data is not None:
        storage.write(key, data)
    return list(parse_object(storage, key, **kwargs))  # type: ignore[arg-type]


def docs(items: list[Document | Quarantined]) -> list[Document]:
    return [i for i in items if isinstance(i, Document)]


def quarantined(items: list[Document | Quarantined]) -> list[Quarantined]:
    return [i for i in items if isinstance(i, Quarantined)]


def jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# -- JSON Lines and JSON ---------------------------------------------------------------------


def test_jsonl_recognises_paired_chat_preference_ticket_and_text_shapes(storage: FileStorage) -> None:
    ticket = {"id": "T-1", "subject": "Card declined", "messages": [
        {"author_role": "agent", "body": "Travel mode is on now.", "created_at": "2026-01-01T10:05:00Z"},
        {"author_role": "customer", "body": "My card was declined.", "created_at": "2026-01-01T10:00:00Z"}]}
    data = jsonl(
        {"instruction": "Summarise", "input": "the memo", "output": "It says hi."},
        {"instruction": "Greet", "response": "Hello"},
        {"prompt": "2+2?", "completion": "4"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text",
                                                                                          "text": "Hello!"}]}]},
        {"prompt": "Pick", "chosen": "good", "rejected": "bad"},
        {"text": "Just prose.", "title": "Memo"},
        ticket,
        {"id": 7, "name": "Ada", "notes": {"inner": "nested note"}},
    ) + b"\n   \n"
    items = parse(storage, "mix/records.jsonl", data)
    assert not quarantined(items)
    got = docs(items)
    assert [d.kind for d in got] == ["paired", "paired", "paired", "chat", "preference", "text", "ticket", "text"]
    assert all(d.format == "jsonl" for d in got)
    assert [d.provenance.line for d in got] == list(range(1, 9))
    assert got[0].fields == {"instruction": "Summarise", "input": "the memo", "output": "It says hi."}
    assert got[1].fields == {"instruction": "Greet", "response": "Hello"}
    assert got[2].fields == {"prompt": "2+2?", "completion": "4"}
    assert got[3].fields == {"messages": [{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello!"}]}
    assert got[4].fields == {"prompt": "Pick", "chosen": "good", "rejected": "bad"}
    assert got[5].fields == {"title": "Memo"} and got[5].text == "Just prose."
    assert got[6].fields == {"ticket_id": "T-1", "subject": "Card declined", "messages": [
        {"role": "customer", "text": "My card was declined."}, {"role": "agent", "text": "Travel mode is on now."}]}
    assert "My card was declined." in got[6].text and "Card declined" in got[6].text
    assert got[7].text == "Ada\nnested note" and got[7].fields == {}
    assert len({d.doc_id for d in got}) == len(got)


def test_jsonl_quarantines_bad_lines_with_their_numbers_and_keeps_the_rest(storage: FileStorage) -> None:
    data = (b'{"text": "one"}\n'
            b'{"text": oops}\n'
            b'[1, 2]\n'
            b'{"text": "   "}\n'
            b'{"instruction": "mid-file cut", "outp\n'
            b'{"messages": [{"role": "user"}]}\n'
            b'{"text": "seven"}\n'
            b'{"instruction": "truncated at EOF", "output": "' + CANARY.encode())
    items = parse(storage, "bad.jsonl", data)
    assert [d.text for d in docs(items)] == ["one", "seven"]
    assert [(q.code, q.provenance.line) for q in quarantined(items)] == [
        ("invalid_json", 2), ("invalid_record", 3), ("empty_record", 4), ("truncated_json", 5),
        ("invalid_record", 6), ("truncated_json", 8)]
    last = quarantined(items)[-1]
    assert "end of the file" in last.reason and last.provenance.offset == data.rindex(b"\n") + 1
    assert all(CANARY not in q.reason for q in quarantined(items))


def test_json_arrays_wrapper_objects_and_single_records(storage: FileStorage) -> None:
    alpaca = [{"instruction": f"Q{i}", "input": "", "output": f"A{i}"} for i in range(3)]
    assert [d.kind for d in docs(parse(storage, "alpaca.json", json.dumps(alpaca, indent=2).encode()))] == \
        ["paired"] * 3
    tickets = {"tickets": [{"id": i, "subject": f"S{i}", "messages": [{"author_role": "customer", "body": "help"},
                                                                      {"author_role": "agent", "body": "done"}]}
                           for i in range(4)], "next_page": None}
    got = docs(parse(storage, "export.json", json.dumps(tickets, indent=1).encode()))
    assert [d.fields["ticket_id"] for d in got] == ["0", "1", "2", "3"]
    assert {d.kind for d in got} == {"ticket"} and {d.format for d in got} == {"json"}
    assert len({d.provenance.line for d in got}) == 4
    single = docs(parse(storage, "one.json", json.dumps(tickets["tickets"][0]).encode()))
    assert [d.kind for d in single] == ["ticket"]
    lines = docs(parse(storage, "actually-lines.json", jsonl({"text": "a"}, {"text": "b"})))
    assert [(d.text, d.format) for d in lines] == [("a", "jsonl"), ("b", "jsonl")]


def test_json_documents_cut_off_or_malformed_are_quarantined(storage: FileStorage) -> None:
    items = parse(storage, "cut.json", b'[{"text": "kept"}, {"text": "lost')
    assert [d.text for d in docs(items)] == ["kept"]
    assert [q.code for q in quarantined(items)] == ["truncated_json"]
    items = parse(storage, "bad.json", b'[{"text": "kept"}, {"text": nope}, {"text": "also kept"}]')
    assert [d.text for d in docs(items)] == ["kept", "also kept"]
    assert [q.code for q in quarantined(items)] == ["invalid_json"]
    items = parse(storage, "ticket-without-id.json", json.dumps([{"subject": "x", "messages": [
        {"author_role": "customer", "body": "hi"}]}]).encode())
    assert [(q.code, "id" in q.reason) for q in quarantined(items)] == [("invalid_record", True)]


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_maps_columns_and_quarantines_malformed_rows(storage: FileStorage) -> None:
    data = ('Prompt,Completion\n'
            '"How do I order a card?","Open the app,\nthen Cards."\n'
            'only one field\n'
            '"Can I change my PIN?","Yes, in the app."\n'
            '"stray "quote" here",x\n'
            ',\n'
            '"Last","row"\n').encode()
    items = parse(storage, "faq/faq.csv", data)
    got = docs(items)
    assert [d.fields for d in got] == [
        {"prompt": "How do I order a card?", "completion": "Open the app,\nthen Cards."},
        {"prompt": "Can I change my PIN?", "completion": "Yes, in the app."},
        {"prompt": "Last", "completion": "row"}]
    assert [d.provenance.line for d in got] == [2, 5, 8] and {d.kind for d in got} == {"paired"}
    assert [(q.code, q.provenance.line) for q in quarantined(items)] == [("malformed_csv", 4),
                                                                          ("malformed_csv", 6)]
    tsv = docs(parse(storage, "notes.tsv", b"title\ttext\nMemo\tSome text\n"))
    assert [(d.kind, d.text, d.fields) for d in tsv] == [("text", "Some text", {"title": "Memo"})]
    instructions = docs(parse(storage, "i.csv", b"instruction,response\nGreet,Hello\n"))
    assert [d.fields for d in instructions] == [{"instruction": "Greet", "response": "Hello"}]


# -- Markdown, HTML, text ---------------------------------------------------------------------


def test_markdown_sections_carry_title_and_heading_path(storage: FileStorage) -> None:
    data = ("Intro before any heading.\n\n"
            "# Payments handbook\n\nOverview text.\n\n"
            "## Wire limits\n\nWires above 10,000 EUR need a second approver.\n\n"
            "```python\n# not a heading\nprint(1)\n```\n\n"
            "### Exceptions ###\n\nNone.\n\n"
            "## Cut-off times\n\nBefore 15:00.\n\n"
            "Setext title\n============\n\nUnder setext.\n").encode()
    got = docs(parse(storage, "wiki/handbook.md", data))
    assert [(d.fields["title"], d.fields["path"]) for d in got] == [
        ("", []), ("Payments handbook", ["Payments handbook"]),
        ("Wire limits", ["Payments handbook", "Wire limits"]),
        ("Exceptions", ["Payments handbook", "Wire limits", "Exceptions"]),
        ("Cut-off times", ["Payments handbook", "Cut-off times"]), ("Setext title", ["Setext title"])]
    assert "# not a heading" in got[2].text and got[2].text.startswith("Wires above")
    assert [d.provenance.line for d in got] == [1, 3, 7, 16, 20, 24]
    assert {d.format for d in got} == {"markdown"} and {d.kind for d in got} == {"text"}


def test_a_markdown_section_above_the_record_limit_is_split_into_parts(storage: FileStorage) -> None:
    body = "".join(f"Paragraph {i} " + "words " * 40 + "\n\n" for i in range(100))
    got = docs(parse(storage, "big.md", f"# Big\n\n{body}".encode(), config=ParserConfig(max_record_bytes=4096)))
    assert len(got) > 4 and all(len(d.text.encode()) <= 4096 for d in got)
    assert [d.fields.get("part", 1) for d in got] == list(range(1, len(got) + 1))
    assert len({d.doc_id for d in got}) == len(got)


HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Card policies</title><script>var tracking = "SCRIPTTEXT";</script>
<style>body { color: red }</style></head>
<body>
<header><a href="/">Home</a> HEADERTEXT</header>
<nav><ul><li>NAVTEXT</li></ul></nav>
<div class="cookie-banner">We use COOKIETEXT</div>
<main>
<p>Welcome to the policy pages.</p>
<h1>Cards</h1>
<p>Cards are <b>blocked</b> after three wrong PINs.</p>
<h2>Replacement</h2>
<p>Order a new card in the app.</p>
<table><tr><td>Standard</td><td>5 days</td></tr></table>
<h3>Fees</h3><p>No fee for the first card.</p>
<div role="navigation">ROLENAV</div>
<h2>Limits</h2><p>ATM limit is 500 EUR.</p>
</main>
<aside>ASIDETEXT</aside>
<footer>FOOTERTEXT (c) 2026</footer>
</body></html>"""


def test_html_keeps_main_text_in_sections_and_drops_boilerplate(storage: FileStorage) -> None:
    got = docs(parse(storage, "site/policies.html", HTML_PAGE))
    all_text = "\n".join(d.text for d in got)
    for boilerplate in ("SCRIPTTEXT", "HEADERTEXT", "NAVTEXT", "COOKIETEXT", "ROLENAV", "ASIDETEXT", "FOOTERTEXT",
                        "color: red"):
        assert boilerplate not in all_text
    assert [(d.fields["title"], d.fields["path"]) for d in got] == [
        ("Card policies", ["Card policies"]), ("Cards", ["Cards"]), ("Replacement", ["Cards", "Replacement"]),
        ("Fees", ["Cards", "Replacement", "Fees"]), ("Limits", ["Cards", "Limits"])]
    assert got[1].text == "Cards are blocked after three wrong PINs."
    assert got[2].text == "Order a new card in the app.\n\nStandard | 5 days"
    assert {d.format for d in got} == {"html"} and len({d.doc_id for d in got}) == len(got)


def test_plain_text_is_chunked_at_paragraphs(storage: FileStorage) -> None:
    paragraphs = [f"Paragraph {i}. " + "Some words here. " * 20 for i in range(30)]
    got = docs(parse(storage, "notes.txt", "\n\n".join(paragraphs).encode(),
                     config=ParserConfig(text_chunk_bytes=1024)))
    assert 5 < len(got) < 30
    assert all(not d.text.startswith("\n") and d.text.startswith("Paragraph") for d in got)
    assert "\n\n".join(d.text for d in got) == "\n\n".join(paragraphs)
    assert got[0].provenance.line == 1 and got[1].provenance.line > 1


# -- PDF ------------------------------------------------------------------------------------------


def _pdf(pages: list[str], user_password: str | None = None) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    if user_password:
        pdf.set_encryption(owner_password="owner", user_password=user_password)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def test_pdf_gives_one_document_per_page(storage: FileStorage) -> None:
    data = _pdf(["Wire limits apply above ten thousand euros.", "Cut-off time is fifteen hundred hours."])
    got = parse(storage, "policies/wires.pdf", data)
    assert [(d.provenance.page, d.format) for d in docs(got)] == [(1, "pdf"), (2, "pdf")]
    assert "ten thousand euros" in docs(got)[0].text and "fifteen hundred" in docs(got)[1].text
    assert not quarantined(got)


def test_encrypted_corrupt_and_textless_pdfs_are_quarantined(storage: FileStorage) -> None:
    encrypted = parse(storage, "locked.pdf", _pdf(["secret"], user_password="pw"))
    assert [(q.code, "password" in q.reason) for q in quarantined(encrypted)] == [("malformed_pdf", True)]
    corrupt = parse(storage, "broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage" + bytes(range(256)))
    assert [q.code for q in corrupt] == ["malformed_pdf"]
    mislabelled = parse(storage, "notreally.pdf", b"just text pretending to be a PDF")
    assert [q.code for q in mislabelled] == ["malformed_pdf"]
    blank = parse(storage, "blank.pdf", _pdf(["", "Some text"]))
    assert [(type(i).__name__, i.provenance.page) for i in blank] == [("Quarantined", 1), ("Document", 2)]
    assert quarantined(blank)[0].code == "empty_page"


# -- Source code ----------------------------------------------------------------------------------


def test_python_is_split_per_top_level_function_and_class(storage: FileStorage) -> None:
    source = ('"""Module docstring."""\nimport os\n\n\n'
              '@cache\ndef load(path):\n    return os.path.getsize(path)\n\n\n'
              'class Store:\n    def get(self):\n        return 1\n\n\n'
              'async def main():\n    pass\n\nMAX = 3\n')
    got = docs(parse(storage, "src/app.py", source.encode()))
    assert [(d.fields["symbol"], d.provenance.line) for d in got] == [
        ("", 1), ("load", 5), ("Store", 10), ("main", 15), ("", 17)]
    assert got[1].text.startswith("@cache\ndef load(path):")
    assert {d.format for d in got} == {"code"} and {d.fields["language"] for d in got} == {"python"}


def test_other_languages_are_chunked_at_blank_lines_with_cheap_symbols(storage: FileStorage) -> None:
    js = ("import x from 'y';\n\n"
          "export async function fetchCard(id) {\n  return api.get(id);\n}\n\n"
          "const total = (a, b) => a + b;\n\n"
          "class Wallet {\n  constructor() {}\n}\n")
    got = docs(parse(storage, "web/app.js", js.encode()))
    assert [d.fields["symbol"] for d in got] == ["", "fetchCard", "total", "Wallet"]
    assert {d.fields["language"] for d in got} == {"javascript"}
    sql = docs(parse(storage, "db/schema.sql", b"CREATE TABLE IF NOT EXISTS accounts (\n  id int\n);\n"))
    assert [d.fields["symbol"] for d in sql] == ["accounts"]
    go = docs(parse(storage, "main.go", b"package main\n\nfunc (s *Server) Handle(w, r) {\n}\n\ntype Card struct{}\n"))
    assert [d.fields["symbol"] for d in go] == ["", "Handle", "Card"]
    broken = docs(parse(storage, "broken.py", b"def ok():\n    return 1\n\ndef broken(:\n    pass\n"))
    assert [d.fields["symbol"] for d in broken] == ["ok", "broken"]


# -- Archives -----------------------------------------------------------------------------------


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_and_gzip_members_are_parsed_recursively(storage: FileStorage) -> None:
    inner = _zip({"deep/notes.md": b"# Deep\n\nNested zip text.\n"})
    data = _zip({"a.jsonl": jsonl({"text": "from zip"}), "docs/": b"", "b.csv.gz": gzip.compress(b"text\nfrom gz\n"),
                 "inner.zip": inner, "c.pdf": _pdf(["PDF inside a zip."]), "d.bin": bytes(64)})
    got = parse(storage, "bundle.zip", data)
    assert [(d.provenance.member, d.text) for d in docs(got)] == [
        ("a.jsonl", "from zip"), ("b.csv.gz!/b.csv", "from gz"), ("inner.zip!/deep/notes.md", "Nested zip text."),
        ("c.pdf", "PDF inside a zip.")]
    assert [(q.provenance.member, q.code) for q in quarantined(got)] == [("d.bin", "binary_file")]
    assert {d.provenance.source for d in docs(got)} == {"bundle.zip"}
    gz = docs(parse(storage, "faq.csv.gz", gzip.compress(b"prompt,completion\nq,a\n")))
    assert [(d.provenance.member, d.fields) for d in gz] == [("faq.csv", {"prompt": "q", "completion": "a"})]


def _zip_bomb(path: Path, size: int = 1 << 30) -> None:
    """A real, valid zip of one member holding ``size`` zero bytes, written in well under a second.

    Deflate blocks ending with a full flush do not refer back, so one compressed MiB of
    zeros repeated is a valid stream of many MiB of zeros.
    """
    chunk = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(chunk, crc)
    name = b"zeros.txt"
    compressed = len(block) * (size // MIB) + len(tail)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, compressed, size, len(name), 0))
        fh.write(name)
        for _ in range(size // MIB):
            fh.write(block)
        fh.write(tail)
        directory = fh.tell()
        fh.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, compressed, size, len(name),
                             0, 0, 0, 0, 0, 0))
        fh.write(name)
        end = fh.tell()
        fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, end - directory, directory, 0))


def test_a_real_zip_bomb_is_refused_before_inflating(storage: FileStorage) -> None:
    bomb = storage.root / "bomb.zip"
    storage.root.mkdir(parents=True)
    _zip_bomb(bomb)
    with zipfile.ZipFile(bomb) as zf:
        [info] = zf.infolist()
        assert info.file_size == 1 << 30 and info.compress_size < 2 * MIB
    tracemalloc.start()
    try:
        got = parse(storage, "bomb.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(q.code, q.provenance.member) for q in got] == [("zip_bomb", "zeros.txt")]
    assert "max_archive_ratio" in got[0].reason and peak < 8 * MIB


def test_a_gzip_bomb_is_stopped_while_inflating(storage: FileStorage) -> None:
    member = gzip.compress(b"a" * MIB)  # concatenated gzip members are one valid stream
    got = parse(storage, "bomb.txt.gz", member * 1024)
    assert [q.code for q in got] == ["zip_bomb"]
    assert "max_archive_ratio" in got[-1].reason


def test_archive_limits_on_members_bytes_and_nesting(storage: FileStorage) -> None:
    many = _zip({f"f{i}.txt": b"hello" for i in range(5)})
    assert [q.code for q in parse(storage, "many.zip", many, config=ParserConfig(max_archive_members=3))] == \
        ["zip_bomb"]
    big = _zip({"a.txt": b"x\n" * MIB, "b.txt": b"y\n" * MIB})
    refused = parse(storage, "big.zip", big, config=ParserConfig(max_archive_bytes=MIB * 3, max_archive_ratio=1e6))
    assert [q.code for q in refused] == ["zip_bomb"] and "max_archive_bytes" in refused[0].reason
    nested = _zip({"outer.zip": _zip({"inner.zip": _zip({"x.txt": b"deep"})})})
    assert [(i.code, i.provenance.member) for i in parse(storage, "nested.zip", nested,  # type: ignore[union-attr]
                                                         config=ParserConfig(max_archive_depth=1))] == \
        [("zip_bomb", "outer.zip!/inner.zip")]
    assert [q.code for q in parse(storage, "broken.zip", b"PK\x03\x04" + bytes(100))] == ["malformed_archive"]
    compressed = gzip.compress(jsonl(*({"text": f"line {i}"} for i in range(20_000))))
    cut = parse(storage, "cut.jsonl.gz", compressed[:len(compressed) // 2])
    assert docs(cut) and [q.code for q in quarantined(cut)] == ["malformed_archive"]


# -- Bad input ----------------------------------------------------------------------------------


def test_binary_empty_unsupported_and_badly_encoded_objects(storage: FileStorage) -> None:
    assert [q.code for q in parse(storage, "blob.jsonl", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(100))] == \
        ["binary_file"]
    noisy = bytes(random.Random(1).choice([i for i in range(1, 32) if i not in (9, 10, 13)]) for _ in range(500))
    assert [q.code for q in parse(storage, "noise.txt", noisy)] == ["binary_file"]
    assert [q.code for q in parse(storage, "empty.csv", b"")] == ["empty_file"]
    assert [q.code for q in parse(storage, "model.xyz", b"plain text")] == ["unsupported_format"]
    assert [q.code for q in parse(storage, "report.docx", _zip({"word/document.xml": b"<w/>"}))] == \
        ["unsupported_format"]
    latin1 = parse(storage, "latin1.txt", "Caf\xe9 cr\xe8me".encode("latin-1"))
    assert [(q.code, q.provenance.offset) for q in latin1] == [("bad_encoding", 3)]
    assert "byte offset 3" in latin1[0].reason
    late = jsonl({"text": "ok"}) * 500 + b'{"text": "caf\xe9"}\n' + jsonl({"text": "after"})
    items = parse(storage, "late.jsonl", late)
    [bad] = quarantined(items)
    assert (bad.code, bad.provenance.line, bad.provenance.offset) == ("bad_encoding", 501, late.index(b"\xe9"))
    assert docs(items)[-1].text == "after"
    assert [q.code for q in parse(storage, "blank.txt", b"\n\n   \n")] == ["no_content"]


def test_byte_order_marks_select_the_encoding(storage: FileStorage) -> None:
    record = {"text": "Grüße aus 東京"}
    for name, data in [("sig.jsonl", codecs.BOM_UTF8 + jsonl(record)),
                       ("utf16.jsonl", jsonl(record).decode().encode("utf-16")),
                       ("utf16be.csv", codecs.BOM_UTF16_BE + "text\nGrüße aus 東京\n".encode("utf-16-be"))]:
        got = parse(storage, name, data)
        assert [d.text for d in docs(got)] == ["Grüße aus 東京"], name


def test_a_100_mb_line_is_skipped_without_reading_it_into_memory(storage: FileStorage, tmp_path: Path) -> None:
    storage.root.mkdir(parents=True)
    with open(storage.root / "huge.jsonl", "wb") as fh:
        fh.write(jsonl({"text": "before"}))
        fh.write(b'{"text": "')
        block = b"a" * MIB
        for _ in range(100):
            fh.write(block)
        fh.write(b'"}\n')
        fh.write(jsonl({"text": "after"}))
    tracemalloc.start()
    try:
        got = parse(storage, "huge.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [d.text for d in docs(got)] == ["before", "after"]
    [big] = quarantined(got)
    assert (big.code, big.provenance.line, big.provenance.offset) == ("oversized_record", 2, 19)
    assert "max_record_bytes" in big.reason
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_format_hints_decide_for_names_without_a_known_extension(storage: FileStorage) -> None:
    assert [d.format for d in docs(parse(storage, "export", jsonl({"text": "a"}), format_hint="jsonl"))] == ["jsonl"]
    tickets = json.dumps([{"id": 1, "messages": [{"author_role": "customer", "body": "hi"}]}]).encode()
    assert [d.kind for d in docs(parse(storage, "dump.dat", tickets, format_hint="DATASET_FORMAT_TICKETS_JSON"))] \
        == ["ticket"]
    assert [d.format for d in docs(parse(storage, "README", b"# Title\n\nBody\n"))] == ["text"]
    assert [d.format for d in docs(parse(storage, "page", HTML_PAGE))] == ["html"] * 5


def test_provenance_is_relative_to_the_dataset_root(storage: FileStorage) -> None:
    storage.write("datasets/faq/a.jsonl", jsonl({"text": "x"}))
    [doc] = parse_object(storage, "datasets/faq/a.jsonl", root="datasets/faq/")
    assert doc.provenance.source == "a.jsonl"
    [doc] = parse_object(storage, "datasets/faq/a.jsonl", root="datasets/faq/a.jsonl")
    assert doc.provenance.source == "a.jsonl"
    [missing] = parse_object(storage, "datasets/faq/gone.jsonl")
    assert isinstance(missing, Quarantined) and missing.code == "missing_object"


def test_parsers_never_raise_on_garbage(storage: FileStorage) -> None:
    rng = random.Random(7)
    names = ["x.jsonl", "x.json", "x.csv", "x.md", "x.html", "x.pdf", "x.py", "x.js", "x.txt", "x.zip", "x.gz", "x"]
    seeds = [b"", b"{", b"[", b'{"a": [', b"<html><h1>", b"%PDF-1.4", b"PK\x03\x04", b"\x1f\x8b", b"\xef\xbb\xbf",
             b"\xff\xfe", b"# h\n", b"a,b\n\"", b"def f(:\n"]
    for i in range(120):
        data = rng.choice(seeds) + bytes(rng.choice([rng.randrange(256), 10, 32, 34, 123, 125, 91, 93, 44, 97])
                                         for _ in range(rng.randrange(0, 400)))
        items = parse(storage, f"fuzz/{i}-{rng.choice(names)}", data)
        assert items and all(isinstance(item, (Document, Quarantined)) for item in items)


def test_reasons_never_carry_content(storage: FileStorage) -> None:
    secret = CANARY.encode()
    inputs = {
        "a.jsonl": b'{"text": "' + secret + b'"\n{"x": ' + secret + b"}\n[\"" + secret + b'"]\n',
        "b.csv": b"text,x\n\"" + secret + b"\",\"" + secret + b"\"\"\n" + secret + b"\n",
        "c.json": b'[{"text": "' + secret + b'"}, ' + secret + b"]",
        "d.txt": secret + b"\xff\xfe" + secret,
        "e.pdf": b"%PDF-1.4 " + secret,
        "f.zip": b"PK\x03\x04" + secret,
        "g.json": b"[" + b'{"ticket_id": "' + secret + b'", "messages": [{"author_role": "' + secret + b'"}]}]',
    }
    for name, data in inputs.items():
        for item in quarantined(parse(storage, name, data)):
            assert CANARY not in item.reason and CANARY not in item.code, name


def test_parser_config_is_strict() -> None:
    with pytest.raises(ValueError):
        ParserConfig(max_record_bytes=10)
    with pytest.raises(ValueError):
        ParserConfig(unknown_limit=1)  # type: ignore[call-arg]
    assert ParserConfig().max_record_bytes == MIB
