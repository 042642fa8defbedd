"""Kubernetes objects any service renders (training jobs, inference pools, the gateway): names, offline
validation as strict as an API server with ``fieldValidation=Strict``, and YAML output.

Built-in kinds are checked against the Kubernetes OpenAPI schemas the ``kubernetes-validate``
package bundles, for a pinned Kubernetes version (unknown fields are errors); every object's name
must be a DNS-1123 label and its labels valid label values, which the schemas do not check.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import yaml

from services.common.errors import InvalidArgument

DEFAULT_KUBERNETES_VERSION = "1.31"
DNS1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_LABEL = 63
# a resource quantity as the API server parses it ("500m", "2", "8Gi", "1.5", "1e3"); the bundled schemas
# only say "string or integer"
QUANTITY_RE = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


class ManifestError(InvalidArgument):
    """A rendered object does not validate; says which object, which field and why."""

    def __init__(self, kind: str, name: str, field: str, message: str) -> None:
        super().__init__(f"{kind} {name!r}: field {field or '(object)'}: {message}")
        self.kind, self.name, self.field = kind, name, field


def is_dns1123_label(name: str) -> bool:
    return len(name) <= MAX_LABEL and bool(DNS1123_LABEL_RE.match(name))


def is_quantity(text: str) -> bool:
    return bool(QUANTITY_RE.match(text))


def field_path(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path)


def validate_builtin(obj: dict[str, Any], kind: str, name: str, version: str, prefix: str = "") -> None:
    """Raise ManifestError unless ``obj`` validates strictly against the bundled schema of its kind."""
    import kubernetes_validate  # type: ignore[import-untyped]

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ManifestError(kind, name, prefix + field_path(exc.path), exc.message) from None
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ManifestError(kind, name, "apiVersion", exc.message) from None


def validate_names(obj: dict[str, Any], kind: str, name: str) -> None:
    if not is_dns1123_label(name):
        raise ManifestError(kind, name, "metadata.name",
                            "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-'")
    labels = obj.get("metadata", {}).get("labels") or {}
    for key, value in labels.items():
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE_RE.match(value):
            raise ManifestError(kind, name, f"metadata.labels.{key}",
                                f"{value!r} is not a label value (at most 63 of A-Z a-z 0-9 - _ .)")


def validate_builtin_manifests(manifests: Iterable[dict[str, Any]],
                               kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """Raise ManifestError for the first built-in object or field that would not be accepted."""
    for obj in manifests:
        if not isinstance(obj, dict):
            raise ManifestError(type(obj).__name__, "?", "", "a manifest must be a mapping")
        kind = str(obj.get("kind", "?"))
        name = str((obj.get("metadata") or {}).get("name", "?"))
        validate_builtin(obj, kind, name, kubernetes_version)
        validate_names(obj, kind, name)


def dump_manifests(manifests: Iterable[dict[str, Any]]) -> str:
    """The objects as one multi-document YAML stream (``kubectl apply -f -`` accepts it)."""
    return yaml.dump_all(list(manifests), Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)


class _PlainDumper(yaml.SafeDumper):
    """Writes shared sub-objects out in full: no ``&id001`` anchors for a reviewer to chase."""

    def ignore_aliases(self, data: Any) -> bool:
        return True
