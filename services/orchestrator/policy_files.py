"""Load tenant policies from a folder of YAML files.

``<dir>/<tenant>.yaml`` wins, then ``<dir>/default.yaml``, then the built-in
:func:`~services.orchestrator.policy.default_policy`. The version and the sha256 of
the file's bytes travel with every admission decision, so an auditor can tell
exactly which policy admitted or rejected a job.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from services.common import file_cache
from services.common.errors import FailedPrecondition, InvalidArgument, Precondition
from services.common.identity import is_tenant_id
from services.orchestrator.policy import Policy, default_policy

BUILTIN_SOURCE = "builtin"
log = logging.getLogger(__name__)
DEFAULT_FILE = "default.yaml"


class PolicyFileError(FailedPrecondition):
    """A policy file cannot be used; the message names the file (by name: callers never see server
    paths; ``path`` has the full one for the operator's log) and the key."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        where = f"key {key!r}" if key else "the file"
        super().__init__(f"policy file {path.name} (in the platform's policies folder): {where}: {problem}; an "
                         "operator must fix the file (see deploy/policies/default.yaml)", reason="POLICY_FILE_INVALID",
                         preconditions=[Precondition("POLICY", path.name, problem[:200])])
        self.path, self.key, self.problem = path, key, problem
        log.warning("policy file %s: %s: %s", path, where, problem)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    version: str
    sha256: str   # of the file's bytes; for the built-in policy, of its canonical JSON
    source: str   # the file's path, or "builtin"


def load_policy(policy_dir: str | Path | None, tenant_id: str) -> LoadedPolicy:
    """The policy that governs ``tenant_id``.

    Raises:
        InvalidArgument: ``tenant_id`` is not a tenant id (it names a file).
        PolicyFileError: the file that applies is malformed; no fallback hides it.
    """
    if not is_tenant_id(tenant_id):
        raise InvalidArgument(f"{tenant_id!r} is not a tenant id (lowercase letters, digits and '-', at most 63)")
    if policy_dir is not None:
        for name in (f"{tenant_id}.yaml", DEFAULT_FILE):
            path = Path(policy_dir) / name
            if path.is_file():
                return load_policy_file(path)
    return builtin_policy()


def builtin_policy() -> LoadedPolicy:
    policy = default_policy()
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()
    return LoadedPolicy(policy, policy.version, hashlib.sha256(canonical).hexdigest(), BUILTIN_SOURCE)


def load_policy_file(path: Path) -> LoadedPolicy:
    """The policy in ``path``, parsed again only when the file changed (see file_cache)."""
    return file_cache.parsed(path, _read_policy_file, "policy")


def _read_policy_file(path: Path) -> LoadedPolicy:
    raw = path.read_bytes()
    policy = parse_policy(raw, path)
    return LoadedPolicy(policy, policy.version, hashlib.sha256(raw).hexdigest(), str(path))


def parse_policy(raw: bytes, path: Path) -> Policy:
    """Validate a policy file's bytes (``path`` is only named in errors)."""
    try:
        body = yaml.load(raw, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyFileError(path, "", f"not valid YAML ({_one_line(exc)})") from None
    if not isinstance(body, dict):
        raise PolicyFileError(path, "", f"must be a mapping of policy sections, not {type(body).__name__}")
    try:
        return Policy.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        if error["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            raise PolicyFileError(path, key, f"unknown key (known here: {', '.join(known)})") from None
        if error["type"] == "missing":
            raise PolicyFileError(path, key, "is required") from None
        raise PolicyFileError(path, key, f"{error['msg']} (got {error.get('input')!r})") from None


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Policy
    for part in loc:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _one_line(exc: yaml.YAMLError) -> str:
    return " ".join(str(exc).split())


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice, which YAML would silently let the last one win."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
