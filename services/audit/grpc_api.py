"""AuditService over gRPC: search a tenant's log, its latest signed head, proofs, public keys.

Who may read what: the role table lets only ``auditor`` (and flagged break-glass) call these; a
caller reads its own tenant's log, and an auditor of the platform tenant (``platform``) may name
any tenant. Every read is itself audited: the gateway records each allowed call (``rpc.allowed``
with the tenant read as the resource).
"""

from __future__ import annotations

import threading

import grpc
from sqlalchemy import Engine, and_, or_, select

from privtune.v1 import audit_service_pb2 as pb
from privtune.v1 import audit_service_pb2_grpc as pb_grpc
from services.audit import chain, keys, log_store, merkle
from services.audit.signed_heads import signed_head_to_json
from services.audit.tables import audit_records
from services.common import page_tokens
from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common.grpc_server import ServiceBinding
from services.common.identity import PLATFORM_TENANT, Caller, caller_from_metadata, is_tenant_id
from services.common.limits import quote

DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_PROOF_SIZE = 5_000_000  # records a proof is computed over in one call


def readable_tenant(caller: Caller, requested: str) -> str:
    """The tenant whose log ``caller`` reads: its own, or any for a platform auditor.

    Raises:
        InvalidArgument: ``requested`` is not a tenant id.
        PermissionDenied: reason CROSS_TENANT: another tenant's log, and the caller is not a platform auditor.
    """
    tenant = requested or caller.tenant_id
    if not is_tenant_id(tenant):
        raise InvalidArgument(f"tenant_id {quote(tenant)} is not a tenant id", field="tenant_id")
    if tenant != caller.tenant_id and caller.tenant_id != PLATFORM_TENANT:
        raise PermissionDenied(f"tenant {caller.tenant_id}'s auditors read only their own tenant's audit log",
                               reason="CROSS_TENANT", metadata={"tenant_id": tenant})
    return tenant


def record_message(record: chain.AuditRecord) -> pb.AuditRecord:
    out = pb.AuditRecord(tenant_id=record.tenant_id, seq=record.seq, record_id=record.record_id, kind=record.kind,
                         actor=record.actor, resource=record.resource, outcome=record.outcome,
                         correlation_id=record.correlation_id, attributes=dict(record.attributes),
                         prev_hash=record.prev_hash, hash=record.hash,
                         canonical_json=chain.record_to_json(record).decode())
    out.time.FromMilliseconds(record.time_ms)
    return out


