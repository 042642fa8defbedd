"""The audit trail end to end, in one process on the embedded default: calls and events become
chained records in the caller's verified tenant's log, sealed into WORM segments under signed heads;
`privtune audit verify` passes on the real log and names each kind of tampering; AuditService is
for auditors of the tenant (and platform auditors) only, and reading it is audited too."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from privtune.cli import main as cli_main
from privtune.platform import Platform
from privtune.v1 import audit_service_pb2 as apb
from privtune.v1 import audit_service_pb2_grpc as agrpc
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import dataset_service_pb2_grpc as dgrpc
from services.audit import chain, log_store, merkle
from services.audit.signed_heads import signed_head_from_json
from services.audit.tables import audit_records
from tests.platform_fixtures import channel, error_details, metadata, register, start_platform, wait_until

pytestmark = pytest.mark.integration
AUDITOR = ("auditor",)


def _sealed_everything(platform: Platform) -> bool:
    assert platform.engine is not None
    with platform.engine.connect() as conn:
        states = log_store.chain_states(conn)
    return bool(states) and all(s.size == s.sealed_size for s in states)


def _records(platform: Platform, tenant: str) -> list[chain.AuditRecord]:
    assert platform.engine is not None
    with platform.engine.connect() as conn:
        return log_store.records_between(conn, tenant, 1, 10**9)


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with a little of everything in its trail, sealed into several small segments."""
    platform = start_platform(tmp_path_factory.mktemp("audit"), audit_seal_records=4, audit_seal_ms=200)
    try:
        ch = channel(platform)
        datasets = dgrpc.DatasetServiceStub(ch)
        register(datasets, platform, "acme", "support")
        for _ in range(5):
            datasets.ListDatasets(dpb.ListDatasetsRequest(), metadata=metadata("acme"), timeout=30)
        with pytest.raises(grpc.RpcError):  # a viewer may not register datasets
            datasets.CreateDataset(dpb.CreateDatasetRequest(name="x", storage_uri="file:///nowhere"),
                                   metadata=metadata("acme", "vic", roles=("viewer",)), timeout=30)
        with pytest.raises(grpc.RpcError):  # a token of acme with a forged header naming globex
            datasets.ListDatasets(dpb.ListDatasetsRequest(),
                                  metadata=metadata("acme", "mallory") + [("x-privtune-tenant", "globex")], timeout=30)
        datasets.ListDatasets(dpb.ListDatasetsRequest(), metadata=metadata("globex", "gina"), timeout=30)

        def complete() -> bool:
            kinds = [r.kind for r in _records(platform, "acme")]
            return (kinds.count("rpc.allowed") >= 6 and kinds.count("rpc.denied") >= 2
                    and "dataset.registered" in kinds and _sealed_everything(platform))

        wait_until(complete, timeout=60, what="the calls and events in acme's sealed audit log")
        yield platform
    finally:
        platform.stop()


def test_calls_and_events_are_records_of_the_verified_tenant(audited: Platform) -> None:
    acme = _records(audited, "acme")
    allowed = [r for r in acme if r.kind == "rpc.allowed"]
    assert {"/privtune.v1.DatasetService/ListDatasets", "/privtune.v1.DatasetService/CreateDataset"} <= \
        {dict(r.attributes)["method"] for r in allowed}
    assert all(r.actor == "alice" and r.outcome == "OK" for r in allowed)
    denied = {r.actor: r for r in acme if r.kind == "rpc.denied"}
    assert set(denied) >= {"vic", "mallory"}  # the forged header's denial is in acme's trail, the token's tenant
    assert all(r.tenant_id == "globex" for r in _records(audited, "globex"))
    assert not [r for r in _records(audited, "globex") if r.actor in ("mallory", "vic")]
    registered = next(r for r in acme if r.kind == "dataset.registered")
    assert registered.resource.startswith("dataset/") and dict(registered.attributes)["checksum_sha256"]
    # the chain links every record to its predecessor, seq 1, 2, 3...
    assert [r.seq for r in acme] == list(range(1, len(acme) + 1))
    assert all(b.prev_hash == a.hash for a, b in zip(acme, acme[1:]))


