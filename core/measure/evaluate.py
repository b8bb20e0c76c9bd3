"""Evaluate an SR model on named datasets the way the field does, with metrics from the registry.

Per dataset and image: HR cropped top-left to a multiple of the scale (``modcrop``), LR by the
MATLAB-compatible bicubic downscale quantised to 8 bits (``bicubic_downscale``), SR = model(LR)
clamped to [0, 1] under ``torch.no_grad``, then every metric on (SR, HR). Metric names resolve
through the plugin registry (``srcompress_metrics`` hook), so a third-party metric is used exactly
like the built-ins. A metric that cannot be computed returns ``None`` and, ideally, emits a
:class:`~srcompress.measure.MetricSkippedWarning`; both end up in :attr:`EvalResult.notes`.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from attrs import define, field
from torch import Tensor, nn

from srcompress import data as srdata
from srcompress.entries import MetricEntry
from srcompress.measure.lpips_metric import MetricSkippedWarning
from srcompress.modes import eval_mode
from srcompress.registry import Registry, default_registry

__all__ = ["EvalResult", "KeptImage", "evaluate", "format_value", "metric_label"]

_LABELS = {"psnr": "PSNR-Y", "ssim": "SSIM-Y", "psnr_rgb": "PSNR-RGB", "niqe": "NIQE", "lpips": "LPIPS"}
_DIGITS = {"psnr": 4, "psnr_rgb": 4, "ssim": 5}


def metric_label(name: str) -> str:
    """Display name of a metric (``psnr`` -> ``PSNR-Y``); unknown names are shown as given."""
    return _LABELS.get(name, name)


def format_value(name: str, value: float | None) -> str:
    """A metric value with the precision SR tables use (PSNR 4 decimals, SSIM 5, others 4)."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{_DIGITS.get(name, 4)}f}"


@define(frozen=True, kw_only=True)
class KeptImage:
    """One evaluated image kept for inspection: float32 (3, h, w) LR, SR and HR in [0, 1], on CPU."""

    lr: Tensor
    sr: Tensor
    hr: Tensor


