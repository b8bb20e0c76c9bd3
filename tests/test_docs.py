"""docs/ stays true: the generated reference is current, every config field has help, the quickstart
runs, a plugin written from the plugin guide alone works, and mkdocs builds without warnings."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest

from srcompress.config import field_help, option
from srcompress.recipe import EvalConfig
from srcompress.recipe_types import DataConfig
from srcompress.registry import Registry

from repo_scripts import load_script

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _tool() -> Any:
    return load_script("tools/gen_recipe_reference.py", "gen_recipe_reference")


@pytest.fixture(scope="module")
def tool() -> Any:
    return _tool()


@pytest.fixture(scope="module")
def builtins(tool: Any) -> Registry:
    return tool.builtin_registry()


# ------------------------------------------------------------------------------ recipe reference


def test_recipe_reference_is_up_to_date(tool: Any, builtins: Registry, tmp_path: Path) -> None:
    fresh = tmp_path / "recipe-reference.md"
    assert tool.main(["--output", str(fresh)]) == 0
    assert fresh.read_text() == (DOCS / "recipe-reference.md").read_text(), (
        "docs/recipe-reference.md is stale: run python tools/gen_recipe_reference.py"
    )
    assert tool.main(["--check", "--output", str(fresh)]) == 0
    fresh.write_text("stale\n")
    assert tool.main(["--check", "--output", str(fresh)]) == 1


def _section(text: str, name: str) -> str:
    start = text.index(f"### `{name}`\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_reference_lists_every_field_of_every_builtin_technique(builtins: Registry) -> None:
    text = (DOCS / "recipe-reference.md").read_text()
    techniques = builtins.list_techniques()
    assert {"train", "distill", "prune"} <= {t.name for t in techniques}
    for entry in techniques:
        section = _section(text, entry.name)
        for attribute in attrs.fields(entry.config_cls):
            help_text, _range = field_help(attribute)
            row = next((line for line in section.splitlines() if line.startswith(f"| `{attribute.name}` |")), None)
            assert row is not None, f"{entry.name}.{attribute.name} missing from the recipe reference"
            assert help_text.replace("|", "\\|") in row


def test_reference_row_shows_type_default_range_help(builtins: Registry) -> None:
    section = _section((DOCS / "recipe-reference.md").read_text(), "prune")
    row = next(line for line in section.splitlines() if line.startswith("| `scope` |"))
    assert row.startswith("| `scope` | `str` | `per_layer` | one of 'per_layer', 'global' | per_layer: every group")
    data = _section((DOCS / "recipe-reference.md").read_text(), "data")
    assert "| `patch` | `int` | `96` | >= 8 and <= 1024 | HR patch size in pixels (a multiple of the scale). |" in data


# ------------------------------------------------------------------------------------ help texts


def _fields_without_help(classes: list[tuple[str, str, type]]) -> list[str]:
    return [
        f"{section} {name}: {cls.__name__}.{a.name}"
        for section, name, cls in classes
        if attrs.has(cls)
        for a in attrs.fields(cls)
        if not field_help(a)[0].strip()
    ]


def test_every_config_field_has_help(tool: Any) -> None:
    registry = Registry()  # every installed plugin, third-party ones included
    classes = tool.config_classes(registry) + [("recipe", "data", DataConfig), ("recipe", "eval", EvalConfig)]
    assert len(classes) >= 30
    assert _fields_without_help(classes) == []


def test_a_field_without_help_is_caught() -> None:
    @attrs.define(frozen=True, kw_only=True)
    class Half:
        good: int = option(1, help="Documented.")
        bad: int = attrs.field(default=2)

    assert _fields_without_help([("technique", "half", Half)]) == ["technique half: Half.bad"]


# ------------------------------------------------------------------------------------ quickstart


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M)


def _quickstart(text: str) -> str:
    start = text.index("## Quickstart")
    return text[start : text.index("\n## ", start + 1)]


def test_quickstart_code_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _python_blocks(_quickstart((DOCS / "user-guide.md").read_text()))
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"user-guide.md quickstart block {index + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "['bicubic', 'carn', 'edsr', 'edsr_baseline']" in out
    assert "1868 -> 648 parameters" in out
    assert namespace["result"].model.body[0].out_channels == 8
    assert (tmp_path / "runs" / "tiny" / "report" / "report.md").is_file()
    assert re.search(r"^torch fp32 pass: max \|diff\| ", out, flags=re.M), out


# ------------------------------------------------------------------------- plugin from the guide


def _file_blocks(markdown: str) -> dict[str, str]:
    """Code blocks whose first line is ``# file: PATH``: the files of the guide's plugin."""
    files = {}
    for body in re.findall(r"^```(?:python|toml)\n(.*?)^```", markdown, flags=re.S | re.M):
        first, _, rest = body.partition("\n")
        if first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = rest
    return files


def _dist_from_guide(root: Path) -> Path:
    """Lay the guide's files out as an installed distribution (module + dist-info), as pip would."""
    files = _file_blocks((DOCS / "plugin-guide.md").read_text())
    assert set(files) == {"pyproject.toml", "my_plugin.py", "tests/test_my_plugin.py"}
    project = tomllib.loads(files["pyproject.toml"])["project"]
    site = root / "site"
    site.mkdir(parents=True)
    for module in tomllib.loads(files["pyproject.toml"])["tool"]["setuptools"]["py-modules"]:
        (site / f"{module}.py").write_text(files[f"{module}.py"])
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    (root / "tests").mkdir()
    (root / "tests" / "test_my_plugin.py").write_text(files["tests/test_my_plugin.py"])
    return site


def test_plugin_written_from_the_guide_is_discovered_used_and_conforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester
) -> None:
    site = _dist_from_guide(tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    assert "my_plugin" in registry.plugin_names()
    assert registry.get_model("my_sr").plugin == "my_plugin"
    assert registry.get_technique("round_weights").plugin == "my_plugin"

    from srcompress.engine import run
    from srcompress.plugins.techniques.pruning import get_importance

    assert get_importance(registry, "my_l1").plugin == "my_plugin"
    result = run(
        {
            "version": 1,
            "name": "guide",
            "model": {"name": "my_sr", "scale": 2, "width": 16},
            "data": {"train": ["samples"], "eval": ["samples"], "eval_limit": 1},
            "eval": {"metrics": ["psnr"], "lr_size": [16, 16], "latency_runs": 0, "crops": 0},
            "stages": [{"type": "round_weights", "bits": 6}, {"type": "prune", "importance": "my_l1", "ratio": 0.5, "prune_trunk": True}],
        },
        run_dir=tmp_path / "run",
        registry=registry,
        quiet=True,
    )
    assert result.model.head.out_channels == 8 and result.model.tail.out_channels == 12
    levels = result.records[1]["notes"]
    assert any("weights rounded to 6 bits" in note for note in levels)

    pytester.copy_example(str(tmp_path / "pkg" / "tests" / "test_my_plugin.py"))
    outcome = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


# ---------------------------------------------------------------------------------------- mkdocs


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "WARNING" not in out.stderr
    for page in ("index.html", "user-guide/index.html", "recipe-reference/index.html", "plugin-guide/index.html"):
        assert (tmp_path / "site" / page).is_file()
