"""Tamper evidence: each kind of edit to an audit log is detected and located; signed heads hold.

The signed-head primitives (keys, signatures, the head policy) are tested at the
end of this module, since every verification depends on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit import chain, merkle, signed_heads
from services.audit.chain import AuditRecord
from services.audit.merkle import Frontier
from services.audit.signed_heads import SignedHead, TreeHead
from services.audit.verify import (
    GENESIS_ANCHOR,
    Problem,
    ProblemKind,
    VerifyReport,
    anchor_from_hashes,
    extend_anchor,
    verify_heads_consistent,
    verify_log,
    verify_range,
    verify_record_in_head,
)

pytestmark = pytest.mark.unit

TENANT = "acme"
SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
INTRUDER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEY_ID = signed_heads.key_id(SIGNER.public_key())
KEYS = {KEY_ID: SIGNER.public_key()}
T0 = 1_700_000_000_000


def _fields(i: int, tenant: str = TENANT) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "record_id": f"evt-{i}",
        "time_ms": T0 + i,
        "kind": "rpc.allowed" if i % 3 else "dataset.mounted",
        "actor": f"user:{i % 5}",
        "resource": f"dataset/ds-{i % 7}",
        "outcome": "allowed",
        "correlation_id": f"corr-{i // 10}",
        "attributes": {"rows": str(i), "digest": f"{i:064x}"},
    }


def _fields_of(record: AuditRecord) -> dict[str, Any]:
    keys = ("tenant_id", "record_id", "time_ms", "kind", "actor", "resource", "outcome", "correlation_id", "attributes")
    return {key: getattr(record, key) for key in keys}


def sign_over(
    records: list[AuditRecord], size: int, key: Ed25519PrivateKey = SIGNER, tenant: str = TENANT
) -> SignedHead:
    root = merkle.root([bytes.fromhex(r.hash) for r in records[:size]])
    head = TreeHead(tenant, size, root.hex(), T0 + size, signed_heads.key_id(key.public_key()))
    return signed_heads.sign_head(key, head)


def build_log(n: int, every: int, tenant: str = TENANT) -> tuple[list[AuditRecord], list[SignedHead]]:
    """A clean log of ``n`` records, with a head signed after every ``every`` records."""
    records: list[AuditRecord] = []
    heads: list[SignedHead] = []
    frontier = Frontier()
    prev = None
    for i in range(1, n + 1):
        prev = chain.append(prev, **_fields(i, tenant))
        records.append(prev)
        frontier = frontier.append(bytes.fromhex(prev.hash))
        if i % every == 0:
            head = TreeHead(tenant, i, frontier.root().hex(), T0 + i, KEY_ID)
            heads.append(signed_heads.sign_head(SIGNER, head))
    return records, heads


RECORDS, HEADS = build_log(1000, every=100)


def rewrite_from(records: list[AuditRecord], seq: int, **changes: Any) -> list[AuditRecord]:
    """A consistent rewrite: record ``seq`` changed and every later hash and link recomputed."""
    out = list(records[: seq - 1])
    prev = out[-1] if out else None
    for record in records[seq - 1:]:
        fields = _fields_of(record) | (changes if record.seq == seq else {})
        prev = chain.append(prev, **fields)
        out.append(prev)
    return out


def edited(records: list[AuditRecord], seq: int) -> list[AuditRecord]:
    out = list(records)
    out[seq - 1] = replace(out[seq - 1], outcome="denied")
    return out


def edited_and_rehashed(records: list[AuditRecord], seq: int) -> list[AuditRecord]:
    out = edited(records, seq)
    out[seq - 1] = replace(out[seq - 1], hash=chain.record_hash(out[seq - 1]))
    return out


def deleted(records: list[AuditRecord], first: int, last: int | None = None) -> list[AuditRecord]:
    return records[: first - 1] + records[(last or first):]


def swapped(records: list[AuditRecord], seq: int) -> list[AuditRecord]:
    out = list(records)
    out[seq - 1], out[seq] = out[seq], out[seq - 1]
    return out


def moved(records: list[AuditRecord], seq: int, to: int) -> list[AuditRecord]:
    out = list(records)
    out.insert(to, out.pop(seq - 1))
    return out


def forged_record(records: list[AuditRecord], seq: int) -> AuditRecord:
    """A well-formed record claiming ``seq``, linked to the genuine ``seq - 1``."""
    prev = records[seq - 2] if seq > 1 else None
    return chain.append(prev, **(_fields(seq) | {"record_id": "forged", "outcome": "allowed", "actor": "user:mallory"}))


def check(report: VerifyReport, kind: ProblemKind, seq: int, last_seq: int | None = None) -> Problem:
    assert report.problem is not None, "tampering went unnoticed"
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem
    assert report.problem.last_seq == (seq if last_seq is None else last_seq), report.problem
    assert not report.ok
    return report.problem


# --- a clean log -------------------------------------------------------------------------------


def test_a_clean_log_of_1000_records_with_heads_every_100_verifies() -> None:
    report = verify_log(RECORDS, HEADS, KEYS, tenant_id=TENANT)
    assert report.ok and report.problem is None
    assert (report.checked_records, report.checked_heads, report.signed_through) == (1000, 10, 1000)
    assert report.tenant_id == TENANT


def test_heads_may_come_in_any_order_and_an_empty_log_verifies() -> None:
    assert verify_log(RECORDS, list(reversed(HEADS)), KEYS).ok
    empty = verify_log([], [], KEYS, tenant_id=TENANT)
    assert empty.ok and empty.checked_records == 0 and empty.signed_through == 0


# --- each kind of edit, detected and located ---------------------------------------------------


@pytest.mark.parametrize("seq", [1, 2, 137, 500, 999, 1000])
def test_an_edited_record_is_named(seq: int) -> None:
    report = verify_log(edited(RECORDS, seq), HEADS, KEYS)
    problem = check(report, ProblemKind.EDITED, seq)
    assert problem.position == seq - 1
    assert report.checked_records == seq - 1


@pytest.mark.parametrize("seq", [1, 137, 999])
def test_an_edit_hidden_by_rehashing_that_record_is_named_by_the_next_link(seq: int) -> None:
    report = verify_log(edited_and_rehashed(RECORDS, seq), HEADS, KEYS)
    problem = check(report, ProblemKind.EDITED, seq)
    assert "rehashed" in problem.message


def test_a_rehashed_edit_of_the_last_record_is_caught_by_its_head() -> None:
    report = verify_log(edited_and_rehashed(RECORDS, 1000), HEADS, KEYS)
    check(report, ProblemKind.HEAD_MISMATCH, 901, 1000)


@pytest.mark.parametrize(("first", "last"), [(1, 1), (250, 250), (300, 310), (999, 999)])
def test_deleted_records_are_named(first: int, last: int) -> None:
    report = verify_log(deleted(RECORDS, first, last), HEADS, KEYS)
    check(report, ProblemKind.DELETED, first, last)
    assert report.signed_through == (first - 1) // 100 * 100


@pytest.mark.parametrize(
    ("tamper", "seq"),
    [
        (lambda r: swapped(r, 400), 400),
        (lambda r: swapped(r, 1), 1),
        (lambda r: moved(r, 5, len(r)), 5),
        (lambda r: moved(r, 1000, 0), 1),
        (lambda r: moved(r, 700, 650), 651),
        (lambda r: list(reversed(r)), 1),
    ],
    ids=["swap-400-401", "swap-1-2", "5-to-end", "last-to-front", "700-to-651", "reversed"],
)
def test_reordered_records_are_named(tamper: Callable[[list[AuditRecord]], list[AuditRecord]], seq: int) -> None:
    check(verify_log(tamper(RECORDS), HEADS, KEYS), ProblemKind.REORDERED, seq)


def test_a_forged_record_slipped_in_before_the_genuine_one_is_named() -> None:
    records = RECORDS[:449] + [forged_record(RECORDS, 450)] + RECORDS[449:]
    report = verify_log(records, HEADS, KEYS)
    problem = check(report, ProblemKind.INSERTED, 450)
    assert problem.position == 450
    assert "already at position 449" in problem.message


def test_a_forged_record_slipped_in_after_the_genuine_one_is_named() -> None:
    records = RECORDS[:450] + [forged_record(RECORDS, 450)] + RECORDS[450:]
    report = verify_log(records, HEADS, KEYS)
    problem = check(report, ProblemKind.INSERTED, 450)
    assert problem.position == 450


def rehashed(record: AuditRecord, **changes: Any) -> AuditRecord:
    """``record`` changed, with its own hash recomputed (a well-formed record that says something else)."""
    changed = replace(record, **changes)
    return replace(changed, hash=chain.record_hash(changed))


@pytest.mark.parametrize(
    ("extra", "at", "seq"),
    [
        (lambda: RECORDS[9], 500, 10),
        (lambda: build_log(3, every=10, tenant="globex")[0][1], 200, 2),
        (lambda: chain.append(None, **(_fields(5000) | {"record_id": "x"})), 300, 1),
        (lambda: rehashed(RECORDS[0], seq=5000, prev_hash="ab" * 32), 300, 5000),
        (lambda: rehashed(forged_record(RECORDS, 301), prev_hash="ab" * 32), 300, 301),
        (lambda: rehashed(RECORDS[0], seq=0), 300, 0),
    ],
    ids=["replayed-copy", "other-tenants-record", "second-genesis", "unrelated-seq", "right-seq-wrong-link", "seq-0"],
)
def test_an_extra_record_is_named(extra: Callable[[], AuditRecord], at: int, seq: int) -> None:
    records = RECORDS[:at] + [extra()] + RECORDS[at:]
    report = verify_log(records, HEADS, KEYS)
    problem = check(report, ProblemKind.INSERTED, seq)
    assert problem.position == at


@pytest.mark.parametrize(("keep", "first_missing", "head_size"), [(999, 1000, 1000), (850, 851, 900), (0, 1, 100)])
def test_a_truncated_log_is_named_by_the_head_that_covers_the_missing_records(
    keep: int, first_missing: int, head_size: int
) -> None:
    report = verify_log(RECORDS[:keep], HEADS, KEYS, tenant_id=TENANT)
    problem = check(report, ProblemKind.TRUNCATED, first_missing, head_size)
    assert problem.head_index == head_size // 100 - 1
    assert report.checked_records == keep


def test_a_head_signed_by_an_unknown_key_is_forged() -> None:
    heads = HEADS[:4] + [sign_over(RECORDS, 450, key=INTRUDER)] + HEADS[4:]
    report = verify_log(RECORDS, heads, KEYS)
    problem = check(report, ProblemKind.FORGED_HEAD, 450)
    assert problem.head_index == 4
    assert "not a published audit key" in problem.message


def test_a_genuine_head_whose_root_was_changed_is_forged() -> None:
    genuine = HEADS[2]
    bent = replace(genuine, head=replace(genuine.head, root_hex="00" * 32))
    report = verify_log(RECORDS, HEADS[:2] + [bent] + HEADS[3:], KEYS)
    problem = check(report, ProblemKind.FORGED_HEAD, 300)
    assert "valid signature" in problem.message


def test_a_head_with_a_garbled_signature_is_forged_not_an_error() -> None:
    garbled = replace(HEADS[0], signature_hex="zz")
    check(verify_log(RECORDS, [garbled], KEYS), ProblemKind.FORGED_HEAD, 100)


def test_another_tenants_genuine_head_is_forged() -> None:
    _, other_heads = build_log(100, every=100, tenant="globex")
    report = verify_log(RECORDS, HEADS + other_heads, KEYS)
    problem = check(report, ProblemKind.FORGED_HEAD, 100)
    assert "another tenant" in problem.message


# --- what the chain alone cannot catch -----------------------------------------------------------


@pytest.mark.parametrize("seq", [1, 250, 901])
def test_a_consistent_rewrite_is_caught_by_the_signed_heads(seq: int) -> None:
    rewritten = rewrite_from(RECORDS, seq, outcome="denied")
    assert rewritten[seq - 1].hash != RECORDS[seq - 1].hash
    report = verify_log(rewritten, HEADS, KEYS)
    lower = (seq - 1) // 100 * 100
    check(report, ProblemKind.HEAD_MISMATCH, lower + 1, lower + 100)
    assert report.checked_records == 1000 and report.signed_through == lower


def test_a_consistent_rewrite_resigned_with_another_key_is_forged() -> None:
    rewritten = rewrite_from(RECORDS, 250, outcome="denied")
    resigned = [sign_over(rewritten, size, key=INTRUDER) for size in range(100, 1001, 100)]
    check(verify_log(rewritten, resigned, KEYS), ProblemKind.FORGED_HEAD, 100)


def test_an_insertion_with_every_later_record_renumbered_is_caught_by_the_heads() -> None:
    prefix = RECORDS[:449]
    out = list(prefix)
    prev = prefix[-1]
    for fields in [_fields(450) | {"record_id": "forged"}] + [_fields_of(r) for r in RECORDS[449:]]:
        prev = chain.append(prev, **fields)
        out.append(prev)
    check(verify_log(out, HEADS, KEYS), ProblemKind.HEAD_MISMATCH, 401, 500)


def test_a_rewrite_after_the_last_head_is_not_caught_and_the_report_says_where_signing_ends() -> None:
    records, heads = build_log(1050, every=100)
    report = verify_log(rewrite_from(records, 1020, outcome="denied"), heads, KEYS)
    assert report.ok and report.signed_through == 1000 and report.checked_records == 1050


def test_the_first_problem_in_log_order_is_reported() -> None:
    late_forgery = sign_over(RECORDS, 500, key=INTRUDER)
    check(verify_log(edited(RECORDS, 50), HEADS + [late_forgery], KEYS), ProblemKind.EDITED, 50)
    early_forgery = sign_over(RECORDS, 10, key=INTRUDER)
    check(verify_log(edited(RECORDS, 50), HEADS + [early_forgery], KEYS), ProblemKind.FORGED_HEAD, 10)


def test_a_whole_log_swapped_for_another_tenants_is_caught_when_the_tenant_is_named() -> None:
    other_records, other_heads = build_log(200, every=100, tenant="globex")
    report = verify_log(other_records, other_heads, KEYS, tenant_id=TENANT)
    check(report, ProblemKind.INSERTED, 1)


SMALL, SMALL_HEADS = build_log(200, every=20)


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["edit", "delete", "swap", "insert", "truncate", "rewrite"]),
    seq=st.integers(1, 199),
)
def test_any_tamper_at_any_position_is_detected_and_located(kind: str, seq: int) -> None:
    if kind == "edit":
        check(verify_log(edited(SMALL, seq), SMALL_HEADS, KEYS), ProblemKind.EDITED, seq)
    elif kind == "delete":
        check(verify_log(deleted(SMALL, seq), SMALL_HEADS, KEYS), ProblemKind.DELETED, seq)
    elif kind == "swap":
        check(verify_log(swapped(SMALL, seq), SMALL_HEADS, KEYS), ProblemKind.REORDERED, seq)
    elif kind == "insert":
        records = SMALL[:seq] + [forged_record(SMALL, seq)] + SMALL[seq:]
        check(verify_log(records, SMALL_HEADS, KEYS), ProblemKind.INSERTED, seq)
    elif kind == "truncate":
        head = (seq // 20 + 1) * 20
        check(verify_log(SMALL[:seq], SMALL_HEADS, KEYS), ProblemKind.TRUNCATED, seq + 1, head)
    else:
        report = verify_log(rewrite_from(SMALL, seq, outcome="denied"), SMALL_HEADS, KEYS)
        lower = (seq - 1) // 20 * 20
        check(report, ProblemKind.HEAD_MISMATCH, lower + 1, lower + 20)


# --- a range, without the records before it ----------------------------------------------------


def _hashes(records: list[AuditRecord]) -> list[str]:
    return [r.hash for r in records]


def test_a_range_verifies_from_the_hashes_before_it() -> None:
    anchor = anchor_from_hashes(_hashes(RECORDS[:300]))
    report = verify_range(RECORDS[300:600], 301, 600, HEADS, KEYS, anchor)
    assert report.ok, report.problem
    assert (report.checked_records, report.checked_heads, report.signed_through) == (300, 4, 600)


def test_a_range_verifies_from_a_stored_head_anchor_plus_the_records_since() -> None:
    at_head = anchor_from_hashes(_hashes(RECORDS[:300]))
    anchor = extend_anchor(at_head, RECORDS[300:350])
    report = verify_range(RECORDS[350:600], 351, 600, HEADS, KEYS, anchor)
    assert report.ok and report.checked_heads == 3 and report.signed_through == 600


def test_a_range_from_the_start_matches_the_whole_log_check() -> None:
    assert verify_range(RECORDS, 1, 1000, HEADS, KEYS, GENESIS_ANCHOR) == verify_log(RECORDS, HEADS, KEYS)


def test_an_edit_inside_a_range_is_named() -> None:
    anchor = anchor_from_hashes(_hashes(RECORDS[:300]))
    check(verify_range(edited(RECORDS, 420)[300:600], 301, 600, HEADS, KEYS, anchor), ProblemKind.EDITED, 420)
    check(verify_range(deleted(RECORDS, 301)[300:599], 301, 600, HEADS, KEYS, anchor), ProblemKind.DELETED, 301)


def test_a_consistent_rewrite_before_the_range_is_caught_through_the_anchor() -> None:
    rewritten = rewrite_from(RECORDS, 120, outcome="denied")
    anchor = anchor_from_hashes(_hashes(rewritten[:300]))
    report = verify_range(rewritten[300:600], 301, 600, HEADS, KEYS, anchor)
    problem = check(report, ProblemKind.HEAD_MISMATCH, 1, 300)
    assert "anchor" in problem.message


def test_a_wrong_frontier_is_caught_by_the_first_head_in_the_range() -> None:
    true_anchor = anchor_from_hashes(_hashes(RECORDS[:350]))
    wrong = replace(true_anchor, frontier=anchor_from_hashes(_hashes(edited_and_rehashed(RECORDS, 10)[:350])).frontier)
    check(verify_range(RECORDS[350:600], 351, 600, HEADS, KEYS, wrong), ProblemKind.HEAD_MISMATCH, 351, 400)


def test_a_range_missing_its_tail_is_truncated_and_extra_records_are_inserted() -> None:
    anchor = anchor_from_hashes(_hashes(RECORDS[:300]))
    check(verify_range(RECORDS[300:550], 301, 600, HEADS, KEYS, anchor), ProblemKind.TRUNCATED, 551, 600)
    check(verify_range(RECORDS[300:401], 301, 400, HEADS, KEYS, anchor), ProblemKind.INSERTED, 401)


def test_a_range_must_start_where_its_anchor_ends() -> None:
    anchor = anchor_from_hashes(_hashes(RECORDS[:300]))
    with pytest.raises(ValueError, match="starts at seq 302 but the anchor covers seq 1..300"):
        verify_range(RECORDS[301:600], 302, 600, HEADS, KEYS, anchor)
    with pytest.raises(ValueError, match="empty"):
        verify_range([], 301, 300, HEADS, KEYS, anchor)


# --- heads and records checked alone, with proofs ----------------------------------------------

LEAVES = [bytes.fromhex(r.hash) for r in RECORDS]


def test_a_later_head_extends_an_earlier_one() -> None:
    proof = merkle.consistency_proof(LEAVES[:700], 300)
    report = verify_heads_consistent(HEADS[2], HEADS[6], proof, KEYS)
    assert report.ok and report.signed_through == 700


def test_a_later_head_over_a_rewritten_log_does_not_extend_an_earlier_one() -> None:
    rewritten = rewrite_from(RECORDS, 120, outcome="denied")
    later = sign_over(rewritten, 700)
    proof = merkle.consistency_proof([bytes.fromhex(r.hash) for r in rewritten[:700]], 300)
    report = verify_heads_consistent(HEADS[2], later, proof, KEYS)
    check(report, ProblemKind.HEAD_MISMATCH, 1, 300)


def test_a_later_head_over_fewer_records_is_truncated_and_a_forged_one_is_forged() -> None:
    check(verify_heads_consistent(HEADS[6], HEADS[2], [], KEYS), ProblemKind.TRUNCATED, 301, 700)
    forged = sign_over(RECORDS, 700, key=INTRUDER)
    check(verify_heads_consistent(HEADS[2], forged, [], KEYS), ProblemKind.FORGED_HEAD, 700)


def test_one_record_is_proved_in_a_signed_head() -> None:
    record = RECORDS[122]
    proof = merkle.inclusion_proof(LEAVES[:500], 122)
    assert verify_record_in_head(record, HEADS[4], proof, KEYS).ok
    check(verify_record_in_head(edited(RECORDS, 123)[122], HEADS[4], proof, KEYS), ProblemKind.EDITED, 123)
    wrong = merkle.inclusion_proof(LEAVES[:500], 121)
    check(verify_record_in_head(record, HEADS[4], wrong, KEYS), ProblemKind.HEAD_MISMATCH, 123)


# --- signed heads ----------------------------------------------------------------------------------


def test_a_key_id_is_the_first_16_hex_of_the_raw_public_key_hash() -> None:
    raw = SIGNER.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(raw).hexdigest()[:16] == KEY_ID


def test_a_signed_head_verifies_and_any_changed_field_breaks_it() -> None:
    signed = HEADS[0]
    assert signed_heads.verify_head(KEYS, signed)
    changes: dict[str, Any] = {
        "tenant_id": "globex", "size": 101, "root_hex": "11" * 32, "time_ms": T0, "key_id": "0" * 16
    }
    for name in changes:
        bent = replace(signed, head=replace(signed.head, **{name: changes[name]}))
        assert not signed_heads.verify_head(KEYS, bent), name
    flipped = ("0" if signed.signature_hex[0] != "0" else "1") + signed.signature_hex[1:]
    assert not signed_heads.verify_head(KEYS, replace(signed, signature_hex=flipped))
    assert not signed_heads.verify_head(KEYS, replace(signed, signature_hex=signed.signature_hex[:-2]))
    assert not signed_heads.verify_head({}, signed)


def test_the_signed_message_is_domain_separated_canonical_json() -> None:
    message = signed_heads.head_bytes(HEADS[0].head)
    assert message.startswith(b"privtune.audit.tree-head.v1\n{\"key_id\":")
    assert signed_heads.head_bytes(HEADS[0].head) == message


def test_signing_refuses_a_head_naming_another_key_or_malformed_fields() -> None:
    head = HEADS[0].head
    with pytest.raises(ValueError, match="is being signed with key"):
        signed_heads.sign_head(INTRUDER, head)
    with pytest.raises(ValueError, match="root_hex"):
        signed_heads.sign_head(SIGNER, replace(head, root_hex="XYZ"))
    with pytest.raises(ValueError, match="size must be a non-negative integer"):
        signed_heads.sign_head(SIGNER, replace(head, size=-1))


def test_keys_round_trip_as_pem_with_and_without_a_password() -> None:
    key = signed_heads.new_private_key()
    plain = signed_heads.private_key_to_pem(key)
    locked = signed_heads.private_key_to_pem(key, password=b"correct horse")
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert locked.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    for loaded in (signed_heads.private_key_from_pem(plain),
                   signed_heads.private_key_from_pem(locked, password=b"correct horse")):
        assert signed_heads.key_id(loaded.public_key()) == signed_heads.key_id(key.public_key())
    public_pem = signed_heads.public_key_to_pem(key.public_key())
    keys = signed_heads.public_keys_from_pem([public_pem, signed_heads.public_key_to_pem(SIGNER.public_key())])
    assert set(keys) == {signed_heads.key_id(key.public_key()), KEY_ID}


def test_loading_keys_refuses_wrong_passwords_other_algorithms_and_garbage() -> None:
    locked = signed_heads.private_key_to_pem(SIGNER, password=b"right")
    with pytest.raises(ValueError, match="does not load as a PEM private key"):
        signed_heads.private_key_from_pem(locked, password=b"wrong")
    with pytest.raises(ValueError, match="does not load as a PEM private key"):
        signed_heads.private_key_from_pem(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="must be Ed25519"):
        signed_heads.private_key_from_pem(ec_pem)
    ec_public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="must be Ed25519"):
        signed_heads.public_key_from_pem(ec_public)
    with pytest.raises(ValueError, match="does not load as a PEM public key"):
        signed_heads.public_key_from_pem(b"nope")


def test_a_signed_head_round_trips_as_json_and_refuses_malformed_input() -> None:
    data = signed_heads.signed_head_to_json(HEADS[3])
    assert signed_heads.signed_head_from_json(data) == HEADS[3]
    for bad, message in [
        (b"{", "not JSON"),
        (b"[]", "JSON object with fields"),
        (data.replace(b'"size":400', b'"size":"400"'), "size must be a non-negative integer"),
        (data.replace(b'"signature_hex":"', b'"signature_hex":"00'), "signature_hex must be 128"),
        (b" " * 5000, "at most 4096 bytes"),
        (data.replace(b"{", b"{ "), "not in canonical form"),
    ]:
        with pytest.raises(ValueError, match=message):
            signed_heads.signed_head_from_json(bad)


@pytest.mark.parametrize(
    ("records", "ms", "kwargs", "expected"),
    [
        (0, 10**9, {}, False),
        (999, 59_999, {}, False),
        (1000, 0, {}, True),
        (1, 60_000, {}, True),
        (10, 0, {"every_records": 10}, True),
        (5, 500, {"every_records": 10, "every_ms": 1000}, False),
        (5, 1000, {"every_records": 10, "every_ms": 1000}, True),
    ],
)
def test_a_head_is_due_by_count_or_by_time_once_records_arrived(
    records: int, ms: int, kwargs: dict[str, int], expected: bool
) -> None:
    assert signed_heads.due(records, ms, **kwargs) is expected


def test_head_intervals_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        signed_heads.due(1, 1, every_records=0)