@define(kw_only=True)
class EvalResult:
    """Per-image and mean metric values of one model on some datasets at one scale.

    ``per_image[dataset][image][metric]`` is a float or None (metric unavailable); ``kept`` holds
    the first ``keep_outputs`` images of each dataset; ``notes`` says what was skipped and why.
    """

    scale: int
    metrics: tuple[str, ...]
    higher_is_better: dict[str, bool]
    per_image: dict[str, dict[str, dict[str, float | None]]] = field(factory=dict)
    kept: dict[str, dict[str, KeptImage]] = field(factory=dict)
    notes: list[str] = field(factory=list)
    seconds: float = 0.0

    @property
    def datasets(self) -> list[str]:
        return list(self.per_image)

    def mean(self, dataset: str, metric: str) -> float | None:
        """Mean over the images that have a value; None when none has."""
        values = [v[metric] for v in self.per_image[dataset].values() if v.get(metric) is not None]
        return sum(values) / len(values) if values else None

    def means(self) -> dict[str, dict[str, float | None]]:
        """``means()[dataset][metric]``: :meth:`mean` of every dataset and metric."""
        return {d: {m: self.mean(d, m) for m in self.metrics} for d in self.per_image}

    def table(self) -> str:
        """A Markdown table of the means (one row per dataset), followed by the notes."""
        arrows = {m: ("↑" if self.higher_is_better.get(m, True) else "↓") for m in self.metrics}
        header = ["Dataset (x%d)" % self.scale] + [f"{metric_label(m)} {arrows[m]}" for m in self.metrics]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(self.metrics)]
        for dataset, images in self.per_image.items():
            cells = [f"{dataset} ({len(images)})"] + [format_value(m, self.mean(dataset, m)) for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [f"- note: {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: scale, metrics, directions, means, per-image values, notes (``inf`` as a string)."""
        return {
            "scale": self.scale,
            "metrics": list(self.metrics),
            "higher_is_better": dict(self.higher_is_better),
            "means": _jsonable(self.means()),
            "per_image": _jsonable(self.per_image),
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _accepts_crop(entry: MetricEntry) -> bool:
    try:
        return "crop" in inspect.signature(entry.compute).parameters
    except (TypeError, ValueError):
        return False


def _compute(entry: MetricEntry, sr: Tensor, hr: Tensor, scale: int, crop: int | None, notes: list[str]) -> float | None:
    """One metric value; skip warnings become notes, other warnings pass through."""
    kwargs = {"crop": crop} if crop is not None else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = entry.compute(sr, hr, scale, **kwargs)
    for warning in caught:
        if issubclass(warning.category, MetricSkippedWarning):
            message = f"{entry.name}: {warning.message}"
            if message not in notes:
                notes.append(message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return None if value is None else float(value)


def _resolve_metrics(names: Sequence[str], registry: Registry, crop: int | None) -> list[MetricEntry]:
    entries = [registry.get_metric(name) for name in names]
    if crop is not None:
        for entry in entries:
            if not _accepts_crop(entry):
                raise ValueError(
                    f"metric '{entry.name}' (plugin {entry.plugin or '?'}) takes no crop argument; "
                    f"leave crop=None to use its default shave (the scale)"
                )
    return entries


def evaluate(
    model: Callable[[Tensor], Tensor],
    datasets: Sequence[str] | str,
    scale: int,
    *,
    root: str | os.PathLike[str] | None = None,
    metrics: Sequence[str] = ("psnr", "ssim"),
    device: str | torch.device = "cpu",
    crop: int | None = None,
    keep_outputs: int = 0,
    limit: int | None = None,
    registry: Registry | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score ``model`` on named datasets at ``scale``.

    :param model: maps float32 RGB (1, 3, h, w) in [0, 1] on ``device`` to (1, 3, scale*h, scale*w)
        (any range; clamped to [0, 1] here). An ``nn.Module`` is moved to ``device`` and run in eval
        mode; its training flag is restored afterwards.
    :param datasets: dataset names (``Set5``, ``Set14``, ...) resolved under ``root`` (else
        ``SRCOMPRESS_DATA``, else the cache).
    :param metrics: metric names registered through the ``srcompress_metrics`` hook.
    :param crop: border shave passed to every metric; ``None`` lets each use its default (= scale).
    :param keep_outputs: keep the first N images (LR, SR, HR) of each dataset in ``result.kept``.
    :param limit: score only the first N images of each dataset (quick checks); None = all.
    :param registry: plugin registry to resolve metric names (default: the process-wide one).
    :param progress: show a tqdm bar per dataset.
    """
    if isinstance(datasets, str):
        datasets = [datasets]
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 images per dataset, or None for all (got {limit})")
    registry = registry if registry is not None else default_registry()
    entries = _resolve_metrics(metrics, registry, crop)
    result = EvalResult(
        scale=scale,
        metrics=tuple(e.name for e in entries),
        higher_is_better={e.name: e.higher_is_better for e in entries},
    )
    device = torch.device(device)
    if isinstance(model, nn.Module):
        model.to(device)
    start = time.perf_counter()
    with eval_mode(model):
        for name in datasets:
            _evaluate_dataset(model, name, scale, root, entries, device, crop, keep_outputs, limit, result, progress)
    result.seconds = time.perf_counter() - start
    return result


def _evaluate_dataset(
    model: Callable[[Tensor], Tensor],
    name: str,
    scale: int,
    root: str | os.PathLike[str] | None,
    entries: Sequence[MetricEntry],
    device: torch.device,
    crop: int | None,
    keep_outputs: int,
    limit: int | None,
    result: EvalResult,
    progress: bool,
) -> None:
    dataset = srdata.resolve_dataset(name, root)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    items: Any = (dataset[i] for i in range(count))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, total=count, desc=f"{name} x{scale}", unit="img")
    per_image: dict[str, dict[str, float | None]] = {}
    kept: dict[str, KeptImage] = {}
    for image_name, image in items:
        hr = srdata.modcrop(image, scale)
        lr = srdata.bicubic_downscale(hr, scale)
        with torch.no_grad():
            sr = model(lr.unsqueeze(0).to(device)).float().clamp(0.0, 1.0).cpu()
        if tuple(sr.shape) != (1, *hr.shape):
            raise ValueError(
                f"{name}/{image_name}: model output {tuple(sr.shape)} is not x{scale} of the LR input "
                f"{tuple(lr.shape)} (expected {(1, *hr.shape)}); is the model built for another scale?"
            )
        hr_batch = hr.unsqueeze(0)
        values = {}
        for entry in entries:
            values[entry.name] = _compute(entry, sr, hr_batch, scale, crop, result.notes)
        per_image[image_name] = values
        if len(kept) < keep_outputs:
            kept[image_name] = KeptImage(lr=lr.cpu(), sr=sr[0], hr=hr.cpu())
    result.per_image[name] = per_image
    result.kept[name] = kept
    for entry in entries:
        missing = sum(1 for v in per_image.values() if v[entry.name] is None)
        if missing and missing < len(per_image):
            result.notes.append(f"{entry.name}: no value on {missing} of {len(per_image)} images of {name}; the mean is over the rest")
        elif missing and not any(note.startswith(f"{entry.name}: ") for note in result.notes):
            result.notes.append(f"{entry.name}: no value on any image of {name} (the metric returned None without a reason)")
