"""Recipes: YAML -> frozen attrs classes, with errors that name the path and the fix.

A recipe::

    version: 1
    name: light_f2srgan             # optional; default: the file name
    model: {name: f2srgan, scale: 4, weights: official}
    data: {train: [T91, BSD200], eval: [Set5, Set14], patch: 96, batch: 16}
    stages:
      - {type: prune, importance: lamp, ratio: 0.5}
    deploy:
      - {backend: onnx, precision: fp32}

Stages are tagged by ``type:`` (a registered technique), deploy targets by ``backend:``, loss terms
by ``kind:`` and models by ``name:``; the tagged unions are resolved against the plugin registry at
load time, so a third-party technique works in YAML with no change here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml
from attrs import define
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from srcompress.config import FieldValueError, in_range, option, strict_scalar
from srcompress.entries import NoOptions
from srcompress.errors import RecipeError, UnknownNameError, suggest
from srcompress.recipe_types import DataConfig, ModelRef
from srcompress.registry import Registry, default_registry

__all__ = [
    "DeploySpec",
    "EvalConfig",
    "Recipe",
    "StageSpec",
    "dump_recipe",
    "load_recipe",
    "make_converter",
    "parse_recipe",
    "recipe_to_mapping",
]

RECIPE_VERSION = 1
MAX_EXPANDED_VALUES = 100_000


@define(frozen=True, kw_only=True)
class StageSpec:
    """One stage: a registered technique and its typed config."""

    type: str
    config: Any
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.type


@define(frozen=True, kw_only=True)
class DeploySpec:
    """One deployment target: a registered backend and its typed config."""

    backend: str
    config: Any


@define(frozen=True, kw_only=True)
class EvalConfig:
    """How every stage is measured."""

    metrics: tuple[str, ...] = option(("psnr", "ssim"), help="Quality metrics (registered names, e.g. psnr, ssim, niqe, lpips).")
    lr_size: tuple[int, int] = option((180, 320), help="LR input (H, W) at which MACs and latency are measured.")
    latency_runs: int = option(5, help="Timed runs of the latency harness (0: skip latency).", validator=in_range(0, 1000))
    threads: int | None = option(None, help="CPU threads for latency (None: torch's default).", validator=in_range(1, 256))
    crops: int = option(2, help="Images per eval set shown as side-by-side crops in the report.", validator=in_range(0, 16))


@define(frozen=True, kw_only=True)
class Recipe:
    """A whole recipe, structured and validated."""

    version: int
    name: str
    model: ModelRef
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    stages: tuple[StageSpec, ...] = ()
    deploy: tuple[DeploySpec, ...] = ()
    seed: int = 0
    device: str = "cpu"
    run_dir: str | None = None


# ------------------------------------------------------------------------------------------ YAML


def _yaml_error(exc: yaml.YAMLError, source: str) -> RecipeError:
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    hint = " (indent with spaces, not tabs)" if "\\t" in problem or "tab" in problem else ""
    return RecipeError("", f"{where}: YAML syntax error: {problem}{hint}")


def _expanded_size(value: Any, memo: dict[int, int]) -> int:
    """Number of values the document expands to, counting shared (aliased) nodes every time."""
    key = id(value)
    if key in memo:
        return memo[key]
    if isinstance(value, Mapping):
        size = 1 + sum(_expanded_size(v, memo) for v in value.values()) + len(value)
    elif isinstance(value, (list, tuple)):
        size = 1 + sum(_expanded_size(v, memo) for v in value)
    else:
        size = 1
    memo[key] = min(size, 10 * MAX_EXPANDED_VALUES)
    return memo[key]


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    if data is None:
        raise RecipeError("", f"{source}: the recipe is empty; start from recipes/quickstart.yaml")
    if not isinstance(data, dict):
        raise RecipeError("", f"{source}: a recipe must be a mapping of keys (version, model, stages, ...), got {type(data).__name__}")
    if _expanded_size(data, {}) > MAX_EXPANDED_VALUES:
        raise RecipeError("", f"{source}: the recipe expands to more than {MAX_EXPANDED_VALUES} values (YAML alias bomb?)")
    return data


# -------------------------------------------------------------------------------------- converter


def _str_tuple(value: Any, _type: type) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"must be a name or a list of names (got {value!r})")
    return tuple(value)


def _int_pair(value: Any, _type: type) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise TypeError(f"must be [height, width] of two positive integers (got {value!r})")
    return (value[0], value[1])


def make_converter(registry: Registry) -> cattrs.Converter:
    """A cattrs converter with strict scalars and the registry's tagged unions (models, losses)."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    for kind in (int, float, bool, str):
        conv.register_structure_hook(kind, strict_scalar(kind))
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], _str_tuple)
    conv.register_structure_hook_func(lambda t: t == tuple[int, int], _int_pair)
    conv.register_structure_hook(ModelRef, lambda v, _t: structure_model_ref(v, registry, conv))
    conv.register_unstructure_hook(ModelRef, lambda ref: model_ref_to_mapping(ref, conv))
    _register_loss_terms(conv, registry)
    return conv


