"""Check rendered objects offline, as strictly as an API server with ``fieldValidation=Strict``.

* Built-in kinds (Job, ConfigMap, NetworkPolicy) against the Kubernetes OpenAPI schemas that
  the ``kubernetes-validate`` package bundles, in strict mode (unknown fields are errors), for
  a pinned Kubernetes version.
* PyTorchJob against the CRD's ``openAPIV3Schema`` vendored in ``schemas/pytorchjob-crd.json``
  (unknown fields are errors there too, as the API server's pruning would drop them), and
  each replica's pod template against the bundled ``PodTemplate`` schema, because the vendored
  copy leaves the core/v1 PodSpec out (see ``schemas/README.md``).
* Every object's name is a DNS-1123 label and its labels are valid label values, which the
  schemas do not check.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]

from services.common.kubernetes_objects import DEFAULT_KUBERNETES_VERSION, ManifestError
from services.common.kubernetes_objects import field_path as _field
from services.common.kubernetes_objects import validate_builtin as _validate_builtin
from services.common.kubernetes_objects import validate_names as _validate_names

__all__ = ["DEFAULT_KUBERNETES_VERSION", "ManifestError", "validate_manifests", "kubernetes_validate_version"]
CRD_FILE = "pytorchjob-crd.json"


def _strict(schema: dict[str, Any]) -> None:
    """Close every object schema that lists its properties (the API server prunes unknown fields)."""
    for child in schema.get("properties", {}).values():
        _strict(child)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _strict(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        for child in schema.get(key, []):
            _strict(child)
    if "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["additionalProperties"] = False


@lru_cache(maxsize=1)
def pytorchjob_schema() -> dict[str, Any]:
    """The vendored PyTorchJob ``openAPIV3Schema``, closed against unknown fields."""
    text = resources.files("services.orchestrator.executors").joinpath("schemas", CRD_FILE).read_text()
    crd = json.loads(text)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    _strict(schema)
    return schema


def _validate_pytorchjob(obj: dict[str, Any], name: str, version: str) -> None:
    validator = jsonschema.Draft202012Validator(pytorchjob_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise ManifestError("PyTorchJob", name, _field(error.absolute_path), error.message)
    replicas = obj.get("spec", {}).get("pytorchReplicaSpecs", {})
    for replica, replica_spec in replicas.items():
        if not replica_spec.get("template", {}).get("spec"):
            raise ManifestError("PyTorchJob", name, f"spec.pytorchReplicaSpecs.{replica}.template.spec",
                                "a replica needs a pod spec")
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
                   "template": replica_spec["template"]}
        _validate_builtin(wrapped, "PyTorchJob", name, version, prefix=f"spec.pytorchReplicaSpecs.{replica}.")


def validate_manifests(manifests: Iterable[dict[str, Any]],
                       kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """Raise :class:`ManifestError` for the first object or field that would not be accepted.

    Args:
        kubernetes_version: "1.31"-style; the newest bundled schema not newer than it is used.
    """
    for obj in manifests:
        if not isinstance(obj, dict):
            raise ManifestError(type(obj).__name__, "?", "", "a manifest must be a mapping")
        kind = str(obj.get("kind", "?"))
        name = str((obj.get("metadata") or {}).get("name", "?"))
        if obj.get("apiVersion") == "kubeflow.org/v1" and kind == "PyTorchJob":
            _validate_pytorchjob(obj, name, kubernetes_version)
        else:
            _validate_builtin(obj, kind, name, kubernetes_version)
        _validate_names(obj, kind, name)


def kubernetes_validate_version() -> str:
    return str(kubernetes_validate.__version__)
