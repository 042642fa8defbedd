"""Audit records: canonical bytes, hashes, the link to the predecessor, and what append refuses."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit import chain
from services.audit.chain import GENESIS_HASH, AuditRecord

pytestmark = pytest.mark.unit


def _entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "tenant_id": "acme",
        "record_id": "evt-1",
        "time_ms": 1_700_000_000_000,
        "kind": "rpc.allowed",
        "actor": "user:alice",
        "resource": "dataset/ds-1",
        "outcome": "allowed",
        "correlation_id": "corr-1",
        "attributes": {"rows": "12", "digest": "ab"},
    }
    entry.update(overrides)
    return entry


def test_the_first_record_starts_the_chain_and_hashes_its_canonical_bytes() -> None:
    record = chain.append(None, **_entry())
    expected = (
        '{"actor":"user:alice","attributes":[["digest","ab"],["rows","12"]],"correlation_id":"corr-1",'
        '"kind":"rpc.allowed","outcome":"allowed","prev_hash":"' + "0" * 64 + '","record_id":"evt-1",'
        '"resource":"dataset/ds-1","seq":1,"tenant_id":"acme","time_ms":1700000000000,"v":1}'
    ).encode()
    assert record.seq == 1 and record.prev_hash == GENESIS_HASH
    assert chain.canonical_bytes(record) == expected
    assert record.hash == hashlib.sha256(expected).hexdigest() == chain.record_hash(record)


def test_each_record_links_to_its_predecessor() -> None:
    first = chain.append(None, **_entry())
    second = chain.append(first, **_entry(record_id="evt-2"))
    third = chain.append(second, **_entry(record_id="evt-3"))
    assert [r.seq for r in (first, second, third)] == [1, 2, 3]
    assert second.prev_hash == first.hash and third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3


def test_attributes_are_sorted_so_the_same_facts_hash_the_same() -> None:
    from_dict = chain.append(None, **_entry(attributes={"b": "2", "a": "1"}))
    from_pairs = chain.append(None, **_entry(attributes=[("a", "1"), ("b", "2")]))
    from_lists = chain.append(None, **_entry(attributes=[["b", "2"], ["a", "1"]]))
    assert from_dict == from_pairs == from_lists
    assert from_dict.attributes == (("a", "1"), ("b", "2"))


def test_the_hash_covers_every_field_but_itself() -> None:
    record = chain.append(None, **_entry())
    for field in fields(AuditRecord):
        if field.name == "hash":
            continue
        value = getattr(record, field.name)
        change: dict[str, Any]
        if isinstance(value, int):
            change = {field.name: value + 1}
        elif isinstance(value, tuple):
            change = {field.name: value + (("extra", "1"),)}
        else:
            change = {field.name: value[:-1] + ("1" if value[-1:] != "1" else "2")}
        assert chain.record_hash(replace(record, **change)) != record.hash, field.name
    assert chain.record_hash(replace(record, hash="f" * 64)) == record.hash


def test_non_ascii_text_is_utf8_in_canonical_form() -> None:
    record = chain.append(None, **_entry(actor="user:zoë", resource="模型/1"))
    body = chain.canonical_bytes(record)
    assert "user:zoë".encode() in body and "模型/1".encode() in body
    assert json.loads(body)["actor"] == "user:zoë"


def test_a_record_over_the_size_limit_is_refused_without_echoing_it() -> None:
    huge = {"digest": "x" * chain.MAX_RECORD_BYTES}
    with pytest.raises(ValueError, match="over the 16384-byte limit") as caught:
        chain.append(None, **_entry(attributes=huge))
    assert "xxxxxxxxxx" not in str(caught.value)
    with pytest.raises(ValueError, match="at most 256 attributes"):
        chain.append(None, **_entry(attributes={f"k{i}": "1" for i in range(257)}))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tenant_id": ""}, "tenant_id must not be empty"),
        ({"record_id": ""}, "record_id must not be empty"),
        ({"kind": ""}, "kind must not be empty"),
        ({"actor": 7}, "actor must be a string"),
        ({"time_ms": True}, "time_ms must be an integer"),
        ({"time_ms": -1}, "time_ms must be an integer"),
        ({"time_ms": 2**53}, "time_ms must be an integer"),
        ({"time_ms": 1.5}, "time_ms must be an integer"),
        ({"resource": "bad\ud800"}, "lone surrogate"),
        ({"attributes": [("a", "1"), ("a", "2")]}, "repeated: \\['a'\\]"),
        ({"attributes": [("a", 1)]}, "attribute 'a' must be a string"),
        ({"attributes": [("", "1")]}, "attribute key must not be empty"),
        ({"attributes": ["ab"]}, "must be \\(key, value\\) pairs"),
    ],
)
def test_append_refuses_malformed_fields(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chain.append(None, **_entry(**overrides))


def test_append_refuses_to_join_another_tenants_log() -> None:
    first = chain.append(None, **_entry())
    with pytest.raises(ValueError, match="for tenant 'globex' to tenant 'acme'"):
        chain.append(first, **_entry(tenant_id="globex"))


def test_stored_form_round_trips() -> None:
    record = chain.append(chain.append(None, **_entry()), **_entry(record_id="evt-2", actor="zoë"))
    stored = chain.record_to_json(record)
    assert json.loads(stored)["hash"] == record.hash
    assert chain.record_from_json(stored) == record


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda obj: b"not json", "not JSON"),
        (lambda obj: b"[]", "not a JSON object"),
        (lambda obj: json.dumps({**obj, "extra": 1}).encode(), "has fields"),
        (lambda obj: json.dumps({**obj, "v": 2}).encode(), "format version 2"),
        (lambda obj: json.dumps({**obj, "seq": "1"}).encode(), "seq must be an integer"),
        (lambda obj: json.dumps({**obj, "hash": "XY"}).encode(), "hash must be 64 lowercase hex"),
        (lambda obj: json.dumps({**obj, "attributes": [["a"]]}).encode(), "string pairs"),
        (lambda obj: b" " * (2 * chain.MAX_RECORD_BYTES + 1), "at most 32768 bytes"),
        (lambda obj: json.dumps(obj).encode(), "not in canonical form"),
        (lambda obj: json.dumps(obj, separators=(",", ":")).encode().replace(
            b'"outcome":"allowed"', b'"outcome":"denied","outcome":"allowed"'), "not in canonical form"),
        (lambda obj: json.dumps(obj, sort_keys=True, separators=(",", ":")).encode().replace(b"acme", b"\\u0061cme"),
         "not in canonical form"),
    ],
)
def test_stored_form_refuses_what_is_not_a_record(mutate: Any, message: str) -> None:
    obj = json.loads(chain.record_to_json(chain.append(None, **_entry())))
    with pytest.raises(ValueError, match=message):
        chain.record_from_json(mutate(obj))


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(min_size=1, max_size=30), min_size=3, max_size=3),
    attributes=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5),
)
def test_any_text_round_trips_and_rehashes_identically(texts: list[str], attributes: dict[str, str]) -> None:
    actor, resource, kind = texts
    record = chain.append(None, **_entry(actor=actor, resource=resource, kind=kind, attributes=attributes))
    again = chain.record_from_json(chain.record_to_json(record))
    assert again == record and chain.record_hash(again) == record.hash