def _register_loss_terms(conv: cattrs.Converter, registry: Registry) -> None:
    """Loss terms ``{kind, weight, ...}`` are a tagged union owned by the training core."""
    try:
        from srcompress.training.losses import LossTerm, structure_loss_term, unstructure_loss_term
    except ImportError:  # the training core is optional for validating recipes without losses
        return
    conv.register_structure_hook(LossTerm, lambda v, _t: structure_loss_term(v, registry, conv))
    conv.register_unstructure_hook(LossTerm, lambda term: unstructure_loss_term(term, conv))


def _require_mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"must be a mapping ({what}), got {type(value).__name__}")
    return value


def _tag(value: Mapping[str, Any], key: str, known: list[str], kind: str) -> str:
    if key not in value:
        raise RecipeError("", f"missing '{key}' (one of: {', '.join(sorted(known)) or 'none registered'})")
    tag = value[key]
    if not isinstance(tag, str):
        raise RecipeError(key, f"must be a string naming a {kind} (got {tag!r})")
    if tag not in known:
        raise RecipeError(key, suggest(tag, known, kind))
    return tag


def structure_model_ref(value: Any, registry: Registry, conv: cattrs.Converter) -> ModelRef:
    """``{name, scale, weights, **options}`` -> :class:`ModelRef` with typed options."""
    value = _require_mapping(value, "{name: MODEL, scale: S, ...}")
    name = _tag(value, "name", [m.name for m in registry.list_models()], "model")
    entry = registry.get_model(name)
    rest = {k: v for k, v in value.items() if k not in ("name", "scale", "weights")}
    base = conv.structure({k: v for k, v in value.items() if k in ("name", "scale", "weights")}, _ModelRefBase)
    if entry.role == "sr" and base.scale not in entry.scales:
        raise RecipeError("scale", f"model '{name}' supports scales {list(entry.scales)} (got {base.scale})")
    options = _structure_options(conv, rest, entry.options_cls)
    return ModelRef(name=name, scale=base.scale, weights=base.weights, options=options)


@define(frozen=True, kw_only=True)
class _ModelRefBase:
    name: str
    scale: int = 4
    weights: str | None = None


def _structure_options(conv: cattrs.Converter, mapping: Mapping[str, Any], cls: type) -> Any:
    if cls is NoOptions and mapping:
        extra = ", ".join(sorted(mapping))
        raise RecipeError("", f"unknown key(s) {extra}: this entry takes no options")
    return conv.structure(dict(mapping), cls)


def model_ref_to_mapping(ref: ModelRef, conv: cattrs.Converter) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.name, "scale": ref.scale}
    if ref.weights is not None:
        out["weights"] = ref.weights
    if ref.options is not None and not isinstance(ref.options, NoOptions):
        out.update(conv.unstructure(ref.options))
    return out


