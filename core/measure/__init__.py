"""srcompress.measure: what every stage is judged by.

- :mod:`~srcompress.measure.metrics`: PSNR / SSIM on Y or RGB (BasicSR's formulas).
- :mod:`~srcompress.measure.niqe_metric`: NIQE, MATLAB-faithful (no-reference).
- :mod:`~srcompress.measure.lpips_metric`: LPIPS when its ImageNet trunk is available offline.
- :mod:`~srcompress.measure.profile`: parameters, MACs, file size, one latency harness.
- :mod:`~srcompress.measure.evaluate`: a model on named datasets with registry metrics.
- :mod:`~srcompress.measure.report`: Markdown + JSON + PNG report of a run's stages.

Images at every public boundary are float32 RGB tensors in [0, 1], (3, H, W) or (1, 3, H, W).
"""

from srcompress.measure.evaluate import EvalResult, KeptImage, evaluate, format_value, metric_label
from srcompress.measure.lpips_metric import MetricSkippedWarning, lpips_available, lpips_distance, lpips_weights_path
from srcompress.measure.metrics import gaussian_kernel_1d, gaussian_window, psnr, rgb_to_y, ssim
from srcompress.measure.niqe_metric import BLOCK_SIZE, NiqeParams, NiqeUndefinedError, load_niqe_params, niqe, niqe_of_y
from srcompress.measure.profile import FFT_FLOP_FORMULAS, LatencyStats, count_macs, count_params, file_size, measure_latency
from srcompress.measure.report import (
    StageRecord, crops_from_results, section_markers, select_crop_box, splice_section, write_report, write_section,
)

__all__ = [
    "BLOCK_SIZE",
    "FFT_FLOP_FORMULAS",
    "EvalResult",
    "KeptImage",
    "LatencyStats",
    "MetricSkippedWarning",
    "NiqeParams",
    "NiqeUndefinedError",
    "StageRecord",
    "count_macs",
    "count_params",
    "crops_from_results",
    "evaluate",
    "file_size",
    "format_value",
    "gaussian_kernel_1d",
    "gaussian_window",
    "load_niqe_params",
    "lpips_available",
    "lpips_distance",
    "lpips_weights_path",
    "measure_latency",
    "metric_label",
    "niqe",
    "niqe_of_y",
    "psnr",
    "rgb_to_y",
    "section_markers",
    "select_crop_box",
    "splice_section",
    "ssim",
    "write_report",
    "write_section",
]
