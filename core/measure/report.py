"""The per-stage report: Markdown a person reads, JSON a program reads, and two PNG figures.

``write_report`` writes into ``out_dir`` (each file atomically: a temporary file, then a rename):

- ``report.md``: a cost table (params, MACs, latency per backend, ratios to the first stage), one
  quality table per dataset (every metric, deltas to the first stage), the figures, notes;
- ``report.json``: the same records, machine-readable;
- ``quality_vs_latency.png``: one labelled point per stage, quality against latency (or MACs when no
  latency was measured), with a second panel for a "lower is better" perceptual metric if present;
- ``crops.png`` (when ``crops`` is given): the same region side by side, e.g. bicubic | stages | HR.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from attrs import define, field
from torch import Tensor

from srcompress.measure.evaluate import EvalResult, format_value, metric_label

__all__ = ["StageRecord", "crops_from_results", "section_markers", "select_crop_box", "splice_section", "write_report", "write_section"]

_KNOWN_DIRECTIONS = {"psnr": True, "ssim": True, "psnr_rgb": True, "niqe": False, "lpips": False}
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


@define(kw_only=True)
class StageRecord:
    """What one stage of a run cost and delivered.

    :param stage: a label (``baseline``, ``distill``, ``prune 50%`` ...).
    :param params: parameter count. :param macs: MACs per image at the run's LR size.
    :param latency_ms: backend name -> median latency in ms.
    :param quality: dataset -> metric -> value (None when unavailable).
    :param extras: anything else worth showing (file size, LR size, notes, ...); JSON-able values.
    """

    stage: str
    params: int | None = None
    macs: int | None = None
    latency_ms: dict[str, float] = field(factory=dict)
    quality: dict[str, dict[str, float | None]] = field(factory=dict)
    extras: dict[str, Any] = field(factory=dict)

    @classmethod
    def from_eval(cls, stage: str, result: EvalResult, **kwargs: Any) -> StageRecord:
        """A record whose quality is the means of an :class:`EvalResult`."""
        return cls(stage=stage, quality=result.means(), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "params": self.params,
            "macs": self.macs,
            "latency_ms": dict(self.latency_ms),
            "quality": _jsonable(self.quality),
            "extras": _jsonable(self.extras),
        }


# ------------------------------------------------------------------------------------ formatting
def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _si(value: float | None, unit: str = "") -> str:
    """12345678 -> '12.35 M'."""
    if value is None:
        return "-"
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {suffix}{unit}"
    return f"{value:g} {unit}".strip()


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def _direction(metric: str, overrides: Mapping[str, bool]) -> bool:
    if metric in overrides:
        return overrides[metric]
    if metric in _KNOWN_DIRECTIONS:
        return _KNOWN_DIRECTIONS[metric]
    try:
        from srcompress.registry import default_registry

        return default_registry().get_metric(metric).higher_is_better
    except Exception:  # an unknown third-party name: assume higher is better, as most metrics are
        return True


def _ordered_union(lists: Sequence[Sequence[str]]) -> list[str]:
    seen: list[str] = []
    for items in lists:
        seen += [item for item in items if item not in seen]
    return seen


def _cost_table(records: Sequence[StageRecord]) -> list[str]:
    backends = _ordered_union([list(r.latency_ms) for r in records])
    header = ["Stage", "Params", "MACs / image"] + [f"{b} latency (ms)" for b in backends]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    base = records[0]
    for index, record in enumerate(records):
        first = index == 0
        cells = [
            record.stage,
            _si(record.params) + ("" if first else _ratio(record.params, base.params)),
            _si(record.macs) + ("" if first else _ratio(record.macs, base.macs)),
        ]
        for backend in backends:
            ms = record.latency_ms.get(backend)
            base_ms = base.latency_ms.get(backend)
            cell = "-" if ms is None else f"{ms:.1f}"
            if not first and ms and base_ms:
                cell += f" ({base_ms / ms:.2f}x faster)" if ms <= base_ms else f" ({ms / base_ms:.2f}x slower)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _quality_table(records: Sequence[StageRecord], dataset: str, directions: Mapping[str, bool]) -> list[str]:
    metrics = _ordered_union([list(r.quality.get(dataset, {})) for r in records])
    # a metric no stage could compute (e.g. LPIPS offline) is left out; the notes say why
    metrics = [m for m in metrics if any(r.quality.get(dataset, {}).get(m) is not None for r in records)]
    header = ["Stage"] + [f"{metric_label(m)} {'↑' if _direction(m, directions) else '↓'}" for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(metrics)]
    base = records[0].quality.get(dataset, {})
    for index, record in enumerate(records):
        values = record.quality.get(dataset, {})
        cells = [record.stage]
        for metric in metrics:
            value, ref = values.get(metric), base.get(metric)
            cell = format_value(metric, value)
            if index and value is not None and ref is not None and math.isfinite(value) and math.isfinite(ref):
                delta = value - ref
                digits = 5 if metric == "ssim" else (2 if metric.startswith("psnr") else 3)
                cell += f" ({delta:+.{digits}f})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _extras_table(records: Sequence[StageRecord]) -> list[str]:
    keys = _ordered_union([list(r.extras) for r in records])
    if not keys:
        return []
    lines = ["| Stage | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for record in records:
        cells = [record.stage] + [str(record.extras.get(k, "-")).replace("|", "/") for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# ------------------------------------------------------------------------------------ writing
def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp_path)`` into a temporary file beside ``path``, then rename."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _primary_metrics(records: Sequence[StageRecord], directions: Mapping[str, bool]) -> tuple[str | None, str | None, str | None]:
    """(dataset, fidelity metric, perceptual metric) plotted: the first dataset, PSNR-like, lower-is-better."""
    datasets = _ordered_union([list(r.quality) for r in records])
    if not datasets:
        return None, None, None
    dataset = datasets[0]
    metrics = _ordered_union([list(r.quality.get(dataset, {})) for r in records])

    def has_values(metric: str) -> bool:
        return any(r.quality.get(dataset, {}).get(metric) is not None for r in records)

    available = [m for m in metrics if has_values(m)]
    higher = [m for m in available if _direction(m, directions)]
    lower = [m for m in available if not _direction(m, directions)]
    fidelity = "psnr" if "psnr" in higher else (higher[0] if higher else None)
    perceptual = "niqe" if "niqe" in lower else (lower[0] if lower else None)
    return dataset, fidelity, perceptual


def _plot_quality(records: Sequence[StageRecord], path: Path, title: str, directions: Mapping[str, bool]) -> bool:
    """quality_vs_latency.png; False (nothing written) when there is no quality to plot."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dataset, fidelity, perceptual = _primary_metrics(records, directions)
    panels = [m for m in (fidelity, perceptual) if m is not None]
    if not panels:
        return False
    backends = _ordered_union([list(r.latency_ms) for r in records])
    if backends:
        backend = backends[0]
        xs = [r.latency_ms.get(backend) for r in records]
        xlabel = f"{backend} latency (ms, median)"
    else:
        xs = [r.macs / 1e9 if r.macs else None for r in records]
        xlabel = "GMACs per image"
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.6), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        ys = [r.quality.get(dataset, {}).get(metric) for r in records]
        points = [(i, x, y) for i, (x, y) in enumerate(zip(xs, ys)) if x is not None and y is not None]
        if len(points) > 1:
            ax.plot([p[1] for p in points], [p[2] for p in points], color="0.75", lw=1.2, zorder=1)
        for i, x, y in points:
            ax.scatter([x], [y], s=70, color=_PALETTE[i % len(_PALETTE)], edgecolor="black", lw=0.6, zorder=3)
            ax.annotate(
                f"{i + 1}. {records[i].stage}", (x, y), textcoords="offset points", xytext=(7, 6),
                fontsize=9, zorder=4,
            )
        better = "higher is better" if _direction(metric, directions) else "lower is better"
        ax.set_ylabel(f"{metric_label(metric)} on {dataset} ({better})")
        ax.set_xlabel(xlabel + "  (left is faster)" if backends else xlabel + "  (left is cheaper)")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.18, y=0.18)
        corner = (0.02, 0.96, "top") if _direction(metric, directions) else (0.02, 0.04, "bottom")
        ax.text(corner[0], corner[1], ("↖" if corner[2] == "top" else "↙") + " better", transform=ax.transAxes,
                fontsize=9, color="0.35", va=corner[2], ha="left")
        missing = len(records) - len(points)
        if missing:
            ax.text(0.98, 0.02, f"{missing} stage(s) without a value not shown", transform=ax.transAxes,
                    fontsize=8, color="0.4", ha="right", va="bottom")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return True


