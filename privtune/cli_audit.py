"""The audit trail from the command line.

    privtune audit verify [--tenant T | --all] [--from SEQ] [--to SEQ] [--head FILE ...] [--json]
    privtune audit search --tenant T [--log OTHER] [--actor A] [--resource R] [--kind K ...]
                          [--since ISO] [--until ISO] [--page-size N] [--all-pages]
    privtune audit head --tenant T [--log OTHER]

``verify`` reads the sealed segments straight from WORM storage (``PRIVTUNE_AUDIT_STORAGE``, else
``<data dir>/audit/segments``) with the published public keys (``--keys``, else
``<data dir>/audit/public-keys``), plus every head the metadata store kept (``--no-store`` to
skip) and any ``--head`` file: it needs no running platform, and exits 1 naming the first record
that was edited, deleted, reordered, inserted or truncated. ``search`` and ``head`` ask the
AuditService over gRPC with the ``auditor`` role (``PRIVTUNE_ROLES`` overrides; a token of the
``platform`` tenant may read any tenant's log with ``--log``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from privtune.cli_client import call_metadata, client_channel, print_message, print_rpc_error

AUDITOR_ROLES = "auditor"


def add_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail: verify, search, tree heads")
    asub = audit.add_subparsers(dest="action", required=True)

    p = asub.add_parser("verify", help="check sealed audit segments against their signed heads (offline)")
    p.add_argument("--data-dir", help="the platform's data folder (default $PRIVTUNE_DATA_DIR, else ./var)")
    p.add_argument("--storage", help="WORM storage URI (default $PRIVTUNE_AUDIT_STORAGE, else "
                                     "<data dir>/audit/segments)")
    p.add_argument("--keys", help="folder of published public keys, *.pem (default <data dir>/audit/public-keys)")
    p.add_argument("--tenant", help="verify this tenant's log (default: every tenant in the storage)")
    p.add_argument("--from", dest="start", type=int, help="verify only from this seq ...")
    p.add_argument("--to", dest="end", type=int, help="... to this seq")
    p.add_argument("--head", action="append", default=[], help="a signed head JSON file kept elsewhere (repeatable)")
    p.add_argument("--no-store", action="store_true", help="do not use the heads the metadata store kept")
    p.add_argument("--json", action="store_true", help="one JSON object per tenant")
    p.set_defaults(func=cmd_verify)

    for name, helptext in (("search", "search a tenant's audit log (AuditService)"),
                           ("head", "the latest signed tree head of a tenant's log (AuditService)")):
        p = asub.add_parser(name, help=helptext)
        p.add_argument("--target", default="127.0.0.1:50051", help="gRPC address of the platform")
        p.add_argument("--tenant", required=True, help="your tenant (the token's)")
        p.add_argument("--actor", default="cli")
        p.add_argument("--log", default="", help="another tenant's log (platform auditors only)")
        if name == "search":
            p.add_argument("--who", dest="who", default="", help="only records of this actor")
            p.add_argument("--resource", default="", help="exact resource, or a prefix ending in '/'")
            p.add_argument("--kind", action="append", default=[], help="kind, or a prefix ending in '.' (repeatable)")
            p.add_argument("--since", help="from this time (ISO 8601, inclusive)")
            p.add_argument("--until", help="until this time (ISO 8601, exclusive)")
            p.add_argument("--page-size", type=int, default=100)
            p.add_argument("--page-token", default="")
            p.add_argument("--all-pages", action="store_true", help="follow next_page_token to the end")
        p.set_defaults(func=cmd_search if name == "search" else cmd_head)


def _timestamp(text: str | None, flag: str) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"error: {flag} {text!r} is not an ISO 8601 time (e.g. 2026-12-05T10:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(dt.timezone.utc))
    return ts


def cmd_search(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from privtune.v1 import audit_service_pb2 as pb
    from privtune.v1 import audit_service_pb2_grpc as pb_grpc

    request = pb.SearchAuditRecordsRequest(tenant_id=args.log, actor=args.who, resource=args.resource,
                                           kinds=args.kind, page_size=args.page_size, page_token=args.page_token)
    for field, flag in (("start_time", "--since"), ("end_time", "--until")):
        ts = _timestamp(getattr(args, "since" if field == "start_time" else "until"), flag)
        if ts is not None:
            getattr(request, field).CopyFrom(ts)
    channel = client_channel(args.target)
    try:
        stub = pb_grpc.AuditServiceStub(channel)
        metadata = call_metadata(args, AUDITOR_ROLES)
        while True:
            response = stub.SearchAuditRecords(request, metadata=metadata, timeout=60)
            for record in response.records:
                print(json.dumps(MessageToDict(record, preserving_proto_field_name=True), sort_keys=True))
            if not (args.all_pages and response.next_page_token):
                if response.next_page_token:
                    print(json.dumps({"next_page_token": response.next_page_token}))
                return 0
            request.page_token = response.next_page_token
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    finally:
        channel.close()


def cmd_head(args: argparse.Namespace) -> int:
    import grpc

    from privtune.v1 import audit_service_pb2 as pb
    from privtune.v1 import audit_service_pb2_grpc as pb_grpc

    channel = client_channel(args.target)
    try:
        response = pb_grpc.AuditServiceStub(channel).GetAuditTreeHead(
            pb.GetAuditTreeHeadRequest(tenant_id=args.log), metadata=call_metadata(args, AUDITOR_ROLES), timeout=30)
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    finally:
        channel.close()
    print_message(response)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from services.audit import keys as audit_keys
    from services.audit.signed_heads import signed_head_from_json
    from services.audit.store_verify import verify_stored_log
    from services.audit.worm.registry import open_segment_store
    from services.common.config import PlatformConfig

    config = PlatformConfig.from_env(args.data_dir)
    store = open_segment_store(args.storage or config.audit_storage_uri)
    key_dir = Path(args.keys) if args.keys else config.audit_dir / "public-keys"
    public_keys = audit_keys.keys_in_folder(key_dir)
    if not public_keys:
        print(f"error: no public keys in {key_dir}: pass --keys with the audit service's published keys "
              "(AuditService.ListAuditPublicKeys)", file=sys.stderr)
        return 2
    given = []
    for path in args.head:
        try:
            given.append(signed_head_from_json(Path(path).read_bytes().strip()))
        except (OSError, ValueError) as exc:
            print(f"error: --head {path}: {exc}", file=sys.stderr)
            return 2
    if args.end is not None and args.start is None:
        print("error: --to needs --from", file=sys.stderr)
        return 2
    if not args.keys:
        print(f"note: trusting the {len(public_keys)} public key(s) in {key_dir}, inside the data folder: whoever "
              "can rewrite the log there can add a key too. For independent assurance pass --keys (and --head) "
              "kept outside it", file=sys.stderr)
    kept = None if args.no_store else _store_records(config)
    if kept is None and not args.no_store:
        print("warning: the metadata store could not be read: a deleted trailing segment or tenant cannot be "
              "detected without it (or without --head files kept elsewhere)", file=sys.stderr)
    known = set(kept[0]) if kept else set()
    tenants = [args.tenant] if args.tenant else sorted(set(store.tenants()) | known)
    failed = 0
    for tenant in tenants:
        heads = [h for h in given if h.head.tenant_id == tenant] + (kept[0].get(tenant, []) if kept else [])
        sealed = kept[1].get(tenant, []) if kept else None
        result = verify_stored_log(store, tenant, public_keys, heads, args.start, args.end, sealed=sealed)
        failed += not result.ok
        _print_result(result, args.json)
    if not tenants:
        print(f"no audit segments in {store.uri}", file=sys.stderr)
    return 1 if failed else 0


def _store_records(config: Any) -> tuple[dict[str, list[Any]], dict[str, list[Any]]] | None:
    """What the metadata store kept of every tenant's sealed log: its heads and its sealed segments
    (None when there is no store to read)."""
    from sqlalchemy import select
    from sqlalchemy.exc import SQLAlchemyError

    from services.audit import log_store
    from services.audit.store_verify import SealedSegment
    from services.audit.tables import audit_segments
    from services.common.store.engine import create_store_engine

    if config.store_uri.startswith("sqlite:///") and not Path(config.store_uri[len("sqlite:///"):]).exists():
        return None
    try:
        engine = create_store_engine(config.store_uri)
        try:
            with engine.connect() as conn:
                sealed: dict[str, list[SealedSegment]] = {}
                for row in conn.execute(select(audit_segments).order_by(audit_segments.c.tenant_id,
                                                                        audit_segments.c.first_seq)):
                    sealed.setdefault(row.tenant_id, []).append(
                        SealedSegment(row.name, row.first_seq, row.last_seq, row.sha256))
                return {t: log_store.sealed_heads(conn, t) for t in sealed}, sealed
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        print(f"warning: could not read the metadata store ({type(exc).__name__})", file=sys.stderr)
        return None


def _print_result(result: Any, as_json: bool) -> None:
    report = result.report
    problem = report.problem
    if as_json:
        print(json.dumps({
            "tenant_id": result.tenant_id, "ok": result.ok, "segments": result.segments,
            "checked_records": report.checked_records, "checked_heads": report.checked_heads,
            "signed_through": report.signed_through,
            "problem": None if problem is None else {"kind": str(problem.kind), "seq": problem.seq,
                                                     "last_seq": problem.last_seq, "message": problem.message,
                                                     "location": result.location},
            "shape": list(result.shape),
            "unreadable": list(result.unreadable), "extra_versions": list(result.extra_versions),
            "foreign": list(result.foreign)}, sort_keys=True))
        return
    status = "OK" if result.ok else "FAILED"
    print(f"{result.tenant_id}: {status}: {report.checked_records} records, {report.checked_heads} signed heads "
          f"verified in {result.segments} segments; signed through seq {report.signed_through}")
    if problem is not None:
        where = f" at {result.location}" if result.location else ""
        print(f"  first problem: {problem.kind} at seq {problem.seq}{where}: {problem.message}")
    for line in result.shape:
        print(f"  {line}")
    for line in result.unreadable:
        print(f"  unreadable line {line}")
    for line in result.extra_versions:
        print(f"  note: {line} (the locked original was verified)")
    for name in result.foreign:
        print(f"  note: {name} is not a segment name; not read")
