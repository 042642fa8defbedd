"""Who may call what: the roles of the platform and the one table mapping every RPC to the roles
allowed to call it. Pure data and logic; the gRPC layer (grpc_auth) applies it to every call.

Roles are scoped to a tenant (the tenant claim of the caller's verified token):

- ``viewer`` reads metadata (ids, states, hashes, metrics) of the tenant's resources;
- ``ml-engineer`` also registers datasets, curates them and runs training jobs;
- ``approver`` also moves model aliases (promotions) and approves production deployments (never its own);
- ``auditor`` reads metadata and the audit trail;
- ``admin`` may do everything in the tenant;
- ``break-glass`` may do everything, and every use is flagged and alerted.

Platform components prove who they are with a client certificate (mutual TLS) and act with the
pseudo-roles ``service`` (a platform service) or ``worker`` (a training, curation or eval worker); a
Kubernetes pod's per-attempt certificate (``worker/k8s-...``) gets ``attempt``: it may claim its own
training attempt and nothing else.
"""

from __future__ import annotations

from typing import Iterable

ROLES = ("viewer", "ml-engineer", "approver", "auditor", "admin", "break-glass")
COMPONENT_ROLES = ("service", "worker", "attempt")
BREAK_GLASS = "break-glass"

READ = frozenset({"viewer", "ml-engineer", "approver", "auditor", "admin"})
WRITE = frozenset({"ml-engineer", "admin"})
PROMOTE = frozenset({"approver", "admin"})
CLAIM = frozenset({"worker", "service"})
ATTEMPT = "attempt"  # the pseudo-role of a Kubernetes pod's per-attempt certificate: it may claim that attempt only
POD_NAME_PREFIX = "k8s-"  # worker certificates named so are per-attempt pod certificates
AUDIT = frozenset({"auditor"})  # the audit trail: auditors only (platform auditors: any tenant)

# Every RPC the platform serves -> the roles that may call it (break-glass may call any).
RPC_ROLES: dict[str, frozenset[str]] = {
    "/privtune.v1.DatasetService/CreateDataset": WRITE,
    "/privtune.v1.DatasetService/GetDataset": READ,
    "/privtune.v1.DatasetService/ListDatasets": READ,
    "/privtune.v1.DatasetService/WatchDataset": READ,
    "/privtune.v1.CurationService/CreateCurationJob": WRITE,
    "/privtune.v1.CurationService/GetCurationJob": READ,
    "/privtune.v1.CurationService/ListCurationJobs": READ,
    "/privtune.v1.CurationService/WatchCurationJob": READ,
    "/privtune.v1.TrainingService/CreateTrainingJob": WRITE,
    "/privtune.v1.TrainingService/GetTrainingJob": READ,
    "/privtune.v1.TrainingService/ListTrainingJobs": READ,
    "/privtune.v1.TrainingService/CancelTrainingJob": WRITE,
    "/privtune.v1.TrainingService/WatchTrainingJob": READ,
    "/privtune.v1.TrainingService/EstimateTrainingJob": WRITE | {"approver"},
    "/privtune.v1.TrainingService/GetPrivacyLedger": READ,
    "/privtune.v1.ModelRegistryService/ListModelVersions": READ,
    "/privtune.v1.ModelRegistryService/GetModelVersion": READ,
    "/privtune.v1.ModelRegistryService/SetModelAlias": PROMOTE,
    "/privtune.v1.ModelRegistryService/ListAliasHistory": READ,
    "/privtune.v1.ModelRegistryService/GetLineage": READ,
    "/privtune.v1.ExperimentService/GetRun": READ,
    "/privtune.v1.ExperimentService/ListRuns": READ,
    "/privtune.v1.ExperimentService/CompareRuns": READ,
    "/privtune.v1.TrainingAttemptService/ClaimAttempt": CLAIM | {ATTEMPT},
    "/privtune.v1.CurationWorkService/ClaimCurationJob": CLAIM,
    "/privtune.v1.EvalService/CreateEvalSuite": WRITE,
    "/privtune.v1.EvalService/GetEvalSuite": READ,
    "/privtune.v1.EvalService/CreateEvalRun": WRITE | {"approver"},
    "/privtune.v1.EvalService/GetEvalRun": READ,
    "/privtune.v1.EvalService/ListEvalRuns": READ,
    "/privtune.v1.EvalService/WatchEvalRun": READ,
    "/privtune.v1.EvalWorkService/ClaimEvalShard": CLAIM,
    "/privtune.v1.DeploymentService/CreateDeployment": WRITE | PROMOTE,
    "/privtune.v1.DeploymentService/ApproveDeployment": PROMOTE,
    "/privtune.v1.DeploymentService/RollbackDeployment": WRITE | PROMOTE,
    "/privtune.v1.DeploymentService/GetDeployment": READ,
    "/privtune.v1.DeploymentService/ListDeployments": READ,
    "/privtune.v1.DeploymentService/GetServedRequest": READ,
    "/privtune.v1.AuditService/SearchAuditRecords": AUDIT,
    "/privtune.v1.AuditService/GetAuditTreeHead": AUDIT,
    "/privtune.v1.AuditService/GetAuditProof": AUDIT,
    "/privtune.v1.AuditService/ListAuditPublicKeys": AUDIT | READ,
}

# Infrastructure every client may call without credentials: health and server reflection
# (which lists services and their schemas, never data).
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1.ServerReflection/",
                   "/grpc.reflection.v1alpha.ServerReflection/")


def is_public(method: str) -> bool:
    return method.startswith(PUBLIC_PREFIXES)


def allowed_roles(method: str) -> frozenset[str]:
    """The roles that may call ``method`` (none for a method not in the table: deny by default)."""
    return RPC_ROLES.get(method, frozenset())


def decide(method: str, roles: Iterable[str]) -> tuple[bool, bool]:
    """(allowed, by_break_glass): whether a caller with ``roles`` may call ``method``, and whether only
    the break-glass role let it through (to be flagged and alerted)."""
    held = frozenset(roles)
    if held & allowed_roles(method):
        return True, False
    if BREAK_GLASS in held and method in RPC_ROLES and not RPC_ROLES[method] <= frozenset(COMPONENT_ROLES):
        return True, True
    return False, False
