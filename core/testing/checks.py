"""Conformance checks for models, techniques and backends (plain functions; pytest not needed).

Each check takes a registered entry (or its name) and the :class:`~srcompress.registry.Registry` it
came from, runs the contract that the core relies on, and returns a :class:`CheckReport` listing what
was checked and what was skipped (with the reason). A broken contract raises
:class:`ConformanceError` with a one-line message naming the entry, the check and the fix. The
pytest fixtures of :mod:`srcompress.testing` turn a report's skips into ``pytest.skip``.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
import yaml
from attrs import define, field
from torch import nn

from srcompress.entries import BackendEntry, ModelEntry, NoOptions, TechniqueEntry
from srcompress.errors import DeployError, SrcompressError
from srcompress.registry import Registry, default_registry
from srcompress.testing.reference import reference_model

__all__ = [
    "CheckReport",
    "ConformanceError",
    "check_backend",
    "check_model",
    "check_technique",
    "check_config_roundtrip",
    "plain",
]

#: Words in a backend's ``DeployError`` that mean "this machine lacks the runtime" (a skip, not a failure).
UNAVAILABLE_MARKERS = ("not installed", "no cuda gpu", "unavailable", "not available")


class ConformanceError(SrcompressError, AssertionError):
    """An entry breaks the plugin contract; the message names the entry, the check and the fix."""


@define(kw_only=True)
class CheckReport:
    """What a check did: ``passed`` (one line per property verified) and ``skipped`` (reasons)."""

    kind: str
    name: str
    passed: list[str] = field(factory=list)
    skipped: list[str] = field(factory=list)

    def ok(self, text: str) -> None:
        self.passed.append(text)

    def skip(self, text: str) -> None:
        self.skipped.append(text)

    def fail(self, text: str) -> ConformanceError:
        return ConformanceError(f"{self.kind} '{self.name}': {text}")


def plain(value: Any) -> Any:
    """Tuples -> lists, recursively (what ``yaml.safe_dump`` accepts)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _registry(registry: Registry | None) -> Registry:
    return registry if registry is not None else default_registry()


def _converter(registry: Registry) -> Any:
    from srcompress.recipe import make_converter

    return make_converter(registry)


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


# ------------------------------------------------------------------------------------------ models


def _input(size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, size, size, generator=gen)


def _check_forward_backward(report: CheckReport, model: nn.Module, scale: int, size: int) -> None:
    lr = _input(size)
    model.train()
    out = model(lr)
    expected = (1, 3, scale * size, scale * size)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise report.fail(f"x{scale}: output {shape} for input {tuple(lr.shape)}; build(scale) must return (N, 3, {scale}H, {scale}W)")
    if out.dtype != torch.float32 or not _finite(out):
        raise report.fail(f"x{scale}: output must be finite float32 (got {out.dtype}, finite={_finite(out)})")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        report.ok(f"x{scale}: forward {tuple(lr.shape)} -> {expected} (no trainable parameters: backward not applicable)")
        return
    out.float().mean().backward()
    with_grad = [p for p in params if p.grad is not None and _finite(p.grad)]
    if not with_grad:
        raise report.fail(f"x{scale}: backward produced no finite gradient on any of {len(params)} parameters")
    report.ok(f"x{scale}: forward {tuple(lr.shape)} -> {expected}, backward reaches {len(with_grad)}/{len(params)} parameters")


def _check_hints(report: CheckReport, entry: ModelEntry, model: nn.Module, scale: int) -> None:
    hints = entry.hints(model)
    names = set(dict(model.named_modules()))
    listed = {
        "never_prune": list(hints.never_prune),
        "pixel_shuffle_convs": list(hints.pixel_shuffle_convs),
        "feature_taps": list(hints.feature_taps),
        "keep_float": list(hints.keep_float),
        "residual_inner": list(hints.residual_inner),
    }
    for what, values in listed.items():
        missing = [v for v in values if v not in names]
        if missing:
            raise report.fail(f"x{scale}: hints.{what} names {missing[0]!r}, which is not in model.named_modules()")
    for conv, factor in hints.pixel_shuffle_convs.items():
        if not isinstance(factor, int) or factor < 2:
            raise report.fail(f"x{scale}: hints.pixel_shuffle_convs[{conv!r}] must be the PixelShuffle factor (an int >= 2), got {factor!r}")
    total = sum(len(v) for v in listed.values())
    report.ok(f"x{scale}: hints name {total} real modules")


