"""scripts/ensure_venv.sh: every checkout runs its own code, on dependencies shared through one cached venv.

The first test is hermetic: a private cache (a small venv standing in for the cached
dependencies) and two tiny checkouts, so it never touches the real cache. The others look
at this checkout's real ``.venv``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BASE_PYTHON = Path(sys._base_executable)  # the interpreter behind this venv: the cache key is made with it
PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "privtune"
version = "0.1.0"

[project.scripts]
privtune = "privtune.cli:main"

[tool.setuptools.packages.find]
include = ["privtune*", "services*", "gpu_worker*"]
"""
SHOW = ("import os, privtune, services, shared_dependency, importlib.metadata as m; "
        "print(privtune.__file__, services.__file__, shared_dependency.NAME, os.environ.get('SHARED_PTH_RAN'), "
        "m.version('privtune'))")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def _site_packages(python: Path) -> Path:
    return Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())


def _checkout(path: Path, name: str) -> Path:
    (path / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "ensure_venv.sh", path / "scripts" / "ensure_venv.sh")
    (path / "pyproject.toml").write_text(PYPROJECT)
    (path / "requirements.lock").write_text("# the dependencies are in the test's private cache\n")
    (path / "requirements-nodeps.txt").write_text("")
    for package in ("privtune", "services", "gpu_worker"):
        (path / package).mkdir()
        (path / package / "__init__.py").write_text("")
    (path / "privtune" / "cli.py").write_text(f"def main() -> int:\n    print('checkout {name}')\n    return 0\n")
    return path


def _private_cache(cache: Path, checkout: Path) -> Path:
    """The cached venv ensure_venv.sh looks for (same key), already built: a plain venv with one
    'dependency' module, a .pth file of its own, and pip and setuptools (borrowed from the real cache)."""
    key_input = (checkout / "requirements.lock").read_bytes() + (checkout / "requirements-nodeps.txt").read_bytes()
    version = subprocess.run([str(BASE_PYTHON), "-c", "import sys; print(sys.version)"], capture_output=True,
                             check=True).stdout
    venv = cache / f"venv-{hashlib.sha256(key_input + version).hexdigest()[:16]}"
    subprocess.run([str(BASE_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    site = _site_packages(venv / "bin" / "python")
    import pip

    (site / "build_tools.pth").write_text(f"import site; site.addsitedir({str(Path(pip.__file__).parents[1])!r})\n")
    (venv / "bin" / "pip").write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    (venv / "bin" / "pip").chmod(0o755)
    tool = venv / "bin" / "shared-tool"  # a dependency's console script, like pytest or torchrun
    tool.write_text(f"#!{venv}/bin/python\nimport privtune\nprint(privtune.__file__)\n")
    tool.chmod(0o755)
    (site / "shared_dependency.py").write_text("NAME = 'shared'\n")
    (site / "shared_dependency_hook.pth").write_text("import os; os.environ.setdefault('SHARED_PTH_RAN', 'yes')\n")
    (venv / ".complete").touch()
    return venv


def _make_venv(checkout: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    made = subprocess.run(["bash", str(checkout / "scripts" / "ensure_venv.sh")], capture_output=True, text=True,
                          timeout=300, env=_clean_env(PRIVTUNE_CACHE=str(cache), PYTHON=str(BASE_PYTHON)))
    assert made.returncode == 0, made.stderr
    assert "building virtual environment" not in made.stderr, "the cached dependencies were not reused"
    return made


def _show(checkout: Path, cwd: Path) -> list[str]:
    out = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", SHOW], cwd=cwd, capture_output=True,
                         text=True, timeout=120, env=_clean_env())
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_two_checkouts_share_the_cached_dependencies_and_each_runs_its_own_code(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _checkout(tmp_path / "first", "first")
    second = _checkout(tmp_path / "second", "second")
    cached = _private_cache(cache, first)
    # the first checkout still has the old layout: .venv is a symlink to the cached venv
    (first / ".venv").symlink_to(cached)

    _make_venv(first, cache)
    _make_venv(second, cache)  # the last `make` must not re-point the first checkout

    neutral = tmp_path  # no checkout on sys.path through the working directory
    for checkout in (first, second):
        assert (checkout / ".venv").is_dir() and not (checkout / ".venv").is_symlink()
        assert _show(checkout, neutral) == [str(checkout / "privtune" / "__init__.py"),
                                            str(checkout / "services" / "__init__.py"), "shared", "yes", "0.1.0"]
        script = checkout / ".venv" / "bin" / "privtune"
        assert script.read_text().startswith(f"#!{checkout}/.venv/bin/python\n")
        assert subprocess.run([str(script)], capture_output=True, text=True, cwd=neutral,
                              env=_clean_env()).stdout == f"checkout {checkout.name}\n"
        tool = subprocess.run([str(checkout / ".venv" / "bin" / "shared-tool")], capture_output=True, text=True,
                              cwd=neutral, env=_clean_env())
        assert tool.stdout == f"{checkout / 'privtune' / '__init__.py'}\n", tool.stderr
    assert not list(tmp_path.glob("*/.venv.new-*")), "a temporary venv was left behind"

    site = _site_packages(cached / "bin" / "python")
    assert not list(site.glob("__editable__*")) and not list(site.glob("privtune-*.dist-info"))
    for pth in site.glob("*.pth"):
        assert str(first) not in pth.read_text() and str(second) not in pth.read_text(), pth
    assert not (cached / "bin" / "privtune").exists()

    again = _make_venv(first, cache)  # up to date: nothing is rebuilt
    assert again.stderr == "" and _show(first, neutral)[0] == str(first / "privtune" / "__init__.py")


def test_this_checkouts_venv_is_its_own() -> None:
    venv = ROOT / ".venv"
    assert venv.is_dir() and not venv.is_symlink(), ".venv must be this checkout's own venv: run `make venv`"
    cached, checkout = (venv / "privtune-checkout").read_text().split()
    assert checkout == str(ROOT)
    site = _site_packages(Path(cached) / "bin" / "python")
    assert not list(site.glob("__editable__*")), f"the shared cache {cached} points at a checkout"


def test_subprocesses_of_this_checkout_find_every_dependency(tmp_path: Path) -> None:
    """What the tests and the worker pool start with sys.executable: the platform, torch and torchrun."""
    code = ("import torch, transformers, peft, grpc, sqlalchemy, presidio_analyzer, privtune; "
            "print(privtune.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=_clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(ROOT / "privtune" / "__init__.py")
    for module in ("privtune", "torch.distributed.run"):
        ran = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=300, env=_clean_env())
        assert ran.returncode == 0 and "usage:" in ran.stdout, ran.stderr