def _verify(data_dir: Path, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli_main(["audit", "verify", "--data-dir", str(data_dir), *extra])
    return rc, out.getvalue()


def test_verify_passes_on_the_sealed_log(audited: Platform) -> None:
    rc, out = _verify(audited.config.data_dir, "--json")
    results = {r["tenant_id"]: r for r in map(json.loads, out.splitlines())}
    assert rc == 0, out
    assert {"acme", "globex"} <= set(results)
    acme = results["acme"]
    assert acme["ok"] and acme["segments"] >= 2 and acme["checked_heads"] >= 2
    assert acme["signed_through"] == acme["checked_records"] == len(_records(audited, "acme"))


# ---------------------------------------------------------------- tampering, on a copy of the segments


def _copy(audited: Platform, tmp_path: Path) -> Path:
    """A copy of the platform's data folder's audit files and store, to tamper with."""
    src = audited.config.data_dir
    dst = tmp_path / "copy"
    dst.mkdir()
    # the store first: what it says was sealed is then all in the segments copied after it (the platform runs on)
    with sqlite3.connect(src / "privtune.db") as live, sqlite3.connect(dst / "privtune.db") as copy:
        live.backup(copy)  # a consistent copy of a live WAL database
    # the sealer keeps writing: leave its temporary files (a seal in progress) out of the copy
    shutil.copytree(src / "audit", dst / "audit", ignore=shutil.ignore_patterns(".seal-*", ".*.tmp"))
    for path in (dst / "audit").rglob("*"):
        os.chmod(path, path.stat().st_mode | stat.S_IWUSR)  # what an attacker with the folder does first
    return dst


def _segments(data_dir: Path, tenant: str = "acme") -> list[Path]:
    return sorted((data_dir / "audit" / "segments" / tenant).glob("*.jsonl"))


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def _edit(data_dir: Path) -> int:
    seg = _segments(data_dir)[1]
    lines = _lines(seg)
    record = json.loads(lines[1])
    record["actor"] = "someone-else"  # rewritten in canonical form, so it reads as a valid record
    lines[1] = chain.record_to_json(chain._record_from_fields(record))
    _write(seg, lines)
    return record["seq"]


def _delete(data_dir: Path) -> int:
    seg = _segments(data_dir)[1]
    lines = _lines(seg)
    seq = json.loads(lines[2])["seq"]
    _write(seg, lines[:2] + lines[3:])
    return seq


def _reorder(data_dir: Path) -> int:
    seg = _segments(data_dir)[1]
    lines = _lines(seg)
    first = json.loads(lines[0])["seq"]
    _write(seg, [lines[1], lines[0], *lines[2:]])
    return first


def _insert(data_dir: Path) -> int:
    seg = _segments(data_dir)[1]
    lines = _lines(seg)
    before = chain.record_from_json(lines[0])
    forged = chain.append(before, tenant_id="acme", record_id="forged", time_ms=before.time_ms, kind="rpc.allowed",
                          actor="alice", resource="dataset/x", outcome="OK")
    _write(seg, [lines[0], chain.record_to_json(forged), *lines[1:]])
    return forged.seq


def _truncate(data_dir: Path) -> int:
    last = _segments(data_dir)[-1]
    first_seq = json.loads(_lines(last)[0])["seq"]
    last.unlink()  # a whole trailing segment: only a head kept elsewhere (the store's) shows it
    return first_seq


def _forge_head(data_dir: Path) -> int:
    seg = _segments(data_dir)[0]
    lines = _lines(seg)
    head = json.loads(lines[-1])
    head["signature_hex"] = ("00" if head["signature_hex"][:2] != "00" else "11") + head["signature_hex"][2:]
    lines[-1] = json.dumps(head, sort_keys=True, separators=(",", ":")).encode()
    _write(seg, lines)
    return head["size"]


@pytest.mark.parametrize("tamper,kind", [(_edit, "edited"), (_delete, "deleted"), (_reorder, "reordered"),
                                         (_insert, "inserted"), (_truncate, "truncated"),
                                         (_forge_head, "forged_head")])
def test_verify_names_the_first_tampered_record(audited: Platform, tmp_path: Path, tamper, kind: str) -> None:
    data_dir = _copy(audited, tmp_path)
    seq = tamper(data_dir)
    rc, out = _verify(data_dir, "--tenant", "acme", "--json")
    result = json.loads(out)
    assert rc == 1, out
    assert result["problem"]["kind"] == kind, out
    assert result["problem"]["seq"] == seq, out
    if kind in ("edited", "reordered", "inserted"):
        assert result["problem"]["location"].startswith(_segments(data_dir)[1].name), out
    # the untouched tenant still verifies
    assert _verify(data_dir, "--tenant", "globex")[0] == 0


def test_a_line_that_is_not_a_record_is_reported_where_it_is(audited: Platform, tmp_path: Path) -> None:
    data_dir = _copy(audited, tmp_path)
    seg = _segments(data_dir)[0]
    lines = _lines(seg)
    lines[1] = b"{not json"
    _write(seg, lines)
    rc, out = _verify(data_dir, "--tenant", "acme")
    assert rc == 1
    assert f"unreadable line {seg.name}:2" in out
    assert "deleted at seq 2" in out


def test_a_range_verifies_without_trusting_what_is_outside_it(audited: Platform, tmp_path: Path) -> None:
    data_dir = _copy(audited, tmp_path)
    size = len(_records(audited, "acme"))
    assert _verify(data_dir, "--tenant", "acme", "--from", "5", "--to", str(size))[0] == 0
    seq = _edit(data_dir)
    rc, out = _verify(data_dir, "--tenant", "acme", "--from", str(seq), "--to", str(size), "--json")
    assert rc == 1 and json.loads(out)["problem"]["kind"] == "edited"


# ---------------------------------------------------------------- AuditService


def _audit(platform: Platform) -> agrpc.AuditServiceStub:
    return agrpc.AuditServiceStub(channel(platform))


def test_only_auditors_of_the_tenant_read_its_log(audited: Platform) -> None:
    stub = _audit(audited)
    mine = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(page_size=1000),
                                   metadata=metadata("acme", "ann", roles=AUDITOR), timeout=30)
    assert mine.records and {r.tenant_id for r in mine.records} == {"acme"}
    for roles in (("viewer",), ("ml-engineer",), ("admin",), ("approver",)):
        with pytest.raises(grpc.RpcError) as refused:
            stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(), metadata=metadata("acme", "eve", roles=roles),
                                    timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as cross:  # globex's auditor asks for acme's log
        stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(tenant_id="acme"),
                                metadata=metadata("globex", "gus", roles=AUDITOR), timeout=30)
    assert cross.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(cross.value).reason == "CROSS_TENANT"
    platform_view = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(tenant_id="acme", page_size=1000),
                                            metadata=metadata("platform", "pat", roles=AUDITOR), timeout=30)
    assert [r.seq for r in platform_view.records][:len(mine.records)] == [r.seq for r in mine.records]

    def audited_reads() -> set[str]:
        return {r.actor for r in _records(audited, "acme") if r.kind == "rpc.allowed"
                and dict(r.attributes)["method"] == "/privtune.v1.AuditService/SearchAuditRecords"}
    wait_until(lambda: "ann" in audited_reads(), timeout=30, what="the auditor's read in acme's trail")
    wait_until(lambda: any(r.actor == "gus" and r.kind == "rpc.denied" for r in _records(audited, "globex")),
               timeout=30, what="the cross-tenant attempt in globex's trail (the caller's)")
    assert "gus" not in {r.actor for r in _records(audited, "acme")}


