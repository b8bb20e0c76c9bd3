"""The ``quantize`` stage's typed configuration."""

from __future__ import annotations

from attrs import define

from srcompress.config import FieldValueError, in_range, names, one_of, option
from srcompress.training import TrainConfig

__all__ = ["CALIBRATIONS", "DTYPES", "MODES", "TARGETS", "QuantizeConfig"]

MODES = ("ptq", "qat")
DTYPES = ("int8", "fp16", "bf16", "int16")
TARGETS = ("onnxruntime", "tensorrt")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")



def _short_finetune() -> TrainConfig:
    return TrainConfig(steps=200, lr=1e-5, checkpoint_every=None)


@define(frozen=True, kw_only=True)
class QuantizeConfig:
    """A quantize stage: PT2E post-training quantization or quantization-aware training.

    Weights are quantized per output channel, symmetric (zero point 0); activations per tensor.
    Modules the model's hints mark ``keep_float`` (F2SRGAN's Fourier units) always stay float.
    """

    mode: str = option("ptq", help="ptq: calibrate observers on calib_batches batches; qat: fine-tune with "
                       "fake-quant (straight-through gradients) through the training core.", validator=one_of(MODES))
    dtype: str = option("int8", help="int8 (deployable Q/DQ); fp16 / bf16 (a cast: deployment precision, no "
                        "calibration); int16 (fake-quant in torch only, to reproduce the released Light F2SRGAN).",
                        validator=one_of(DTYPES))
    target: str = option("onnxruntime", help="onnxruntime: uint8 asymmetric activations (fastest on x86 CPUs); "
                         "tensorrt: int8 symmetric activations and weights, every zero point 0 (explicit quantization).",
                         validator=one_of(TARGETS))
    calibration: str = option("minmax", help="Activation range: minmax (observed min/max), percentile (clip at "
                              "the percentile of |x|), mse (histogram range minimising the L2 quantization error), "
                              "entropy (histogram range minimising the KL divergence, as TensorRT's calibrator).",
                              validator=one_of(CALIBRATIONS))
    calib_batches: int = option(16, help="Batches of training patches run through the observers (ptq; qat: before "
                                "fine-tuning, to start from calibrated ranges).", validator=in_range(0, 100000))
    calib_batch: int = option(4, help="Patches per calibration batch.", validator=in_range(1, 4096))
    calib_patch: int | None = option(None, help="HR size of calibration patches (None: the recipe's data.patch).",
                                     validator=in_range(8, 4096))
    percentile: float = option(99.99, help="calibration percentile: percentile of |activation| kept unclipped.",
                               validator=in_range(50.0, 100.0, lo_open=True))
    bins: int = option(2048, help="Histogram bins of the percentile, mse and entropy calibrations.",
                       validator=in_range(256, 1 << 16))
    keep_float: tuple[str, ...] = option((), help="Module names (fnmatch patterns, e.g. 'upsampler.*') left in "
                                         "float, besides the model's keep_float hints.", converter=names)
    split_prelu: bool | None = option(
        None, help="Rewrite conv -> [pixel shuffle] -> PReLU exactly as conv(+/-W) -> ReLU, the slopes folded into "
        "the next convs (ONNX Runtime has no integer PReLU; this runs it inside QLinearConvs: 1.2-1.4x faster "
        "on the KD student and Light F2SRGAN, docs/benchmarks_quantize.md). null: on for target onnxruntime, off "
        "for tensorrt (which fuses PReLU itself).",
    )
    subpixel_tail: bool = option(
        False, help="Fold the RGB tail after the last pixel shuffle (PReLU, conv or separable conv, mean shift) "
        "exactly into one compact conv on the low-resolution grid and a 0/1 transposed conv that places its "
        "outputs, so that the tail is quantized and fine-tuned in the form ONNX Runtime runs; the image output "
        "is then int8 too. Off: the tail runs as it is (keep it float with keep_float, and the onnx backend "
        "moves a float tail before the shuffle itself).",
    )
    float_first_last: bool = option(False, help="Keep the first and the last conv of the network in float.")
    freeze_observers_after: int | None = option(None, help="qat: stop updating activation/weight ranges after "
                                                "this many steps (None: never).", validator=in_range(0, None))
    freeze_bn_after: int | None = option(None, help="qat: use running BatchNorm statistics after this many steps "
                                         "(None: never).", validator=in_range(0, None))
    finetune: TrainConfig = option(factory=_short_finetune, help="qat: the fine-tuning run (steps, lr, losses, ...) "
                                   "of the shared training loop; default 200 steps at lr 1e-5.")

    def __attrs_post_init__(self) -> None:
        if self.mode == "qat" and self.dtype in ("fp16", "bf16"):
            raise FieldValueError("mode", f"qat needs an integer dtype (int8 or int16), not {self.dtype}")
        if self.dtype == "int16" and self.target == "tensorrt":
            raise FieldValueError("dtype", "TensorRT has no int16 Q/DQ; use int8 for target tensorrt")

    @property
    def splits_prelu(self) -> bool:
        """Whether the PReLU rewrite runs: ``split_prelu``, or by default for target onnxruntime only."""
        return self.target == "onnxruntime" if self.split_prelu is None else self.split_prelu

    @property
    def integer(self) -> bool:
        """True for int8/int16 (PT2E Q/DQ), False for the fp16/bf16 casts."""
        return self.dtype in ("int8", "int16")
