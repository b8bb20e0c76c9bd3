"""LPIPS (Zhang et al. 2018, "The unreasonable effectiveness of deep features"), lower is better.

Computed with the ``lpips`` package (v0.1 linear heads, AlexNet trunk by default). The trunk's
ImageNet weights come from torchvision, which downloads them on first use into the torch hub cache
(``torch.hub.get_dir()/checkpoints``). This module never triggers that download and never builds a
random trunk (``pnet_rand``), whose numbers are not LPIPS: when the weights file is not in the
cache, :func:`lpips_available` says so and :func:`lpips_distance` returns ``None`` after emitting a
:class:`MetricSkippedWarning` with the reason (evaluation reports collect these as notes).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "LPIPS_TRUNK_FILES",
    "MetricSkippedWarning",
    "lpips_available",
    "lpips_distance",
    "lpips_weights_path",
]

# torchvision's published trunk weights (the file names are the URLs' last parts).
LPIPS_TRUNK_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_TRUNK_NAMES = {"alex": "AlexNet", "vgg": "VGG16", "squeeze": "SqueezeNet 1.1"}


class MetricSkippedWarning(UserWarning):
    """A metric could not be computed (missing weights, image too small); the value is None."""


def lpips_weights_path(net: str = "alex") -> Path:
    """Where torchvision looks for the trunk weights of ``net`` (``alex``, ``vgg`` or ``squeeze``)."""
    if net not in LPIPS_TRUNK_FILES:
        raise ValueError(f"unknown LPIPS trunk '{net}' (available: {', '.join(sorted(LPIPS_TRUNK_FILES))})")
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TRUNK_FILES[net]


def lpips_available(net: str = "alex") -> tuple[bool, str]:
    """Whether LPIPS can be computed offline: ``(True, "")`` or ``(False, reason)``."""
    try:
        import lpips  # noqa: F401
    except ImportError as exc:
        return False, f"LPIPS skipped: the lpips package is not installed ({exc}); pip install lpips"
    path = lpips_weights_path(net)
    if not path.is_file():
        return False, (
            f"LPIPS skipped: {_TRUNK_NAMES[net]} weights not in torch hub "
            f"cache ({path}); run once online or copy the file there"
        )
    return True, ""


@functools.lru_cache(maxsize=3)
def _model(net: str, path: Path, stamp: float) -> torch.nn.Module:
    """The LPIPS module (CPU, eval); only called when the trunk weights are in the cache."""
    del path, stamp  # cache key: a newly copied weights file is picked up
    import lpips

    return lpips.LPIPS(net=net, pretrained=True, pnet_rand=False, verbose=False).eval()


def lpips_distance(sr: Tensor, hr: Tensor, *, crop: int = 0, net: str = "alex", round_uint8: bool = True) -> float | None:
    """LPIPS distance between two RGB images, or ``None`` (with a warning) when unavailable offline.

    :param sr: float RGB (3, H, W) or (1, 3, H, W) in [0, 1] (clamped here).
    :param hr: the reference, same layout and size.
    :param crop: pixels removed from each border first (SR convention: the scale).
    :param net: trunk, ``alex`` (default, the usual SR choice), ``vgg`` or ``squeeze``.
    :param round_uint8: round both to integer grey levels first (as saved 8-bit images).
    """
    ok, reason = lpips_available(net)
    if not ok:
        warnings.warn(reason, MetricSkippedWarning, stacklevel=2)
        return None
    pair = []
    for img in (sr, hr):
        img = img if img.dim() == 4 else img.unsqueeze(0)
        if img.dim() != 4 or img.shape[:2] != (1, 3):
            raise ValueError(f"lpips_distance expects RGB (3, H, W) or (1, 3, H, W) in [0, 1] (got shape {tuple(img.shape)})")
        img = img.detach().float().clamp(0.0, 1.0)
        if round_uint8:
            img = torch.round(img * 255.0) / 255.0
        if crop:
            img = img[..., crop:-crop, crop:-crop]
        pair.append(img)
    if pair[0].shape != pair[1].shape:
        raise ValueError(f"sr and hr differ in shape: {tuple(pair[0].shape)} vs {tuple(pair[1].shape)}")
    path = lpips_weights_path(net)
    model = _model(net, path, path.stat().st_mtime).to(pair[0].device)
    with torch.no_grad():
        return float(model(pair[0] * 2 - 1, pair[1] * 2 - 1).item())