def test_search_filters_and_pages_with_signed_tokens(audited: Platform) -> None:
    stub = _audit(audited)
    md = metadata("acme", "ann", roles=AUDITOR)
    seen, token = [], ""
    while True:
        page = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(kinds=["rpc."], page_size=3, page_token=token),
                                       metadata=md, timeout=30)
        seen.extend(page.records)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) >= 8 and all(r.kind.startswith("rpc.") for r in seen)
    assert [r.seq for r in seen] == sorted({r.seq for r in seen})
    denied = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(actor="vic"), metadata=md, timeout=30)
    assert [r.kind for r in denied.records] == ["rpc.denied"]
    record = seen[0]
    assert chain.record_hash(chain.record_from_json(record.canonical_json.encode())) == record.hash
    with pytest.raises(grpc.RpcError) as bad:  # a token issued for another filter
        stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(actor="alice", page_token=page_token_of(stub, md)),
                                metadata=md, timeout=30)
    assert error_details(bad.value).reason == "INVALID_PAGE_TOKEN"


def page_token_of(stub: agrpc.AuditServiceStub, md: list[tuple[str, str]]) -> str:
    token = stub.SearchAuditRecords(apb.SearchAuditRecordsRequest(page_size=1), metadata=md, timeout=30)
    assert token.next_page_token
    return token.next_page_token


