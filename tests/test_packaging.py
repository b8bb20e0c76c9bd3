"""The wheel holds every subpackage (package-dir mapping trap, FACTS.md) and leaks no `core`/`plugins`."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"core": "srcompress", "plugins": "srcompress.plugins", "backends": "srcompress.backends"}


def _source_packages() -> set[str]:
    found = set()
    for folder, package in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() == listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("srcompress-*.whl")
    return path


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"srcompress", next(t for t in top if t.endswith(".dist-info"))}
    assert "srcompress/py.typed" in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[srcompress.plugins]" in entry_points and "srcompress = srcompress.cli:main" in entry_points


def test_wheel_imports_every_module(wheel: Path, tmp_path: Path) -> None:
    """Unpack the wheel and import each module from it, with the editable install switched off (-S)."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    modules = sorted(
        n[:-3].replace("/", ".").removesuffix(".__init__")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.endswith(".py") and n.startswith("srcompress/")
    )
    code = (
        "import importlib, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods:\n"
        "    mod = importlib.import_module(m)\n"
        f"    assert mod.__file__.startswith({str(tmp_path)!r}), (m, mod.__file__)\n"
        "print(len(mods))\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}:{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) == len(modules)