def _local_weights(filename: str) -> Path | None:
    from srcompress.paths import cache_dir, weights_root

    for folder in (cache_dir("weights"), weights_root()):
        if folder is not None and (folder / filename).is_file():
            return folder / filename
    return None


def _check_weights(report: CheckReport, entry: ModelEntry, registry: Registry, download: bool) -> None:
    from srcompress.models import build_model
    from srcompress.recipe_types import ModelRef

    for weights in entry.weights:
        label = f"weights '{weights.tag}' x{weights.scale} ({weights.filename})"
        if weights.scale not in entry.scales:
            raise report.fail(f"{label}: scale {weights.scale} is not one of the declared scales {list(entry.scales)}")
        if not download and _local_weights(weights.filename) is None:
            report.skip(f"{label}: unavailable offline (not in $SRCOMPRESS_WEIGHTS or the cache); not downloaded")
            continue
        try:
            build_model(ModelRef(name=entry.name, scale=weights.scale, weights=weights.tag), registry=registry)
        except SrcompressError as exc:
            raise report.fail(f"{label} does not load: {exc}") from exc
        report.ok(f"{label} resolves and loads")


def check_model(
    entry: ModelEntry | str,
    *,
    registry: Registry | None = None,
    options: Any = None,
    scales: tuple[int, ...] | None = None,
    size: int = 16,
    weights: bool = True,
    download: bool = False,
    critic_size: int = 64,
) -> CheckReport:
    """Check a model entry: build at each scale, forward + backward, hints, published weights.

    :param entry: a :class:`~srcompress.entries.ModelEntry` or a registered model name.
    :param options: an ``options_cls`` instance or a mapping of recipe keys (small options keep a
        heavy model fast); default ``options_cls()``.
    :param scales: the scales to check (default: every declared scale).
    :param size: LR height and width of the test input (float32 RGB in [0, 1]).
    :param weights: resolve and load each published weights entry (a file found neither in
        ``$SRCOMPRESS_WEIGHTS`` nor in the cache is reported as skipped unless ``download``).
    :param critic_size: for ``role="discriminator"`` entries (GAN critics, which ignore the scale):
        the height and width of the (2, 3, H, W) batch they must map to (2, 1) logits.
    :raises ConformanceError: a broken contract (the message names the model, scale and fix).
    """
    registry = _registry(registry)
    entry = registry.get_model(entry) if isinstance(entry, str) else entry
    report = CheckReport(kind="model", name=entry.name)
    if not entry.scales or not all(isinstance(s, int) and s >= 1 for s in entry.scales):
        raise report.fail(f"scales must be a non-empty tuple of positive ints (got {entry.scales!r})")
    if isinstance(options, Mapping):
        options = _converter(registry).structure(dict(options), entry.options_cls)
    options = options if options is not None else entry.options_cls()
    _check_help(report, entry.options_cls)
    if getattr(entry, "role", "sr") == "discriminator":
        _check_discriminator(report, entry, options, critic_size)
        return report
    for scale in scales or entry.scales:
        torch.manual_seed(0)
        model = entry.build(scale, options)
        if not isinstance(model, nn.Module):
            raise report.fail(f"build({scale}, options) returned {type(model).__name__}, not an nn.Module")
        _check_forward_backward(report, model, scale, size)
        _check_hints(report, entry, model, scale)
    if weights:
        _check_weights(report, entry, registry, download)
    return report


def _check_discriminator(report: CheckReport, entry: ModelEntry, options: Any, size: int) -> None:
    torch.manual_seed(0)
    model = entry.build(entry.scales[0], options)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    model.train()
    logits = model(images)
    if tuple(logits.shape) != (2, 1) or not _finite(logits):
        raise report.fail(f"discriminator maps {tuple(images.shape)} to {tuple(logits.shape)}; expected finite (2, 1) logits")
    logits.mean().backward()
    if not any(p.grad is not None for p in model.parameters()):
        raise report.fail("discriminator: backward produced no gradient")
    report.ok(f"discriminator: {tuple(images.shape)} -> (2, 1) logits, backward reaches its parameters")


def _check_help(report: CheckReport, cls: type) -> None:
    from srcompress.config import field_help

    if cls is NoOptions or not attrs.has(cls):
        return
    missing = [a.name for a in attrs.fields(cls) if not field_help(a)[0]]
    if missing:
        raise report.fail(f"{cls.__name__}.{missing[0]} has no help text; declare it with srcompress.config.option(..., help=...)")
    report.ok(f"{cls.__name__}: every field has help text")


# -------------------------------------------------------------------------------------- techniques


