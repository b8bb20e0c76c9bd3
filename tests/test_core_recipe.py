"""Recipes: malformed input gives one-line errors with the path; configs round-trip."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from plugin_dists import THIRD_PARTY_PLUGIN, make_dist
from srcompress.cli import main
from srcompress.recipe import load_recipe, make_converter, parse_recipe, recipe_to_mapping
from srcompress.registry import Registry, reset_default_registry

GOOD = """\
version: 1
model: {name: tiny_tp, scale: 2, width: 4}
data: {eval: [Set5], patch: 32, batch: 4}
stages:
  - {type: scale_tail, factor: 0.5}
"""

# (recipe text, expected fragment of the one-line error)
MALFORMED = [
    ("", "the recipe is empty"),
    ("   \n# only a comment\n", "the recipe is empty"),
    ("- a\n- b\n", "a recipe must be a mapping"),
    ("just a string", "a recipe must be a mapping"),
    ("version: 1\nmodel:\n\tname: tiny_tp\n", "indent with spaces, not tabs"),
    ("version: 1\nmodel: {name: tiny_tp\n", "YAML syntax error"),
    ("model: {name: tiny_tp}\n", "version: must be 1 (got None)"),
    ("version: '1'\nmodel: {name: tiny_tp}\n", "version: must be 1 (got '1')"),
    ("version: 1\n", "model: missing"),
    ("version: 1\nmodel: tiny_tp\n", "model: must be a mapping"),
    ("version: 1\nmodel: {name: tiny_pt}\n", "model.name: unknown model 'tiny_pt'; did you mean 'tiny_tp'?"),
    ("version: 1\nmodel: {scale: 2}\n", "model: missing 'name'"),
    ("version: 1\nmodel: {name: tiny_tp, scale: 3}\n", "model.scale: model 'tiny_tp' supports scales [2, 4] (got 3)"),
    ("version: 1\nmodel: {name: tiny_tp, widht: 4}\n", "model.widht: unknown key 'widht'; did you mean 'width'?"),
    ("version: 1\nmodel: {name: tiny_tp, width: 400}\n", "model.width: must be >= 1 and <= 64 (got 400)"),
    ("version: 1\nmodel: {name: tiny_tp, width: 8.9}\n", "model.width: must be an integer (got 8.9)"),
    ("version: 1\nmodel: {name: tiny_tp}\nstagse: []\n", "stagse: unknown top-level key 'stagse'; did you mean 'stages'?"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: {type: scale_tail}\n", "stages: must be a list (got dict)"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [scale_tail]\n", "stages[0]: must be a mapping"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{factor: 1}]\n", "stages[0]: missing 'type' (one of:"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{type: scale_tial}]\n", "stages[0].type: unknown technique 'scale_tial'; did you mean 'scale_tail'?"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{type: scale_tail}, {type: scale_tail, factor: 11}]\n", "stages[1].factor: must be >= 0.0 and <= 10.0 (got 11"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{type: scale_tail, facter: 1}]\n", "stages[0].facter: unknown key 'facter'; did you mean 'factor'?"),
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{type: scale_tail, factor: 'big'}]\n", "stages[0].factor: must be a number (got 'big')"),
    # PyYAML (YAML 1.1) keeps 1e-3 a string: the message says why and how to write it
    ("version: 1\nmodel: {name: tiny_tp}\nstages: [{type: scale_tail, factor: 1e-3}]\n",
     "stages[0].factor: must be a number (got '1e-3': YAML 1.1 reads 1e-3 as a string (a float needs a decimal point "
     "and a signed exponent); write 0.001)"),
    ("version: 1\nmodel: {name: tiny_tp}\ndata: {batch: true}\n", "data.batch: must be an integer (got True)"),
    ("version: 1\nmodel: {name: tiny_tp}\ndata: {patch: 4}\n", "data.patch: must be >= 8 and <= 1024 (got 4)"),
    ("version: 1\nmodel: {name: tiny_tp}\ndata: {eval: [Set5, 3]}\n", "data.eval: must be a name or a list of names"),
    ("version: 1\nmodel: {name: tiny_tp}\neval: {lr_size: [180]}\n", "eval.lr_size: must be [height, width]"),
    ("version: 1\nmodel: {name: tiny_tp}\ndeploy: [{backend: tensorrtt}]\n", "deploy[0].backend: unknown backend 'tensorrtt'"),
    ("version: 1\nmodel: {name: tiny_tp}\nname: 'has space'\n", "name: must use letters, digits"),
    (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "YAML alias bomb",
    ),
]


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    root = make_dist(tmp_path / "site", "srcompress-tinytp", {"tinytp": "tinytp_plugin"}, {"tinytp_plugin": THIRD_PARTY_PLUGIN})
    monkeypatch.syspath_prepend(str(root))
    registry = Registry()
    reset_default_registry(registry)
    yield registry
    reset_default_registry(None)


@pytest.mark.parametrize(("text", "expected"), MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_recipe_one_line_error(
    text: str, expected: str, registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # exactly one line, no traceback
    assert err.startswith("srcompress: error: ")
    assert expected in err, err
    assert "Traceback" not in err


def test_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_missing_recipe_file(registry: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/nonexistent/recipe.yaml"]) == 1
    assert "no such recipe file" in capsys.readouterr().err


def test_valid_recipe_validates(registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: OK (tiny_tp x2; scale_tail; no deployment)"


def test_recipe_round_trip(registry: Registry, tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    recipe = load_recipe(path, registry=registry)
    assert recipe.name == "good" and recipe.model.options.width == 4
    assert recipe.stages[0].config.factor == 0.5
    again = parse_recipe(recipe_to_mapping(recipe, registry=registry), registry=registry)
    assert again == recipe


def test_every_registered_config_class_round_trips() -> None:
    """structure(unstructure(default)) == default for every config class any plugin registers."""
    registry = Registry()
    conv = make_converter(registry)
    classes = [m.options_cls for m in registry.list_models()]
    classes += [t.config_cls for t in registry.list_techniques()]
    classes += [b.config_cls for b in registry.list_backends()]
    classes += [loss.config_cls for loss in registry.list_losses()]
    checked = 0
    for cls in classes:
        default = cls()
        assert conv.structure(conv.unstructure(default), cls) == default, cls
        checked += attrs.has(cls)
    assert checked == len(classes)
