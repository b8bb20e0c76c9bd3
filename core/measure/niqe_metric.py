"""NIQE, the Natural Image Quality Evaluator (no-reference; lower is better), as MATLAB computes it.

Mittal, Soundararajan, Bovik, "Making a completely blind image quality analyzer", IEEE SPL 2013.
This follows the authors' MATLAB release (``computequality.m``) and BasicSR's port
(``basicsr/metrics/niqe.py``), with MATLAB's bicubic ``imresize`` for the second scale:

1. the image's Y channel (BT.601, like MATLAB ``rgb2ycbcr`` on uint8: rounded to integers), with
   ``crop`` border pixels removed, is cut down to whole 96x96 blocks (top-left kept);
2. at two scales (full, then ``imresize(0.5)``, antialiased bicubic) the local mean and deviation
   are taken with the 7x7 Gaussian window (edge pixels replicated); the normalised coefficients
   ``(I - mu) / (sigma + 1)`` of each block (96x96, then 48x48) give 18 features: an AGGD fit of the
   coefficients and of their products with the 4 neighbours (circular within the block);
3. the 36-dimensional features of all blocks are fitted by a Gaussian (mean, covariance of the rows
   without NaN) and compared with the pristine model:
   ``sqrt((mu_p - mu) pinv((C_p + C) / 2) (mu_p - mu)^T)``.

Precision: the local mean/deviation and the normalised coefficients are computed in single precision
(float32), the AGGD fits and the Gaussian model in float64. The reference values (MATLAB R2021a and
BasicSR: 5.72957 on Set14 ``baboon.png``) correspond to single-precision local statistics; in float64
the same image scores 5.72996, because the AGGD shape is picked on a discrete grid. Vectorised over
blocks with numpy/scipy (no per-pixel Python loops). The pristine model
(``niqe_pris_params.npz``) is read from ``$SRCOMPRESS_WEIGHTS/niqe/``, else the cache, else a
SHA-256-verified download of BasicSR's published copy.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import correlate
from scipy.special import gamma
from torch import Tensor

from srcompress.data import imresize
from srcompress.download import download, sha256_of
from srcompress.errors import CheckpointError
from srcompress.measure.metrics import rgb_to_y
from srcompress.paths import cache_dir, weights_root

__all__ = [
    "BLOCK_SIZE",
    "NIQE_PARAMS_FILE",
    "NIQE_PARAMS_SHA256",
    "NIQE_PARAMS_URL",
    "NiqeParams",
    "NiqeUndefinedError",
    "load_niqe_params",
    "niqe",
    "niqe_of_y",
]

NIQE_PARAMS_FILE = "niqe/niqe_pris_params.npz"
NIQE_PARAMS_URL = "https://github.com/XPixelGroup/BasicSR/raw/master/basicsr/metrics/niqe_pris_params.npz"
NIQE_PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
BLOCK_SIZE = 96
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_GAM = np.arange(0.2, 10.001, 0.001)  # the AGGD shape grid of the MATLAB code (9801 values)
_R_GAM = gamma(2.0 / _GAM) ** 2 / (gamma(1.0 / _GAM) * gamma(3.0 / _GAM))
_CHUNK = 256  # blocks per (blocks x 9801) grid search, bounds memory to ~20 MB


class NiqeUndefinedError(ValueError):
    """NIQE has no value for this image: fewer than two blocks with finite features (too small, or flat)."""


class NiqeParams:
    """The pristine multivariate Gaussian: ``mu`` (36,), ``cov`` (36, 36), 7x7 Gaussian ``window``."""

    def __init__(self, mu: np.ndarray, cov: np.ndarray, window: np.ndarray, source: Path) -> None:
        self.mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.window = np.asarray(window, dtype=np.float64)
        self.source = source
        if self.mu.shape != (36,) or self.cov.shape != (36, 36) or self.window.shape != (7, 7):
            raise CheckpointError(
                f"{source}: not NIQE pristine parameters (mu {self.mu.shape}, cov {self.cov.shape}, "
                f"window {self.window.shape}; expected 36, 36x36, 7x7)"
            )


def _params_path() -> Path:
    """Where the pristine parameters are: weights folder, else cache, else a verified download."""
    root = weights_root()
    if root is not None and (root / NIQE_PARAMS_FILE).is_file():
        return root / NIQE_PARAMS_FILE
    cached = cache_dir("weights") / NIQE_PARAMS_FILE
    if cached.is_file():
        return cached
    hint = (
        f"Put niqe_pris_params.npz (SHA-256 {NIQE_PARAMS_SHA256}) in $SRCOMPRESS_WEIGHTS/niqe/ "
        f"or in {cached.parent}"
    )
    return download(NIQE_PARAMS_URL, cached, NIQE_PARAMS_SHA256, offline_hint=hint)


@functools.lru_cache(maxsize=4)
def _load(path: Path, stamp: float) -> NiqeParams:
    del stamp  # part of the cache key only: a replaced file is read again
    actual = sha256_of(path)
    if actual != NIQE_PARAMS_SHA256:
        raise CheckpointError(
            f"{path}: SHA-256 {actual} is not the published NIQE parameters ({NIQE_PARAMS_SHA256}); "
            f"replace it with BasicSR's niqe_pris_params.npz"
        )
    with np.load(path, allow_pickle=False) as data:
        return NiqeParams(data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"], path)


def load_niqe_params(path: Path | None = None) -> NiqeParams:
    """Load (and SHA-256 check) the pristine model; ``path`` overrides the search."""
    path = Path(path) if path is not None else _params_path()
    if not path.is_file():
        raise CheckpointError(f"{path}: NIQE parameters file not found")
    return _load(path.resolve(), path.stat().st_mtime)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD fit (alpha, beta_left, beta_right) of each row of ``x`` (blocks, pixels), as in MATLAB.

    A row with no negative (or no positive) value gives NaN betas and alpha 0.2 (the first grid
    value), exactly as the reference code does; such blocks are dropped from the covariance.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = x * x
        neg, pos = x < 0, x > 0
        left_std = np.sqrt((sq * neg).sum(1) / neg.sum(1))
        right_std = np.sqrt((sq * pos).sum(1) / pos.sum(1))
        gammahat = left_std / right_std
        rhat = np.abs(x).mean(1) ** 2 / sq.mean(1)
        rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
        position = np.concatenate(
            [np.argmin((_R_GAM[None, :] - rhatnorm[i : i + _CHUNK, None]) ** 2, axis=1) for i in range(0, len(x), _CHUNK)]
        )
        alpha = _GAM[position]
        factor = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
        return alpha, left_std * factor, right_std * factor


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each block; ``blocks`` is (B, h, w), returns (B, 18)."""
    flat = blocks.reshape(len(blocks), -1)
    alpha, beta_l, beta_r = _aggd(flat)
    columns = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        product = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, beta_l, beta_r = _aggd(product.reshape(len(blocks), -1))
        with np.errstate(invalid="ignore"):
            mean = (beta_r - beta_l) * (gamma(2.0 / alpha) / gamma(1.0 / alpha))
        columns += [alpha, mean, beta_l, beta_r]
    return np.stack(columns, axis=1)


