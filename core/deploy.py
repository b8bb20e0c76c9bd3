"""Deployment services every backend shares: export forms, pre-flight findings, verification, benchmarks.

The backends themselves are plugins (``srcompress.backends.*``); this module never imports them. It
reaches a backend only through the registry's :class:`~srcompress.entries.BackendEntry` and the
:class:`~srcompress.entries.Deployed` it returns. Two optional duck-typed methods of a ``Deployed``
are used when present:

- ``locate_mismatch(model, lr) -> (layer_name, max_abs_error) | None``: the first layer whose output
  departs from torch, reported when verification fails;
- ``latency(lr, *, warmup, runs) -> LatencyStats``: the backend's own timer (e.g. CUDA events).

Images are float32 RGB NCHW tensors in [0, 1] everywhere.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import attrs
import torch
from attrs import define, field
from torch import nn

from srcompress.entries import BackendEntry, Deployed
from srcompress.errors import DeployError, SrcompressError, suggest
from srcompress.modes import eval_mode

__all__ = [
    "BenchRow",
    "Issue",
    "VerifyResult",
    "apply_export_forms",
    "backend_config",
    "bench_backends",
    "deploy_model",
    "eval_mode",
    "capture_outputs",
    "GATE_STATISTIC",
    "diverging_layer",
    "find_export_forms",
    "first_diverging_layer",
    "format_issues",
    "format_table",
    "fp32_math",
    "measure_deployed",
    "module_device",
    "package_versions",
    "parse_lr_size",
    "raise_for_issues",
    "reference_output",
    "verification_inputs",
    "verify",
]

#: Packages whose versions every deployment records in its metadata (when installed).
VERSIONED_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "tensorrt", "srcompress")


# ------------------------------------------------------------------------------------ export forms


def find_export_forms(model: nn.Module) -> list[str]:
    """Qualified names of the outermost submodules that define ``export_form()`` ("" for the root)."""
    names: list[str] = []
    skip: list[str] = []
    for name, module in model.named_modules(remove_duplicate=False):  # a shared module is replaced under each name
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if callable(getattr(module, "export_form", None)):
            names.append(name)
            skip.append(name)
            if name == "":
                break
    return names


def apply_export_forms(model: nn.Module, enabled: bool = True) -> nn.Module:
    """A deep copy of ``model`` with each module that defines ``export_form()`` replaced by its result.

    ``export_form(self) -> nn.Module`` returns a module computing the same function with
    export-friendly ops (e.g. F2SRGAN's Fourier unit without FFTs). Only the outermost such modules
    are replaced; ``model`` itself is left untouched. With ``enabled=False`` (or when no module
    defines it) ``model`` is returned as is.
    """
    names = find_export_forms(model) if enabled else []
    if not names:
        return model
    new = copy.deepcopy(model)
    if names == [""]:
        return _checked_form(new, "<root>")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, _checked_form(getattr(parent, child), name))
    return new


def _checked_form(module: nn.Module, name: str) -> nn.Module:
    form = module.export_form()  # type: ignore[operator]
    if not isinstance(form, nn.Module):
        raise DeployError(
            f"export_form() of module '{name}' ({type(module).__name__}) returned {type(form).__name__}, "
            "not an nn.Module; fix the model plugin"
        )
    return form.train(module.training)


# -------------------------------------------------------------------------------------- pre-flight


@define(frozen=True, kw_only=True)
class Issue:
    """One pre-flight finding about a graph and a target.

    ``severity`` is ``"error"`` (the target cannot build or run the graph) or ``"warning"`` (it runs,
    but slower or less exactly than expected). ``fix`` says what to change, in recipe terms.
    """

    severity: str = field(validator=attrs.validators.in_(("error", "warning")))
    target: str
    op: str
    message: str
    fix: str
    nodes: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = ""
        if self.nodes:
            shown = ", ".join(self.nodes[:3]) + (f", ... ({len(self.nodes)} in all)" if len(self.nodes) > 3 else "")
            where = f" [{shown}]"
        return f"{self.severity}: {self.target}: {self.op}: {self.message}{where}; fix: {self.fix}"


def format_issues(issues: Sequence[Issue]) -> str:
    """One line per issue, errors first; ``"no issues"`` when empty."""
    if not issues:
        return "no issues"
    ordered = sorted(issues, key=lambda i: (i.severity != "error", i.op))
    return "\n".join(str(i) for i in ordered)


def raise_for_issues(issues: Sequence[Issue], what: str) -> None:
    """Raise :class:`DeployError` naming the first error-severity issue (and how many more there are)."""
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more pre-flight error(s))" if len(errors) > 1 else ""
        raise DeployError(f"{what}: {errors[0]}{more}")


# ------------------------------------------------------------------------------------ verification


GATE_STATISTIC: dict[str, str] = {"int8": "mean"}
"""Which difference gates a deployment, per precision (``max`` where not listed).

An int8 graph is compared with the fake-quantized torch model it was exported from. Integer
kernels round their int32 accumulators where the torch emulation rounds float sums; a value on a
rounding boundary then lands one step apart, and the step travels through every later layer. On
the pruned Light F2SRGAN student of recipes/light_f2srgan.yaml even ONNX Runtime's own float
execution of the Q/DQ graph (optimizations off) differs from torch by 0.008 on average and 0.14 at
the worst pixel, while both are equally far from the float model. The max is reported; the mean
decides (a broken export, e.g. permuted channels, is off by far more on average)."""


@define(frozen=True, kw_only=True)
class VerifyResult:
    """Backend output vs the torch fp32 model on a set of inputs (all values on the [0, 1] scale)."""

    max_abs: float
    mean_abs: float
    tolerance: float
    passed: bool
    statistic: str = "max"
    per_input: tuple[tuple[str, float], ...] = ()
    worst_input: str = ""
    worst_layer: str | None = None
    worst_layer_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def summary(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        if self.statistic == "mean":
            text = f"{verdict}: mean |diff| {self.mean_abs:.3g} (tolerance {self.tolerance:.3g}), max {self.max_abs:.3g}"
        else:
            text = f"{verdict}: max |diff| {self.max_abs:.3g} (tolerance {self.tolerance:.3g}), mean {self.mean_abs:.3g}"
        if self.worst_layer:
            text += f"; first diverging layer '{self.worst_layer}' (max |diff| {self.worst_layer_error:.3g})"
        return text


def verification_inputs(example: torch.Tensor, *, seed: int = 0, real: bool = True) -> list[tuple[str, torch.Tensor]]:
    """Labelled inputs of the example's shape: the example, uniform noise and (``real``) a photo crop.

    The photo is scikit-image's ``astronaut`` (shipped with the package, no download), area-resized
    to the example's size; it is skipped when scikit-image is missing. All are float32 in [0, 1].
    """
    example = example.detach().float().cpu()
    gen = torch.Generator().manual_seed(seed)
    inputs = [("example", example), ("uniform", torch.rand(example.shape, generator=gen))]
    if real and example.ndim == 4 and example.shape[1] == 3:
        photo = _photo(tuple(example.shape[-2:]))
        if photo is not None:
            inputs.append(("astronaut", photo.expand(example.shape[0], -1, -1, -1).contiguous()))
    return inputs


def _photo(size: tuple[int, int]) -> torch.Tensor | None:
    try:
        from skimage import data as skdata
    except ImportError:
        return None
    img = torch.from_numpy(skdata.astronaut().copy()).permute(2, 0, 1)[None].float() / 255.0
    return torch.nn.functional.interpolate(img, size=size, mode="area").clamp(0, 1)


@contextlib.contextmanager
def fp32_math(*, tf32: bool) -> Iterator[None]:
    """CUDA fp32 convs and matmuls in TF32 (``tf32``) or IEEE fp32 inside the block; the previous settings after."""
    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        before = (conv.fp32_precision, matmul.fp32_precision)
        conv.fp32_precision = matmul.fp32_precision = "tf32" if tf32 else "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, matmul.fp32_precision = before
        return
    before = (torch.backends.cudnn.allow_tf32, matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = before


def reference_output(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    """The torch output of ``model`` for ``lr``, run in eval mode and IEEE fp32 on the model's device; on CPU."""
    device = module_device(model)
    with eval_mode(model), torch.inference_mode(), fp32_math(tf32=False):
        out = model(lr.to(device=device, dtype=torch.float32))
    return out.detach().float().cpu()


def verify(
    deployed: Deployed,
    model: nn.Module,
    inputs: Sequence[torch.Tensor] | Sequence[tuple[str, torch.Tensor]],
    tolerance: float,
    *,
    raise_on_failure: bool = True,
    locate: bool = True,
    statistic: str = "max",
) -> VerifyResult:
    """Compare ``deployed`` with the torch ``model`` on each input; the max (or mean) abs diff must be <= tolerance.

    :param inputs: tensors (or ``(label, tensor)`` pairs) of shape (N, 3, H, W) in [0, 1].
    :param tolerance: the largest acceptable difference on the [0, 1] scale.
    :param statistic: ``max`` (every pixel) or ``mean`` (over all pixels of all inputs; see
        :data:`GATE_STATISTIC` for why int8 deployments are gated on it).
    :raises DeployError: on failure (unless ``raise_on_failure=False``), naming the max error, the
        input, and the first diverging layer when the deployment can locate it.
    """
    if statistic not in ("max", "mean"):
        raise DeployError(f"verify: statistic must be 'max' or 'mean' (got {statistic!r})")
    labelled = [item if isinstance(item, tuple) else (f"input{i}", item) for i, item in enumerate(inputs)]
    if not labelled:
        raise DeployError("verify: no inputs given; pass at least one (N, 3, H, W) tensor in [0, 1]")
    per_input: list[tuple[str, float]] = []
    total, count = 0.0, 0
    for label, lr in labelled:
        ref = reference_output(model, lr)
        out = deployed(lr).detach().float().cpu()
        if out.shape != ref.shape:
            raise DeployError(f"verify: backend output shape {tuple(out.shape)} != torch {tuple(ref.shape)} for input '{label}'")
        diff = (out - ref).abs()
        worst = float(diff.max()) if not torch.isnan(diff).any() else math.inf
        per_input.append((label, worst))
        total += float(diff.nan_to_num(math.inf).sum())
        count += diff.numel()
    worst_label, max_abs = max(per_input, key=lambda p: p[1])
    mean_abs = total / max(count, 1)
    result = VerifyResult(
        max_abs=max_abs,
        mean_abs=mean_abs,
        tolerance=float(tolerance),
        passed=(mean_abs if statistic == "mean" else max_abs) <= tolerance,
        statistic=statistic,
        per_input=tuple(per_input),
        worst_input=worst_label,
    )
    if result.passed:
        return result
    located = _locate(deployed, model, dict(labelled)[worst_label]) if locate else None
    if located is not None:
        result = attrs.evolve(result, worst_layer=located[0], worst_layer_error=located[1])
    if raise_on_failure:
        backend = deployed.metadata.get("backend", "deployment")
        precision = deployed.metadata.get("precision", "?")
        where = f"; first diverging layer '{result.worst_layer}' (max |diff| {result.worst_layer_error:.3g})" if result.worst_layer else ""
        if statistic == "mean":
            raise DeployError(
                f"{backend} ({precision}) output differs from torch by a mean |diff| of {mean_abs:.3g} > tolerance "
                f"{tolerance:.3g} (max {max_abs:.3g} on input '{worst_label}'){where}"
            )
        raise DeployError(
            f"{backend} ({precision}) output differs from torch by {max_abs:.3g} > tolerance {tolerance:.3g} "
            f"on input '{worst_label}'{where}"
        )
    return result


def _locate(deployed: Deployed, model: nn.Module, lr: torch.Tensor) -> tuple[str, float] | None:
    locate = getattr(deployed, "locate_mismatch", None)
    if not callable(locate):
        return None
    try:
        return locate(model, lr)
    except Exception:  # locating is a diagnostic; never mask the verification failure itself
        return None


def capture_outputs(
    model: nn.Module, lr: torch.Tensor, names: Sequence[str], *, dtype: torch.dtype = torch.float32, channels_last: bool = False
) -> dict[str, torch.Tensor]:
    """Outputs (float32, CPU) of the submodules ``names`` of ``model`` for input ``lr``, in execution order."""
    captured: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def record(_module: nn.Module, _args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor) and name not in captured:
                captured[name] = out.detach().float().cpu()

        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        x = lr.to(device=module_device(model), dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with eval_mode(model), torch.inference_mode(), fp32_math(tf32=False):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def diverging_layer(
    reference: Mapping[str, torch.Tensor], candidate: Mapping[str, torch.Tensor], order: Sequence[str]
) -> tuple[str, float] | None:
    """The layer (in ``order``) where the error jumps most: ``(name, max abs diff)``, or None if all match.

    Relative error of a layer: max |candidate - reference| / max |reference|. Each layer's error is
    compared with the largest error of the layers before it (at least 1e-6, float32 rounding); the
    layer with the largest ratio is where the outputs start to diverge. Layers missing from either
    side, or with different shapes, are skipped.
    """
    errors: dict[str, tuple[float, float]] = {}
    for name in order:
        ref, got = reference.get(name), candidate.get(name)
        if ref is None or got is None or ref.shape != got.shape:
            continue
        diff = float((got.float() - ref.float()).abs().nan_to_num(math.inf).max())
        errors[name] = (diff / (float(ref.abs().max()) + 1e-12), diff)
    if not errors or max(rel for rel, _ in errors.values()) == 0:
        return None
    best, best_ratio, before = None, -1.0, 1e-6
    for name, (rel, diff) in errors.items():
        ratio = rel / before
        if ratio > best_ratio:
            best, best_ratio = (name, diff), ratio
        before = max(before, rel)
    return best


def first_diverging_layer(
    reference: nn.Module, candidate: nn.Module, lr: torch.Tensor, *, dtype: torch.dtype, channels_last: bool = False
) -> tuple[str, float] | None:
    """:func:`diverging_layer` over the leaf modules with parameters that both models have by name."""
    ref_names = {n for n, m in reference.named_modules() if not list(m.children()) and list(m.parameters(recurse=False))}
    names = [n for n, m in candidate.named_modules() if n in ref_names and type(m) is type(reference.get_submodule(n))]
    if not names:
        return None
    ref = capture_outputs(reference, lr, names)
    got = capture_outputs(candidate, lr, names, dtype=dtype, channels_last=channels_last)
    return diverging_layer(ref, got, list(got))


# ------------------------------------------------------------------------------------------- deploy


def backend_config(entry: BackendEntry, config: Any = None, registry: Any = None) -> Any:
    """``config`` (a mapping of recipe keys, an instance of ``entry.config_cls`` or None) as a typed config."""
    if isinstance(config, entry.config_cls):
        return config
    mapping = dict(config or {})
    known = [a.name for a in attrs.fields(entry.config_cls)]
    for key in mapping:
        if key not in known:
            raise DeployError(suggest(key, known, f"option of backend '{entry.name}'"))
    from srcompress.recipe import make_converter  # the recipe's strict scalars and tuple hooks

    try:
        conv = make_converter(registry) if registry is not None else make_converter(_default_registry())
        return conv.structure(mapping, entry.config_cls)
    except Exception as exc:
        raise DeployError(f"backend '{entry.name}' options {mapping}: {_first_problem(exc)}") from None


def _first_problem(exc: BaseException) -> str:
    subs = getattr(exc, "exceptions", None)
    if subs:
        return _first_problem(subs[0])
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _default_registry() -> Any:
    from srcompress.registry import default_registry

    return default_registry()


def deploy_model(
    model: nn.Module,
    backend: str,
    config_mapping: Mapping[str, Any] | Any,
    example: torch.Tensor,
    out_dir: str | os.PathLike[str],
    registry: Any = None,
    *,
    inputs: Sequence[torch.Tensor] | Sequence[tuple[str, torch.Tensor]] | None = None,
    name: str | None = None,
    tolerance: float | None = None,
    source: Any = None,
) -> tuple[Deployed, VerifyResult]:
    """Compile ``model`` on ``backend``, verify it against torch, and save the artifact in ``out_dir``.

    :param config_mapping: backend options as recipe keys (or a config instance).
    :param example: an LR input (N, 3, H, W) in [0, 1] fixing the traced shapes (dynamic dims stay dynamic).
    :param inputs: verification inputs; default :func:`verification_inputs` of ``example``.
    :param name: artifact stem (default ``model_<backend>_<precision>``).
    :param tolerance: overrides the backend's per-precision tolerance.
    :param source: what the backend compiles instead of ``model`` (e.g. an already exported ONNX
        graph); ``model`` stays the torch reference.
    :return: the deployment (``metadata["path"]``: the saved artifact) and its :class:`VerifyResult`;
        writes ``<stem>.<ext>`` and ``<stem>.verify.json``.
    :raises DeployError: when compiling fails or the output is off by more than the tolerance.
    """
    registry = registry or _default_registry()
    entry: BackendEntry = registry.get_backend(backend)
    config = backend_config(entry, config_mapping, registry)
    deployed = entry.compile(model if source is None else source, example, config)
    precision = str(deployed.metadata.get("precision", "fp32"))
    if tolerance is None:
        if precision not in entry.tolerance:
            raise DeployError(f"backend '{backend}' states no tolerance for precision '{precision}'; pass tolerance=")
        tolerance = entry.tolerance[precision]
    result = verify(deployed, model, inputs if inputs is not None else verification_inputs(example), tolerance,
                    statistic=GATE_STATISTIC.get(precision, "max"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = name or f"model_{backend}_{precision}"
    artifact = deployed.save(out / stem)
    if isinstance(deployed.metadata, dict):
        deployed.metadata["path"] = str(artifact)
    report = {"backend": backend, "artifact": artifact.name, "verify": result.to_dict(), "metadata": _jsonable(deployed.metadata)}
    _write_json(out / f"{stem}.verify.json", report)
    return deployed, result


# ------------------------------------------------------------------------------------------- bench


@define(frozen=True, kw_only=True)
class BenchRow:
    """One latency measurement: a deployment at one LR size."""

    label: str
    backend: str
    precision: str
    lr_size: tuple[int, int]
    median_ms: float
    p90_ms: float
    max_abs_err: float | None = None
    speedup: float | None = None
    device: str = "cpu"
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _SizeError(SrcompressError, ValueError):
    """A malformed ``HxW`` size; a ValueError too, so argparse's ``type=`` reports it as bad input."""


def parse_lr_size(text: str) -> tuple[int, int]:
    """An LR size written ``HxW`` (rows x columns, e.g. ``180x320`` for a 320 x 180 image) as ``(H, W)``.

    Both must be positive integers; anything else raises :class:`SrcompressError` (also a
    ``ValueError``) naming the text.
    """
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        height = width = 0
    if height <= 0 or width <= 0:
        raise _SizeError(f"size {text!r}: expected HxW with two positive integers, e.g. 180x320 (LR height x width)")
    return height, width


def measure_deployed(deployed: Deployed, lr: torch.Tensor, *, warmup: int = 2, runs: int = 5, threads: int | None = None) -> Any:
    """Latency of ``deployed(lr)``: the deployment's own ``latency()`` when it has one, else the shared harness."""
    own = getattr(deployed, "latency", None)
    if callable(own):
        return own(lr, warmup=warmup, runs=runs)
    from srcompress.measure.profile import measure_latency

    device = str(deployed.metadata.get("device", "cpu"))
    lr = lr.to(device if device.startswith("cuda") else "cpu")
    return measure_latency(lambda: deployed(lr), warmup=warmup, runs=runs, threads=threads, cuda_sync=device.startswith("cuda"))


BenchSpec = tuple[Any, ...]


def bench_backends(
    model: nn.Module,
    backends: Sequence[BenchSpec],
    lr_sizes: Sequence[tuple[int, int]],
    *,
    threads: int | None = None,
    runs: int = 5,
    warmup: int = 2,
    registry: Any = None,
    check: bool = True,
    seed: int = 0,
    interleave: bool = True,
) -> list[BenchRow]:
    """Latency of ``model`` on each backend configuration at each LR size, measured in one process.

    :param backends: ``(backend, options[, label[, source]])``. Each configuration is compiled once
        (dynamic shapes) on an example of the first LR size. ``source`` is what the backend
        compiles instead of ``model`` (e.g. an ONNX graph or file exported once and shared by
        several configurations); ``model`` stays the reference. Configurations with a ``threads``
        option get ``threads`` unless they set it themselves.
    :param lr_sizes: LR (height, width) pairs; the input is (1, 3, H, W) uniform noise in [0, 1].
    :param runs: timed calls per configuration and size.
    :param interleave: keep every configuration loaded and time them in rounds (round r times each
        once), so slow drifts of a shared machine hit all of them alike; ``False`` compiles, times
        and frees one configuration at a time (peak memory of one deployment, e.g. for large inputs).
    :param check: also record the max abs difference from the torch ``model`` (fp32) at each size.
    :return: one :class:`BenchRow` per (configuration, size), configurations in the given order per
        size; ``speedup`` is the first configuration's median over this one's, at the same size.
    """
    registry = registry or _default_registry()
    if not backends or not lr_sizes or runs < 1:
        raise DeployError("bench: give at least one backend, one LR size and runs >= 1")
    gen = torch.Generator().manual_seed(seed)
    inputs = {tuple(size): torch.rand((1, 3, *size), generator=gen) for size in lr_sizes}
    example = inputs[tuple(lr_sizes[0])]
    references = {size: reference_output(model, lr) for size, lr in inputs.items()} if check else {}
    timings: dict[tuple[int, tuple[int, ...]], tuple[list[float], float | None, Mapping[str, Any]]] = {}

    def measure(index: int, deployed: Deployed, size: tuple[int, ...], rounds: int) -> None:
        lr = inputs[size]
        if (index, size) not in timings:  # first visit: check (one untimed call) and warm up
            err = float((deployed(lr).float().cpu() - references[size]).abs().max()) if check else None
            calls = warmup - (1 if check else 0)
            if calls > 0:
                measure_deployed(deployed, lr, warmup=calls - 1, runs=1, threads=threads)
            timings[(index, size)] = ([], err, dict(deployed.metadata))
        for _ in range(rounds):
            timings[(index, size)][0].append(float(measure_deployed(deployed, lr, warmup=0, runs=1, threads=threads).median_ms))

    labels: list[tuple[str, str]] = []
    if interleave:
        compiled = [_compile_for_bench(model, spec, example, threads, registry) for spec in backends]
        labels = [(label, name) for label, name, _ in compiled]
        for size in inputs:
            for i, (_, _, deployed) in enumerate(compiled):
                measure(i, deployed, size, 0)
            for _ in range(runs):
                for i, (_, _, deployed) in enumerate(compiled):
                    measure(i, deployed, size, 1)
    else:
        for i, spec in enumerate(backends):
            label, name, deployed = _compile_for_bench(model, spec, example, threads, registry)
            labels.append((label, name))
            for size in inputs:
                measure(i, deployed, size, runs)
            del deployed
            gc.collect()
    rows: list[BenchRow] = []
    for size in inputs:
        medians = [statistics.median(timings[(i, size)][0]) for i in range(len(labels))]
        for i, (label, name) in enumerate(labels):
            times, err, meta = timings[(i, size)]
            rows.append(
                BenchRow(
                    label=label,
                    backend=name,
                    precision=str(meta.get("precision", "fp32")),
                    lr_size=(int(size[0]), int(size[1])),
                    median_ms=medians[i],
                    p90_ms=_percentile(times, 90),
                    max_abs_err=err,
                    speedup=medians[0] / medians[i] if medians[i] > 0 else None,
                    device=str(meta.get("device", "cpu")),
                )
            )
    return rows


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _compile_for_bench(model: nn.Module, spec: BenchSpec, example: torch.Tensor, threads: int | None, registry: Any) -> tuple[str, str, Deployed]:
    if not 2 <= len(spec) <= 4:
        raise DeployError(f"bench: a configuration is (backend, options[, label[, source]]), got {spec!r}")
    name, options = spec[0], dict(spec[1] or {})
    label = spec[2] if len(spec) > 2 and spec[2] else _label(name, options)
    source = spec[3] if len(spec) > 3 else model
    entry: BackendEntry = registry.get_backend(name)
    if threads is not None and "threads" in attrs.fields_dict(entry.config_cls) and "threads" not in options:
        options["threads"] = threads
    return label, name, entry.compile(source, example, backend_config(entry, options, registry))


def _label(name: str, options: Mapping[str, Any]) -> str:
    shown = [f"{k}={v}" for k, v in options.items() if k != "threads"]
    return f"{name} ({', '.join(shown)})" if shown else name


def format_table(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of bench rows, grouped by LR size (as given)."""
    header = "| LR (H x W) | configuration | precision | device | median ms | p90 ms | speed-up | max abs err |"
    lines = [header, "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        speed = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        err = f"{r.max_abs_err:.2g}" if r.max_abs_err is not None else "-"
        lines.append(
            f"| {r.lr_size[0]} x {r.lr_size[1]} | {r.label} | {r.precision} | {r.device} | "
            f"{r.median_ms:.1f} | {r.p90_ms:.1f} | {speed} | {err} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ helpers


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out), plus the Python version."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def module_device(model: nn.Module) -> torch.device:
    """The device of the first parameter or buffer of ``model`` (CPU when it has none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")



def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