def check_config_roundtrip(config: Any, config_cls: type, *, registry: Registry | None = None) -> dict[str, Any]:
    """``yaml.safe_dump(unstructure(config))`` -> ``yaml.safe_load`` -> ``structure`` == ``config``.

    Uses the recipe converter (the one recipes are read with). Returns the plain mapping.
    :raises ConformanceError: the config does not survive the round trip.
    """
    conv = _converter(_registry(registry))
    mapping = plain(conv.unstructure(config))
    text = yaml.safe_dump(mapping, sort_keys=False)
    back = conv.structure(yaml.safe_load(text) or {}, config_cls)
    if back != config:
        changed = _changed_fields(config, back)
        raise ConformanceError(
            f"{config_cls.__name__}: the YAML round trip changes {changed}; structure(unstructure(config)) must "
            "equal config (give defaults the value that reading them back produces)"
        )
    return mapping


def _changed_fields(before: Any, after: Any) -> str:
    if not attrs.has(type(before)) or type(before) is not type(after):
        return f"{before!r} into {after!r}"
    for attribute in attrs.fields(type(before)):
        old, new = getattr(before, attribute.name), getattr(after, attribute.name)
        if old != new:
            return f"field '{attribute.name}' from {old!r} to {new!r}"
    return "nothing visible (equality differs)"


def _stage_context(entry: TechniqueEntry, registry: Registry, scale: int, work: Path, data: Mapping[str, Any] | None) -> Any:
    from srcompress.context import StageContext
    from srcompress.recipe_types import DataConfig

    defaults = {"train": ("samples",), "eval": ("samples",), "patch": 32, "batch": 2, "eval_limit": 1}
    data_config = _converter(registry).structure({**defaults, **dict(data or {})}, DataConfig)
    work.mkdir(parents=True, exist_ok=True)
    return StageContext(index=0, stage_name=entry.name, scale=scale, data=data_config, work_dir=work, registry=registry, quiet=True)