# ---------------------------------------------------------------------------------------- errors


def _extra_keys_message(exc: ForbiddenExtraKeysError) -> tuple[str, str]:
    allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
    key = sorted(exc.extra_fields)[0]
    close = suggest(key, allowed, "key")
    return key, close


def _flatten(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """(path, problem) pairs from a cattrs exception tree."""
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        out: list[tuple[str, str]] = []
        for sub in exc.exceptions:
            out.extend(_flatten(sub, path + _note_path(sub)))
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        key, message = _extra_keys_message(exc)
        return [(_join(path, key), message.replace("unknown key", "unknown key"))]
    if isinstance(exc, FieldValueError):
        return [(_join(path, exc.field), exc.problem)]
    if isinstance(exc, RecipeError):
        return [(_join(path, exc.path), exc.problem)]
    if isinstance(exc, UnknownNameError):
        return [(path, str(exc))]
    if isinstance(exc, KeyError):
        return [(path, "missing required key")]
    return [(path, str(exc))]


def _note_path(exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", []):
        name = getattr(note, "name", None)
        index = getattr(note, "index", None)
        if name is not None:
            return f".{name}"
        if index is not None:
            return f"[{index}]"
    return ""


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    if sub.startswith("["):
        return path + sub
    return f"{path}.{sub}" if path else sub


def _as_recipe_error(exc: BaseException, path: str) -> RecipeError:
    problems = _flatten(exc, path)
    where, problem = problems[0] if problems else (path, str(exc))
    where = where.lstrip(".")
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return RecipeError(where, problem + more)


def _at(path: str, fn: Callable[[], Any]) -> Any:
    """Run a structuring step; re-raise any problem as a RecipeError under ``path``."""
    try:
        return fn()
    except RecipeError as exc:
        raise RecipeError(_join(path, exc.path), exc.problem) from None
    except (ClassValidationError, IterableValidationError, ValueError, TypeError, KeyError) as exc:
        raise _as_recipe_error(exc, path) from None


# ---------------------------------------------------------------------------------------- recipe


def parse_recipe(
    data: Mapping[str, Any], *, registry: Registry | None = None, default_name: str = "recipe", model: ModelRef | None = None
) -> Recipe:
    """Structure a recipe mapping (already parsed YAML) into a :class:`Recipe`.

    ``model`` supplies the model reference when the caller brings its own module (then the mapping
    has no ``model`` key).
    """
    registry = registry or default_registry()
    conv = make_converter(registry)
    known = {a.name for a in attrs.fields(Recipe)}
    for key in data:
        if key not in known:
            raise RecipeError(key, suggest(key, sorted(known), "key").replace("unknown key", "unknown top-level key"))
    version = data.get("version")
    if version != RECIPE_VERSION:
        raise RecipeError("version", f"must be {RECIPE_VERSION} (got {version!r}); add 'version: 1' at the top")
    if model is None:
        if "model" not in data:
            raise RecipeError("model", "missing; e.g. model: {name: f2srgan, scale: 4, weights: official}")
        model = _at("model", lambda: conv.structure(data["model"], ModelRef))
    stages = _structure_list(data.get("stages", []), "stages", lambda v, p: _structure_stage(v, p, registry, conv))
    deploy = _structure_list(data.get("deploy", []), "deploy", lambda v, p: _structure_deploy(v, p, registry, conv))
    scalars = {k: data[k] for k in ("name", "seed", "device", "run_dir") if k in data}
    base = _at("", lambda: conv.structure(scalars, _RecipeScalars))
    return Recipe(
        version=RECIPE_VERSION,
        name=base.name or default_name,
        model=model,
        data=_at("data", lambda: conv.structure(_mapping_or_empty(data, "data"), DataConfig)),
        eval=_at("eval", lambda: conv.structure(_mapping_or_empty(data, "eval"), EvalConfig)),
        stages=stages,
        deploy=deploy,
        seed=base.seed,
        device=base.device,
        run_dir=base.run_dir,
    )


@define(frozen=True, kw_only=True)
class _RecipeScalars:
    name: str | None = option(None, help="Run name.", validator=lambda _i, _a, v: _check_name(v))
    seed: int = 0
    device: str = "cpu"
    run_dir: str | None = None


def _check_name(value: str | None) -> None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError(f"must use letters, digits, '_', '-' or '.' only (got {value!r})")


def _mapping_or_empty(data: Mapping[str, Any], key: str) -> Any:
    value = data.get(key)
    return {} if value is None else value


def _structure_list(value: Any, path: str, item: Callable[[Any, str], Any]) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecipeError(path, f"must be a list (got {type(value).__name__})")
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def _structure_stage(value: Any, path: str, registry: Registry, conv: cattrs.Converter) -> StageSpec:
    def build() -> StageSpec:
        mapping = _require_mapping(value, "{type: TECHNIQUE, ...}")
        kind = _tag(mapping, "type", [t.name for t in registry.list_techniques()], "technique")
        entry = registry.get_technique(kind)
        rest = {k: v for k, v in mapping.items() if k not in ("type", "name")}
        name = mapping.get("name")
        if name is not None and not isinstance(name, str):
            raise RecipeError("name", f"must be a string (got {name!r})")
        return StageSpec(type=kind, name=name, config=_structure_options(conv, rest, entry.config_cls))

    return _at(path, build)


def _structure_deploy(value: Any, path: str, registry: Registry, conv: cattrs.Converter) -> DeploySpec:
    def build() -> DeploySpec:
        mapping = _require_mapping(value, "{backend: NAME, ...}")
        name = _tag(mapping, "backend", [b.name for b in registry.list_backends()], "backend")
        entry = registry.get_backend(name)
        rest = {k: v for k, v in mapping.items() if k != "backend"}
        return DeploySpec(backend=name, config=_structure_options(conv, rest, entry.config_cls))

    return _at(path, build)


def load_recipe(path: str | Path, *, registry: Registry | None = None) -> Recipe:
    """Read and validate a recipe file. Raises :class:`RecipeError` with a one-line message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("", f"{path}: no such recipe file; see recipes/ for examples") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError("", f"{path}: cannot read the recipe ({exc})") from None
    data = _read_yaml(text, str(path))
    return parse_recipe(data, registry=registry, default_name=path.stem)


# ------------------------------------------------------------------------------------ unstructure


def recipe_to_mapping(recipe: Recipe, *, registry: Registry | None = None) -> dict[str, Any]:
    """The recipe as plain data (YAML/JSON-ready); ``parse_recipe`` of it gives an equal Recipe."""
    conv = make_converter(registry or default_registry())
    out: dict[str, Any] = {
        "version": recipe.version,
        "name": recipe.name,
        "model": conv.unstructure(recipe.model),
        "data": _plain(conv.unstructure(recipe.data)),
        "eval": _plain(conv.unstructure(recipe.eval)),
        "stages": [_stage_to_mapping(s, conv) for s in recipe.stages],
        "deploy": [{"backend": d.backend, **_plain(conv.unstructure(d.config))} for d in recipe.deploy],
        "seed": recipe.seed,
        "device": recipe.device,
    }
    if recipe.run_dir is not None:
        out["run_dir"] = recipe.run_dir
    return out


def _stage_to_mapping(stage: StageSpec, conv: cattrs.Converter) -> dict[str, Any]:
    out: dict[str, Any] = {"type": stage.type}
    if stage.name is not None:
        out["name"] = stage.name
    out.update(_plain(conv.unstructure(stage.config)))
    return out


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so YAML/JSON dumps are clean."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dump_recipe(recipe: Recipe, *, registry: Registry | None = None) -> str:
    """The resolved recipe as YAML text (every default written out)."""
    return yaml.safe_dump(_plain(recipe_to_mapping(recipe, registry=registry)), sort_keys=False)


