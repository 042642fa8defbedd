"""Services share contracts, not code: no service imports another (DESIGN.md).

Every module under ``services/<name>/`` and ``gpu_worker/`` may import the shared kernel
(``services.common``), the generated protos (``privtune.v1``), itself and third-party
libraries; never another service, never the CLI or platform (the composition root). The
shared kernel imports no service. Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "curation", "orchestrator", "eval", "deploy", "audit")


def _owner(module: str) -> str | None:
    """The deployable a dotted module name belongs to (None: not privtune's own code)."""
    parts = module.split(".")
    if parts[0] == "gpu_worker":
        return "gpu_worker"
    if parts[0] == "services" and len(parts) > 1:
        return parts[1] if parts[1] in (*SERVICES, "common") else None
    if parts[0] == "privtune":
        return "privtune.v1" if parts[1:2] == ["v1"] else "privtune"
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    name = _module_name(path, root)
    package = name.rsplit(".", 1)[0] if path.name != "__init__.py" else name
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def _violations(package_dir: Path, own: str, root: Path = ROOT) -> list[str]:
    allowed = {own, "common", "privtune.v1", None}
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        for line, module in _imports(path, root):
            target = _owner(module)
            if target not in allowed:
                problems.append(f"{path.relative_to(root)}:{line} imports {module} (service {target!r})")
    return problems


@pytest.mark.parametrize("service", [*SERVICES, "gpu_worker"])
def test_a_service_imports_only_itself_the_shared_kernel_and_the_protos(service: str) -> None:
    folder = ROOT / "gpu_worker" if service == "gpu_worker" else ROOT / "services" / service
    assert _violations(folder, service) == []


def test_the_shared_kernel_imports_no_service() -> None:
    assert _violations(ROOT / "services" / "common", "common") == []


def test_the_walker_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The check itself must be able to fail: a planted cross-service import is reported."""
    folder = tmp_path / "services" / "curation"
    folder.mkdir(parents=True)
    (folder / "planted.py").write_text(
        "def f():\n    from services.ingest import domain\n    from ..orchestrator import job_domain\n")
    problems = _violations(folder, "curation", root=tmp_path)
    assert any("services.ingest" in p for p in problems)
    assert any("services.orchestrator" in p for p in problems)