class AuditServicer(pb_grpc.AuditServiceServicer):
    def __init__(self, engine: Engine, stop: threading.Event) -> None:
        self.engine = engine
        self.stop = stop

    def SearchAuditRecords(self, request: pb.SearchAuditRecordsRequest,
                           context: grpc.ServicerContext) -> pb.SearchAuditRecordsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        tenant = readable_tenant(caller, request.tenant_id)
        if request.page_size > MAX_PAGE:
            raise InvalidArgument(f"page_size {request.page_size} is above the maximum {MAX_PAGE}",
                                  reason="PAGE_SIZE_TOO_LARGE", field="page_size")
        size = request.page_size or DEFAULT_PAGE
        t = audit_records.c
        where = [t.tenant_id == tenant]
        if request.HasField("start_time"):
            where.append(t.time_ms >= request.start_time.ToMilliseconds())
        if request.HasField("end_time"):
            where.append(t.time_ms < request.end_time.ToMilliseconds())
        if request.actor:
            where.append(t.actor == request.actor)
        if request.resource:
            where.append(t.resource.startswith(request.resource, autoescape=True) if request.resource.endswith("/")
                         else t.resource == request.resource)
        if request.kinds:
            where.append(or_(*[t.kind.startswith(k, autoescape=True) if k.endswith(".") else t.kind == k
                               for k in request.kinds]))
        filters = {"start": request.start_time.ToMilliseconds() if request.HasField("start_time") else None,
                   "end": request.end_time.ToMilliseconds() if request.HasField("end_time") else None,
                   "actor": request.actor, "resource": request.resource, "kinds": sorted(request.kinds)}
        key = page_tokens.signing_key(self.engine)
        scope = f"audit_records/{tenant}"
        if request.page_token:
            (after,) = page_tokens.decode(key, request.page_token, caller.tenant_id, scope, filters)
            where.append(t.seq > int(after))
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.seq, t.record_json).where(and_(*where)).order_by(t.seq)
                                .limit(size + 1)).all()
        records = [chain.record_from_json(r.record_json.encode()) for r in rows[:size]]
        token = page_tokens.encode(key, [records[-1].seq], caller.tenant_id, scope, filters) \
            if len(rows) > size else ""
        return pb.SearchAuditRecordsResponse(records=[record_message(r) for r in records], next_page_token=token)

    def GetAuditTreeHead(self, request: pb.GetAuditTreeHeadRequest,
                         context: grpc.ServicerContext) -> pb.GetAuditTreeHeadResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        tenant = readable_tenant(caller, request.tenant_id)
        with self.engine.connect() as conn:
            latest = log_store.latest_head(conn, tenant)
            size = log_store.chain_state(conn, tenant).size
        response = pb.GetAuditTreeHeadResponse(records=size)
        if latest is not None:
            signed = latest[0]
            response.head.CopyFrom(pb.AuditTreeHead(
                tenant_id=tenant, size=signed.head.size, root_hex=signed.head.root_hex, key_id=signed.head.key_id,
                signature_hex=signed.signature_hex, signed_head_json=signed_head_to_json(signed).decode()))
            response.head.time.FromMilliseconds(signed.head.time_ms)
        return response

    def GetAuditProof(self, request: pb.GetAuditProofRequest,
                      context: grpc.ServicerContext) -> pb.GetAuditProofResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        tenant = readable_tenant(caller, request.tenant_id)
        with self.engine.connect() as conn:
            size = log_store.chain_state(conn, tenant).size
            if not 1 <= request.tree_size <= size:
                raise InvalidArgument(f"tree_size must be 1..{size} (the log's size), got {request.tree_size}",
                                      field="tree_size")
            if request.tree_size > MAX_PROOF_SIZE:
                raise InvalidArgument(f"proofs over more than {MAX_PROOF_SIZE} records are not served online; "
                                      "verify the segments offline", field="tree_size")
            if request.seq > request.tree_size or request.old_size > request.tree_size:
                raise InvalidArgument("seq and old_size must not exceed tree_size", field="seq")
            leaves = log_store.hashes_through(conn, tenant, request.tree_size)
        response = pb.GetAuditProofResponse(root_hex=merkle.root(leaves).hex())
        if request.seq:
            response.record_hash = leaves[request.seq - 1].hex()
            response.inclusion_path.extend(p.hex() for p in merkle.inclusion_proof(leaves, request.seq - 1))
        if request.old_size:
            response.old_root_hex = merkle.root(leaves[:request.old_size]).hex()
            response.consistency_path.extend(p.hex() for p in merkle.consistency_proof(leaves, request.old_size))
        return response

    def ListAuditPublicKeys(self, request: pb.ListAuditPublicKeysRequest,
                            context: grpc.ServicerContext) -> pb.ListAuditPublicKeysResponse:
        caller_from_metadata(context.invocation_metadata())
        pems = keys.published_pems(self.engine)
        if not pems:
            raise NotFound("the audit service has not published a signing key yet (it does on first start)")
        return pb.ListAuditPublicKeysResponse(keys=[pb.AuditPublicKey(key_id=k, public_key_pem=p) for k, p in pems])


def binding(engine: Engine, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(pb.DESCRIPTOR.services_by_name["AuditService"].full_name, AuditServicer(engine, stop),
                          pb_grpc.add_AuditServiceServicer_to_server)