def test_heads_and_proofs_check_out_against_the_published_key(audited: Platform) -> None:
    from services.audit.signed_heads import public_keys_from_pem, verify_head

    stub = _audit(audited)
    md = metadata("acme", "ann", roles=AUDITOR)
    head = stub.GetAuditTreeHead(apb.GetAuditTreeHeadRequest(), metadata=md, timeout=30).head
    keys = stub.ListAuditPublicKeys(apb.ListAuditPublicKeysRequest(), metadata=md, timeout=30).keys
    signed = signed_head_from_json(head.signed_head_json.encode())
    assert verify_head(public_keys_from_pem([k.public_key_pem.encode() for k in keys]), signed)
    proof = stub.GetAuditProof(apb.GetAuditProofRequest(seq=2, tree_size=head.size, old_size=1), metadata=md,
                               timeout=30)
    root = bytes.fromhex(head.root_hex)
    assert proof.root_hex == head.root_hex
    assert merkle.verify_inclusion(bytes.fromhex(proof.record_hash), 1, head.size,
                                   [bytes.fromhex(p) for p in proof.inclusion_path], root)
    assert merkle.verify_consistency(1, head.size, bytes.fromhex(proof.old_root_hex), root,
                                     [bytes.fromhex(p) for p in proof.consistency_path])
    with pytest.raises(grpc.RpcError) as bad:
        stub.GetAuditProof(apb.GetAuditProofRequest(seq=1, tree_size=10**9), metadata=md, timeout=30)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sealed_segments_are_read_only_files(audited: Platform) -> None:
    for seg in _segments(audited.config.data_dir):
        assert not seg.stat().st_mode & 0o222, f"{seg} is writable"
    assert audited.engine is not None
    with audited.engine.connect() as conn:
        assert conn.execute(audit_records.select().limit(1)).first() is not None


# ---------------------------------------------------------------- what an adversarial review tried


def _forged_tail(data_dir: Path) -> None:
    """Chain made-up records onto the real log, in a new segment with no head (nobody has the key)."""
    last = chain.record_from_json(_lines(_segments(data_dir)[-1])[-2])
    forged, lines = last, []
    for i in range(3):
        forged = chain.append(forged, tenant_id="acme", record_id=f"forged-{i}", time_ms=last.time_ms,
                              kind="rpc.allowed", actor="bob", resource="dataset_id=payroll", outcome="OK")
        lines.append(chain.record_to_json(forged))
    name = f"{last.seq + 1:012d}-{forged.seq:012d}.jsonl"
    _write(data_dir / "audit" / "segments" / "acme" / name, lines)