def _to_hwc(img: Tensor) -> Any:
    img = img.detach().float().cpu()
    if img.dim() == 4:
        img = img[0]
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"a crop must be a (3, h, w) or (1, h, w) image in [0, 1] (got shape {tuple(img.shape)})")
    img = img.clamp(0.0, 1.0)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return img.permute(1, 2, 0).numpy()


def _plot_crops(crops: Mapping[str, Mapping[str, Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = list(crops)
    columns = _ordered_union([list(crops[r]) for r in rows])
    cell = 2.3
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(cell * len(columns), cell * len(rows) + 0.3), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if column in crops[row]:
                ax.imshow(_to_hwc(crops[row][column]), interpolation="nearest")
            else:
                ax.set_facecolor("0.92")
            if r == 0:
                ax.set_title(column, fontsize=10)
            if c == 0:
                ax.set_ylabel(row, fontsize=9)
    fig.tight_layout(pad=0.4, w_pad=0.3, h_pad=0.5)
    _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def write_report(
    out_dir: str | os.PathLike[str],
    records: Sequence[StageRecord],
    *,
    title: str,
    crops: Mapping[str, Mapping[str, Tensor]] | None = None,
    notes: Sequence[str] = (),
    higher_is_better: Mapping[str, bool] | None = None,
) -> Path:
    """Write report.md, report.json, quality_vs_latency.png and crops.png; return report.md's path.

    :param records: one per stage, in order; deltas and ratios are against the first.
    :param crops: row label (e.g. ``Set5/baby``) -> column label (``bicubic``, each stage, ``HR``)
        -> image crop, float (3, h, w) in [0, 1]. See :func:`crops_from_results`.
    :param notes: lines listed under "Notes" (skipped metrics, hardware, commands).
    :param higher_is_better: metric directions for names the registry does not know.
    """
    if not records:
        raise ValueError("write_report needs at least one StageRecord")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    directions = dict(higher_is_better or {})
    plotted = _plot_quality(records, out / "quality_vs_latency.png", title, directions)
    if crops:
        _plot_crops(crops, out / "crops.png")

    lines = [f"# {title}", ""]
    lines += [f"{len(records)} stage(s). Ratios and deltas are against the first stage, `{records[0].stage}`.", ""]
    if plotted:
        lines += ["![Quality against latency, one point per stage](quality_vs_latency.png)", ""]
    lines += ["## Cost", ""] + _cost_table(records) + [""]
    for dataset in _ordered_union([list(r.quality) for r in records]):
        lines += [f"## Quality on {dataset}", ""] + _quality_table(records, dataset, directions) + [""]
    if crops:
        lines += ["## Crops", "", "Columns: " + " | ".join(_ordered_union([list(v) for v in crops.values()])), ""]
        lines += ["![Crops side by side](crops.png)", ""]
    extras = _extras_table(records)
    if extras:
        lines += ["## Details", ""] + extras + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    _atomic_text(out / "report.md", "\n".join(lines))

    payload = {
        "title": title,
        "stages": [r.to_dict() for r in records],
        "figures": {"quality_vs_latency": "quality_vs_latency.png" if plotted else None,
                    "crops": "crops.png" if crops else None},
        "notes": list(notes),
    }
    _atomic_text(out / "report.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return out / "report.md"


# ------------------------------------------------------------------------------------ crops
def select_crop_box(hr: Tensor, size: int = 64) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the ``size`` x ``size`` window of ``hr`` (3, H, W) with the most
    detail (summed gradient magnitude): the place where SR methods differ."""
    gray = hr.detach().float().mean(dim=-3)
    height, width = gray.shape[-2:]
    size = min(size, height, width)
    grad = torch.zeros_like(gray)
    grad[:, 1:] += (gray[:, 1:] - gray[:, :-1]).abs()
    grad[1:, :] += (gray[1:, :] - gray[:-1, :]).abs()
    stride = max(1, size // 4)
    energy = torch.nn.functional.avg_pool2d(grad[None, None], size, stride=stride)[0, 0]
    index = int(torch.argmax(energy))
    top, left = divmod(index, energy.shape[-1])
    return top * stride, left * stride, size, size


def crops_from_results(
    results: Mapping[str, EvalResult],
    *,
    size: int = 64,
    bicubic: bool = True,
    max_rows: int = 4,
) -> dict[str, dict[str, Tensor]]:
    """Crops for :func:`write_report` from stage label -> :class:`EvalResult` (with ``kept`` images).

    Rows are ``dataset/image`` for the images every result kept (up to ``max_rows``); columns are
    ``bicubic`` (MATLAB bicubic of the LR, when ``bicubic``), each stage, then ``HR``. The region
    is chosen on the HR by :func:`select_crop_box`.
    """
    from srcompress.data import imresize

    labels = list(results)
    if not labels:
        return {}
    first = results[labels[0]]
    crops: dict[str, dict[str, Tensor]] = {}
    for dataset, kept in first.kept.items():
        for image_name, image in kept.items():
            if len(crops) >= max_rows:
                return crops
            if not all(image_name in r.kept.get(dataset, {}) for r in results.values()):
                continue
            top, left, h, w = select_crop_box(image.hr, size)
            window = (slice(None), slice(top, top + h), slice(left, left + w))
            row: dict[str, Tensor] = {}
            if bicubic:
                row["bicubic"] = imresize(image.lr, first.scale).clamp(0.0, 1.0)[window]
            for label in labels:
                row[label] = results[label].kept[dataset][image_name].sr[window]
            row["HR"] = image.hr[window]
            crops[f"{dataset}/{image_name}"] = row
    return crops


# ------------------------------------------------------------------ generated sections of hand-kept pages


def section_markers(marker: str) -> tuple[str, str]:
    """The HTML comments that delimit the generated section ``marker`` of a Markdown page."""
    return f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"


def splice_section(old_page: str, generated: str, marker: str, title: str) -> str:
    """``old_page`` with its section ``marker`` replaced by ``generated``; everything outside is kept.

    So a benchmark script rewrites its tables on a rerun while the readings written by hand around
    them stay. A page without the start marker followed by the end marker (or an empty one) becomes
    ``title``, a blank line and the section: whatever it held is not kept.
    """
    start, end = section_markers(marker)
    block = f"{start}\n{generated.rstrip()}\n{end}\n"
    head, found, rest = old_page.partition(start)
    if not found or end not in rest:  # no section (an end marker only before the start counts as none)
        return f"{title}\n\n{block}"
    tail = rest.split(end, 1)[1].lstrip("\n")
    return head + block + ("\n" + tail if tail else "")


def write_section(path: str | os.PathLike[str], generated: str, *, marker: str, title: str) -> Path:
    """Write ``generated`` into the section ``marker`` of the page at ``path`` (see :func:`splice_section`).

    The page is replaced atomically; its folder is created. Returns the path.
    """
    page = Path(path)
    page.parent.mkdir(parents=True, exist_ok=True)
    old = page.read_text(encoding="utf-8") if page.is_file() else ""
    _atomic_text(page, splice_section(old, generated, marker, title))
    return page