def _scale_features(img: np.ndarray, window: np.ndarray, block: int) -> np.ndarray:
    """Normalise ``img`` (h, w) by local mean/deviation and return the (blocks, 18) features."""
    img = img.astype(np.float32)
    mu = correlate(img, window, mode="nearest")  # float32 out, like the reference (see module doc)
    sigma = np.sqrt(np.abs(correlate(img * img, window, mode="nearest") - mu * mu))
    normalized = ((img - mu) / (sigma + 1.0)).astype(np.float64)
    rows, cols = img.shape[0] // block, img.shape[1] // block
    blocks = normalized[: rows * block, : cols * block].reshape(rows, block, cols, block)
    blocks = blocks.transpose(2, 0, 1, 3).reshape(rows * cols, block, block)  # column-major, like MATLAB
    return _block_features(blocks)


def niqe_of_y(y: np.ndarray, params: NiqeParams | None = None, *, block: int = BLOCK_SIZE) -> float:
    """NIQE of a grey/Y image (h, w) in the 0..255 range (not rescaled, not rounded here).

    :raises NiqeUndefinedError: (a ``ValueError``) if the image holds fewer than two whole
        ``block`` x ``block`` blocks with finite features: the block features' covariance is
        undefined for one (numpy's SVD then fails with "did not converge"). A 96 x 192 image is the
        smallest that scores.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"niqe_of_y expects a 2-D grey image (got shape {y.shape})")
    rows, cols = y.shape[0] // block, y.shape[1] // block
    if rows * cols < 2:
        raise NiqeUndefinedError(
            f"NIQE needs at least two whole {block}x{block} blocks (got {y.shape[0]}x{y.shape[1]}: "
            f"{rows * cols} block{'' if rows * cols == 1 else 's'}); score images of at least 96x192 after cropping"
        )
    params = params if params is not None else load_niqe_params()
    y = y[: rows * block, : cols * block]
    fine = _scale_features(y, params.window, block)
    half = imresize(torch.from_numpy(y / 255.0)[None], 0.5, antialias=True)[0].numpy() * 255.0
    coarse = _scale_features(half, params.window, block // 2)
    features = np.concatenate([fine, coarse], axis=1)
    complete = features[~np.isnan(features).any(axis=1)]
    if len(complete) < 2:
        raise NiqeUndefinedError(
            f"NIQE: {len(complete)} of {len(features)} blocks have finite features (a block with no positive or no "
            "negative normalised value has none: flat regions); their covariance needs two"
        )
    mu = np.nanmean(features, axis=0)
    cov = np.cov(complete, rowvar=False)
    diff = params.mu - mu
    quality = diff @ np.linalg.pinv((params.cov + cov) / 2) @ diff
    return float(np.sqrt(quality))


def niqe(
    img: Tensor,
    *,
    crop: int = 0,
    round_uint8: bool = True,
    params: NiqeParams | None = None,
) -> float:
    """NIQE of an RGB image on its Y channel (lower is better; pristine photos score ~3-5).

    :param img: float RGB (3, H, W) or (1, 3, H, W) in [0, 1] (clamped here).
    :param crop: pixels removed from each border before scoring (SR convention: the scale).
    :param round_uint8: round RGB to integer grey levels first (as a saved 8-bit image). Y is
        always rounded to integers, as MATLAB's ``rgb2ycbcr`` does on uint8 and BasicSR does.
    :param params: pristine model; default :func:`load_niqe_params`.
    :raises NiqeUndefinedError: (a ``ValueError``) if fewer than two whole 96x96 blocks remain after
        cropping, or fewer than two have finite features.
    """
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"niqe scores one image at a time (got batch of {img.shape[0]})")
        img = img[0]
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"niqe expects RGB (3, H, W) or (1, 3, H, W) in [0, 1] (got shape {tuple(img.shape)})")
    rgb = img.detach().to("cpu", torch.float64).clamp(0.0, 1.0) * 255.0
    if round_uint8:
        rgb = torch.round(rgb)
    y = rgb_to_y(rgb / 255.0)[0] * 255.0
    if crop:
        y = y[crop:-crop, crop:-crop]
    return niqe_of_y(np.floor(y.numpy() + 0.5), params)