@pytest.mark.parametrize("store", ["with the store", "without it"])
def test_records_added_after_the_last_head_are_caught(audited: Platform, tmp_path: Path, store: str) -> None:
    data_dir = _copy(audited, tmp_path)
    _forged_tail(data_dir)
    rc, out = _verify(data_dir, "--tenant", "acme", "--json", *(["--no-store"] if store == "without it" else []))
    result = json.loads(out)
    assert rc == 1 and not result["ok"], out
    assert any("no head signed by a published key closes it" in line for line in result["shape"]), out
    assert result["problem"]["kind"] == "inserted", out


def test_a_line_edited_out_of_canonical_form_is_caught(audited: Platform, tmp_path: Path) -> None:
    """A repeated key: Python reads the last value, another reader the first."""
    data_dir = _copy(audited, tmp_path)
    seg = _segments(data_dir)[1]
    lines = _lines(seg)
    lines[0] = b'{"actor":"mallory",' + lines[0][1:]
    _write(seg, lines)
    rc, out = _verify(data_dir, "--tenant", "acme", "--json", "--no-store")
    result = json.loads(out)
    assert rc == 1 and any(f"{seg.name}:1: edited" in line for line in result["shape"]), out


def test_a_deleted_tenant_is_caught_through_the_store(audited: Platform, tmp_path: Path) -> None:
    data_dir = _copy(audited, tmp_path)
    shutil.rmtree(data_dir / "audit" / "segments" / "globex")
    rc, out = _verify(data_dir, "--json")
    results = {r["tenant_id"]: r for r in map(json.loads, out.splitlines())}
    assert rc == 1 and not results["globex"]["ok"] and results["acme"]["ok"], out
    assert any("truncated" in line for line in results["globex"]["shape"]), out


def test_a_key_planted_in_the_data_folder_does_not_fool_keys_kept_elsewhere(audited: Platform,
                                                                             tmp_path: Path) -> None:
    from services.audit.signed_heads import key_id, new_private_key, public_key_to_pem, sign_head, signed_head_to_json

    data_dir = _copy(audited, tmp_path)
    kept = tmp_path / "auditor-keys"
    shutil.copytree(data_dir / "audit" / "public-keys", kept)  # what the auditor took home
    evil = new_private_key()
    (data_dir / "audit" / "public-keys" / f"{key_id(evil.public_key())}.pem").write_bytes(
        public_key_to_pem(evil.public_key()))
    seg = _segments(data_dir)[0]
    lines = _lines(seg)
    old = signed_head_from_json(lines[-1])
    forged = sign_head(evil, old.head.__class__(**{**old.head.__dict__, "key_id": key_id(evil.public_key())}))
    lines[-1] = signed_head_to_json(forged)
    _write(seg, lines)
    assert _verify(data_dir, "--tenant", "acme", "--no-store")[0] == 0  # the folder's keys are the attacker's too
    rc, out = _verify(data_dir, "--tenant", "acme", "--no-store", "--keys", str(kept), "--json")
    assert rc == 1, out


def test_a_range_is_checked_up_to_the_head_that_closes_it(audited: Platform, tmp_path: Path) -> None:
    """Rewrite record 6 and re-chain 6..8: the chain inside the range is consistent, the segment's head is not."""
    data_dir = _copy(audited, tmp_path)
    seg = _segments(data_dir)[1]  # seqs 5..8
    lines = _lines(seg)
    records = [chain.record_from_json(line) for line in lines[:-1]]
    prev, rewritten = records[0], [lines[0]]
    for i, r in enumerate(records[1:], start=1):
        prev = chain.append(prev, tenant_id=r.tenant_id, record_id=r.record_id, time_ms=r.time_ms, kind=r.kind,
                            actor="someone-else" if i == 1 else r.actor, resource=r.resource, outcome=r.outcome,
                            correlation_id=r.correlation_id, attributes=r.attributes)
        rewritten.append(chain.record_to_json(prev))
    _write(seg, rewritten + [lines[-1]])
    rc, out = _verify(data_dir, "--tenant", "acme", "--no-store", "--from", "5", "--to", "7", "--json")
    assert rc == 1, out