def check_technique(
    entry: TechniqueEntry | str,
    *,
    registry: Registry | None = None,
    reference_model: nn.Module | None = None,
    config: Any = None,
    overrides: Mapping[str, Any] | None = None,
    scale: int = 2,
    data: Mapping[str, Any] | None = None,
    size: int = 16,
    work_dir: Path | None = None,
    roundtrip: bool = True,
) -> CheckReport:
    """Check a technique entry: YAML round trip, apply without breaking forward, checkpoint + reload.

    :param entry: a :class:`~srcompress.entries.TechniqueEntry` or a registered technique name.
    :param reference_model: the model to compress (default :func:`srcompress.testing.reference_model`
        at ``scale``); it is deep-copied, never modified.
    :param config: a ``config_cls`` instance; default: ``overrides`` structured by the recipe
        converter, i.e. the stage's YAML keys (e.g. ``{"steps": 1}`` for a tiny budget).
    :param data: the stage's ``data`` keys; default ``{train: [samples], eval: [samples], patch: 32,
        batch: 2, eval_limit: 1}`` (the offline sample photos).
    :param work_dir: the stage's private folder (default: a temporary one).
    :param roundtrip: check the YAML round trip (``False`` only to look at the other checks of a
        config known not to round-trip; the report then lists the round trip as skipped).
    :raises ConformanceError: a broken contract.
    """
    from srcompress.checkpoint import load_stage_model, save_stage_model
    from srcompress.models import model_ref_of, ref_to_mapping

    registry = _registry(registry)
    entry = registry.get_technique(entry) if isinstance(entry, str) else entry
    report = CheckReport(kind="technique", name=entry.name)
    if config is None:
        config = _converter(registry).structure(dict(overrides or {}), entry.config_cls)
    _check_help(report, entry.config_cls)
    if roundtrip:
        mapping = check_config_roundtrip(config, entry.config_cls, registry=registry)
        report.ok(f"config round-trips through YAML ({len(mapping)} keys)")
    else:
        report.skip("YAML round trip not checked (roundtrip=False)")
    reference = reference_model if reference_model is not None else _default_reference(scale)
    with tempfile.TemporaryDirectory(prefix="srcompress-check-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        ctx = _stage_context(entry, registry, scale, work / "work", data)
        torch.manual_seed(0)
        out = entry.apply(copy.deepcopy(reference), config, ctx)
        if not isinstance(out, nn.Module):
            raise report.fail(f"apply returned {type(out).__name__}; it must return the (compressed) nn.Module")
        lr = _input(size, seed=1)
        with torch.no_grad():
            y = out(lr)
        expected = (1, 3, scale * size, scale * size)
        if tuple(y.shape) != expected or not _finite(y):
            raise report.fail(f"after apply, forward gives {tuple(y.shape)} (finite={_finite(y)}); expected finite {expected}")
        report.ok(f"applies to {type(reference).__name__} x{scale}; forward still gives {expected}")
        ref = model_ref_of(out)
        # saved and reloaded exactly as the engine does when it resumes a finished stage
        save_stage_model(out, work / "stage", model_ref=ref_to_mapping(ref) if ref is not None else None,
                         example=_input(size, seed=2))
        try:
            back = load_stage_model(work / "stage", registry=registry, user_model=reference)
        except SrcompressError as exc:
            raise report.fail(
                f"its result does not reload from an srcompress checkpoint ({exc}); keep the incoming module tree "
                "(widths may change) so a resumed run can rebuild it"
            ) from exc
        with torch.no_grad():
            diff = (back(lr) - y).abs().max().item()
        if not diff <= 1e-5:
            raise report.fail(f"checkpoint reload changes the output (max |diff| {diff:.3g}); the structure must be capturable by srcompress.checkpoint")
        report.ok(f"checkpoint saves and reloads (max |diff| {diff:.1e})")
    return report


def _default_reference(scale: int) -> nn.Module:
    return reference_model(scale)


# ---------------------------------------------------------------------------------------- backends


def _unavailable(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, DeployError) and any(marker in text for marker in UNAVAILABLE_MARKERS)


def check_backend(
    entry: BackendEntry | str,
    *,
    registry: Registry | None = None,
    config: Any = None,
    model: nn.Module | None = None,
    size: int = 16,
    work_dir: Path | None = None,
) -> CheckReport:
    """Check a backend entry: compile a tiny model, match torch within the stated tolerance, save/load.

    :param config: a ``config_cls`` instance or a mapping of recipe keys (default: all defaults).
    :param model: the model to deploy (default :func:`srcompress.testing.reference_model` x2).
    :return: a report; when the backend's runtime is missing on this machine (``compile`` raises a
        ``DeployError`` saying "not installed", "no CUDA GPU" or "unavailable") the report has one
        skip with that message and nothing else is checked.
    :raises ConformanceError: a broken contract (no tolerance stated for the precision, outputs off
        by more than it, a saved artifact that does not reload).
    """
    from srcompress.deploy import backend_config

    registry = _registry(registry)
    entry = registry.get_backend(entry) if isinstance(entry, str) else entry
    report = CheckReport(kind="backend", name=entry.name)
    _check_help(report, entry.config_cls)
    config = backend_config(entry, config, registry)
    model = (model if model is not None else reference_model(2)).eval()
    example = _input(size)
    try:
        deployed = entry.compile(model, example, config)
    except DeployError as exc:
        if _unavailable(exc):
            report.skip(f"runtime unavailable on this machine: {exc}")
            return report
        raise report.fail(f"compile failed: {exc}") from exc
    precision = str(deployed.metadata.get("precision", "fp32"))
    tolerance = entry.tolerance.get(precision)
    if tolerance is None:
        raise report.fail(f"states no tolerance for precision '{precision}'; add it to BackendEntry.tolerance")
    inputs = [example, _input(size, seed=2)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    diff = _max_diff(deployed, inputs, expected)
    if not diff <= tolerance:
        raise report.fail(f"{precision} output differs from torch by {diff:.3g} > stated tolerance {tolerance}")
    report.ok(f"{precision}: max |diff| from torch {diff:.2e} <= tolerance {tolerance}")
    with tempfile.TemporaryDirectory(prefix="srcompress-check-") as tmp:
        folder = Path(work_dir) if work_dir is not None else Path(tmp)
        artifact = deployed.save(folder / f"model_{entry.name}_{precision}")
        if not Path(artifact).is_file():
            raise report.fail(f"save() returned {artifact}, which is not a file")
        reloaded = entry.load(Path(artifact), config)
        back = _max_diff(reloaded, inputs, expected)
        if not back <= tolerance:
            raise report.fail(f"reloaded artifact {Path(artifact).name} differs from torch by {back:.3g} > {tolerance}")
        report.ok(f"saves {Path(artifact).name} and reloads it (max |diff| {back:.2e})")
    return report


def _max_diff(deployed: Any, inputs: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    worst = 0.0
    for x, y in zip(inputs, expected):
        out = deployed(x)
        if tuple(out.shape) != tuple(y.shape):
            return math.inf
        worst = max(worst, (out.detach().float().cpu() - y).abs().max().item())
    return worst
