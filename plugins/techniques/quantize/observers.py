"""Activation observers for the four calibrations: minmax, percentile, mse, entropy.

All but ``minmax`` keep torchao's running histogram (:class:`HistogramObserver`: values binned over
the observed [min, max], re-binned when the range grows) and differ only in how they choose the
clipping range from it:

- ``mse``: torchao's own search, the range minimising the L2 quantization error (HistogramObserver).
- ``percentile`` (:class:`PercentileObserver`): the ``(100 - p)`` and ``p`` percentiles of the
  values (each tail clips ``100 - p`` percent).
- ``entropy`` (:class:`EntropyObserver`): TensorRT's calibration: the threshold ``t`` on ``|x|``
  minimising KL(P || Q) between the |x| histogram clipped at ``t`` and its quantized version with
  as many levels as the dtype has on one side of zero; the range is ``[-t, t]`` intersected with
  the observed ``[min, max]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

__all__ = ["EntropyObserver", "PercentileObserver", "activation_observer", "histogram_values", "kl_threshold"]


def histogram_values(observer: HistogramObserver) -> tuple[np.ndarray, np.ndarray]:
    """(counts, bin edges) of an observer's histogram, as float64 numpy arrays."""
    counts = observer.histogram.detach().double().cpu().numpy()
    lo, hi = float(observer.min_val), float(observer.max_val)
    return counts, np.linspace(lo, hi, len(counts) + 1)


class PercentileObserver(HistogramObserver):
    """Histogram observer whose range is the ``[100 - percentile, percentile]`` percentile interval."""

    def __init__(self, percentile: float = 99.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.percentile = float(percentile)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts, edges = histogram_values(self)
        total = counts.sum()
        if total <= 0 or self.max_val <= self.min_val:
            return self.min_val, self.max_val
        cdf = np.cumsum(counts) / total
        tail = (100.0 - self.percentile) / 100.0
        lo_bin = int(np.searchsorted(cdf, tail, side="left"))
        hi_bin = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
        lo, hi = edges[lo_bin], edges[min(hi_bin + 1, len(edges) - 1)]
        return self._as_range(lo, hi)

    def _as_range(self, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
        like = self.min_val  # the qparams computation widens the range to include 0 itself
        return torch.tensor(lo, dtype=like.dtype, device=like.device), torch.tensor(hi, dtype=like.dtype, device=like.device)


def kl_threshold(abs_counts: np.ndarray, levels: int, stride: int = 8) -> int:
    """Number of |x| bins to keep (clip above) minimising KL(P || Q), TensorRT's entropy calibration.

    :param abs_counts: histogram of |x| from 0 to max|x| (bins of equal width).
    :param levels: quantized levels on [0, t] (128 for int8, 256 for uint8 on one-signed data).
    """
    bins = len(abs_counts)
    if bins <= levels:
        return bins
    best, best_kl = bins, np.inf
    for keep in range(levels, bins + 1, stride):
        p = abs_counts[:keep].copy()
        p[-1] += abs_counts[keep:].sum()
        if p.sum() <= 0:
            continue
        # quantize the first `keep` bins into `levels` groups; spread each group's mass over its non-empty bins
        groups = np.minimum((np.arange(keep) * levels) // keep, levels - 1)
        nonzero = abs_counts[:keep] > 0
        mass = np.bincount(groups, weights=abs_counts[:keep], minlength=levels)
        width = np.bincount(groups, weights=nonzero.astype(np.float64), minlength=levels)
        q = np.where(nonzero, mass[groups] / np.maximum(width[groups], 1.0), 0.0)
        p_norm, q_sum = p / p.sum(), q.sum()
        if q_sum <= 0:
            continue
        q_norm = q / q_sum
        support = p_norm > 0
        kl = float(np.sum(p_norm[support] * np.log(p_norm[support] / np.maximum(q_norm[support], 1e-12))))
        if kl < best_kl:
            best, best_kl = keep, kl
    return best


class EntropyObserver(PercentileObserver):
    """Histogram observer whose range is TensorRT's entropy (KL divergence) threshold on |x|."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(percentile=100.0, **kwargs)

    def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
        counts, edges = histogram_values(self)
        amax = max(abs(edges[0]), abs(edges[-1]))
        if counts.sum() <= 0 or amax <= 0:
            return self.min_val, self.max_val
        centers = np.abs(0.5 * (edges[:-1] + edges[1:]))
        abs_counts, _ = np.histogram(centers, bins=len(counts), range=(0.0, amax), weights=counts)
        one_signed = float(self.min_val) >= 0 or float(self.max_val) <= 0
        span = self.quant_max - self.quant_min + 1
        levels = span if one_signed else (span + 1) // 2
        keep = kl_threshold(abs_counts, min(levels, len(counts)))
        threshold = amax * keep / len(counts)
        return self._as_range(max(float(self.min_val), -threshold), min(float(self.max_val), threshold))


def activation_observer(calibration: str, *, percentile: float = 99.99, bins: int = 2048) -> Any:
    """Observer constructor (``cls.with_args(...)``) for a calibration method name."""
    if calibration == "minmax":
        return MinMaxObserver.with_args(eps=2**-12)
    if calibration == "mse":
        return HistogramObserver.with_args(bins=bins, eps=2**-12)
    if calibration == "percentile":
        return PercentileObserver.with_args(percentile=percentile, bins=bins, eps=2**-12)
    if calibration == "entropy":
        return EntropyObserver.with_args(bins=bins, eps=2**-12)
    raise ValueError(f"unknown calibration {calibration!r} (available: minmax, percentile, mse, entropy)")
